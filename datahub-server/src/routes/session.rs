//! Sign-in, sign-out and "who am I": `/api/v1/auth/*`.
//!
//! A successful sign-in sets the session cookie (`HttpOnly; SameSite=Strict; Path=/`, `Secure`
//! under HTTPS) holding a token the store knows only by its hash. Failed sign-ins are answered
//! with one message whatever the cause, counted per account name and client address, and
//! refused with 429 once either runs out (SECURITY.md S20).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datahub_core::ErrorKind;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::session::{LoginRequest, LoginResponse, Me};
use crate::auth::{Authed, Client, SESSION_COOKIE, cookie};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The longest user name or password read from a sign-in, in bytes: anything longer is wrong
/// anyway, and argon2 should not hash megabytes.
const MAX_FIELD_BYTES: usize = 1024;

/// `/api/v1/auth/login`, `/api/v1/auth/logout`, `/api/v1/auth/me`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// Signs in with a user name and password and sets the session cookie.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse, description = "signed in; the session cookie is set"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody, description = "the same answer for every cause"),
        (status = 429, body = ErrorBody, description = "too many failed sign-ins for this account or address: wait `Retry-After` seconds",
         headers(("Retry-After" = u64, description = "whole seconds until a sign-in is allowed again"))),
    )
)]
async fn login(
    State(state): State<AppState>,
    Client(info): Client,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    if request.username.len() > MAX_FIELD_BYTES {
        return Err(ApiError::invalid("username", "is too long"));
    }
    let password = request.password.into_inner();
    if password.expose_secret().len() > MAX_FIELD_BYTES {
        return Err(ApiError::invalid("password", "is too long"));
    }
    let client = info.client_addr.clone();
    // S29: the address's attempt is taken before any password work (the hub takes the
    // account's), so however many arrive at once, at most the burst per address reach the hub;
    // a wrong password keeps it spent.
    if let Err(wait) = state.logins().attempt(client.as_deref()) {
        // The wait until both the address and the account allow a guess.
        let account = state.hub().login_retry_after(&request.username);
        return Err(ApiError::rate_limited(wait.max(account)));
    }
    let principal = match state.hub().login(&request.username, password, &info).await {
        Ok(principal) => principal,
        Err(e) if e.kind() == ErrorKind::Unauthenticated => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the user name or password is wrong, or the account is disabled",
            ));
        }
        Err(e) => {
            // Not a wrong password (the account's own limit, or the store failed): the
            // attempt does not count.
            state.logins().give_back(client.as_deref());
            return Err(e.into());
        }
    };
    state.logins().give_back(client.as_deref());
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let session = state
        .hub()
        .start_session_for_client(&principal, &info, agent)
        .await?;
    let max_age = (session.expires_at - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    let secure = if state.options().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        session.token.expose_secret()
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::internal("the session cookie is not a header value"))?;
    let body = LoginResponse {
        user: Me::of(&principal),
        expires_at: session.expires_at,
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the caller's session (when signed in by cookie) and clears the cookie.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "signed out"),
    )
)]
async fn logout(
    State(state): State<AppState>,
    Authed(_principal): Authed,
    Client(info): Client,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.hub().end_session(token, &info).await?;
    }
    let secure = if state.options().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    let clear = HeaderValue::from_str(&clear)
        .map_err(|_| ApiError::internal("the session cookie is not a header value"))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

/// The signed-in caller.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody))
)]
async fn me(Authed(principal): Authed) -> Json<Me> {
    Json(Me::of(&principal))
}
