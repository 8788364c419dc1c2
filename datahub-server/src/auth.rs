//! Who is calling: the [`Authed`] extractor turns a bearer token or a session cookie into the
//! core's `Principal`, and refuses cross-origin state changes made by cookie.
//!
//! Rules (SECURITY.md S16, S19, S20):
//! - `Authorization: Bearer <token>` works on every route and is never subject to the origin
//!   check (a browser never adds it by itself).
//! - The session cookie (`datahub_session`, HttpOnly, SameSite=Strict, Secure under HTTPS) is
//!   accepted on safe methods always, and on state-changing ones only when the request says it
//!   comes from this origin: `Sec-Fetch-Site: same-origin`, or an `Origin` with the scheme this
//!   server serves and the request's own host and port.
//! - Every failure is the same 401; the principal is loaded afresh on every request, so a
//!   disabled user, a revoked token or a changed grant applies on the next request. A request
//!   that outlives its start (the event stream) keeps its [`Credential`] and re-checks it.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use datahub_core::audit::RequestInfo;
use datahub_core::rbac::Principal;
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "datahub_session";

/// The authenticated caller of a request.
#[derive(Debug)]
pub struct Authed(pub Principal);

/// The client address and request id of a request, for the audit log.
#[derive(Debug, Clone)]
pub struct Client(pub RequestInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(request_info(parts)))
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.authenticate(state).await.map(Self)
    }
}

/// A caller whose credential is read but not yet checked against the store: for a handler
/// that overlaps that check with a read whose result it uses only once the check passed
/// ([`Hub::test_connection_as`](datahub_core::hub::Hub::test_connection_as)). Extracting it
/// refuses at once, as [`Authed`] does, what needs no store: no credential, an
/// `Authorization` header that is not `Bearer`, a cookie on a cross-origin state change.
#[derive(Debug)]
pub struct Caller {
    credential: Credential,
    info: RequestInfo,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credential = match credential(&parts.headers)? {
            Some(c @ Credential::Token(_)) => c,
            Some(c @ Credential::Session(_)) => {
                if !is_safe(&parts.method) && !same_origin(parts, state.options().secure_cookies) {
                    return Err(ApiError::cross_origin());
                }
                c
            }
            None => return Err(ApiError::unauthenticated()),
        };
        Ok(Self {
            credential,
            info: request_info(parts),
        })
    }
}

impl Caller {
    /// The caller's principal, checked against the store now (a use of a session).
    ///
    /// # Errors
    /// The uniform 401 for a credential that is unknown, revoked, expired or ended, or a
    /// disabled user; 503 when the store fails.
    pub async fn authenticate(&self, state: &AppState) -> Result<Principal, ApiError> {
        let hub = state.hub();
        // Level `debug`: off in the default configuration, where it costs next to nothing.
        async {
            match &self.credential {
                Credential::Token(token) => {
                    hub.authenticate_token(token.expose_secret(), &self.info)
                        .await
                }
                Credential::Session(session) => {
                    hub.authenticate_session(session.expose_secret(), &self.info)
                        .await
                }
            }
            .map_err(refused)
        }
        .instrument(tracing::debug_span!("authenticate"))
        .await
    }
}

/// What a request signs in with: a bearer token (preferred when both are sent) or the session
/// cookie. `Debug` shows only which kind.
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Token(SecretString),
    /// The `datahub_session` cookie.
    Session(SecretString),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Token(_) => "Credential::Token([REDACTED])",
            Self::Session(_) => "Credential::Session([REDACTED])",
        })
    }
}

impl Credential {
    /// The principal this credential stands for now, checked again as on a new request, except
    /// that checking a session is not a use of it (an open event stream alone never keeps a
    /// session from going idle).
    ///
    /// # Errors
    /// `Unauthenticated` when the token was revoked or expired, the session ended, or the user
    /// was disabled; `Store` when the store fails.
    pub async fn recheck(
        &self,
        hub: &datahub_core::hub::Hub,
        info: &RequestInfo,
    ) -> datahub_core::Result<Principal> {
        match self {
            Self::Token(token) => hub.authenticate_token(token.expose_secret(), info).await,
            Self::Session(session) => hub.recheck_session(session.expose_secret(), info).await,
        }
    }
}

/// The credential a request carries, if any.
///
/// # Errors
/// The uniform 401 for an `Authorization` header that is not `Bearer <token>`.
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
    if let Some(token) = bearer(headers)? {
        return Ok(Some(Credential::Token(SecretString::from(token))));
    }
    Ok(cookie(headers, SESSION_COOKIE).map(|s| Credential::Session(SecretString::from(s))))
}

/// A store failure stays a 503; every other failure is the one uniform 401.
fn refused(e: datahub_core::Error) -> ApiError {
    match e.kind() {
        datahub_core::ErrorKind::Store => ApiError::from(e),
        _ => ApiError::unauthenticated(),
    }
}

/// The bearer token, if the request carries `Authorization: Bearer`.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::unauthenticated())?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Err(ApiError::unauthenticated()),
    }
}

/// The value of cookie `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a cookie-authenticated request says it comes from this server's own pages:
/// `Sec-Fetch-Site: same-origin`, or else an `Origin` whose scheme is the one this server
/// serves (`https` when it serves TLS) and whose host and port equal the `Host` header's (a
/// missing port is the scheme's default), S34. Behind a proxy that terminates TLS, browsers
/// send `Sec-Fetch-Site`, which decides first.
fn same_origin(parts: &Parts, https: bool) -> bool {
    let headers = &parts.headers;
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin";
    }
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let (scheme, default_port) = if https { ("https", 443) } else { ("http", 80) };
    let Some(origin_authority) = origin
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .and_then(|_| origin.get(scheme.len()..))
        .and_then(|rest| rest.strip_prefix("://"))
    else {
        return false;
    };
    match (
        host_and_port(origin_authority, default_port),
        host_and_port(host, default_port),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The lowercased host and the port of `host[:port]` (IPv6 in brackets), the port defaulting
/// to `default_port`; `None` for anything else (user info, a path, a bad port).
fn host_and_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    let authority: axum::http::uri::Authority = text.parse().ok()?;
    if authority.as_str().contains('@') || authority.as_str() != text {
        return None;
    }
    Some((
        authority.host().to_ascii_lowercase(),
        authority.port_u16().unwrap_or(default_port),
    ))
}

/// The request's client address and id, as the audit log records them.
pub fn request_info(parts: &Parts) -> RequestInfo {
    let client_addr = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    RequestInfo {
        client_addr,
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(origin: &str, host: &str) -> Parts {
        Request::post("/api/v1/connections")
            .header(header::ORIGIN, origin)
            .header(header::HOST, host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    /// S34: the origin check compares scheme, host and port.
    #[test]
    fn the_origin_must_match_scheme_host_and_port() {
        for (origin, host, https, same) in [
            ("http://localhost:8080", "localhost:8080", false, true),
            ("http://LocalHost:8080", "localhost:8080", false, true),
            ("http://localhost", "localhost:80", false, true),
            ("https://example.com", "example.com:443", true, true),
            ("https://[::1]:8443", "[::1]:8443", true, true),
            // Scheme: an http page may not write to the https server, nor the reverse.
            ("http://example.com", "example.com", true, false),
            ("https://example.com", "example.com", false, false),
            // Port.
            ("http://localhost:8081", "localhost:8080", false, false),
            ("http://localhost", "localhost:8080", false, false),
            // Host.
            ("http://evil.example", "localhost", false, false),
            ("http://localhost.evil.example", "localhost", false, false),
            // Not an origin.
            ("null", "localhost", false, false),
            ("http://user@localhost", "localhost", false, false),
            ("http://localhost/path", "localhost", false, false),
            ("httpx://localhost", "localhost", false, false),
        ] {
            assert_eq!(
                same_origin(&parts(origin, host), https),
                same,
                "{origin} to {host} (https: {https})"
            );
        }
    }
}
