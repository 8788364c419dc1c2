"""A typed tour of datahub_connections, checked with ``mypy --strict``.

Run against a server: ``DATAHUB_URL=http://127.0.0.1:8080 DATAHUB_TOKEN=dh_... python
typed_example.py``, or locally on a data folder: ``DATAHUB_DATA=./datahub-data python
typed_example.py``.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import datahub_connections as dh


def open_hub() -> dh.Hub:
    url: Optional[str] = os.environ.get("DATAHUB_URL")
    if url is not None:
        return dh.connect(url, token=dh.Secret(os.environ["DATAHUB_TOKEN"]), timeout=30.0)
    return dh.open(os.environ.get("DATAHUB_DATA", "./datahub-data"))


def summarise(hub: dh.Hub, search: Optional[str] = None) -> List[str]:
    page: dh.Connections = hub.list(search=search, per_page=50)
    lines: List[str] = [f"{len(page)} of {page.total} connections"]
    for conn in page:
        lines.append(f"{conn.name}: {conn.host}:{conn.port} {conn.tls.mode} {conn.status}")
    return lines


def check(hub: dh.Hub, name: str) -> bool:
    report: dh.TestReport = hub.test(name)
    for step in report.steps:
        print(f"  {step.name:<8} {step.ms:7.1f} ms {'ok' if step.ok else 'failed'}")
    try:
        report.raise_for_status()
    except dh.TestFailed as e:
        failed: Optional[dh.TestReport] = e.report
        print(f"{name}: {e} (hint: {failed.hint if failed else None})", file=sys.stderr)
        return False
    return True


def first_row(conn: dh.Connection) -> Optional[int]:
    with conn.psycopg() as pg:
        row = pg.execute("SELECT 1").fetchone()
    return None if row is None else int(row[0])


def main() -> int:
    with open_hub() as hub:
        for line in summarise(hub):
            print(line)
        page = hub.list(per_page=1)
        if not len(page):
            return 0
        conn: dh.Connection = hub.get(page[0].name)
        dsn: dh.Secret = conn.dsn()
        print(f"dsn: {dsn}")  # Secret('****')
        health: dh.Health = hub.health(conn.name)
        print(f"{conn.name}: {health.status}, {len(health.checks)} checks")
        if check(hub, conn.name):
            print(f"SELECT 1 -> {first_row(conn)}")
        try:
            hub.update(conn.name, version=conn.version - 1, description="stale edit")
        except dh.Conflict as e:
            print(f"as expected: {e.kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
