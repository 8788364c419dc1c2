"""Remote ``test_many`` against a server's per-user test rate limit: the refused tests are
tried again after the server's ``Retry-After`` (the progress bar says it is waiting), so every
item ends with a report; a single ``hub.test`` still raises ``RateLimited``; Ctrl-C ends the
wait. Against a real ``datahub-server`` started with a small limit (``limited_server``)."""

from __future__ import annotations

import signal
import threading
from typing import Iterator, List, Tuple

import pytest

import datahub_connections as dh
from conftest import LIMITED_BURST, Kit, Server, unique

#: More tests than the burst allows, several times over.
MANY = 50


@pytest.fixture(scope="module")
def limited_names(limited_server: Server, kit: Kit) -> List[str]:
    """Connections to the kit's TLS target on the limited server (monitoring off: only these
    tests use the editor's allowance)."""
    hub = limited_server.hub("editor")
    names = [unique("rl") for _ in range(10)]
    for name in names:
        hub.add(name=name, host=kit.host, port=kit.port, database=kit.database,
                username=kit.user, password=kit.password, tls="verify-full",
                ca_cert=kit.ca_pem, monitoring=False)
    return names


@pytest.fixture
def limited_hub(limited_server: Server) -> Iterator[dh.Hub]:
    hub = limited_server.hub("editor")
    try:
        yield hub
    finally:
        hub.close()


def _drain(hub: dh.Hub, name: str) -> dh.RateLimited:
    """Tests until the server refuses: the allowance is spent then."""
    for _ in range(LIMITED_BURST * 20):
        try:
            hub.test(name)
        except dh.RateLimited as e:
            return e
    pytest.fail("the server never refused a test: is its limit set?")


def test_a_single_test_over_the_limit_raises_rate_limited(
    limited_hub: dh.Hub, limited_names: List[str]
) -> None:
    refused = _drain(limited_hub, limited_names[0])
    assert refused.kind == "rate_limited"
    assert refused.retry_after is not None and refused.retry_after >= 1


def test_test_many_waits_as_the_server_asks_and_reports_every_item(
    limited_hub: dh.Hub, limited_names: List[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _drain(limited_hub, limited_names[0])  # from the first test on, the limit holds
    names = [limited_names[i % len(limited_names)] for i in range(MANY)]
    frame = limited_hub.test_many(names, concurrency=16, progress=True)
    assert list(frame["name"]) == names
    assert frame["error"].isna().all(), frame[frame["error"].notna()]
    assert bool(frame["ok"].all()), frame[~frame["ok"]]
    # The progress bar said it was waiting for the server, and ended complete.
    err = capsys.readouterr().err
    assert "(rate limit)" in err
    assert f"{MANY}/{MANY} tested" in err


def test_the_backend_reports_the_wait_to_its_progress_callback(
    limited_hub: dh.Hub, limited_names: List[str]
) -> None:
    _drain(limited_hub, limited_names[0])
    calls: List[Tuple[int, int, float]] = []

    def progress(done: int, total: int, waiting_s: float = 0.0) -> None:
        calls.append((done, total, waiting_s))

    backend = limited_hub._backend  # the remote backend: test_many's own calls
    answers = backend.test_many(limited_names, 4, progress)
    assert [a["ident"] for a in answers] == limited_names
    assert all(a["report"] is not None and a["error"] is None for a in answers), answers
    assert any(w > 0 for _, _, w in calls), calls
    assert calls[-1][:2] == (len(limited_names), len(limited_names))
    assert all(0 <= done <= total == len(limited_names) for done, total, _ in calls)


def test_ctrl_c_ends_the_wait(
    limited_hub: dh.Hub, limited_names: List[str], sigint_raises: None
) -> None:
    _drain(limited_hub, limited_names[0])
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()
    sent = threading.Event()

    def interrupt() -> None:
        sent.set()
        signal.pthread_kill(main, signal.SIGINT)

    # 200 tests at about 10 a second would take 20 s: Ctrl-C comes during the waits.
    timer = threading.Timer(0.5, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            limited_hub.test_many([limited_names[0]] * 200, concurrency=16, progress=False)
    finally:
        timer.cancel()
    assert sent.is_set(), "test_many returned before Ctrl-C was sent"
