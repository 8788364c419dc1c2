"""Fixtures of the behaviour suite: real PostgreSQL clusters from the test kit (the
``datahub-kit`` binary), a real ``datahub-server`` with admin, editor and viewer tokens, and a
``hub`` in every mode: ``remote`` (the server, as the editor), ``local-sqlite`` (a fresh data
folder) and ``local-postgres`` (a store on a kit cluster).

Environment: ``DATAHUB_KIT`` (the kit binary; default ``target/debug/datahub-kit``, built with
cargo when missing), ``DATAHUB_SERVER_BIN`` (default ``target/debug/datahub-server``),
``DATAHUB_PY_REMOTE_ONLY=1`` (skip the local modes when the native module is not built; for
iterating only: without it a missing native module fails the local modes).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import datahub_connections as dh

REPO = Path(__file__).resolve().parents[2]
#: How long the kit and the server may take to be ready.
STARTUP_S = 120.0


def canary(label: str = "canary") -> str:
    """A unique password that must show nowhere: letters and digits and a few URL-special
    characters, so its encoded forms differ from it."""
    return f"{label}-{secrets.token_hex(12)}+/x="


def forms(secret: str) -> List[str]:
    """Every form of ``secret`` that must never show (the test kit's ``canary::forms``)."""
    raw = secret.encode()
    quoted = urllib.parse.quote(secret, safe="")
    out = {
        secret,
        quoted,
        quoted.lower(),
        urllib.parse.quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        repr(secret)[1:-1],
        secret[:16],
    }
    return sorted(out)


def assert_no_leak(secret: str, text: str, where: str) -> None:
    for form in forms(secret):
        assert form not in text, f"a form of the canary showed in {where}"


# --- the kit ----------------------------------------------------------------------------------


@dataclass
class Kit:
    host: str
    port: int
    database: str
    user: str
    password: str
    ca_pem: str
    other_ca_pem: str
    store_url: Optional[str]


def _binary(env: str, name: str, package: str) -> str:
    given = os.environ.get(env)
    if given:
        return given
    path = REPO / "target" / "debug" / name
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "-p", package, "--bin", name],
            cwd=REPO, check=True, timeout=3600,
        )
    return str(path)


def _read_line(proc: "subprocess.Popen[bytes]", timeout: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("datahub-kit printed no line in time")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"datahub-kit exited with {proc.wait()}")
            buf += chunk
    return buf


@pytest.fixture(scope="session")
def target_password() -> str:
    """The kit target user's real password: a canary."""
    return canary("target")


@pytest.fixture(scope="session")
def kit(target_password: str) -> Iterator[Kit]:
    """A TLS + SCRAM target cluster and a store cluster, stopped at the end of the session."""
    binary = _binary("DATAHUB_KIT", "datahub-kit", "datahub-testkit")
    env = dict(os.environ, DATAHUB_KIT_PASSWORD=target_password)
    proc = subprocess.Popen(
        [binary, "--store"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    try:
        line = json.loads(_read_line(proc, STARTUP_S))
        yield Kit(
            host=line["host"], port=int(line["port"]), database=line["database"],
            user=line["user"], password=line["password"], ca_pem=line["ca_pem"],
            other_ca_pem=line["other_ca_pem"], store_url=line.get("store_url"),
        )
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    base: str,
    method: str,
    path: str,
    *,
    token: Optional[str] = None,
    cookie: Optional[str] = None,
    body: Any = None,
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[int, Dict[str, str], Any]:
    """One request to the server's API (fixtures and RBAC set-up only)."""
    all_headers = {"Accept": "application/json"}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    if cookie:
        all_headers["Cookie"] = cookie
        all_headers["Origin"] = base
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, _lower(r.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, _lower(e.headers), json.loads(raw) if raw else None


def _lower(headers: Any) -> Dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    proc: "subprocess.Popen[bytes]"
    admin_password: str
    tokens: Dict[str, str] = field(default_factory=dict)
    user_ids: Dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def hub(self, role: str) -> dh.Hub:
        return dh.connect(self.url, token=self.tokens[role])

    def grant(self, conn_id: str, role: str, level: str) -> None:
        """Grants ``level`` on a connection to the user of ``role`` (as admin)."""
        status, headers, body = http(self.url, "GET", f"/api/v1/connections/{conn_id}",
                                     token=self.tokens["admin"])
        assert status == 200, body
        status, _, body = http(
            self.url, "PUT", f"/api/v1/connections/{conn_id}/grants",
            token=self.tokens["admin"], headers={"If-Match": headers["etag"]},
            body={"grants": [{"user_id": self.user_ids[role], "level": level}]},
        )
        assert status == 200, body


def _sign_in(base: str, username: str, password: str) -> str:
    status, headers, body = http(base, "POST", "/api/v1/auth/login",
                                 body={"username": username, "password": password})
    assert status == 200, body
    cookie = headers.get("set-cookie")
    assert cookie, headers
    return cookie.split(";", 1)[0]


def _token(base: str, username: str, password: str) -> str:
    cookie = _sign_in(base, username, password)
    status, _, body = http(base, "POST", "/api/v1/tokens", cookie=cookie,
                           body={"name": f"pytest-{username}"})
    assert status in (200, 201), body
    return str(body["token"])


def start_server(tmp: Path, extra_env: Optional[Dict[str, str]] = None) -> Server:
    binary = _binary("DATAHUB_SERVER_BIN", "datahub-server", "datahub-server")
    data_dir = tmp / "data"
    data_dir.mkdir()
    log_path = tmp / "server.log"
    port = free_port()
    admin_password = secrets.token_urlsafe(18)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB_")}
    env.update({
        "DATAHUB_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
        "DATAHUB_LOG": "debug",
        # Many tests run from one user in a few seconds.
        "DATAHUB_TEST_RATE_BURST": "10000",
        "DATAHUB_TEST_RATE_PER_SECOND": "1000",
    })
    env.update(extra_env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    base = f"http://127.0.0.1:{port}"
    server = Server(url=base, data_dir=data_dir, log_path=log_path, proc=proc,
                    admin_password=admin_password)
    deadline = time.monotonic() + STARTUP_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"datahub-server exited with {proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"datahub-server not ready in time:\n{server.log()}")
        time.sleep(0.05)
    server.tokens["admin"] = _token(base, "admin", admin_password)
    for role in ("editor", "viewer"):
        password = secrets.token_urlsafe(18)
        status, _, body = http(base, "POST", "/api/v1/users", token=server.tokens["admin"],
                               body={"username": role, "password": password, "role": role})
        assert status in (200, 201), body
        server.user_ids[role] = str(body["id"])
        server.tokens[role] = _token(base, role, password)
    return server


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real datahub-server on a free loopback port with a SQLite store."""
    s = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield s
    finally:
        stop_server(s)


#: The test rate limit of ``limited_server``: a burst of 10 tests, then 20 a second (the
#: bucket holds 10, and `Retry-After` is at least 1 s: about 10 tests a second past the burst).
LIMITED_BURST = 10
LIMITED_PER_SECOND = 20


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second real datahub-server, with a small per-user test rate limit (burst
    ``LIMITED_BURST``, ``LIMITED_PER_SECOND`` a second), for the waits of remote ``test_many``."""
    s = start_server(tmp_path_factory.mktemp("limited-server"), {
        "DATAHUB_TEST_RATE_BURST": str(LIMITED_BURST),
        "DATAHUB_TEST_RATE_PER_SECOND": str(LIMITED_PER_SECOND),
    })
    try:
        yield s
    finally:
        stop_server(s)


# --- hubs in every mode -----------------------------------------------------------------------

MODES = ["remote", "local-sqlite", "local-postgres"]


def native_available() -> bool:
    try:
        from datahub_connections import _native  # noqa: F401
    except ImportError:
        return False
    return True


def require_native(mode: str) -> None:
    if native_available():
        return
    if os.environ.get("DATAHUB_PY_REMOTE_ONLY") == "1":
        pytest.skip(f"{mode}: the native module is not built (DATAHUB_PY_REMOTE_ONLY=1)")
    pytest.fail(f"{mode}: the native module datahub_connections._native cannot be imported: "
                "build it with `maturin develop -m datahub-py/Cargo.toml`")


@pytest.fixture(scope="session")
def pg_store(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, str]:
    """The kit's store cluster and a master key file for it: ``(store_url, key_file)``."""
    assert kit.store_url, "the kit started no store cluster"
    folder = tmp_path_factory.mktemp("pgstore")
    return kit.store_url, str(folder / "master.key")


def open_hub(mode: str, server: Server, tmp_path: Path, pg_store: Tuple[str, str]) -> dh.Hub:
    if mode == "remote":
        return server.hub("editor")
    require_native(mode)
    if mode == "local-sqlite":
        return dh.open(tmp_path / "datahub-data", create=True)
    store_url, key_file = pg_store
    return dh.open(store=dh.Secret(store_url), key_file=key_file,
                   create=not os.path.exists(key_file))


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def hub(mode: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dh.Hub]:
    """A hub in each mode. Remote: the editor's token on the session's server."""
    server = request.getfixturevalue("server") if mode == "remote" else None
    pg_store = request.getfixturevalue("pg_store") if mode == "local-postgres" else ("", "")
    h = open_hub(mode, server, tmp_path, pg_store)  # type: ignore[arg-type]
    try:
        yield h
    finally:
        h.close()


def unique(prefix: str = "py") -> str:
    """A connection name unique in the session (stores are shared between tests)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def add_target(hub: dh.Hub, kit: Kit):  # type: ignore[no-untyped-def]
    """``add_target(**overrides)``: saves a connection to the kit's TLS target (verify-full)."""

    def add(**overrides: Any) -> dh.Connection:
        fields: Dict[str, Any] = dict(
            name=unique(), host=kit.host, port=kit.port, database=kit.database,
            username=kit.user, password=kit.password, tls="verify-full", ca_cert=kit.ca_pem,
            tags=["pytest"],
        )
        fields.update(overrides)
        return hub.add(**fields)

    return add


class StalledListener:
    """A loopback listener that accepts connections and never answers (a stalled server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: List[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` in the main thread, as in a terminal or a notebook.

    A process started in the background by a non-interactive shell inherits SIGINT ignored, and
    Python then leaves it ignored: the Ctrl-C tests would test nothing. They set Python's own
    handler for their duration."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def stalled() -> Iterator[StalledListener]:
    listener = StalledListener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="datahub-py-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
