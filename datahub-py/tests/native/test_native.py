"""Tests of the native module alone (``datahub_connections._native``), local mode on SQLite.

Self-contained: each test opens its own data folder. The database dialled is the machine's
PostgreSQL on 127.0.0.1:5432 (TLS on, ``trust`` for ``postgres``; override with
``DATAHUB_PY_TEST_PG_PORT``) and loopback listeners made here that accept and never answer.
Build first: ``maturin develop -m datahub-py/Cargo.toml`` in a virtual environment.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Dict, Iterator, List

import pytest

from datahub_connections import _errors
from datahub_connections._native import LocalHub

PG_PORT = int(os.environ.get("DATAHUB_PY_TEST_PG_PORT", "5432"))
CANARY = "canary-Pw-7f3e9b1c"
OPERATOR = "pytest"
#: The prober's whole budget for one test (datahub_core::probe::MAX_BUDGET), in seconds.
BUDGET = 5.0


def listed(hub: LocalHub, query: str) -> Dict[str, object]:
    """``list``'s answer as one page: the head's JSON with the rows' JSON as its items."""
    head, rows = hub.list(query)
    assert all(isinstance(row, str) for row in rows)
    page = json.loads(head)
    assert page["items"] == []
    page["items"] = [json.loads(row) for row in rows]
    return page


def body(name: str, port: int = PG_PORT, password: str = CANARY, **extra: object) -> str:
    fields = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "database": "postgres",
        "username": "postgres",
        "password": password,
        "tls": {"mode": "require"},
        "tags": ["pytest"],
    }
    fields.update(extra)
    return json.dumps(fields)


@pytest.fixture
def hub(tmp_path) -> Iterator[LocalHub]:
    opened = LocalHub.open(str(tmp_path / "data"), None, None, OPERATOR, True)
    yield opened
    opened.close()


class Stalled:
    """A loopback listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: List[socket.socket] = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def stalled() -> Iterator[Stalled]:
    listener = Stalled()
    yield listener
    listener.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scram_cluster() -> Iterator[Dict[str, object]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1: TLS only (a self-signed certificate for
    127.0.0.1, given as the CA) and SCRAM-SHA-256 for the user ``app``, whose password is the
    canary. Run as the ``postgres`` system user when the tests run as root."""
    run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    folder = tempfile.mkdtemp(prefix="datahub-py-pg-")
    data = os.path.join(folder, "data")
    user = {"user": run_as.pw_uid, "group": run_as.pw_gid} if run_as else {}
    if run_as:
        os.chown(folder, run_as.pw_uid, run_as.pw_gid)
    subprocess.run(
        ["initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
        check=True, capture_output=True, **user,  # type: ignore[arg-type]
    )
    # A CA, and a server certificate for 127.0.0.1 that it signs.
    cert, key = os.path.join(data, "server.crt"), os.path.join(data, "server.key")
    ca_cert, ca_key = os.path.join(folder, "ca.crt"), os.path.join(folder, "ca.key")
    csr, ext = os.path.join(folder, "server.csr"), os.path.join(folder, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with open(ext, "w") as f:
        f.write(
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
    for command in (
        ["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=datahub-py test CA",
         "-keyout", ca_key, "-out", ca_cert],
        ["openssl", "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
    ):
        subprocess.run(command, check=True, capture_output=True)
    if run_as:
        for path in (cert, key):
            os.chown(path, run_as.pw_uid, run_as.pw_gid)
    os.chmod(key, 0o600)
    port = free_port()
    with open(os.path.join(data, "postgresql.conf"), "a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{folder}'\nssl = on\n"
            "password_encryption = 'scram-sha-256'\nfsync = off\n"
        )
    with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
        hba.write(
            "local all postgres trust\n"
            "hostssl all app 127.0.0.1/32 scram-sha-256\n"
        )
    subprocess.run(
        ["pg_ctl", "-D", data, "-l", os.path.join(folder, "log"), "-w", "-t", "30", "start"],
        check=True, capture_output=True, **user,  # type: ignore[arg-type]
    )
    try:
        # The password goes to psql on stdin, never into a process list.
        subprocess.run(
            ["psql", "-h", folder, "-p", str(port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1"],
            input=f"CREATE ROLE app LOGIN PASSWORD '{CANARY}';\n",
            text=True, check=True, capture_output=True, **user,  # type: ignore[arg-type]
        )
        with open(ca_cert) as f:
            ca = f.read()
        yield {"port": port, "ca": ca}
    finally:
        subprocess.run(
            ["pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True, **user,  # type: ignore[arg-type]
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_opens_a_new_folder_and_refuses_a_missing_one_without_create(tmp_path) -> None:
    folder = tmp_path / "fresh"
    with pytest.raises(_errors.InvalidInput) as refused:
        LocalHub.open(str(folder), None, None, OPERATOR, False)
    assert refused.value.field == "data_dir"
    assert "does not exist" in str(refused.value)
    assert "create=True" in str(refused.value)
    assert not folder.exists()

    hub = LocalHub.open(str(folder), None, None, OPERATOR, True)
    assert hub.describe() == f"sqlite:{folder}"
    assert (folder / "master.key").exists()
    page = listed(hub, "{}")
    assert page["items"] == [] and page["total"] == 0
    hub.close()
    # Once made, the folder opens without create, as the folder itself (store=).
    again = LocalHub.open(None, str(folder), None, OPERATOR, False)
    assert listed(again, "{}")["total"] == 0
    again.close()


def test_add_get_list_update_delete(hub: LocalHub) -> None:
    created = json.loads(hub.create(body("sales-replica", description="the replica"), False))
    assert created["name"] == "sales-replica"
    assert created["version"] >= 1
    by_name = json.loads(hub.get("sales-replica"))
    by_id = json.loads(hub.get(created["id"]))
    assert by_name["id"] == by_id["id"] == created["id"]
    assert by_name["access"] == "manage"
    hub.create(body("billing"), False)

    page = listed(hub, json.dumps({"search": "sales", "per_page": 10}))
    assert [c["name"] for c in page["items"]] == ["sales-replica"]
    assert page["total"] == 1 and page["per_page"] == 10
    assert listed(hub, json.dumps({"tag": "pytest"}))["total"] == 2

    updated = json.loads(hub.update("sales-replica", created["version"], json.dumps({"description": "v2"})))
    assert updated["description"] == "v2"
    assert updated["version"] > created["version"]
    with pytest.raises(_errors.StaleVersion) as stale:
        hub.update("sales-replica", created["version"], json.dumps({"description": "v3"}))
    assert isinstance(stale.value, _errors.Conflict)
    assert stale.value.code == "precondition_failed"
    assert stale.value.kind == "conflict"

    with pytest.raises(_errors.StaleVersion):
        hub.delete("sales-replica", created["version"])
    hub.delete("sales-replica", updated["version"])
    with pytest.raises(_errors.NotFound):
        hub.get("sales-replica")
    assert listed(hub, "{}")["total"] == 1


def test_errors_are_the_package_classes(tmp_path, hub: LocalHub) -> None:
    hub.create(body("taken"), False)
    with pytest.raises(_errors.Conflict) as taken:
        hub.create(body("taken"), False)
    assert type(taken.value) is _errors.Conflict
    assert taken.value.code == "conflict" and taken.value.field == "name"

    with pytest.raises(_errors.NotFound) as missing:
        hub.get("no-such-connection")
    assert missing.value.kind == "not_found"

    with pytest.raises(_errors.InvalidInput) as bad_port:
        hub.create(body("bad-port", port=70000), False)
    assert bad_port.value.field == "port"
    assert bad_port.value.kind == "invalid_input"
    with pytest.raises(_errors.InvalidInput) as wrong_type:
        hub.create(json.dumps({**json.loads(body("bad-type")), "port": "5432"}), False)
    assert wrong_type.value.field == "port"
    with pytest.raises(_errors.InvalidInput) as unknown:
        hub.create(json.dumps({**json.loads(body("unknown")), "colour": "red"}), False)
    assert unknown.value.field == "colour"
    with pytest.raises(_errors.InvalidInput) as per_page:
        hub.list(json.dumps({"per_page": 0}))
    assert per_page.value.field == "per_page"
    with pytest.raises(_errors.InvalidInput) as since:
        hub.health("taken", "yesterday", None)
    assert since.value.field == "since"

    # A store holding data with another key: the keyring refuses, naming nothing secret.
    other = LocalHub.open(str(tmp_path / "other"), None, None, OPERATOR, True)
    other.close()
    with pytest.raises(_errors.KeyringError) as wrong_key:
        LocalHub.open(str(tmp_path / "data"), None, str(tmp_path / "other" / "master.key"), OPERATOR, False)
    assert wrong_key.value.kind == "keyring"

    hub.close()
    with pytest.raises(_errors.Unavailable):
        hub.list("{}")


def test_a_saved_connection_tests_ok_and_reveals(hub: LocalHub) -> None:
    hub.create(body("local-pg"), False)
    report = json.loads(hub.test("local-pg"))
    assert report["ok"] is True, report
    assert report["tls"] is not None
    revealed = json.loads(hub.reveal("local-pg"))
    assert revealed["password"] == CANARY
    assert revealed["username"] == "postgres"
    health = json.loads(hub.health("local-pg", None, 10))
    assert "health" in health and isinstance(health["checks"], list)


def test_a_tls_scram_server_tests_ok_and_a_wrong_password_fails(
    hub: LocalHub, scram_cluster: Dict[str, object]
) -> None:
    tls = {"mode": "verify-full", "ca_cert_pem": scram_cluster["ca"]}
    port = int(scram_cluster["port"])  # type: ignore[call-overload]
    hub.create(body("scram", port=port, username="app", tls=tls), False)
    report = json.loads(hub.test("scram"))
    assert report["ok"] is True, report
    assert any(s["name"] == "auth" and s["ok"] for s in report["steps"]), report
    assert report["tls"]["protocol"].startswith("TLS"), report
    assert report["server"]["user"] == "app"

    hub.create(body("scram-wrong", port=port, username="app", password="not-it", tls=tls), False)
    failed = json.loads(hub.test("scram-wrong"))
    assert failed["ok"] is False
    assert failed["error_kind"] == "auth_failed", failed
    assert failed["step"] == "auth"
    assert CANARY not in json.dumps(failed)


def test_test_first_refuses_a_failing_connection(hub: LocalHub, stalled: Stalled) -> None:
    with pytest.raises(_errors.TestFailed) as failed:
        hub.create(body("never-saved", port=stalled.port), True)
    report = json.loads(failed.value.report)
    assert report["ok"] is False
    with pytest.raises(_errors.NotFound):
        hub.get("never-saved")


def test_draft_tests_save_nothing(hub: LocalHub) -> None:
    report = json.loads(hub.test_draft(body("draft-only")))
    assert report["ok"] is True, report
    assert listed(hub, "{}")["total"] == 0


def test_test_many_keeps_input_order_and_reports_progress(hub: LocalHub, stalled: Stalled) -> None:
    for i in range(4):
        hub.create(body(f"ok-{i}"), False)
    hub.create(body("stalled", port=stalled.port), False)
    idents = ["ok-3", "stalled", "ok-0", "no-such", "ok-2", "ok-1"]
    calls: List[tuple] = []
    results = json.loads(hub.test_many(idents, 4, lambda done, total: calls.append((done, total))))
    assert [r["ident"] for r in results] == idents
    by_ident = {r["ident"]: r for r in results}
    for name in ("ok-0", "ok-1", "ok-2", "ok-3"):
        assert by_ident[name]["report"]["ok"] is True
        assert by_ident[name]["error"] is None
    assert by_ident["stalled"]["report"]["ok"] is False
    assert by_ident["no-such"]["report"] is None
    assert by_ident["no-such"]["error"]["code"] == "not_found"
    assert calls == [(n, len(idents)) for n in range(1, len(idents) + 1)]


def test_ctrl_c_interrupts_a_stalled_test_promptly(
    hub: LocalHub, stalled: Stalled, sigint_raises: None
) -> None:
    hub.create(body("stalls", port=stalled.port), False)
    sent: List[float] = []

    def interrupt() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(0.2, interrupt)
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        hub.test("stalls")
    raised = time.monotonic()
    timer.join()
    assert sent, "the signal was not sent"
    assert raised - sent[0] < 0.1, f"KeyboardInterrupt {raised - sent[0]:.3f} s after SIGINT"
    assert raised - started < BUDGET / 2
    # The hub still works after the interruption.
    assert listed(hub, "{}")["total"] == 1


def test_a_forked_child_tests_and_lists(hub: LocalHub) -> None:
    hub.create(body("fork-pg"), False)
    assert json.loads(hub.test("fork-pg"))["ok"] is True  # the parent's runtime is running
    pid = os.fork()
    if pid == 0:  # the child: any failure is its exit code
        code = 1
        try:
            report = json.loads(hub.test("fork-pg"))
            page = listed(hub, "{}")
            code = 0 if report["ok"] and page["total"] == 1 else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # The parent goes on with its own runtime and store.
    assert listed(hub, "{}")["total"] == 1


def test_threads_test_at_once_without_serialising(hub: LocalHub, stalled: Stalled) -> None:
    hub.create(body("stalled-many", port=stalled.port), False)
    reports: List[dict] = []
    errors: List[BaseException] = []

    def one() -> None:
        try:
            reports.append(json.loads(hub.test("stalled-many")))
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert len(reports) == 8 and all(r["ok"] is False for r in reports)
    # Serialised, eight tests that each wait out the budget would take eight budgets.
    assert elapsed < 3 * BUDGET, f"8 stalled tests took {elapsed:.1f} s"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_debug_logging_never_holds_the_password(tmp_path, stalled: Stalled) -> None:
    logger = logging.getLogger("datahub_connections")
    handler = Records()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    texts: List[str] = []
    try:
        hub = LocalHub.open(str(tmp_path / "logged"), None, None, OPERATOR, True)
        hub.create(body("logged-ok"), False)
        hub.create(body("logged-stalled", port=stalled.port), False)
        texts.append(hub.test("logged-ok"))
        texts.append(hub.test("logged-stalled"))
        texts.append(hub.test_draft(body("draft", password=CANARY + "-draft")))
        for bad in (
            body("bad-port", port=70000),
            json.dumps({**json.loads(body("x")), "port": CANARY}),
            json.dumps({**json.loads(body("x")), "tls": {"mode": CANARY}}),
        ):
            with pytest.raises(_errors.InvalidInput) as refused:
                hub.create(bad, False)
            texts.extend([str(refused.value), repr(refused.value), repr(refused.value.__dict__)])
        with pytest.raises(_errors.TestFailed) as failed:
            hub.create(body("first", port=stalled.port), True)
        texts.extend([str(failed.value), repr(failed.value.__dict__)])
        texts.append(hub.describe())
        hub.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    messages = [r.getMessage() for r in handler.records]
    assert messages, "no record reached Python logging at DEBUG"
    assert any(r.levelno <= logging.DEBUG for r in handler.records)
    for text in messages + texts:
        assert CANARY not in text, text


def test_logging_follows_the_level_set_in_python(tmp_path) -> None:
    logger = logging.getLogger("datahub_connections")
    handler = Records()
    logger.addHandler(handler)
    old_level = logger.level
    try:
        logger.setLevel(logging.ERROR)
        hub = LocalHub.open(str(tmp_path / "quiet"), None, None, OPERATOR, True)
        hub.create(body("quiet"), False)
        hub.test("quiet")
        assert all(r.levelno >= logging.ERROR for r in handler.records)
        logger.setLevel(logging.DEBUG)
        hub.test("quiet")
        assert any(r.levelno == logging.DEBUG for r in handler.records)
        hub.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
