"""Issue 15's measurements, by hand (not a test): the Python package against the clients a
notebook would otherwise use, on one target, interleaved in one run.

- ``hub.test(name)`` in local mode vs psycopg 3 (connect, ``SELECT 1``, close) vs asyncpg (the
  same), against the kit's TLS (verify-full) + SCRAM cluster on loopback, and where the
  call's time over its report's ``total_ms`` goes (the native module's measurement entry
  points: ``_test_traced``, ``_wait_floor``);
- ``hub.list(per_page=50)`` vs the native call alone (JSON text, no Python objects): the Python
  layer's share; and the list with all 50 ``Connection`` objects made (a page makes each on
  first use), so laziness hides nothing;
- ``hub.test_many`` of 200 saved connections at concurrency 16 against the prober's own loop
  over the same connections at 16 (``probe::test`` alone, in this process), rounds alternating.

Run with the release-built package (``pip install ./datahub-py``) and asyncpg installed::

    target/py-venv/bin/pip install asyncpg
    DATAHUB_KIT=target/debug/datahub-kit target/py-venv/bin/python datahub-py/benches/compare.py

It prints ``FIGURE`` lines and one ``GOAL <name> <measured> <limit> met|not met`` line per goal.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import asyncpg  # type: ignore[import-not-found]
import psycopg

import datahub_connections as dh
from datahub_connections._hub import LocalBackend

ROUNDS = int(os.environ.get("COMPARE_ROUNDS", "200"))
LIST_ROUNDS = int(os.environ.get("COMPARE_LIST_ROUNDS", "1000"))
MANY = int(os.environ.get("COMPARE_MANY", "200"))
MANY_ROUNDS = int(os.environ.get("COMPARE_MANY_ROUNDS", "6"))


def p(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(kind: str, name: str, value: float, rest: str = "") -> None:
    print(f"{kind} {name} {value:.3f} {rest}".rstrip(), flush=True)


def goal(name: str, measured: float, limit: float, at_least: bool) -> None:
    met = measured >= limit if at_least else measured <= limit
    sign = ">=" if at_least else "<="
    print(f"GOAL {name} {measured:.3f} {sign}{limit} {'met' if met else 'not met'}", flush=True)


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def main() -> None:
    kit_bin = os.environ.get("DATAHUB_KIT", "target/debug/datahub-kit")
    password = "bench-" + secrets.token_hex(12)
    kit = subprocess.Popen([kit_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           env=dict(os.environ, DATAHUB_KIT_PASSWORD=password))
    assert kit.stdout is not None
    target: Dict[str, Any] = json.loads(kit.stdout.readline())
    try:
        run(target)
    finally:
        assert kit.stdin is not None
        kit.stdin.close()
        kit.wait(timeout=60)


def run(target: Dict[str, Any]) -> None:
    work = Path(tempfile.mkdtemp(prefix="dh-compare-"))
    ca_file = work / "ca.pem"
    ca_file.write_text(target["ca_pem"])
    host, port = target["host"], int(target["port"])
    user, database, password = target["user"], target["database"], target["password"]

    hub = dh.open(work / "datahub-data", create=True)
    settings = dict(host=host, port=port, database=database, username=user,
                    password=dh.Secret(password), tls="verify-full", ca_cert=target["ca_pem"])
    hub.add(name="bench", **settings)

    tls = ssl.create_default_context(cafile=str(ca_file))
    loop = asyncio.new_event_loop()

    def via_psycopg() -> None:
        with psycopg.connect(host=host, port=port, dbname=database, user=user,
                             password=password, sslmode="verify-full",
                             sslrootcert=str(ca_file)) as pg:
            pg.execute("select 1").fetchone()

    async def asyncpg_once() -> None:
        conn = await asyncpg.connect(host=host, port=port, user=user, password=password,
                                     database=database, ssl=tls)
        await conn.fetchval("select 1")
        await conn.close()

    totals: List[float] = []

    def via_hub() -> None:
        report = hub.test("bench")
        assert report.ok, report
        totals.append(float(report.total_ms))

    samples: Dict[str, List[float]] = {"hub_test": [], "psycopg": [], "asyncpg": []}
    for warm in range(10):
        via_hub(); via_psycopg(); loop.run_until_complete(asyncpg_once())
    totals.clear()
    for _ in range(ROUNDS):
        samples["hub_test"].append(timed(via_hub))
        samples["psycopg"].append(timed(via_psycopg))
        samples["asyncpg"].append(timed(lambda: loop.run_until_complete(asyncpg_once())))
    for name, values in samples.items():
        line("FIGURE", f"{name}_p50_ms", p(values, 0.5), f"p90 {p(values, 0.9):.3f}")
    line("FIGURE", "hub_report_total_ms_p50", p(totals, 0.5))
    goal("hub_test_speedup_over_psycopg_p50",
         p(samples["psycopg"], 0.5) / p(samples["hub_test"], 0.5), 1.4, at_least=True)
    line("FIGURE", "hub_test_speedup_over_asyncpg_p50",
         p(samples["asyncpg"], 0.5) / p(samples["hub_test"], 0.5))

    # Where a hub.test's time over its report's total_ms goes, interleaved with psycopg as
    # above: to the first poll of the call's work, the Hub's own work around the prober (store
    # read, checks, audit), back to Python; the wait around nothing (the binding's floor); the
    # Python layer alone over one real answer (JSON to TestReport).
    from datahub_connections import _native
    from datahub_connections._model import TestReport

    native = hub._backend._native  # type: ignore[attr-defined]
    split: Dict[str, List[float]] = {"to_work": [], "hub_work_over_total": [], "back": [],
                                     "wait_floor": []}
    for _ in range(ROUNDS // 2):
        via_psycopg()
        text, to_work, work_us, back = native._test_traced("bench")
        split["to_work"].append(to_work / 1000.0)
        split["hub_work_over_total"].append(work_us / 1000.0 - json.loads(text)["total_ms"])
        split["back"].append(back / 1000.0)
        via_psycopg()
        split["wait_floor"].append(timed(_native._wait_floor))
    for name, values in split.items():
        line("FIGURE", f"hub_test_{name}_p50_ms", p(values, 0.5))
    one = native.test("bench")
    layer = [timed(lambda: TestReport._from_json(json.loads(one), name="bench"))
             for _ in range(1000)]
    line("FIGURE", "hub_test_python_layer_p50_ms", p(layer, 0.5))

    # 50 connections, then list them: the whole call vs the native call alone.
    for i in range(49):
        hub.add(name=f"bench-{i:02d}", **settings)
    query = json.dumps({"page": 1, "per_page": 50})
    full: List[float] = []
    raw: List[float] = []
    built: List[float] = []
    for _ in range(LIST_ROUNDS):
        full.append(timed(lambda: hub.list(per_page=50)))
        raw.append(timed(lambda: native.list(query)))
        built.append(timed(lambda: list(hub.list(per_page=50))))
    assert len(hub.list(per_page=50)) == 50
    line("FIGURE", "list50_python_p50_ms", p(full, 0.5), f"p90 {p(full, 0.9):.3f}")
    line("FIGURE", "list50_native_json_p50_ms", p(raw, 0.5), f"p90 {p(raw, 0.9):.3f}")
    line("FIGURE", "list50_python_all_objects_p50_ms", p(built, 0.5), f"p90 {p(built, 0.9):.3f}")
    goal("list50_python_layer_overhead_p50_ms", p(full, 0.5) - p(raw, 0.5), 0.2, at_least=False)
    # The layer alone, over one real native answer replayed (no Rust call): on a loaded machine
    # the difference of two noisy p50s above can hide it either way.
    answer = native.list(query)

    class Replay:
        def list(self, _query: str) -> Any:
            return answer

    replayed = dh.Hub(LocalBackend(Replay()), "local")
    alone: List[float] = []
    alone_all: List[float] = []
    for _ in range(LIST_ROUNDS):
        alone.append(timed(lambda: replayed.list(per_page=50)))
        alone_all.append(timed(lambda: list(replayed.list(per_page=50))))
    line("FIGURE", "list50_layer_alone_p50_ms", p(alone, 0.5),
         f"(all 50 objects made: {p(alone_all, 0.5):.3f})")

    # test_many over MANY saved connections at concurrency 16.
    for i in range(50, MANY):
        hub.add(name=f"bench-{i:03d}", **settings)
    names = [c.name for c in hub.list(per_page=200)][:MANY]
    while len(names) < MANY:
        names += names[: MANY - len(names)]
    # Rounds alternating (which goes first alternates too) the Python call, the native call
    # alone (JSON text, no DataFrame) and the prober's own loop over the same specs in this
    # process (`_native._ProbeLoop`: `probe::test` 16 at a time, no Hub around it).
    probe_loop = native._probe_loop(names)
    rates: Dict[str, List[float]] = {"test_many": [], "native_test_many": [], "probe_loop": []}

    def python_batch() -> float:
        started = time.perf_counter()
        frame = hub.test_many(names, concurrency=16, progress=False)
        elapsed = time.perf_counter() - started
        assert bool(frame["ok"].all()), frame
        return elapsed

    def native_batch() -> float:
        started = time.perf_counter()
        answers = json.loads(native.test_many(names, 16, None))
        elapsed = time.perf_counter() - started
        assert all(a["report"] and a["report"]["ok"] for a in answers)
        return elapsed

    def rust_batch() -> float:
        seconds, passed = probe_loop.run(16)
        assert passed == len(names), passed
        return float(seconds)

    batches = [("test_many", python_batch), ("native_test_many", native_batch),
               ("probe_loop", rust_batch)]
    python_batch(); rust_batch()  # warm-up
    for round_no in range(MANY_ROUNDS):
        for name, batch in batches if round_no % 2 == 0 else batches[::-1]:
            rates[name].append(len(names) / batch())
    for name, values in rates.items():
        line("FIGURE", f"{name}_tests_per_s", statistics.median(values),
             f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")
    goal("test_many_over_probe_loop",
         statistics.median(rates["test_many"]) / statistics.median(rates["probe_loop"]), 0.9,
         at_least=True)
    loop.close()
    hub.close()


if __name__ == "__main__":
    sys.exit(main())
