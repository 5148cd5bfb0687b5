"""Benchmark: Job_ExtractICON + Job_TransformGIM against a raw COPY of the same IDB rows.

    .venv/bin/python bench/etl.py [--interactions 200000] [--hours 24] [--incremental 1000] [--faults]

On ``--admin-dsn`` / ``GIM_TEST_DSN`` (a DSN allowed to CREATE DATABASE), else on an embedded PostgreSQL
in a temporary folder, it

1. simulates ``--interactions`` interactions over ``--hours`` into a fresh IDB (not timed as ETL);
2. *baseline*: streams every IDB row (configuration and interaction tables, all columns) with binary
   ``COPY ... TO STDOUT`` into empty copies of the tables (``LIKE ... INCLUDING ALL``: same keys and
   indexes), one transaction per table: what moving the rows costs at the least; once before and
   once after the ETL, the ratio is against the mean of both;
3. runs the ETL cycle (extract, then transform) into a fresh Info Mart and prints rows/s and the ratio
   ETL time / baseline time (target: <= 3);
4. simulates ``--incremental`` more interactions (the model resumes, so interactions in flight end too)
   and times one more ETL cycle on that big mart, three times; does the same on an empty mart (a fresh
   IDB and mart warmed up with one cycle of the same size), and prints the ratio of the medians
   (target: <= 2).

The mart of step 4 is the one step 3 filled, so ``--interactions`` also sets how big the mart of the
incremental figure is (1,000,000 takes several minutes on 2 cores). The embedded server runs with
``gim_jobs.db.embedded.SETTINGS``, the same for the baseline and the ETL. ``--details`` prints each
cycle's indexes rebuilt after a bulk load and the transform's slowest statements.

Targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gim_jobs.control import run_job  # noqa: E402
from gim_jobs.db.connect import DataSource  # noqa: E402
from gim_jobs.db.migrate import migrate  # noqa: E402
from gim_jobs.idb import FaultSpec, SimConfig, simulate_batch  # noqa: E402
from gim_jobs.jobs.extract import TABLES  # noqa: E402

START = 1704067200  # 2024-01-01 00:00 UTC
REPO = Path(__file__).resolve().parents[1]


def _with_db(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


class Bench:
    def __init__(self, admin: str, keep: bool, details: bool = False):
        self.admin = admin
        self.keep = keep
        self.details = details
        self.created: list[str] = []
        self.config = REPO / "config" / "gim.ini"

    def database(self, tag: str, kind: str) -> str:
        name = f"gimbench_{tag}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        dsn = _with_db(self.admin, name)
        migrate(dsn, kind)  # type: ignore[arg-type]
        return dsn

    def drop(self) -> None:
        if self.keep:
            print(f"kept databases: {', '.join(self.created)}")
            return
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def cycle(self, mart: str, idb: str) -> tuple[float, float, int, int]:
        src = [DataSource("idb", idb)]
        t0 = time.perf_counter()
        ex = run_job("extract", infomart_dsn=mart, sources=src, config_path=self.config)
        t1 = time.perf_counter()
        tr = run_job("transform", infomart_dsn=mart, sources=src, config_path=self.config,
                     params={"timings": 15})
        t2 = time.perf_counter()
        if self.details:
            print(f"  extract: {ex.message}; indexes rebuilt after a bulk load: "
                  f"{', '.join(ex.details.get('rebuilt_indexes', [])) or 'none'}")
            print(f"  transform: {tr.message}; slowest statements (s): "
                  + "; ".join(f"{k} {v}" for k, v in tr.details.get("slowest_statements", {}).items()))
        return t1 - t0, t2 - t1, ex.rows, tr.rows


INCREMENTAL_RUNS = 3


def idb_row_count(idb: str) -> int:
    with psycopg.connect(idb) as conn:
        return sum(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t.name))).fetchone()[0]
                   for t in TABLES)


def baseline_copy(idb: str) -> float:
    """Stream every extracted IDB table into an empty same-shaped table; seconds."""
    with psycopg.connect(idb, autocommit=True) as src, psycopg.connect(idb, autocommit=True) as dst:
        dst.execute("DROP SCHEMA IF EXISTS bench_base CASCADE")
        dst.execute("CREATE SCHEMA bench_base")
        for t in TABLES:
            dst.execute(sql.SQL("CREATE TABLE bench_base.{0} (LIKE public.{0} INCLUDING ALL)").format(
                sql.Identifier(t.name)))
        dst.execute("CHECKPOINT")
        t0 = time.perf_counter()
        for t in TABLES:
            with dst.transaction():
                with dst.cursor().copy(sql.SQL("COPY bench_base.{} FROM STDIN (FORMAT BINARY)").format(
                        sql.Identifier(t.name))) as cin:
                    with src.cursor().copy(sql.SQL("COPY public.{} TO STDOUT (FORMAT BINARY)").format(
                            sql.Identifier(t.name))) as cout:
                        for data in cout:
                            cin.write(data)
        seconds = time.perf_counter() - t0
        dst.execute("DROP SCHEMA bench_base CASCADE")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interactions", type=int, default=200_000)
    ap.add_argument("--hours", type=float, default=24.0, help="simulated span of the big batch")
    ap.add_argument("--incremental", type=int, default=1000, help="interactions of the incremental cycles")
    ap.add_argument("--faults", action="store_true", help="inject FaultSpec.realistic() faults")
    ap.add_argument("--admin-dsn", default=os.environ.get("GIM_TEST_DSN"))
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--details", action="store_true",
                    help="print each cycle's job messages, rebuilt indexes and slowest transform statements")
    args = ap.parse_args()

    tmp = None
    admin = args.admin_dsn
    if not admin:
        from gim_jobs.db import embedded

        tmp = Path(tempfile.mkdtemp(prefix="gim-bench-"))
        admin = embedded.server_uri(tmp / "pg", "postgres")
    bench = Bench(admin, args.keep, args.details)
    faults = FaultSpec.realistic() if args.faults else None
    cfg = SimConfig()
    span = int(args.hours * 3600)
    inc_span = max(600, int(span * args.incremental / max(args.interactions, 1)))
    out: dict[str, float | int] = {}
    try:
        idb, mart = bench.database("idb", "idb"), bench.database("im", "infomart")
        t0 = time.perf_counter()
        sim = simulate_batch(idb, interactions=args.interactions, start=START, span_seconds=span, config=cfg,
                             faults=faults)
        print(f"simulated {sim.interactions} interactions ({sim.rows_written} rows) in "
              f"{time.perf_counter() - t0:.1f} s")
        rows = idb_row_count(idb)
        bases = [baseline_copy(idb)]
        print(f"baseline: COPY of {rows} IDB rows into empty tables: {bases[0]:.2f} s ({rows / bases[0]:,.0f} rows/s)")

        ext, trf, ext_rows, fact_rows = bench.cycle(mart, idb)
        etl = ext + trf
        # the same copy again after the ETL, and the ratio against the mean of both: on a shared
        # machine one copy's time wanders by a factor of up to 2 between runs, and a baseline taken
        # on both sides of the ETL follows what the machine gave the ETL itself
        bases.append(baseline_copy(idb))
        base = statistics.fmean(bases)
        print(f"baseline again after the ETL: {bases[1]:.2f} s; mean {base:.2f} s")
        print(f"ETL: extract {ext:.2f} s ({ext_rows / ext:,.0f} rows/s) + transform {trf:.2f} s "
              f"({fact_rows} fact/dimension rows) = {etl:.2f} s, {rows / etl:,.0f} IDB rows/s, "
              f"{sim.interactions / etl:,.0f} interactions/s")
        print(f"ratio ETL / baseline: {etl / base:.2f} (target <= 3)")

        # incremental cycles: the median of INCREMENTAL_RUNS cycles on each side (one cycle of ~1 s is at
        # the mercy of an autovacuum or a neighbour's burst)
        def incremental(label: str, mart_dsn: str, idb_dsn: str, start: int) -> float:
            times = []
            for k in range(INCREMENTAL_RUNS):
                simulate_batch(idb_dsn, interactions=args.incremental, start=start + k * inc_span,
                               span_seconds=inc_span, config=cfg, faults=faults)
                ex, tr, n, _ = bench.cycle(mart_dsn, idb_dsn)
                times.append(ex + tr)
                print(f"incremental cycle, {args.incremental} new interactions on {label}: {ex + tr:.2f} s "
                      f"(extract {ex:.2f} + transform {tr:.2f}, {n} rows)")
            return statistics.median(times)

        big = incremental("the big mart", mart, idb, START + span)
        idb2, mart2 = bench.database("idb2", "idb"), bench.database("im2", "infomart")
        simulate_batch(idb2, interactions=args.incremental, start=START, span_seconds=inc_span, config=cfg,
                       faults=faults)
        bench.cycle(mart2, idb2)
        small = incremental("an empty mart", mart2, idb2, START + inc_span)
        print(f"medians: big mart {big:.2f} s, empty mart {small:.2f} s")
        print(f"ratio big mart / empty mart: {big / small:.2f} (target <= 2)")
        out = {"interactions": sim.interactions, "idb_rows": rows, "baseline_s": round(base, 3),
               "baseline_runs_s": [round(b, 3) for b in bases],
               "extract_s": round(ext, 3), "transform_s": round(trf, 3), "etl_rows_per_s": round(rows / etl),
               "ratio_etl_baseline": round(etl / base, 2), "incremental_big_s": round(big, 3),
               "incremental_empty_s": round(small, 3), "ratio_big_empty": round(big / small, 2)}
        if args.json:
            print(json.dumps(out))
    finally:
        bench.drop()
        if tmp is not None:
            from gim_jobs.db import embedded

            embedded.stop_server(tmp / "pg")
            if not args.keep:  # a 1M run leaves GBs of data folder behind
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
