//! Every route of the API, each with its declared permission (SECURITY.md S18: deny by
//! default). [`ROUTES`] is the table a test walks: every route the router serves must be in it
//! and in the OpenAPI document, and every route that is not public must refuse an anonymous
//! caller with 401 before it does anything.

pub mod audit;
pub mod connections;
pub mod directory;
mod doc;
pub mod events;
pub mod meta;
pub mod policy;
pub mod rules;
pub mod session;
pub mod teams;
pub mod tokens;
pub mod users;

use axum::http::Method;
use datahub_core::rbac::Action;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Anyone, signed in or not: sign-in itself, liveness and readiness, the API description.
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
    route(
        Method::GET,
        "/metrics",
        Permission::Action(Action::MetricsRead),
    ),
    route(Method::GET, "/api/v1/openapi.json", Permission::Public),
    route(Method::POST, "/api/v1/auth/login", Permission::Public),
    route(Method::POST, "/api/v1/auth/logout", Permission::SignedIn),
    route(Method::GET, "/api/v1/auth/me", Permission::SignedIn),
    route(
        Method::GET,
        "/api/v1/connections",
        Permission::Action(Action::ConnectionList),
    ),
    route(
        Method::POST,
        "/api/v1/connections",
        Permission::Action(Action::ConnectionCreate),
    ),
    route(
        Method::POST,
        "/api/v1/connections/test",
        Permission::Action(Action::ConnectionTestDraft),
    ),
    route(
        Method::GET,
        "/api/v1/connections/{id}",
        Permission::Action(Action::ConnectionView),
    ),
    route(
        Method::PATCH,
        "/api/v1/connections/{id}",
        Permission::Action(Action::ConnectionUpdate),
    ),
    route(
        Method::DELETE,
        "/api/v1/connections/{id}",
        Permission::Action(Action::ConnectionDelete),
    ),
    route(
        Method::POST,
        "/api/v1/connections/{id}/test",
        Permission::Action(Action::ConnectionTest),
    ),
    route(
        Method::GET,
        "/api/v1/connections/{id}/health",
        Permission::Action(Action::ConnectionView),
    ),
    route(
        Method::POST,
        "/api/v1/connections/{id}/reveal",
        Permission::Action(Action::ConnectionReveal),
    ),
    route(
        Method::GET,
        "/api/v1/connections/{id}/grants",
        Permission::Action(Action::GrantsRead),
    ),
    route(
        Method::PUT,
        "/api/v1/connections/{id}/grants",
        Permission::Action(Action::GrantsWrite),
    ),
    route(
        Method::DELETE,
        "/api/v1/connections/{id}/grants",
        Permission::Action(Action::GrantsWrite),
    ),
    // Accounts.
    route(
        Method::GET,
        "/api/v1/users",
        Permission::Action(Action::UserList),
    ),
    route(
        Method::POST,
        "/api/v1/users",
        Permission::Action(Action::UserCreate),
    ),
    route(
        Method::GET,
        "/api/v1/users/{id}",
        Permission::Action(Action::UserList),
    ),
    route(
        Method::PATCH,
        "/api/v1/users/{id}",
        Permission::Action(Action::UserUpdate),
    ),
    route(
        Method::POST,
        "/api/v1/users/me/password",
        Permission::Action(Action::PasswordChangeOwn),
    ),
    route(
        Method::GET,
        "/api/v1/teams",
        Permission::Action(Action::TeamList),
    ),
    route(
        Method::POST,
        "/api/v1/teams",
        Permission::Action(Action::TeamManage),
    ),
    route(
        Method::PUT,
        "/api/v1/teams/{id}",
        Permission::Action(Action::TeamManage),
    ),
    route(
        Method::DELETE,
        "/api/v1/teams/{id}",
        Permission::Action(Action::TeamManage),
    ),
    // Names of enabled users and teams, to pick a grantee.
    route(
        Method::GET,
        "/api/v1/directory",
        Permission::Action(Action::DirectoryRead),
    ),
    route(
        Method::GET,
        "/api/v1/tokens",
        Permission::Action(Action::TokenListOwn),
    ),
    route(
        Method::POST,
        "/api/v1/tokens",
        Permission::Action(Action::TokenCreateOwn),
    ),
    // One's own token; an admin may revoke anyone's (`token.manage`).
    route(
        Method::DELETE,
        "/api/v1/tokens/{id}",
        Permission::Action(Action::TokenRevokeOwn),
    ),
    // Audit and policy.
    route(
        Method::GET,
        "/api/v1/audit",
        Permission::Action(Action::AuditRead),
    ),
    route(
        Method::GET,
        "/api/v1/audit/verify",
        Permission::Action(Action::AuditVerify),
    ),
    route(
        Method::GET,
        "/api/v1/policy",
        Permission::Action(Action::PolicyRead),
    ),
    route(
        Method::PUT,
        "/api/v1/policy",
        Permission::Action(Action::PolicyWrite),
    ),
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
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::router())
        .merge(session::router())
        .merge(connections::router())
        .merge(users::router())
        .merge(teams::router())
        .merge(directory::router())
        .merge(tokens::router())
        .merge(audit::router())
        .merge(policy::router())
}

/// The long-lived routes (event streams), served without the request timeout; their OpenAPI
/// paths are merged into [`api`]'s document by [`crate::app`].
pub fn streams() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(events::router())
}

/// The whole OpenAPI document as served: [`api`] and [`streams`], [`complete`]d.
pub fn openapi() -> serde_json::Value {
    let mut doc = api().into_openapi();
    doc.merge(streams().into_openapi());
    complete(doc)
}

/// The document merged from [`api`] and [`streams`], completed with what every operation
/// shares: the error answers any operation may give (by its permission, body and parameters),
/// the input [`rules`] of every field and parameter, and the links from each creation's `201`
/// to the operations on what it created. This is the JSON the server serves.
pub fn complete(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    doc::complete(doc)
}
