//! The real `datahub-server` binary as a child process, and the few HTTP calls the scale bench
//! makes to it (readiness, a list page, `/metrics`, the event stream), over bare hyper HTTP/1.1
//! on loopback, every call under a deadline.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The longest one HTTP call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Lines of a child's log kept for error messages.
const LOG_LINES: usize = 200;
/// How many of a server's first warning or error lines are kept for the report.
const FIRST_WARNINGS: u64 = 3;

/// Where `cargo` put the `datahub-server` binary for the profile this executable was built in:
/// `target/<profile>/datahub-server`, the folder above this executable's `deps/`.
///
/// # Errors
/// A message saying where it looked and how to build it.
pub fn server_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| {
            if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .ok_or_else(|| format!("no folder above {}", exe.display()))?;
    let bin = profile_dir.join("datahub-server");
    if bin.is_file() {
        Ok(bin)
    } else {
        let profile = profile_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flag = if profile == "release" {
            " --release"
        } else {
            ""
        };
        Err(format!(
            "the scale bench runs the real server binary, and {} does not exist: build it first \
             with `cargo build{flag} -p datahub-server` (the same profile as this bench)",
            bin.display()
        ))
    }
}

/// A free port on 127.0.0.1 (bound, read and released).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// A running `datahub-server serve`; killed (SIGKILL) when dropped without [`Self::stop`].
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    monitor_id: Arc<Mutex<Option<String>>>,
    warnings: Arc<AtomicU64>,
    /// The first [`FIRST_WARNINGS`] warning or error lines.
    first_warnings: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `bin serve` on a free loopback port over `data_dir`, with `extra` arguments and
    /// `env` variables; the monitor's log lines are kept (info), the rest at warn.
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env_remove("DATAHUB_CONFIG")
            .env_remove("DATAHUB_STORE")
            .env_remove("DATAHUB_MASTER_KEY_FILE")
            .env_remove("DATAHUB_NO_MONITOR")
            .env("DATAHUB_LOG", "warn,datahub_core::monitor=info")
            // JSON lines: the monitor's id is read from a field, with no colour codes around it.
            .env("DATAHUB_LOG_FORMAT", "json")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let monitor_id = Arc::new(Mutex::new(None));
        let pipe = child.stderr.take().unwrap();
        let warnings = Arc::new(AtomicU64::new(0));
        let first_warnings = Arc::new(Mutex::new(Vec::new()));
        let first_sink = Arc::clone(&first_warnings);
        let (sink, id_sink, warned) = (
            Arc::clone(&log),
            Arc::clone(&monitor_id),
            Arc::clone(&warnings),
        );
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let warning =
                    line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"");
                // Counted only when it is one (`&&` evaluates the count after the test).
                if warning && warned.fetch_add(1, Ordering::Relaxed) < FIRST_WARNINGS {
                    first_sink.lock().unwrap().push(line.clone());
                }
                if line.contains("health monitor started") {
                    *id_sink.lock().unwrap() = monitor_id_in(&line);
                }
                let mut sink = sink.lock().unwrap();
                if sink.len() == LOG_LINES {
                    sink.remove(0);
                }
                sink.push(line);
            }
        });
        Self {
            child,
            addr,
            log,
            monitor_id,
            warnings,
            first_warnings,
        }
    }

    /// Log lines at warn or error level so far.
    pub fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }

    /// The first warning or error lines the server logged (at most three).
    pub fn first_warnings(&self) -> Vec<String> {
        self.first_warnings.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server logged.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The monitor's id, once its start was logged.
    pub fn monitor_id(&self) -> Option<String> {
        self.monitor_id.lock().unwrap().clone()
    }

    /// Waits until `/readyz` answers 200 and the monitor's start was logged, at most `wait`.
    pub async fn ready(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited with {status}:\n{}", self.log());
            }
            let answered =
                tokio::time::timeout(Duration::from_secs(5), get(self.addr, "/readyz", None))
                    .await
                    .ok()
                    .and_then(Result::ok);
            if answered.is_some_and(|(status, _)| status == StatusCode::OK)
                && self.monitor_id().is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server was not ready within {wait:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 30 s).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    /// Resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// User + system CPU time since start.
    pub fn cpu(&self) -> Option<Duration> {
        cpu_time(self.pid())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill9();
        }
    }
}

/// The `monitor` field of a JSON log line (the monitor's id).
fn monitor_id_in(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let id = value["fields"]["monitor"].as_str()?;
    (id.len() == 36).then(|| id.to_owned())
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 when it cannot say).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// (parent pid, user + system CPU) of process `pid`, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some((
        ppid,
        Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64),
    ))
}

/// User + system CPU time of process `pid`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat(pid).map(|(_, cpu)| cpu)
}

/// User + system CPU time of process `pid` and its children alive now (PostgreSQL's postmaster
/// and its backends).
pub fn cpu_time_with_children(pid: u32) -> Duration {
    let mut total = cpu_time(pid).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, cpu)) = stat(child) {
                if ppid == pid {
                    total += cpu;
                }
            }
        }
    }
    total
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: SendRequest<Empty<Bytes>>,
    authority: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .finish()
    }
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let connected = tokio::time::timeout(CALL_DEADLINE, async {
            let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| "connect: no answer in time".to_owned())??;
        let (sender, connection) = connected;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes.
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            authority: HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?,
        })
    }

    /// `GET path`, with a bearer token when given; the status and the whole body.
    pub async fn get(
        &mut self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, Bytes), String> {
        tokio::time::timeout(CALL_DEADLINE, async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let mut request = Request::get(path).header(HOST, self.authority.clone());
            if let Some(token) = bearer {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        })
        .await
        .map_err(|_| format!("GET {path}: no answer in {CALL_DEADLINE:?}"))?
    }
}

/// One `GET` on a fresh connection.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> Result<(StatusCode, Bytes), String> {
    Client::connect(addr).await?.get(path, bearer).await
}

/// The monitor's checks finished since the process started (every outcome), from `/metrics`.
pub async fn checks_done(addr: SocketAddr, bearer: &str) -> Result<u64, String> {
    let (status, body) = get(addr, "/metrics", Some(bearer)).await?;
    if status != StatusCode::OK {
        return Err(format!("/metrics answered {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter(|line| line.starts_with("datahub_checks_total{"))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}

/// A status change as an event stream carried it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusChange {
    pub id: String,
    pub from: String,
    pub to: String,
    pub at: String,
}

/// What an open `GET /api/v1/events` stream has received so far.
#[derive(Debug, Default)]
pub struct Received {
    pub status_changes: Vec<StatusChange>,
    pub checked: u64,
    pub resyncs: u64,
    /// Whether the stream ended (the server closed it or failed).
    pub ended: bool,
}

/// An open event stream, read in the background until dropped.
#[derive(Debug)]
pub struct EventStream {
    received: Arc<Mutex<Received>>,
    reader: JoinHandle<()>,
}

impl EventStream {
    /// Opens the stream on `addr` with `bearer` and waits for its 200.
    pub async fn open(addr: SocketAddr, bearer: &str) -> Result<Self, String> {
        let mut client = Client::connect(addr).await?;
        let response = tokio::time::timeout(CALL_DEADLINE, async {
            client.sender.ready().await.map_err(|e| e.to_string())?;
            let request = Request::get("/api/v1/events")
                .header(HOST, client.authority.clone())
                .header(ACCEPT, "text/event-stream")
                .header(AUTHORIZATION, format!("Bearer {bearer}"))
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            client
                .sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| "the event stream did not answer in time".to_owned())??;
        if response.status() != StatusCode::OK {
            return Err(format!("the event stream answered {}", response.status()));
        }
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = Arc::clone(&received);
        let reader = tokio::spawn(async move {
            // Keeps the connection's sender alive as long as the stream is read.
            let _client = client;
            let mut body = response.into_body();
            let mut pending = String::new();
            loop {
                // Keep-alives come every few seconds; a minute of silence is a dead stream.
                let frame = tokio::time::timeout(Duration::from_secs(60), body.frame()).await;
                let Ok(Some(Ok(frame))) = frame else { break };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    record_event(&sink, &event);
                }
            }
            sink.lock().unwrap().ended = true;
        });
        Ok(Self { received, reader })
    }

    /// What was received so far.
    pub fn snapshot(&self) -> (Vec<StatusChange>, u64, u64, bool) {
        let r = self.received.lock().unwrap();
        (r.status_changes.clone(), r.checked, r.resyncs, r.ended)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Files one SSE event (`data:` lines holding one JSON object).
fn record_event(sink: &Mutex<Received>, event: &str) {
    let data: String = event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .collect();
    if data.is_empty() {
        return;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else {
        return;
    };
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let mut received = sink.lock().unwrap();
    match value["type"].as_str() {
        Some("status_changed") => received.status_changes.push(StatusChange {
            id: text("id"),
            from: text("from"),
            to: text("to"),
            at: text("at"),
        }),
        Some("checked") => received.checked += 1,
        Some("resync") => received.resyncs += 1,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitor_id_is_read_from_its_log_line() {
        let line = r#"{"timestamp":"2026-12-07T14:00:00Z","level":"INFO","fields":{"message":"health monitor started","monitor":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"},"target":"datahub_core::monitor::scheduler"}"#;
        assert_eq!(
            monitor_id_in(line).as_deref(),
            Some("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(monitor_id_in("health monitor started"), None);
    }

    #[test]
    fn events_are_filed_by_type() {
        let sink = Mutex::new(Received::default());
        record_event(
            &sink,
            "event: status_changed\ndata: {\"type\":\"status_changed\",\"id\":\"x\",\"from\":\"unknown\",\"to\":\"healthy\",\"at\":\"t\"}\n\n",
        );
        record_event(&sink, "data: {\"type\":\"checked\",\"id\":\"x\"}\n\n");
        record_event(&sink, ": keep-alive\n\n");
        let r = sink.lock().unwrap();
        assert_eq!(r.status_changes.len(), 1);
        assert_eq!(r.status_changes[0].to, "healthy");
        assert_eq!(r.checked, 1);
    }

    #[test]
    fn own_process_stats_are_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_time(pid).is_some());
    }
}
