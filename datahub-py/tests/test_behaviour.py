"""The behaviour suite: the same tests on every mode (remote, local on SQLite, local on a
PostgreSQL store), against the kit's real TLS + SCRAM cluster."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, List

import pytest

import datahub_connections as dh

from conftest import Kit, StalledListener, unique


def test_add_get_and_list(hub: dh.Hub, add_target: Any, kit: Kit) -> None:
    conn = add_target(description="the kit target", tags=["pytest", "prod"])
    assert isinstance(conn, dh.Connection)
    assert (conn.host, conn.port, conn.database, conn.username) == (
        kit.host, kit.port, kit.database, kit.user)
    assert conn.tls.mode == "verify-full"
    assert conn.tls.ca_cert_pem is not None and "BEGIN CERTIFICATE" in conn.tls.ca_cert_pem
    assert conn.password_set is True
    assert conn.tags == ("pytest", "prod")
    assert conn.description == "the kit target"
    assert conn.engine_name == "postgres"
    assert conn.version >= 1

    by_name = hub.get(conn.name)
    by_id = hub.get(conn.id)
    assert by_name.id == conn.id == by_id.id
    assert by_name.access == "manage"

    page = hub.list(search=conn.name)
    assert isinstance(page, dh.Connections)
    assert page.names == [conn.name]
    assert page.total == 1 and page.page == 1
    tagged = hub.list(tag="prod", per_page=200)
    assert conn.name in tagged.names
    assert conn.name not in hub.list(search="no-such-connection-anywhere").names


def test_get_unknown_is_not_found(hub: dh.Hub) -> None:
    with pytest.raises(dh.NotFound) as e:
        hub.get(unique("missing"))
    assert e.value.kind == "not_found"
    with pytest.raises(dh.NotFound):
        hub.get("018f0000-0000-7000-8000-000000000000")


def test_add_by_url(hub: dh.Hub, kit: Kit) -> None:
    name = unique("url")
    conn = hub.add(
        url=f"postgresql://{kit.user}@{kit.host}:{kit.port}/{kit.database}?sslmode=verify-full"
            "&application_name=pytest",
        password=dh.Secret(kit.password),
        ca_cert=kit.ca_pem,
        name=name,
    )
    assert (conn.name, conn.host, conn.port, conn.database, conn.username) == (
        name, kit.host, kit.port, kit.database, kit.user)
    assert conn.tls.mode == "verify-full"
    assert conn.options.application_name == "pytest"
    assert hub.test(name).ok


def test_add_by_url_refuses_a_password_inside(hub: dh.Hub, kit: Kit) -> None:
    with pytest.raises(dh.InvalidInput) as e:
        hub.add(url=f"postgresql://{kit.user}:{kit.password}@{kit.host}/{kit.database}",
                name=unique(), password=kit.password)
    assert e.value.field == "url"
    assert kit.password not in str(e.value)


def test_add_refuses_bad_input_naming_the_field(hub: dh.Hub, add_target: Any) -> None:
    with pytest.raises(dh.InvalidInput) as e:
        add_target(name="Not A Valid Name!")
    assert e.value.field == "name"
    with pytest.raises(dh.InvalidInput) as e:
        add_target(tls="sometimes")
    assert e.value.field == "tls.mode"


def test_add_taken_name_is_conflict(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    with pytest.raises(dh.Conflict):
        add_target(name=conn.name)


def test_update_and_stale_version(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    updated = hub.update(conn.name, version=conn.version, description="edited",
                         tags=["pytest", "edited"])
    assert updated.version > conn.version
    assert updated.description == "edited"
    assert updated.tags == ("pytest", "edited")
    with pytest.raises(dh.Conflict) as e:
        hub.update(conn.name, version=conn.version, description="stale")
    assert isinstance(e.value, dh.StaleVersion)
    assert hub.get(conn.id).description == "edited"
    with pytest.raises(dh.InvalidInput) as e2:
        hub.update(conn.name, version=updated.version, colour="blue")
    assert e2.value.field == "colour"


def test_update_retarget_needs_the_password(hub: dh.Hub, add_target: Any, kit: Kit) -> None:
    conn = add_target()
    with pytest.raises(dh.InvalidInput):
        hub.update(conn.name, version=conn.version, port=kit.port + 1)
    moved = hub.update(conn.name, version=conn.version, port=kit.port + 1, password=kit.password)
    assert moved.port == kit.port + 1


def test_delete(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    newer = hub.update(conn.id, version=conn.version, description="v2")
    with pytest.raises(dh.Conflict):
        hub.delete(conn.name, version=conn.version)
    hub.delete(conn.name, version=newer.version)
    with pytest.raises(dh.NotFound):
        hub.get(conn.id)
    assert hub.list(search=conn.name).total == 0


def test_test_ok(hub: dh.Hub, add_target: Any, kit: Kit) -> None:
    conn = add_target()
    report = hub.test(conn.name)
    assert isinstance(report, dh.TestReport)
    assert report.ok, repr(report)
    assert report.error_kind is None and report.step is None
    assert report.raise_for_status() is report
    names = [s.name for s in report.steps]
    for step in ("tcp", "tls", "auth"):
        assert step in names
    assert all(s.ok for s in report.steps)
    assert report.total_ms > 0
    assert report.server is not None
    assert report.server.database == kit.database and report.server.user == kit.user
    assert report.tls is not None and report.tls.protocol
    assert conn.test().ok


def test_test_failed_is_a_report(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target(password="wrong-" + os.urandom(8).hex())
    report = hub.test(conn.name)
    assert report.ok is False
    assert report.error_kind == "auth_failed"
    assert report.step == "auth"
    assert report.hint
    with pytest.raises(dh.TestFailed) as e:
        report.raise_for_status()
    assert e.value.report is report


def test_test_first_refuses_to_save_a_failing_connection(hub: dh.Hub, add_target: Any) -> None:
    name = unique()
    with pytest.raises(dh.TestFailed) as e:
        add_target(name=name, password="wrong-" + os.urandom(8).hex(), test_first=True)
    assert e.value.report is not None and e.value.report.error_kind == "auth_failed"
    assert hub.list(search=name).total == 0
    assert add_target(name=name, test_first=True).name == name


def test_test_draft_saves_nothing(hub: dh.Hub, kit: Kit) -> None:
    name = unique("draft")
    report = hub.test_draft(name=name, host=kit.host, port=kit.port, database=kit.database,
                            username=kit.user, password=kit.password, tls="verify-full",
                            ca_cert=kit.ca_pem)
    assert report.ok, repr(report)
    assert hub.list(search=name).total == 0
    bad = hub.test_draft(host=kit.host, port=kit.port, database=kit.database, username=kit.user,
                         password=kit.password, tls="verify-full", ca_cert=kit.other_ca_pem)
    assert not bad.ok
    assert bad.error_kind == "tls_certificate_invalid"


def test_test_many_keeps_the_order(hub: dh.Hub, add_target: Any) -> None:
    good = add_target()
    bad = add_target(password="wrong-" + os.urandom(8).hex())
    missing = unique("missing")
    names = [bad.name, missing, good.name, good.id]
    df = hub.test_many(names, concurrency=4, progress=False)
    assert list(df["name"]) == names
    assert list(df["ok"]) == [False, False, True, True]
    assert df["error_kind"][0] == "auth_failed"
    assert df["error"][1] == "not_found"
    assert df["error"].isna()[2] and df["error"].isna()[3]
    for column in ("step", "hint", "total_ms", "server_version", "tls_protocol"):
        assert column in df.columns


def test_test_many_draws_a_progress_bar(hub: dh.Hub, add_target: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    names = [add_target().name for _ in range(3)]
    df = hub.test_many(names, concurrency=2)
    assert df["ok"].all()
    err = capsys.readouterr().err
    assert "3/3" in err and "[" in err


def test_test_all(hub: dh.Hub, add_target: Any) -> None:
    tag = "all-" + os.urandom(3).hex()
    names = sorted(add_target(tags=[tag]).name for _ in range(2))
    df = hub.test_all(tag=tag, progress=False)
    assert sorted(df["name"]) == names
    assert df["ok"].all()


def test_health(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    health = hub.health(conn.name)
    assert isinstance(health, dh.Health)
    assert health.status in ("unknown", "healthy", "degraded", "down")
    if hub.mode == "remote":
        # The server's monitor checks a new connection soon after it is saved.
        deadline = time.monotonic() + 30
        while not health.checks and time.monotonic() < deadline:
            time.sleep(0.2)
            health = hub.health(conn.name)
        assert health.checks, "the server's monitor recorded no check"
        assert health.checks[0].ok
        assert health.status == "healthy"
    frame = health.to_pandas()
    assert list(frame.columns) == ["at", "ok", "latency_ms", "error_kind", "step", "hint",
                                   "status"]
    assert len(frame) == len(health.checks)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    assert isinstance(hub.health(conn.id, since=since, limit=5), dh.Health)
    assert isinstance(conn.health(), dh.Health)


def test_dsn_and_sqlalchemy_url_are_masked(hub: dh.Hub, add_target: Any, kit: Kit) -> None:
    conn = add_target()
    dsn = conn.dsn()
    assert isinstance(dsn, dh.Secret)
    assert repr(dsn) == str(dsn) == f"{dsn}" == "Secret('****')"
    assert kit.password not in repr(dsn)
    assert dsn.reveal().startswith("postgres")
    assert f"{kit.host}:{kit.port}" in dsn.reveal()
    url = conn.sqlalchemy_url()
    assert isinstance(url, dh.Secret) and repr(url) == "Secret('****')"
    assert url.reveal().startswith("postgresql+psycopg://")


def test_psycopg_over_tls_verify_full(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    with conn.psycopg() as pg:
        assert pg.execute("SELECT 1").fetchone() == (1,)
        assert pg.pgconn.ssl_in_use
        params = pg.info.get_parameters()
        assert params.get("sslmode") == "verify-full"
        assert "password" not in params
    assert pg.closed


def test_engine_and_read_sql(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    engine = conn.engine()
    try:
        import sqlalchemy as sa

        with engine.connect() as db:
            assert db.execute(sa.text("SELECT current_user")).scalar() == conn.username
            ssl = db.execute(sa.text(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar()
            assert ssl is True
    finally:
        engine.dispose()
    df = hub.read_sql(conn.name, "SELECT CAST(:x AS int) AS x, 'two' AS y", params={"x": 7})
    assert list(df.columns) == ["x", "y"]
    assert df["x"][0] == 7 and df["y"][0] == "two"


def test_connections_to_pandas(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    frame = hub.list(search=conn.name).to_pandas()
    assert list(frame["name"]) == [conn.name]
    assert frame["port"][0] == conn.port


def test_objects_are_frozen(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    with pytest.raises(AttributeError):
        conn.port = 1  # type: ignore[misc]
    page = hub.list(search=conn.name)
    with pytest.raises(AttributeError):
        page.total = 5  # type: ignore[misc]
    report = hub.test(conn.name)
    with pytest.raises(AttributeError):
        report.ok = False  # type: ignore[misc]


def _interrupt_main_after(delay: float, sent: List[float]) -> threading.Timer:
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    timer = threading.Timer(delay, interrupt)
    timer.start()
    return timer


def test_ctrl_c_interrupts_a_test_against_a_stalled_server(
    hub: dh.Hub, add_target: Any, stalled: StalledListener, kit: Kit, sigint_raises: None
) -> None:
    # The target accepts and never answers: the test would wait for its whole budget (5 s).
    conn = add_target(host="127.0.0.1", port=stalled.port, connect_timeout_ms=5000)
    assert threading.current_thread() is threading.main_thread()
    sent: List[float] = []
    timer = _interrupt_main_after(0.3, sent)
    try:
        with pytest.raises(KeyboardInterrupt):
            hub.test(conn.name)
    finally:
        timer.cancel()
    raised = time.monotonic()
    assert sent, "the test returned before Ctrl-C was sent"
    # The native wait checks signals every 20 ms (its own test holds it to 100 ms); here, on
    # every mode, it must be far inside the 5 s budget the stalled target would take.
    assert raised - sent[0] < 1.0, f"Ctrl-C seen {raised - sent[0]:.3f} s after it was sent"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_can_run_a_test(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target()
    assert hub.test(conn.name).ok  # the parent has used its runtime / connections first
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 3
        try:
            code = 0 if hub.test(conn.name).ok else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung running a test")
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert hub.test(conn.name).ok  # and the parent still works


def test_eight_threads_test_at_once(hub: dh.Hub, add_target: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = [add_target().name for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        reports = list(pool.map(hub.test, names))
    assert [r.ok for r in reports] == [True] * 8
    assert [r.name for r in reports] == names


def test_html_reprs_escape_every_value(hub: dh.Hub, add_target: Any) -> None:
    conn = add_target(description="<script>alert('x')</script> & more")
    page = hub.list(search=conn.name)
    for obj in (conn, page, hub.test(conn.name), hub.health(conn.name)):
        html = obj._repr_html_()
        assert "<table>" in html
        assert "<script>" not in html
    assert "&lt;script&gt;" in conn._repr_html_()
    assert conn.name in repr(page) and conn.name in repr(conn)
    assert "ok in" in repr(hub.test(conn.name))
