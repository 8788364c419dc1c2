"""Each optional extra, when missing, is a MissingExtra naming the extra to install. The import
is blocked with ``sys.modules[name] = None`` in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None
    import datahub_connections as dh
    from datahub_connections._model import Connection, Connections, Health
    conn = Connection._from_json({{
        "id": "018f0000-0000-7000-8000-000000000000", "name": "x", "engine": "postgres",
        "host": "127.0.0.1", "port": 5432, "database": "d", "username": "u", "version": 1,
        "tls": {{"mode": "verify-full"}},
    }})
    calls = {{
        "pandas": lambda: Connections([conn], 1, 1, 50).to_pandas(),
        "psycopg": lambda: __import__("datahub_connections._glue", fromlist=["x"])
            .psycopg_connection(conn, {{"password": "p"}}).__enter__(),
        "sqlalchemy": lambda: __import__("datahub_connections._glue", fromlist=["x"])
            .make_engine(conn, {{"password": "p"}}),
    }}
    try:
        calls[{extra!r}]()
    except dh.MissingExtra as e:
        assert isinstance(e, ImportError)
        print(str(e))
    else:
        print("NO ERROR")
""")


@pytest.mark.parametrize(
    "extra, blocked",
    [("pandas", ["pandas"]), ("psycopg", ["psycopg"]), ("sqlalchemy", ["sqlalchemy"])],
)
def test_missing_extra_names_it(extra: str, blocked: list) -> None:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=blocked, extra=extra)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f'pip install "datahub-connections[{extra}]"' in out.stdout


def test_the_package_imports_without_any_extra() -> None:
    script = ("import sys\n"
              "for n in ('pandas', 'psycopg', 'sqlalchemy'): sys.modules[n] = None\n"
              "import datahub_connections as dh\n"
              "print(dh.Secret('x'))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Secret('****')"
