"""``hub.add(url=...)``'s reader: the native ``parse_url`` binding over the core's DSN parser
(datahub-core/src/dsn.rs), the same in both modes. These cases check the binding: the fields it
maps, the files it reads, the argument its errors name, and that no error repeats the URL."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any, Dict

import pytest

import datahub_connections as dh
from datahub_connections._native import parse_url

from conftest import assert_no_leak, canary


def parse(url: str) -> Dict[str, Any]:
    return dict(json.loads(parse_url(url)))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://app@127.0.0.1:5433/sales",
         {"host": "127.0.0.1", "port": 5433, "database": "sales", "username": "app"}),
        # No database: the user name (libpq); no sslmode: left to the API (verify-full).
        ("postgres://app@127.0.0.1",
         {"host": "127.0.0.1", "database": "app", "username": "app"}),
        # IPv6 stays bracketed: the model's host rule normalises it when the connection is saved.
        ("postgresql://a%40b@[::1]:6000/d%2Fb?sslmode=require&channel_binding=require",
         {"host": "[::1]", "port": 6000, "database": "d/b", "username": "a@b",
          "tls": {"mode": "require", "channel_binding": "require"}}),
        ("postgresql://u@127.0.0.1/d?connect_timeout=3&application_name=nb&sslmode=",
         {"host": "127.0.0.1", "database": "d", "username": "u",
          "options": {"connect_timeout_ms": 3000, "application_name": "nb"}}),
        ("postgresql://u@127.0.0.1/d?sslrootcert=system",
         {"host": "127.0.0.1", "database": "d", "username": "u",
          "tls": {"mode": "verify-full"}}),
        # The core's parser takes libpq's key=value strings too.
        ("host=127.0.0.1 port=5434 dbname='my db' user=u sslmode=verify-ca",
         {"host": "127.0.0.1", "port": 5434, "database": "my db", "username": "u",
          "tls": {"mode": "verify-ca"}}),
    ],
)
def test_reads(url: str, expected: Dict[str, Any]) -> None:
    assert parse(url) == expected


def test_rootcert_file_is_read_and_require_means_verify_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    out = parse(f"postgresql://u@127.0.0.1/d?sslmode=require&sslrootcert={ca}")
    assert out["tls"] == {"mode": "verify-ca", "ca_cert_pem": ca.read_text()}


def test_client_certificate_and_key_files_are_read(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    out = parse(f"postgresql://u@127.0.0.1/d?sslcert={cert}&sslkey={key}")
    assert out["tls"] == {"client_cert_pem": cert.read_text(), "client_key_pem": key.read_text()}


@pytest.mark.parametrize(
    "url, field",
    [
        ("", "url"),
        ("mysql://u@127.0.0.1/d", "url"),
        ("jdbc:postgresql://u@127.0.0.1/d", "url"),
        ("postgresql://u:hunter2-secret@127.0.0.1/d", "url"),
        ("postgresql://u@127.0.0.1/d?password=hunter2-secret", "url"),
        ("host=127.0.0.1 user=u password=hunter2-secret", "url"),
        # A password with an unencoded '/' shifts everything after it: still refused, unechoed.
        ("postgresql://u:hunter2/secret@127.0.0.1/d", "url"),
        ("postgresql://u@127.0.0.1,127.0.0.2/d", "url.host"),
        ("postgresql://u@/d?host=/var/run/postgresql", "url.host"),
        ("postgresql://u@127.0.0.1/d?options=-c%20x", "url.options"),
        ("postgresql://u@127.0.0.1/d?hunter2-secret=1", "url"),
        ("postgresql://u@127.0.0.1/d?sslmode=sometimes", "url.sslmode"),
        ("postgresql://u@127.0.0.1/d?sslmode=require&sslmode=disable", "url.sslmode"),
        ("postgresql://u@127.0.0.1/d?connect_timeout=0", "url.connect_timeout"),
        ("postgresql://u@127.0.0.1:/d", "url.port"),
        ("postgresql://u@127.0.0.1:http/d", "url.port"),
        ("postgresql://u@127.0.0.1/d?sslmode=require&sslrootcert=system", "url.sslmode"),
        ("postgresql://u@127.0.0.1/d?sslrootcert=/nonexistent/ca.pem", "url.sslrootcert"),
        ("postgresql://u@127.0.0.1/d?sslkey=/nonexistent/hunter2.key", "url.sslkey"),
    ],
)
def test_refuses_naming_the_field_and_never_the_value(url: str, field: str) -> None:
    with pytest.raises(dh.InvalidInput) as e:
        parse_url(url)
    assert e.value.field == field
    assert e.value.kind == "invalid_input"
    assert "hunter2" not in str(e.value)
    assert "hunter2" not in repr(e.value)


def test_a_password_in_the_url_shows_in_no_error_nor_traceback() -> None:
    secret = canary("url")
    for url in (
        f"postgresql://u:{secret}@127.0.0.1/d",
        f"postgresql://u@127.0.0.1/d?password={secret}",
        f"postgresql://u:{secret}@127.0.0.1/d?sslmode=bogus",
        f"postgresql://u@127.0.0.1/d?{secret}=1",
        f"user=u password='{secret}' host=127.0.0.1",
    ):
        with pytest.raises(dh.InvalidInput) as e:
            parse_url(url)
        text = "".join(traceback.format_exception(type(e.value), e.value, e.value.__traceback__))
        for shown in (str(e.value), repr(e.value), text):
            assert_no_leak(secret, shown, "parse_url's error")


def test_not_a_string_is_invalid_input_on_url() -> None:
    from datahub_connections._hub import _url_fields

    with pytest.raises(dh.InvalidInput) as e:
        _url_fields(5)  # type: ignore[arg-type]
    assert e.value.field == "url"
