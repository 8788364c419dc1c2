"""The one exception tree: one test per code of CODE_CLASSES, and the remote client's mapping
of the server's real answers (and of an unreachable or stalled server)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Iterator

import pytest

import datahub_connections as dh
from datahub_connections._errors import CODE_CLASSES, error_from

from conftest import Kit, Server, StalledListener, free_port, start_server, stop_server, unique

EXPECTED = {
    "invalid_input": dh.InvalidInput,
    "malformed_json": dh.InvalidInput,
    "if_match_required": dh.InvalidInput,
    "payload_too_large": dh.InvalidInput,
    "unsupported_media_type": dh.InvalidInput,
    "not_found": dh.NotFound,
    "conflict": dh.Conflict,
    "precondition_failed": dh.StaleVersion,
    "permission_denied": dh.PermissionDenied,
    "cross_origin": dh.PermissionDenied,
    "unauthenticated": dh.Unauthenticated,
    "rate_limited": dh.RateLimited,
    "store_unavailable": dh.Unavailable,
    "store": dh.Unavailable,
    "unavailable": dh.Unavailable,
    "keyring": dh.KeyringError,
    "decrypt_failed": dh.KeyringError,
    "test_failed": dh.TestFailed,
    "io": dh.InternalError,
    "internal": dh.InternalError,
}


def test_every_code_is_tested() -> None:
    assert set(CODE_CLASSES) == set(EXPECTED)


@pytest.mark.parametrize("code", sorted(CODE_CLASSES))
def test_code_maps_to_its_class(code: str) -> None:
    error = error_from(code, "what went wrong", field="port", status=400, request_id="r-1",
                       retry_after=3.0)
    assert type(error) is EXPECTED[code]
    assert isinstance(error, dh.DataHubError)
    assert error.code == code
    assert error.kind == EXPECTED[code].kind
    assert error.field == "port"
    assert str(error) == "port: what went wrong"
    assert error.request_id == "r-1"
    if code == "rate_limited":
        assert isinstance(error, dh.RateLimited) and error.retry_after == 3.0
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and again.code == code and again.field == "port"


def test_an_unknown_code_is_the_base_class() -> None:
    error = error_from("brand_new", "something new")
    assert type(error) is dh.DataHubError and error.code == "brand_new"


def test_builtin_bases() -> None:
    assert issubclass(dh.InvalidInput, ValueError)
    assert issubclass(dh.NotFound, LookupError)
    assert issubclass(dh.PermissionDenied, PermissionError)
    assert issubclass(dh.MissingExtra, ImportError)
    assert issubclass(dh.StaleVersion, dh.Conflict)


# --- the server's real answers ----------------------------------------------------------------


def test_server_answers_map_to_classes(server: Server, kit: Kit) -> None:
    hub = server.hub("editor")
    with pytest.raises(dh.NotFound) as nf:
        hub.get("018f0000-0000-7000-8000-000000000000")
    assert nf.value.status == 404 and nf.value.code == "not_found"
    with pytest.raises(dh.InvalidInput) as bad:
        hub.list(status="sideways")
    assert bad.value.status == 400 and bad.value.field == "status"
    conn = hub.add(name=unique(), host=kit.host, port=kit.port, database=kit.database,
                   username=kit.user, password=kit.password, tls="verify-full",
                   ca_cert=kit.ca_pem)
    hub.update(conn.id, version=conn.version, description="v2")
    with pytest.raises(dh.StaleVersion) as stale:
        hub.update(conn.id, version=conn.version, description="v3")
    assert stale.value.status == 412 and stale.value.field == "If-Match"
    assert stale.value.request_id
    with pytest.raises(dh.Conflict) as taken:
        hub.add(name=conn.name, host=kit.host, database=kit.database, username=kit.user,
                password=kit.password)
    assert taken.value.status == 409


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server allowing one connection test per user, regained very slowly."""
    s = start_server(tmp_path_factory.mktemp("tight"), {
        "DATAHUB_TEST_RATE_BURST": "1", "DATAHUB_TEST_RATE_PER_SECOND": "0.01",
        "DATAHUB_NO_MONITOR": "true",
    })
    try:
        yield s
    finally:
        stop_server(s)


def test_rate_limited_carries_retry_after(tight_server: Server, kit: Kit) -> None:
    hub = tight_server.hub("editor")
    draft = dict(host=kit.host, port=kit.port, database=kit.database, username=kit.user,
                 password=kit.password, tls="verify-full", ca_cert=kit.ca_pem)
    hub.test_draft(**draft)
    with pytest.raises(dh.RateLimited) as e:
        hub.test_draft(**draft)
    assert e.value.status == 429
    assert e.value.retry_after is not None and e.value.retry_after >= 1


def test_unreachable_server_is_unavailable() -> None:
    hub = dh.connect(f"http://127.0.0.1:{free_port()}", token="dh_x")
    with pytest.raises(dh.Unavailable) as e:
        hub.list()
    assert "refused" in str(e.value)


def test_stalled_server_times_out_as_unavailable(stalled: StalledListener) -> None:
    hub = dh.connect(f"http://127.0.0.1:{stalled.port}", token="dh_x", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(dh.Unavailable):
        hub.list()
    assert time.monotonic() - started < 5


def test_connect_refuses_bad_arguments() -> None:
    with pytest.raises(dh.InvalidInput) as e:
        dh.connect("ftp://127.0.0.1", token="t")
    assert e.value.field == "url"
    with pytest.raises(dh.InvalidInput):
        dh.connect("http://user:pw@127.0.0.1:1", token="t")
    with pytest.raises(dh.InvalidInput) as e2:
        dh.connect("http://127.0.0.1:1", token="t", timeout=0)
    assert e2.value.field == "timeout"


def test_the_token_never_shows(server: Server) -> None:
    hub = server.hub("editor")
    token = server.tokens["editor"]
    assert token not in repr(hub) and token not in hub._repr_html_()
    with pytest.raises(dh.NotFound) as e:
        hub.get(unique("missing"))
    assert token not in repr(e.value) and token not in str(e.value)


def test_local_open_without_a_place_is_invalid(tmp_path: Path) -> None:
    from conftest import native_available

    if not native_available():
        with pytest.raises(dh.MissingExtra):
            dh.open(tmp_path)
        return
    with pytest.raises(dh.InvalidInput):
        dh.open()
