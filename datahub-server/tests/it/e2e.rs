//! End to end over real loopback sockets: the built `datahub-server` binary, started on a free
//! port with a temporary data folder, spoken to with a minimal HTTP/1.1 client (plain and
//! over rustls). Readiness, security headers, request ids, the error shape of 404 and 413, the
//! OpenAPI document, metrics, an event stream open across SIGTERM (the process exits 0 and the
//! stream ends cleanly), the master key file's life (created 0600 with a warning, reused, refused
//! when group or others may read it: S4), HTTPS with a generated certificate, and the README's
//! walk-through: sign in by cookie, save a connection to a kit cluster, test it, see it healthy.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::secret::Password;
use datahub_core::store::SqliteStore;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::{ADMIN_PW, login, token};

const BIN: &str = env!("CARGO_BIN_EXE_datahub-server");
const STARTUP: Duration = Duration::from_secs(30);
const KEY_WARNING: &str = "A new master key was written to";

/// A running server process; killed if a test fails before it stops.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the binary on a free loopback port over `data_dir`, with `extra` arguments.
    pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// As [`Self::start`], with `env` variables set.
    pub(crate) fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let addr = free_port();
        let listen = addr.to_string();
        let data = data_dir.to_str().unwrap();
        let mut args = vec!["--listen", &listen, "--data-dir", data];
        args.extend_from_slice(extra);
        Self::start_with_args(addr, &args, env)
    }

    /// Starts the binary with exactly `args` (which must make it listen on `addr`) and the
    /// extra environment `env`.
    pub(crate) fn start_with_args(addr: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("DATAHUB_MASTER_KEY")
            .env_remove("DATAHUB_CONFIG")
            .env_remove("DATAHUB_STORE")
            .env_remove("DATAHUB_MASTER_KEY_FILE")
            .env("DATAHUB_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PW)
            .env("DATAHUB_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        Self {
            child,
            addr,
            stderr,
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `/readyz` answers 200 (over `tls` when given).
    pub(crate) async fn ready(&mut self, tls: Option<&tokio_rustls::TlsConnector>) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited with {status}:\n{}", self.stderr());
            }
            let answer = match tls {
                None => try_request(self.addr, "GET", "/readyz", &[]).await,
                Some(tls) => try_request_tls(tls, self.addr, "/readyz").await,
            };
            if answer.is_some_and(|r| r.status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, waiting at most `wait`.
    pub(crate) async fn exit(&mut self, wait: Duration) -> ExitStatus {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit in time:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a JSON body.
    pub(crate) async fn send_json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Response {
        let body = body.to_string();
        let length = body.len().to_string();
        let mut all = headers.to_vec();
        all.push(("Content-Type", "application/json"));
        all.push(("Content-Length", &length));
        let text = format!("{}{body}", head(method, path, &all));
        let stream = TcpStream::connect(self.addr).await.unwrap();
        exchange(stream, &text)
            .await
            .expect("the server did not answer")
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        try_request(self.addr, method, path, headers)
            .await
            .expect("the server did not answer")
    }
}

impl Server {
    /// Signs in as `admin` (password [`ADMIN_PW`]); the session cookie as `name=value`.
    pub(crate) async fn sign_in_as_admin(&self) -> String {
        let login = self
            .send_json(
                "POST",
                "/api/v1/auth/login",
                &[],
                &serde_json::json!({"username": "admin", "password": ADMIN_PW}),
            )
            .await;
        assert_eq!(
            login.status,
            200,
            "{}",
            String::from_utf8_lossy(&login.body)
        );
        login
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port nobody listens on (now).
pub(crate) fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub(crate) fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text
}

/// Sends a request and reads the whole answer; `None` when nothing answers.
async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Response> {
    let stream = TcpStream::connect(addr).await.ok()?;
    exchange(stream, &head(method, path, headers)).await
}

async fn try_request_tls(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> Option<Response> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tls.connect(name, tcp).await.ok()?;
    exchange(stream, &head("GET", path, &[])).await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &str,
) -> Option<Response> {
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    let raw = read_all(&mut stream).await;
    (!raw.is_empty()).then(|| parse(&raw))
}

/// Everything until the peer closes (a TLS peer closing without close_notify counts as closed).
async fn read_all<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest).0
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a chunked encoding, and whether it ended with the last (empty) chunk.
pub(crate) fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            return (body, rest.starts_with(b"\r\n"));
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A data folder with a key file, the bootstrap admin and an admin API token (returned), made
/// through the core before the server starts (the server's token routes are not needed).
async fn prepared_data_dir(dir: &Path) -> String {
    let keyring = Keyring::create_key_file(dir.join("master.key")).unwrap();
    let store = Arc::new(SqliteStore::open(dir).unwrap());
    let hub = Hub::open(store, keyring).await.unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap()
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    token(&hub, &admin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_over_a_socket_and_sigterm_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = prepared_data_dir(dir.path()).await;
    let mut server = Server::start(dir.path(), &[]);
    server.ready(None).await;

    // Liveness, security headers, request ids (made, or kept when the client sent one).
    let health = server.request("GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    let csp = health.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(health.header("x-frame-options"), Some("DENY"));
    assert_eq!(health.header("x-content-type-options"), Some("nosniff"));
    let made = health.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");
    let kept = server
        .request("GET", "/healthz", &[("x-request-id", "e2e-request-1")])
        .await;
    assert_eq!(kept.header("x-request-id"), Some("e2e-request-1"));

    // Unknown paths: the error shape with the request id of the header.
    let missing = server.request("GET", "/no/such/path", &[]).await;
    assert_eq!(missing.status, 404);
    let body = missing.json();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        body["error"]["request_id"].as_str(),
        missing.header("x-request-id")
    );

    // An oversize body is refused from its declared length, before it is sent.
    let length = (1024 * 1024).to_string();
    let big = server
        .request(
            "POST",
            "/api/v1/events",
            &[
                ("content-type", "application/json"),
                ("content-length", &length),
                ("expect", "100-continue"),
            ],
        )
        .await;
    assert_eq!(big.status, 413);
    let body = big.json();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["field"], "body");
    assert!(body["error"]["request_id"].is_string());

    // The API description.
    let spec = server.request("GET", "/api/v1/openapi.json", &[]).await;
    assert_eq!(spec.status, 200);
    let spec = spec.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/events"] {
        assert!(paths.contains_key(path), "{path} missing");
    }

    // Metrics, with the figures the refresh task reads from the core (at start, then every
    // 15 s: polled, as it runs beside the first requests).
    // S34: `/metrics` is for an admin's token, never anonymous.
    assert_eq!(server.request("GET", "/metrics", &[]).await.status, 401);
    let metrics_bearer = format!("Bearer {admin_token}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let metrics = server
            .request(
                "GET",
                "/metrics",
                &[("Authorization", metrics_bearer.as_str())],
            )
            .await;
        assert_eq!(metrics.status, 200);
        let text = String::from_utf8(metrics.body).unwrap();
        if text.contains("datahub_connections{status=\"unknown\"} 0") {
            break text;
        }
        assert!(Instant::now() < deadline, "no connection gauges: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("datahub_http_requests_total{"), "{text}");
    assert!(!text.contains(&admin_token));

    // An event stream stays open until SIGTERM, then ends cleanly, and the process exits 0.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let bearer = format!("Bearer {admin_token}");
    stream
        .write_all(
            head(
                "GET",
                "/api/v1/events",
                &[("authorization", &bearer), ("accept", "text/event-stream")],
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    let opened = String::from_utf8_lossy(&first[..n]).to_string();
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");
    assert!(
        opened
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{opened}"
    );
    let reader = tokio::spawn(async move {
        let rest = read_all(&mut stream).await;
        [first[..n].to_vec(), rest].concat()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!reader.is_finished(), "the stream ended before shutdown");

    let stopped = Instant::now();
    server.terminate();
    let raw = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream did not end at shutdown")
        .unwrap();
    let response = parse(&raw);
    assert_eq!(response.status, 200);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let (_, clean) = dechunk(&raw[split + 4..]);
    assert!(clean, "the stream was cut, not ended: {raw:?}");
    let status = server.exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}:\n{}", server.stderr());
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(!server.stderr().contains(&admin_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_file_is_created_private_reused_and_refused_when_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");

    // First start: created with mode 0600, and a loud warning to back it up.
    let mut first = Server::start(dir.path(), &["--no-monitor"]);
    first.ready(None).await;
    assert_eq!(mode(&key), 0o600);
    let said = first.stderr();
    assert!(said.contains(KEY_WARNING), "{said}");
    assert!(said.contains("Back it up"), "{said}");
    let contents = std::fs::read(&key).unwrap();
    first.terminate();
    assert!(first.exit(Duration::from_secs(10)).await.success());

    // Second start: the same file, untouched, no warning.
    let mut second = Server::start(dir.path(), &["--no-monitor"]);
    second.ready(None).await;
    assert_eq!(std::fs::read(&key).unwrap(), contents);
    assert!(!second.stderr().contains(KEY_WARNING));
    second.terminate();
    assert!(second.exit(Duration::from_secs(10)).await.success());

    // Readable by group and others: refused with a message naming the file and the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut third = Server::start(dir.path(), &["--no-monitor"]);
    let status = third.exit(STARTUP).await;
    assert!(!status.success());
    let said = third.stderr();
    assert!(said.contains("master.key"), "{said}");
    assert!(said.contains("0644"), "{said}");
    assert!(said.contains("chmod 600"), "{said}");
    assert_eq!(std::fs::read(&key).unwrap(), contents, "never rewritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_with_the_given_certificate() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "datahub e2e CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let data = dir.path().join("data");
    let mut server = Server::start(
        &data,
        &[
            "--no-monitor",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    server.ready(Some(&connector)).await;
    let health = try_request_tls(&connector, server.addr, "/healthz")
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(health.header("x-frame-options"), Some("DENY"));
    // S34: answers over HTTPS carry Strict-Transport-Security.
    assert_eq!(
        health.header("strict-transport-security"),
        Some(datahub_server::HSTS)
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(head("GET", "/healthz", &[]).as_bytes())
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_all(&mut plain))
        .await
        .unwrap();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    server.terminate();
    let status = server.exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}:\n{}", server.stderr());
}

/// The README's walk-through against the real binary on the default embedded store: sign in
/// with the bootstrap admin's password (a session cookie), save a connection to a kit cluster
/// (verify-full with the kit's CA, SCRAM, channel binding required) from "this origin", test
/// it, and watch the monitor report it healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_signs_in_saves_tests_and_sees_it_healthy() {
    const DB_PW: &str = "e2e-walk-through-db-pw-Rt4";
    let cluster = tokio::task::spawn_blocking(|| {
        datahub_testkit::PgCluster::builder()
            .tls(datahub_testkit::ServerCert::Valid)
            .user(datahub_testkit::User::new("app").password(DB_PW))
            .database("app", "app")
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.ready(None).await;

    let cookie = server.sign_in_as_admin().await;
    let signed_in = [("Cookie", cookie.as_str()), ("Origin", "http://localhost")];

    let connection = serde_json::json!({
        "name": "warehouse",
        "host": "127.0.0.1",
        "port": cluster.port(),
        "database": "app",
        "username": "app",
        "password": DB_PW,
        "tls": {
            "mode": "verify-full",
            "ca_cert_pem": cluster.ca_pem().unwrap(),
            "channel_binding": "require"
        },
        "monitoring": {"enabled": true, "interval_s": 10},
    });
    let created = server
        .send_json(
            "POST",
            "/api/v1/connections?test_first=true",
            &signed_in,
            &connection,
        )
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert!(!String::from_utf8_lossy(&created.body).contains(DB_PW));

    let tested = server
        .request(
            "POST",
            &format!("/api/v1/connections/{id}/test"),
            &[signed_in[0], signed_in[1], ("Content-Length", "0")],
        )
        .await;
    assert_eq!(
        tested.status,
        200,
        "{}",
        String::from_utf8_lossy(&tested.body)
    );
    let report = tested.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["tls"]["protocol"], "TLSv1.3", "{report}");

    // The monitor checks a connection just saved within 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = server
            .request("GET", &format!("/api/v1/connections/{id}"), &[signed_in[0]])
            .await;
        assert_eq!(got.status, 200);
        let status = got.json()["health"]["status"].clone();
        if status == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy after 30 s: {status}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!server.stderr().contains(DB_PW));
    server.terminate();
    assert!(server.exit(Duration::from_secs(10)).await.success());
}

/// Operators' flags (issue 13, item 10): every shared and serve flag is accepted before and after
/// the `serve` subcommand, and the server then listens where it was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_flags_work_before_and_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for order in ["after", "before", "split"] {
        let addr = free_port();
        let listen = addr.to_string();
        let args: Vec<&str> = match order {
            "after" => vec![
                "serve",
                "--listen",
                &listen,
                "--data-dir",
                data,
                "--no-monitor",
            ],
            "before" => vec![
                "--listen",
                &listen,
                "--data-dir",
                data,
                "--no-monitor",
                "serve",
            ],
            _ => vec![
                "--data-dir",
                data,
                "serve",
                "--listen",
                &listen,
                "--no-monitor",
            ],
        };
        let mut server = Server::start_with_args(addr, &args, &[]);
        server.ready(None).await;
        let health = server.request("GET", "/healthz", &[]).await;
        assert_eq!(health.status, 200, "{order}");
        // S34: plain HTTP never announces Strict-Transport-Security.
        assert_eq!(health.header("strict-transport-security"), None);
        server.terminate();
        let status = server.exit(Duration::from_secs(10)).await;
        assert!(status.success(), "{order}: {status}\n{}", server.stderr());
    }

    // Half a TLS pair is refused wherever its halves are written, naming both settings.
    let out = Command::new(BIN)
        .args([
            "--data-dir",
            data,
            "serve",
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .env_remove("DATAHUB_TLS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("tls_cert and tls_key"), "{said}");
}
