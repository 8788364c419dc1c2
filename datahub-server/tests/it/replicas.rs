//! Two replicas of the real binary on one PostgreSQL store (issue 5): started at the same time on
//! an empty store they both come up with one bootstrap admin between them; a session made on
//! one works on the other; both event streams carry every change, whichever replica made it or
//! checked it; the monitoring is shared (each connection checked about once per interval in
//! all, not once per replica, and the two replicas' check counters add up to the history); and
//! when one replica stops, the other checks everything.
//!
//! A kit cluster is the store, another the monitored target; everything is dialled on loopback.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datahub_core::crypto::Keyring;
use datahub_testkit::{PgCluster, ServerCert, User};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::e2e::{Server, dechunk, head};

const STORE_USER: &str = "datahub";
const STORE_PW: &str = "replicas-store-pw-Hq3!";
const STORE_DB: &str = "datahub";
const TARGET_PW: &str = "replicas-target-db-pw-Zt7";
/// The monitoring interval of every connection: the model's minimum.
const INTERVAL: Duration = Duration::from_secs(10);
/// Connections monitored at once: enough that each replica's share holds some (all twenty
/// going to one replica has odds of 1 in 524,288).
const MONITORED: usize = 20;
/// A new connection's first check comes within 5 s of its save.
const FIRST_CHECK: Duration = Duration::from_secs(5);
/// How long the two replicas share the monitoring before one stops.
const SHARED_FOR: Duration = Duration::from_secs(21);

/// An open `GET /api/v1/events` stream, read in the background.
struct EventStream {
    raw: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

impl EventStream {
    /// Opens the stream on `server` with the session `cookie` and waits for its 200.
    async fn open(server: &Server, cookie: &str) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = head(
            "GET",
            "/api/v1/events",
            &[("Cookie", cookie), ("Accept", "text/event-stream")],
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&raw);
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
        });
        let opened = Self { raw, reader };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let raw = opened.raw.lock().unwrap().clone();
            if raw.windows(4).any(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&raw);
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                return opened;
            }
            assert!(Instant::now() < deadline, "the event stream did not open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every complete event received so far, in order.
    fn events(&self) -> Vec<Value> {
        let raw = self.raw.lock().unwrap().clone();
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Vec::new();
        };
        let (body, _) = dechunk(&raw[split + 4..]);
        let text = String::from_utf8(body).unwrap();
        // An event ends with a blank line: anything after the last one is still arriving.
        let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| serde_json::from_str(data.trim()).unwrap())
            .collect()
    }

    /// Waits until an event from position `from` on matches `wanted` (as said by `what`).
    async fn wait_for(&self, from: usize, what: &str, wanted: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let events = self.events();
            if events.iter().skip(from).any(&wanted) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} in time; received: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn is(event: &Value, kind: &str, id: &str) -> bool {
    event["type"] == kind && event["id"] == id
}

fn became_healthy(event: &Value, id: &str) -> bool {
    is(event, "status_changed", id) && event["from"] == "unknown" && event["to"] == "healthy"
}

/// The checks a replica's monitor finished since it started, all outcomes, from its `/metrics`.
async fn checks_done(server: &Server, cookie: &str) -> u64 {
    let metrics = server
        .request("GET", "/metrics", &[("Cookie", cookie)])
        .await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    let counts: Vec<u64> = text
        .lines()
        .filter(|line| line.starts_with("datahub_checks_total{"))
        .map(|line| line.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 3, "ok, failed and timeout: {text}");
    counts.iter().sum()
}

/// A replica's unlabelled monitor figures from its `/metrics`, by name.
async fn monitor_metrics(server: &Server, cookie: &str) -> BTreeMap<String, u64> {
    let metrics = server
        .request("GET", "/metrics", &[("Cookie", cookie)])
        .await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    text.lines()
        .filter(|line| line.starts_with("datahub_monitor_") || line.starts_with("datahub_checks_"))
        .filter_map(|line| line.split_once(' '))
        .filter(|(name, _)| !name.contains('{'))
        .filter_map(|(name, v)| Some((name.to_owned(), v.trim().parse().ok()?)))
        .collect()
}

/// When each recorded check of connection `id` finished, oldest first (every one succeeded).
async fn check_times(server: &Server, cookie: &str, id: &str) -> Vec<OffsetDateTime> {
    let got = server
        .request(
            "GET",
            &format!("/api/v1/connections/{id}/health"),
            &[("Cookie", cookie)],
        )
        .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let mut times: Vec<OffsetDateTime> = got.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| {
            assert_eq!(check["ok"], true, "{check}");
            OffsetDateTime::parse(check["at"].as_str().unwrap(), &Rfc3339).unwrap()
        })
        .collect();
    times.sort();
    times
}

/// The check times of every connection in `ids`.
async fn histories(server: &Server, cookie: &str, ids: &[String]) -> Vec<Vec<OffsetDateTime>> {
    let mut all = Vec::new();
    for id in ids {
        all.push(check_times(server, cookie, id).await);
    }
    all
}

/// No two checks of one connection closer than the lease's hold (80 % of the interval, less a
/// margin: a check's time is when it ended, and a check on a loaded machine may take a while).
fn assert_never_doubled(id: &str, times: &[OffsetDateTime]) {
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= INTERVAL.mul_f64(0.7),
            "{id} checked {gap} apart: {times:?}"
        );
    }
}

async fn start_cluster(builder: datahub_testkit::PgClusterBuilder) -> PgCluster {
    tokio::task::spawn_blocking(move || builder.start().unwrap())
        .await
        .unwrap()
}

fn data_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_store_share_sessions_events_and_the_monitoring() {
    let began = Instant::now();
    let (store, target) = tokio::join!(
        start_cluster(
            PgCluster::builder()
                // Two replicas' pools (16 each) and their event listeners.
                .max_connections(60)
                .user(User::new(STORE_USER).password(STORE_PW))
                .database(STORE_DB, STORE_USER),
        ),
        start_cluster(
            PgCluster::builder()
                .tls(ServerCert::Valid)
                .user(User::new("app").password(TARGET_PW))
                .database("app", "app"),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    Keyring::create_key_file(&key).unwrap();
    let store_url = store.url(STORE_USER, STORE_DB);
    let args = [
        "--store",
        store_url.as_str(),
        "--master-key-file",
        key.to_str().unwrap(),
    ];

    // 1. Both start at once on the empty store: both ready, one admin between them.
    let mut a = Server::start(&data_dir(dir.path(), "a"), &args);
    let mut b = Server::start(&data_dir(dir.path(), "b"), &args);
    tokio::join!(a.ready(None), b.ready(None));
    let created_admin = [&a, &b]
        .iter()
        .filter(|s| s.stderr().contains("Created the first admin account"))
        .count();
    assert_eq!(created_admin, 1, "A:\n{}\nB:\n{}", a.stderr(), b.stderr());

    // 2. Signed in on A, the session works on B: sessions live in the store.
    let cookie = a.sign_in_as_admin().await;
    let reading = [("Cookie", cookie.as_str())];
    let writing = [("Cookie", cookie.as_str()), ("Origin", "http://localhost")];
    let me = b.request("GET", "/api/v1/auth/me", &reading).await;
    assert_eq!(me.status, 200, "{}", String::from_utf8_lossy(&me.body));
    assert_eq!(me.json()["username"], "admin", "{}", me.json());
    let users = b.request("GET", "/api/v1/users", &reading).await;
    assert_eq!(users.status, 200);
    let users = users.json();
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["username"], "admin");
    let audit = a
        .request("GET", "/api/v1/audit?action=user.bootstrap", &reading)
        .await;
    assert_eq!(audit.status, 200);
    assert_eq!(audit.json()["total"], 1, "{}", audit.json());

    // 3. Both streams open; connections saved through A reach both, and so do their first
    // checks' status changes, whichever replica ran them.
    let (stream_a, stream_b) = tokio::join!(
        EventStream::open(&a, &cookie),
        EventStream::open(&b, &cookie)
    );
    let mut ids = Vec::new();
    let mut saved_at = Vec::new();
    let first_saved = Instant::now();
    for i in 0..MONITORED {
        let connection = json!({
            "name": format!("replica-{i}"),
            "host": "127.0.0.1",
            "port": target.port(),
            "database": "app",
            "username": "app",
            "password": TARGET_PW,
            "tls": {"mode": "verify-full", "ca_cert_pem": target.ca_pem().unwrap()},
            // Never slow: on a loaded machine a slow check would turn a status, and this test
            // is about who checks, not how fast.
            "monitoring": {"enabled": true, "interval_s": INTERVAL.as_secs(), "slow_ms": 60_000},
        });
        let before = OffsetDateTime::now_utc();
        let created = a
            .send_json("POST", "/api/v1/connections", &writing, &connection)
            .await;
        assert_eq!(
            created.status,
            201,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
        ids.push(created.json()["id"].as_str().unwrap().to_owned());
        saved_at.push(before);
    }
    for id in &ids {
        for (name, stream) in [("A", &stream_a), ("B", &stream_b)] {
            stream
                .wait_for(0, &format!("connection_changed of {id} on {name}"), |e| {
                    is(e, "connection_changed", id)
                })
                .await;
            stream
                .wait_for(0, &format!("unknown → healthy of {id} on {name}"), |e| {
                    became_healthy(e, id)
                })
                .await;
        }
    }
    for stream in [&stream_a, &stream_b] {
        for id in &ids {
            let healthy = stream
                .events()
                .iter()
                .filter(|e| is(e, "status_changed", id))
                .count();
            assert_eq!(healthy, 1, "one status change each: {:?}", stream.events());
        }
    }

    // 4. Shared monitoring: over two intervals each connection was checked about once per
    // interval in all, never twice within one, and the replicas' counters add up to the
    // history (read when neither counter moved meanwhile).
    tokio::time::sleep_until(tokio::time::Instant::from_std(first_saved + SHARED_FOR)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (by_a, by_b, shared) = loop {
        let before = tokio::join!(checks_done(&a, &cookie), checks_done(&b, &cookie));
        let shared = histories(&b, &cookie, &ids).await;
        let after = tokio::join!(checks_done(&a, &cookie), checks_done(&b, &cookie));
        let recorded: usize = shared.iter().map(Vec::len).sum();
        if before == after && recorded as u64 == after.0 + after.1 {
            break (after.0, after.1, shared);
        }
        assert!(
            Instant::now() < deadline,
            "the counters ({before:?}, {after:?}) never matched the {recorded} checks recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let read_at = OffsetDateTime::now_utc();
    let per_connection: Vec<usize> = shared.iter().map(Vec::len).collect();
    eprintln!("shared: A checked {by_a}, B {by_b}; per connection {per_connection:?}");
    assert!(
        by_a > 0 && by_b > 0,
        "both replicas check: A {by_a}, B {by_b}"
    );
    // Each sees the other live and leaves the other's share alone, on its `/metrics`.
    for (name, server) in [("A", &a), ("B", &b)] {
        let seen = monitor_metrics(server, &cookie).await;
        assert_eq!(
            seen.get("datahub_monitor_live_replicas"),
            Some(&2),
            "{name}: {seen:?}"
        );
        assert!(
            seen.get("datahub_checks_not_home_total")
                .is_some_and(|n| *n > 0),
            "{name}: {seen:?}"
        );
    }
    for ((id, times), saved) in ids.iter().zip(&shared).zip(&saved_at) {
        let watched = read_at - *saved;
        let watched = Duration::try_from(watched).unwrap();
        // At most one check per hold (80 % of the interval), plus the first; at least the first
        // (within 5 s) and then one per interval and jitter (110 %), with a margin.
        let most = (watched.as_secs_f64() / INTERVAL.mul_f64(0.8).as_secs_f64()) as usize + 1;
        let late = watched.saturating_sub(FIRST_CHECK + Duration::from_secs(1));
        let least = (late.as_secs_f64()
            / (INTERVAL.mul_f64(1.1) + Duration::from_millis(500)).as_secs_f64())
            as usize
            + 1;
        assert!(
            (least..=most).contains(&times.len()),
            "{id}: {} checks in {watched:?}, {least}..={most} expected: {times:?}",
            times.len()
        );
        assert_never_doubled(id, times);
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap <= INTERVAL.mul_f64(1.1) + Duration::from_millis(1500),
                "{id} left unchecked for {gap}: {times:?}"
            );
        }
    }

    // Edited and deleted through B: both streams hear of it.
    let edited = &ids[0];
    let marks = (stream_a.events().len(), stream_b.events().len());
    let got = b
        .request("GET", &format!("/api/v1/connections/{edited}"), &reading)
        .await;
    assert_eq!(got.status, 200);
    let etag = got.header("etag").unwrap().to_owned();
    let patched = b
        .send_json(
            "PATCH",
            &format!("/api/v1/connections/{edited}"),
            &[writing[0], writing[1], ("If-Match", &etag)],
            &json!({"name": "replica-0-renamed"}),
        )
        .await;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    for (name, stream, mark) in [("A", &stream_a, marks.0), ("B", &stream_b, marks.1)] {
        stream
            .wait_for(
                mark,
                &format!("connection_changed of the edit on {name}"),
                |e| is(e, "connection_changed", edited),
            )
            .await;
    }
    let on_a = a
        .request("GET", &format!("/api/v1/connections/{edited}"), &reading)
        .await;
    assert_eq!(on_a.json()["name"], "replica-0-renamed");
    let marks = (stream_a.events().len(), stream_b.events().len());
    let deleted = b
        .request(
            "DELETE",
            &format!("/api/v1/connections/{edited}"),
            &[
                writing[0],
                writing[1],
                ("If-Match", patched.header("etag").unwrap()),
            ],
        )
        .await;
    assert_eq!(
        deleted.status,
        204,
        "{}",
        String::from_utf8_lossy(&deleted.body)
    );
    for (name, stream, mark) in [("A", &stream_a, marks.0), ("B", &stream_b, marks.1)] {
        stream
            .wait_for(mark, &format!("connection_deleted on {name}"), |e| {
                is(e, "connection_deleted", edited)
            })
            .await;
    }
    let gone = a
        .request("GET", &format!("/api/v1/connections/{edited}"), &reading)
        .await;
    assert_eq!(gone.status, 404);

    // 5. A stops: B takes over every connection A was checking (A's claims lapse at their hold;
    // nothing waits for A).
    let remaining = &ids[1..];
    drop(stream_a);
    a.terminate();
    let status = a.exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}:\n{}", a.stderr());
    let stopped_at = OffsetDateTime::now_utc();
    let b_at_stop = checks_done(&b, &cookie).await;
    let deadline = Instant::now() + INTERVAL.mul_f64(2.0) + Duration::from_secs(5);
    let after = loop {
        let after = histories(&b, &cookie, remaining).await;
        if after
            .iter()
            .all(|t| t.last().is_some_and(|at| *at > stopped_at))
        {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "B did not check everything after A stopped: {after:?}\nB:\n{}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let b_now = checks_done(&b, &cookie).await;
    eprintln!(
        "B checked all {} after A stopped within {}",
        remaining.len(),
        OffsetDateTime::now_utc() - stopped_at
    );
    assert!(
        b_now - b_at_stop >= remaining.len() as u64,
        "B's checks went from {b_at_stop} to {b_now}"
    );
    for (id, times) in remaining.iter().zip(&after) {
        assert_never_doubled(id, times);
    }

    drop(stream_b);
    b.terminate();
    let status = b.exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}:\n{}", b.stderr());
    for server in [&a, &b] {
        let said = server.stderr();
        assert!(!said.contains(STORE_PW), "the store's password was logged");
        assert!(
            !said.contains(TARGET_PW),
            "a connection's password was logged"
        );
    }
    eprintln!("two replicas: {:?} in all", began.elapsed());
}
