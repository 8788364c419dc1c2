"""SECURITY.md S8 for the Python package: canary passwords driven through add, update, a failed
test, every object's repr/str/_repr_html_, exception text and tracebacks, logging at DEBUG,
psycopg()/engine() objects and the temporary CA file: no form of a canary shows anywhere."""

from __future__ import annotations

import logging
import os
import pickle
import stat
import traceback
from typing import Any, List

import pytest

import datahub_connections as dh

from conftest import Kit, Server, assert_no_leak, canary, unique


def _texts(obj: Any) -> List[str]:
    out = [repr(obj), str(obj), f"{obj}"]
    html = getattr(obj, "_repr_html_", None)
    if html is not None:
        out.append(html())
    return out


def test_canary_shows_nowhere(
    hub: dh.Hub, kit: Kit, mode: str, caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    real = kit.password  # the target's real password is a canary too
    wrong = canary("wrong")
    later = canary("later")
    seen: List[str] = []

    name = unique("canary")
    conn = hub.add(name=name, host=kit.host, port=kit.port, database=kit.database,
                   username=kit.user, password=dh.Secret(real), tls="verify-full",
                   ca_cert=kit.ca_pem, tags=["canary"])
    seen += _texts(conn) + _texts(hub) + _texts(hub.get(name)) + _texts(hub.list(search=name))
    ok = hub.test(name)
    assert ok.ok
    seen += _texts(ok)

    # A failed test with a wrong canary password, and an update with another.
    bad = hub.add(name=unique("canary-bad"), host=kit.host, port=kit.port,
                  database=kit.database, username=kit.user, password=wrong, tls="verify-full",
                  ca_cert=kit.ca_pem)
    failed = hub.test(bad.name)
    assert not failed.ok and failed.error_kind == "auth_failed"
    seen += _texts(failed) + _texts(bad)
    updated = hub.update(bad.name, version=bad.version, password=later)
    seen += _texts(updated)
    failed_again = hub.test(bad.id)
    seen += _texts(failed_again)

    # Exceptions: their text, their repr and a formatted traceback.
    errors: List[BaseException] = []
    for action in (
        lambda: failed.raise_for_status(),
        lambda: hub.add(name=unique("canary-tf"), host=kit.host, port=kit.port,
                        database=kit.database, username=kit.user, password=wrong,
                        tls="verify-full", ca_cert=kit.ca_pem, test_first=True),
        lambda: hub.update(bad.name, version=bad.version, password=wrong),
        lambda: hub.add(name="Bad Name", host=kit.host, database=kit.database,
                        username=kit.user, password=wrong),
        lambda: hub.add(url=f"postgresql://{kit.user}:{wrong}@{kit.host}/{kit.database}",
                        name=unique(), password=wrong),
        lambda: hub.update(bad.name, version=updated.version, port=kit.port + 1),
    ):
        with pytest.raises(dh.DataHubError) as e:
            action()
        errors.append(e.value)
    for error in errors:
        seen += [str(error), repr(error), "".join(traceback.format_exception(
            type(error), error, error.__traceback__))]
        report = getattr(error, "report", None)
        if report is not None:
            seen += _texts(report)

    # Health, test_many and the DataFrames.
    seen += _texts(hub.health(name))
    frame = hub.test_many([name, bad.name], progress=False)
    seen.append(frame.to_string())
    seen.append(hub.list(search="canary", per_page=200).to_pandas().to_string())

    # Secrets: masked in every rendering.
    dsn = conn.dsn()
    seen += _texts(dsn) + [f"{dsn!r:>40}", "%s" % dsn, "{}".format(dsn)]

    # psycopg() and engine(): their reprs, the engine's URL, and the CA file.
    with conn.psycopg() as pg:
        seen += [repr(pg), str(pg.info.dsn), repr(pg.info.get_parameters())]
        ca_path = pg.info.get_parameters().get("sslrootcert")
        assert ca_path and os.path.isfile(ca_path)
        assert stat.S_IMODE(os.stat(ca_path).st_mode) == 0o600
        with open(ca_path) as f:
            assert f.read().strip() == kit.ca_pem.strip()
    assert not os.path.exists(ca_path), "the temporary CA file outlived the connection"
    engine = conn.engine()
    seen += [repr(engine), str(engine.url), repr(engine.url), repr(engine.pool)]
    engine_ca = engine.url.query["sslrootcert"]
    assert isinstance(engine_ca, str)
    with engine.connect() as db:
        seen.append(repr(db))
    assert stat.S_IMODE(os.stat(engine_ca).st_mode) == 0o600
    engine.dispose()
    assert not os.path.exists(engine_ca), "the engine's CA file outlived dispose()"

    # Logging at DEBUG, whatever logged it (this package, urllib, psycopg, sqlalchemy, the
    # core's tracing bridged into logging in local mode).
    assert caplog.records, "nothing was logged at DEBUG"
    seen += [r.getMessage() for r in caplog.records]
    seen += [repr(r.__dict__) for r in caplog.records]

    text = "\n".join(seen)
    for secret in (real, wrong, later):
        assert_no_leak(secret, text, f"{mode}: reprs, errors, logs")

    if mode == "remote":
        server: Server = request.getfixturevalue("server")
        for secret in (real, wrong, later):
            assert_no_leak(secret, server.log(), "the server's log")


def test_the_engine_ca_file_goes_with_garbage_collection(hub: dh.Hub, add_target: Any) -> None:
    import gc

    conn = add_target()
    engine = conn.engine()
    path = engine.url.query["sslrootcert"]
    assert isinstance(path, str) and os.path.exists(path)
    del engine
    gc.collect()
    assert not os.path.exists(path)


def test_secrets_refuse_pickling_and_objects_hold_none(hub: dh.Hub, add_target: Any,
                                                       kit: Kit) -> None:
    conn = add_target()
    with pytest.raises(TypeError):
        pickle.dumps(conn.dsn())
    # A connection object holds no secret: its pickle (without the hub) has no password.
    import dataclasses

    plain = dataclasses.replace(conn, _hub=None)
    assert_no_leak(kit.password, repr(pickle.dumps(plain)), "a pickled Connection")
