"""``dh.Secret``: masked in every rendering, never pickled or copied, constant-time equality."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

import datahub_connections as dh

VALUE = "s3cr3t-" + "x" * 20


def test_renderings_are_masked() -> None:
    s = dh.Secret(VALUE)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", f"{s:>30}", "%s" % s, "%r" % s,
                 "{}".format(s), repr([s]), repr({"k": s})):
        assert VALUE not in text
        assert "Secret('****')" in text


def test_reveal_returns_the_value() -> None:
    assert dh.Secret(VALUE).reveal() == VALUE
    assert dh.Secret(dh.Secret(VALUE)).reveal() == VALUE


def test_pickle_and_copy_refuse() -> None:
    s = dh.Secret(VALUE)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(s, protocol=protocol)
    with pytest.raises(TypeError):
        copy.copy(s)
    with pytest.raises(TypeError):
        copy.deepcopy(s)


def test_no_dict_and_immutable() -> None:
    s = dh.Secret(VALUE)
    with pytest.raises(TypeError):
        vars(s)
    assert not hasattr(s, "__dict__")
    with pytest.raises(AttributeError):
        s._value = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.anything = 1  # type: ignore[attr-defined]


def test_equality_and_no_hash() -> None:
    assert dh.Secret(VALUE) == dh.Secret(VALUE)
    assert dh.Secret(VALUE) != dh.Secret(VALUE + "!")
    assert (dh.Secret(VALUE) == VALUE) is False
    with pytest.raises(TypeError):
        hash(dh.Secret(VALUE))


def test_only_text() -> None:
    with pytest.raises(TypeError) as e:
        dh.Secret(b"bytes")  # type: ignore[arg-type]
    assert "bytes" in str(e.value)


def test_logging_a_secret_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").debug("password=%s", dh.Secret(VALUE))
    logging.getLogger("test").debug("password=%r", dh.Secret(VALUE))
    assert VALUE not in caplog.text
