"""``hub.add(url=...)``'s reader keeps the core's DSN rules (datahub-core/src/dsn.rs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

import datahub_connections as dh
from datahub_connections._url import parse


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgresql://app@127.0.0.1:5433/sales",
         {"host": "127.0.0.1", "port": 5433, "database": "sales", "username": "app",
          "tls": {"mode": "verify-full"}}),
        ("postgres://app@127.0.0.1",
         {"host": "127.0.0.1", "database": "app", "username": "app",
          "tls": {"mode": "verify-full"}}),
        ("postgresql://a%40b@[::1]:6000/d%2Fb?sslmode=require&channel_binding=require",
         {"host": "::1", "port": 6000, "database": "d/b", "username": "a@b",
          "tls": {"mode": "require", "channel_binding": "require"}}),
        ("postgresql://u@127.0.0.1/d?connect_timeout=3&application_name=nb&sslmode=",
         {"host": "127.0.0.1", "database": "d", "username": "u",
          "tls": {"mode": "verify-full"},
          "options": {"connect_timeout_ms": 3000, "application_name": "nb"}}),
        ("postgresql://u@127.0.0.1/d?sslrootcert=system",
         {"host": "127.0.0.1", "database": "d", "username": "u",
          "tls": {"mode": "verify-full"}}),
    ],
)
def test_reads(url: str, expected: Dict[str, Any]) -> None:
    assert parse(url) == expected


def test_rootcert_file_is_read_and_require_means_verify_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    out = parse(f"postgresql://u@127.0.0.1/d?sslmode=require&sslrootcert={ca}")
    assert out["tls"] == {"mode": "verify-ca", "ca_cert_pem": ca.read_text()}


@pytest.mark.parametrize(
    "url, field",
    [
        ("mysql://u@127.0.0.1/d", "url"),
        ("jdbc:postgresql://u@127.0.0.1/d", "url"),
        ("postgresql://u:hunter2-secret@127.0.0.1/d", "url"),
        ("postgresql://u@127.0.0.1/d?password=hunter2-secret", "url"),
        ("postgresql://u@127.0.0.1,127.0.0.2/d", "url.host"),
        ("postgresql://u@/d?host=/var/run/postgresql", "url.host"),
        ("postgresql://u@127.0.0.1/d?options=-c%20x", "url"),
        ("postgresql://u@127.0.0.1/d?hunter2-secret=1", "url"),
        ("postgresql://u@127.0.0.1/d?sslmode=sometimes", "url.sslmode"),
        ("postgresql://u@127.0.0.1/d?sslmode=require&sslmode=disable", "url.sslmode"),
        ("postgresql://u@127.0.0.1/d?connect_timeout=0", "url.connect_timeout"),
        ("postgresql://u@127.0.0.1:/d", "url.port"),
        ("postgresql://u@127.0.0.1:http/d", "url.port"),
        ("postgresql://u@127.0.0.1/d?sslmode=require&sslrootcert=system", "url.sslmode"),
        ("postgresql://u@127.0.0.1/d?sslrootcert=/nonexistent/ca.pem", "url.sslrootcert"),
    ],
)
def test_refuses_naming_the_field_and_never_the_value(url: str, field: str) -> None:
    with pytest.raises(dh.InvalidInput) as e:
        parse(url)
    assert e.value.field == field
    assert "hunter2" not in str(e.value)
