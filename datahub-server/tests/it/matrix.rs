//! The permission matrix over HTTP (SECURITY.md S19): every role × standing on one connection
//! (no grant, each `GrantLevel`, owner) × every route of `ROUTES` whose permission is a core
//! action, by a read-write and by a read-only API token. The expected answer is not written
//! here: it is what the core's table decides (`Principal::decide`, which reads `RULES`) for the
//! principal the token stands for — allowed → 2xx, `Deny` → 403, `Hide` → 404. A connection the
//! caller may not view is absent from the list's items and `total`; a revoked grant, a team
//! membership removed and a role changed take effect on the next request.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};

use axum::http::{Method, StatusCode};
use datahub_core::ConnectionId;
use datahub_core::audit::RequestInfo;
use datahub_core::hub::{RateLimit, UserUpdate};
use datahub_core::model::{ConnectionDraft, TlsMode};
use datahub_core::rbac::{
    Access, Action, Decision, Grant, GrantLevel, Grantee, Principal, Role, Target,
};
use datahub_core::secret::Password;
use datahub_core::{UserId, hub::Hub};
use datahub_server::routes::{Permission, ROUTES, Route};
use serde_json::{Value, json};

use crate::common::{Answer, Fixture};

const URL: &str = "/api/v1/connections";

/// A loopback port with nothing listening: saved and draft tests are refused at once.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The caller's standing on the target connection: the matrix's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Nothing,
    Granted(GrantLevel),
    Owner,
}

fn standings() -> Vec<Standing> {
    let mut all = vec![Standing::Nothing];
    all.extend(GrantLevel::ALL.into_iter().map(Standing::Granted));
    all.push(Standing::Owner);
    all
}

fn draft(name: &str, port: u16) -> ConnectionDraft {
    let mut d = ConnectionDraft {
        name: name.to_owned(),
        host: "127.0.0.1".to_owned(),
        port: Some(i64::from(port)),
        database: "app".to_owned(),
        username: "app".to_owned(),
        password: Some(Password::from("matrix-pw-41")),
        ..ConnectionDraft::default()
    };
    d.tls.mode = Some(TlsMode::Require);
    d.monitoring.enabled = Some(false);
    d
}

fn body_json(name: &str, port: u16) -> Value {
    json!({"name": name, "host": "127.0.0.1", "port": port, "database": "app",
           "username": "app", "password": "matrix-pw-41", "tls": {"mode": "require"},
           "monitoring": {"enabled": false}})
}

/// The core action a route is declared with, if any.
fn action_of(route: &Route) -> Option<Action> {
    match route.permission {
        Permission::Action(a) => Some(a),
        Permission::Public | Permission::SignedIn => None,
    }
}

/// A user of one role, with a read-write and a read-only token and the principals they stand
/// for (as the server loads them).
struct Actor {
    role: Role,
    id: UserId,
    tokens: [(String, Principal); 2],
}

async fn principal_of(hub: &Hub, token: &str) -> Principal {
    hub.authenticate_token(token, &RequestInfo::default())
        .await
        .unwrap()
}

/// A saved connection with what decides access to it.
#[derive(Debug, Clone)]
struct Conn {
    id: ConnectionId,
    owner: UserId,
    grants: Vec<Grant>,
}

impl Conn {
    fn decide(&self, principal: &Principal, action: Action) -> Decision {
        principal.decide(
            action,
            Some(Target {
                owner: self.owner,
                grants: &self.grants,
            }),
        )
    }

    fn grants_json(&self) -> Value {
        let grants: Vec<Value> = self
            .grants
            .iter()
            .map(|g| match g.grantee {
                Grantee::User(u) => json!({"user_id": u.to_string(), "level": g.level.as_str()}),
                Grantee::Team(t) => json!({"team_id": t.to_string(), "level": g.level.as_str()}),
            })
            .collect();
        json!({ "grants": grants })
    }
}

/// A request of the matrix: uri, headers, JSON body.
type Request = (String, Vec<(&'static str, String)>, Option<Value>);

/// The request one route gets in the matrix: (uri, headers, body). `None`: this file does not
/// know how to call it (a route added later with a body or a parameter it cannot guess).
fn connection_request(route: &Route, conn: &Conn, version: u64) -> Option<Request> {
    let uri = route.path.replace("{id}", &conn.id.to_string());
    let if_match = vec![("if-match", format!("\"{version}\""))];
    let request = match (route.method.clone(), route.path) {
        (Method::PATCH, "/api/v1/connections/{id}") => (
            uri,
            if_match,
            Some(json!({"description": "edited by the matrix"})),
        ),
        (Method::DELETE, "/api/v1/connections/{id}") => (uri, if_match, None),
        // Grants changes name the connection's version too (S26).
        (Method::PUT, "/api/v1/connections/{id}/grants") => {
            (uri, if_match, Some(conn.grants_json()))
        }
        (Method::DELETE, "/api/v1/connections/{id}/grants") => (uri, if_match, None),
        // Every other route on one connection whose only parameter is the id and that takes no
        // body: GET …, POST …/test, POST …/reveal, GET …/grants.
        (_, path) if path.matches('{').count() == 1 && !needs_body(route) => {
            (uri, Vec::new(), None)
        }
        _ => return None,
    };
    Some(request)
}

/// Whether a route reads a JSON body (from the OpenAPI annotations' convention: the known
/// routes with one).
fn needs_body(route: &Route) -> bool {
    matches!(
        (route.method.clone(), route.path),
        (Method::PATCH, "/api/v1/connections/{id}")
            | (Method::PUT, "/api/v1/connections/{id}/grants")
            | (Method::POST, "/api/v1/connections")
            | (Method::POST, "/api/v1/connections/test")
    )
}

fn global_request(route: &Route, n: usize, port: u16) -> Option<(String, Option<Value>)> {
    match (route.method.clone(), route.path) {
        (Method::POST, "/api/v1/connections") => {
            Some((URL.to_owned(), Some(body_json(&format!("g-{n}"), port))))
        }
        (Method::POST, "/api/v1/connections/test") => Some((
            format!("{URL}/test"),
            Some(body_json(&format!("draft-{n}"), port)),
        )),
        // The event stream never ends: its filtering has its own tests (`events.rs`).
        (Method::GET, "/api/v1/events") => None,
        // A global route without parameters read by GET needs nothing more.
        (Method::GET, path) if !path.contains('{') => Some((path.to_owned(), None)),
        _ => None,
    }
}

/// Asserts the answer matches the core's decision; returns the decision's letter.
fn check(decision: Decision, answer: &Answer, ctx: &str) -> char {
    match decision {
        Decision::Allow => {
            assert!(
                answer.status.is_success(),
                "{ctx}: allowed by the table, answered {} {}",
                answer.status,
                answer.text
            );
            'A'
        }
        Decision::Deny => {
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{ctx}: {}",
                answer.text
            );
            assert_eq!(answer.json["error"]["code"], "permission_denied", "{ctx}");
            'D'
        }
        Decision::Hide => {
            assert_eq!(
                answer.status,
                StatusCode::NOT_FOUND,
                "{ctx}: {}",
                answer.text
            );
            assert_eq!(answer.json["error"]["code"], "not_found", "{ctx}");
            'H'
        }
    }
}

/// Every connection id `token` finds in the list (all pages), and the `total` answered.
async fn listed(f: &Fixture, token: &str) -> (BTreeSet<String>, u64) {
    let mut ids = BTreeSet::new();
    let mut page = 1;
    loop {
        let r = f
            .send(
                Method::GET,
                &format!("{URL}?per_page=200&page={page}"),
                Some(token),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let items = r.json["items"].as_array().unwrap();
        for item in items {
            assert!(ids.insert(item["id"].as_str().unwrap().to_owned()));
        }
        let total = r.json["total"].as_u64().unwrap();
        if items.is_empty() || ids.len() as u64 >= total {
            return (ids, total);
        }
        page += 1;
    }
}

#[tokio::test]
async fn permission_matrix_over_http() {
    let f = Fixture::with(|hub| {
        hub.with_test_rate_limit(RateLimit {
            burst: 100_000,
            per_second: 1_000.0,
        })
    })
    .await;
    let hub = &f.hub;
    let admin = &f.admin;
    let port = closed_port();

    let scoped: Vec<(&Route, Action)> = ROUTES
        .iter()
        .filter_map(|r| action_of(r).map(|a| (r, a)))
        .filter(|(_, a)| a.is_connection_scoped())
        .collect();
    let global: Vec<(&Route, Action)> = ROUTES
        .iter()
        .filter_map(|r| action_of(r).map(|a| (r, a)))
        .filter(|(_, a)| !a.is_connection_scoped())
        .collect();
    // Every connection-scoped action the HTTP API serves is walked.
    let served: BTreeSet<Action> = scoped.iter().map(|(_, a)| *a).collect();
    for a in [
        Action::ConnectionView,
        Action::ConnectionUpdate,
        Action::ConnectionDelete,
        Action::ConnectionTest,
        Action::ConnectionReveal,
        Action::GrantsRead,
        Action::GrantsWrite,
    ] {
        assert!(served.contains(&a), "{a} is served by no route");
    }

    // The actors: each starts as an editor to own connections, then takes its role.
    let mut actors = Vec::new();
    let mut owned: Vec<Vec<Conn>> = Vec::new();
    let mut n = 0;
    for role in Role::ALL {
        let (id, token) = f.user(&format!("matrix-{role}"), Role::Editor).await;
        let id: UserId = id.parse().unwrap();
        let as_editor = principal_of(hub, &token).await;
        let mut mine = Vec::new();
        for _ in 0..scoped.len() * 2 {
            n += 1;
            let c = hub
                .create_connection(&as_editor, draft(&format!("own-{n}"), port))
                .await
                .unwrap();
            mine.push(Conn {
                id: c.id,
                owner: id,
                grants: Vec::new(),
            });
        }
        hub.update_user(
            admin,
            id,
            UserUpdate {
                role: Some(role),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
        let rw = principal_of(hub, &token).await;
        assert_eq!(rw.role(), role);
        let ro_token = hub
            .create_token(&rw, "read-only", None, true)
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        let ro = principal_of(hub, &ro_token).await;
        assert!(ro.is_read_only() && !rw.is_read_only());
        actors.push(Actor {
            role,
            id,
            tokens: [(token, rw), (ro_token, ro)],
        });
        owned.push(mine);
    }

    // One fresh connection per case, created before any request, so the lists below see them all.
    struct Case {
        actor: usize,
        token: usize,
        standing: Standing,
        route: usize,
        conn: Conn,
    }
    let mut cases = Vec::new();
    let mut every: Vec<Conn> = owned.iter().flatten().cloned().collect();
    for (a, actor) in actors.iter().enumerate() {
        let mut own = owned[a].clone().into_iter();
        for token in 0..2 {
            for standing in standings() {
                for route in 0..scoped.len() {
                    let conn = match standing {
                        Standing::Owner => own.next().unwrap(),
                        Standing::Nothing | Standing::Granted(_) => {
                            n += 1;
                            let c = hub
                                .create_connection(admin, draft(&format!("c-{n}"), port))
                                .await
                                .unwrap();
                            let mut grants = Vec::new();
                            if let Standing::Granted(level) = standing {
                                grants.push(Grant {
                                    grantee: Grantee::User(actor.id),
                                    level,
                                });
                                hub.set_grants(admin, c.id, c.version, &grants)
                                    .await
                                    .unwrap();
                            }
                            let conn = Conn {
                                id: c.id,
                                owner: admin.user(),
                                grants,
                            };
                            every.push(conn.clone());
                            conn
                        }
                    };
                    cases.push(Case {
                        actor: a,
                        token,
                        standing,
                        route,
                        conn,
                    });
                }
            }
        }
    }

    // Lists: exactly the connections the table lets the caller view, in items and in total.
    let mut listed_checks = 0;
    for actor in &actors {
        for (token, principal) in &actor.tokens {
            let expected: BTreeSet<String> = every
                .iter()
                .filter(|c| c.decide(principal, Action::ConnectionView) == Decision::Allow)
                .map(|c| c.id.to_string())
                .collect();
            let (ids, total) = listed(&f, token).await;
            assert_eq!(ids, expected, "{} list", actor.role);
            assert_eq!(total, expected.len() as u64, "{} total", actor.role);
            listed_checks += 1;
            if actor.role != Role::Admin {
                assert!(ids.len() < every.len(), "{} sees everything", actor.role);
            }
        }
    }
    assert_eq!(listed_checks, 8);

    // Every case, on its own connection.
    let mut letters = std::collections::BTreeMap::<char, usize>::new();
    let mut read_only_refusals = 0;
    let mut unchecked: BTreeSet<String> = BTreeSet::new();
    for case in &cases {
        let actor = &actors[case.actor];
        let (token, principal) = &actor.tokens[case.token];
        let (route, action) = scoped[case.route];
        let version = hub.connection(admin, case.conn.id).await.unwrap().version;
        let Some((uri, headers, body)) = connection_request(route, &case.conn, version) else {
            unchecked.insert(format!("{} {}", route.method, route.path));
            continue;
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = f
            .send(
                route.method.clone(),
                &uri,
                Some(token),
                &headers,
                body.as_ref(),
            )
            .await;
        let decision = case.conn.decide(principal, action);
        let ctx = format!(
            "{} read_only={} {:?} {} {} ({action})",
            actor.role,
            principal.is_read_only(),
            case.standing,
            route.method,
            route.path
        );
        *letters.entry(check(decision, &answer, &ctx)).or_default() += 1;
        if principal.is_read_only()
            && action.rule().access == Access::Write
            && decision == Decision::Deny
            && case.conn.decide(&actor.tokens[0].1, action) == Decision::Allow
        {
            assert!(
                answer.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("read-only"),
                "{ctx}: {}",
                answer.text
            );
            read_only_refusals += 1;
        }
    }
    let connection_cases = cases.len();
    assert_eq!(
        connection_cases,
        Role::ALL.len() * 2 * standings().len() * scoped.len()
    );

    // Global actions: the role alone (and the token's scope) decides.
    for actor in &actors {
        for (token, principal) in &actor.tokens {
            for (route, action) in &global {
                n += 1;
                let Some((uri, body)) = global_request(route, n, port) else {
                    unchecked.insert(format!("{} {}", route.method, route.path));
                    continue;
                };
                let answer = f
                    .send(route.method.clone(), &uri, Some(token), &[], body.as_ref())
                    .await;
                let decision = principal.decide(*action, None);
                let ctx = format!(
                    "{} read_only={} {} {} ({action})",
                    actor.role,
                    principal.is_read_only(),
                    route.method,
                    route.path
                );
                *letters.entry(check(decision, &answer, &ctx)).or_default() += 1;
            }
        }
    }

    // The matrix is not vacuous: every kind of answer happened, read-only tokens were refused
    // writes their user may do, and no connection route was skipped.
    for letter in ['A', 'D', 'H'] {
        assert!(
            letters.get(&letter).copied().unwrap_or(0) > 10,
            "{letters:?}"
        );
    }
    assert!(read_only_refusals >= 4 * 3, "{read_only_refusals}");
    assert!(
        unchecked.iter().all(|r| !r.contains(URL)),
        "connection routes the matrix cannot call: {unchecked:?}"
    );
    if !unchecked.is_empty() {
        eprintln!("routes the HTTP matrix does not know how to call yet: {unchecked:?}");
    }
    let total: usize = letters.values().sum();
    eprintln!(
        "HTTP matrix: {total} requests ({connection_cases} on one connection), {letters:?}, \
         {read_only_refusals} read-only refusals"
    );
}

#[tokio::test]
async fn revocations_take_effect_on_the_next_request() {
    let f = Fixture::new().await;
    let hub = &f.hub;
    let port = closed_port();
    let (viewer_id, viewer) = f.user("revoked-vic", Role::Viewer).await;
    let (editor_id, editor) = f.user("demoted-ed", Role::Editor).await;
    let created = f
        .admin(Method::POST, URL, Some(&body_json("revocable", port)))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let one = format!("{URL}/{id}");
    let reveal = format!("{one}/reveal");
    let as_viewer = |method: Method, uri: String| {
        let f = &f;
        let viewer = viewer.clone();
        async move { f.send(method, &uri, Some(&viewer), &[], None).await }
    };

    // A direct grant: `use`, then `view`, then none — each effective on the next request.
    let put = |grants: Value| {
        let f = &f;
        let one = &one;
        async move {
            let r = f.put_grants(one, &json!({ "grants": grants })).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    };
    put(json!([{"user_id": viewer_id, "level": "use"}])).await;
    assert_eq!(
        as_viewer(Method::POST, reveal.clone()).await.status,
        StatusCode::OK
    );
    put(json!([{"user_id": viewer_id, "level": "view"}])).await;
    assert_eq!(
        as_viewer(Method::POST, reveal.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_viewer(Method::GET, one.clone()).await.status,
        StatusCode::OK
    );
    put(json!([])).await;
    assert_eq!(
        as_viewer(Method::GET, one.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    let list = as_viewer(Method::GET, URL.to_owned()).await;
    assert_eq!(list.json["total"], 0);
    assert_eq!(list.json["items"], json!([]));

    // Through a team: leaving the team loses the grant at once.
    let team = hub
        .save_team(&f.admin, None, "analysts", &[viewer_id.parse().unwrap()])
        .await
        .unwrap();
    put(json!([{"team_id": team.id.to_string(), "level": "use"}])).await;
    assert_eq!(
        as_viewer(Method::POST, reveal.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        as_viewer(Method::GET, URL.to_owned()).await.json["total"],
        1
    );
    hub.save_team(&f.admin, Some(team.id), "analysts", &[])
        .await
        .unwrap();
    assert_eq!(
        as_viewer(Method::POST, reveal.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        as_viewer(Method::GET, URL.to_owned()).await.json["total"],
        0
    );

    // A role taken away: the editor's token may no longer create, on the next request.
    let mine = f
        .send(
            Method::POST,
            URL,
            Some(&editor),
            &[],
            Some(&body_json("ed-1", port)),
        )
        .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text);
    hub.update_user(
        &f.admin,
        editor_id.parse().unwrap(),
        UserUpdate {
            role: Some(Role::Viewer),
            ..UserUpdate::default()
        },
    )
    .await
    .unwrap();
    let r = f
        .send(
            Method::POST,
            URL,
            Some(&editor),
            &[],
            Some(&body_json("ed-2", port)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // ... while the connection it owns stays its own (owner holds `manage`).
    let owned = format!("{URL}/{}", mine.json["id"].as_str().unwrap());
    let r = f.send(Method::GET, &owned, Some(&editor), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A disabled account: every token stops at once (401).
    hub.update_user(
        &f.admin,
        editor_id.parse().unwrap(),
        UserUpdate {
            disabled: Some(true),
            ..UserUpdate::default()
        },
    )
    .await
    .unwrap();
    let r = f.send(Method::GET, &owned, Some(&editor), &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn a_read_only_token_is_refused_every_state_change() {
    let f = Fixture::with(|hub| {
        hub.with_test_rate_limit(RateLimit {
            burst: 100_000,
            per_second: 1_000.0,
        })
    })
    .await;
    let port = closed_port();
    let ro = f
        .hub
        .create_token(&f.admin, "notebook", None, true)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned();
    let created = f
        .admin(Method::POST, URL, Some(&body_json("ro-target", port)))
        .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let conn = Conn {
        id: id.parse().unwrap(),
        owner: f.admin.user(),
        grants: Vec::new(),
    };
    let principal = principal_of(&f.hub, &ro).await;
    let (mut writes, mut reads) = (0, 0);
    for (n, route) in ROUTES.iter().enumerate() {
        let Some(action) = action_of(route) else {
            continue;
        };
        let request = if action.is_connection_scoped() {
            connection_request(route, &conn, 1)
        } else {
            global_request(route, n, port).map(|(u, b)| (u, Vec::new(), b))
        };
        let Some((uri, headers, body)) = request else {
            continue;
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = f
            .send(
                route.method.clone(),
                &uri,
                Some(&ro),
                &headers,
                body.as_ref(),
            )
            .await;
        let ctx = format!("read-only admin {} {}", route.method, route.path);
        match action.rule().access {
            Access::Write => {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{ctx}: {}", r.text);
                writes += 1;
            }
            Access::Read => {
                assert!(r.status.is_success(), "{ctx}: {} {}", r.status, r.text);
                reads += 1;
            }
        }
        let decision = if action.is_connection_scoped() {
            conn.decide(&principal, action)
        } else {
            principal.decide(action, None)
        };
        check(decision, &r, &ctx);
    }
    // create, update, delete, grants PUT and DELETE.
    assert!(writes >= 5, "{writes}");
    assert!(reads >= 6, "{reads}");
    // Nothing changed: the connection is still at version 1 with no grants.
    let r = f.admin(Method::GET, &format!("{URL}/{id}"), None).await;
    assert_eq!(r.json["version"], 1);
    assert_eq!(r.json["description"], Value::Null);
    assert_eq!(f.admin(Method::GET, URL, None).await.json["total"], 1);
}
