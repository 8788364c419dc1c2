//! Every route of the API, each with its declared permission (SECURITY.md S18: deny by
//! default). [`ROUTES`] is the table a test walks: every route the router serves must be in it
//! and in the OpenAPI document, and every route that is not public must refuse an anonymous
//! caller with 401 before it does anything.

pub mod events;
pub mod meta;

use axum::http::Method;
use datahub_core::rbac::Action;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Anyone, signed in or not: sign-in itself, liveness and readiness, the API description,
    /// metrics (counts only, never a name or a secret).
    Public,
    /// Any signed-in caller, acting on their own session, account or tokens.
    SignedIn,
    /// A core action; the Hub checks the caller's role and grants for it.
    Action(Action),
}

/// One route: method, path (OpenAPI style, `{id}`) and permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path, with `{name}` parameters.
    pub path: &'static str,
    /// Who may call it.
    pub permission: Permission,
}

const fn route(method: Method, path: &'static str, permission: Permission) -> Route {
    Route {
        method,
        path,
        permission,
    }
}

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/healthz", Permission::Public),
    route(Method::GET, "/readyz", Permission::Public),
    route(Method::GET, "/metrics", Permission::Public),
    route(Method::GET, "/api/v1/openapi.json", Permission::Public),
    // Viewing the list of connections, live; each event is filtered by `connection.view`.
    route(
        Method::GET,
        "/api/v1/events",
        Permission::Action(Action::ConnectionList),
    ),
];

/// The API's description, completed by each route module's `#[utoipa::path]` annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "DataHub Connections API",
        description = "Store, test and monitor database connections. Errors are always \
                       {\"error\": {\"code\", \"message\", \"field\"?, \"request_id\"?}}."
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail))
)]
struct ApiDoc;

/// Every documented route answered within the request timeout; `split_for_parts` gives the
/// router and the OpenAPI document.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(meta::router())
}

/// The long-lived routes (event streams), served without the request timeout; their OpenAPI
/// paths are merged into [`api`]'s document by [`crate::app`].
pub fn streams() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(events::router())
}

/// The whole OpenAPI document: [`api`] and [`streams`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    doc.merge(streams().into_openapi());
    doc
}
