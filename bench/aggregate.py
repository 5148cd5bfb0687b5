"""Benchmark: Job_AggregateGIM, full and incremental, against a one-statement baseline.

    .venv/bin/python bench/aggregate.py [--interactions 100000] [--hours 24] [--mart 1000000] [--add 1000]

On ``--admin-dsn`` / ``GIM_TEST_DSN``, else an embedded PostgreSQL in a temporary folder:

1. *full*: simulates ``--interactions`` over ``--hours`` into a fresh IDB, runs the ETL cycle (not
   timed), then times the aggregation of everything (13 hierarchies, SUBHOUR..YEAR, pending
   intervals in day batches, one transaction each). *Baseline* in the same run: for every
   hierarchy one ``INSERT ... SELECT ... GROUP BY`` of the finest level (SUBHOUR) over all the facts
   into empty copies of the tables. Prints full / baseline (target <= 3).
2. *incremental*: a mart of ``--mart`` interactions (over ``--mart-days`` days, aggregated), then
   one ETL cycle adding ``--add`` interactions and one aggregation cycle, timed (target <= 1 s
   of DB time: the cycle's time is SQL time, Python only sequences statements). The same on a mart
   of ``--add`` interactions gives the ratio big / small (target: about 1, independent of size).

Targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gim_jobs.aggregation.hierarchies import HIERARCHIES, NAMES, insert_from_facts  # noqa: E402
from gim_jobs.control import run_job  # noqa: E402
from gim_jobs.db.connect import DataSource  # noqa: E402
from gim_jobs.db.migrate import migrate  # noqa: E402
from gim_jobs.idb import simulate_batch  # noqa: E402
from gim_jobs.jobs.aggregate import Aggregator  # noqa: E402

START = 1704067200  # 2024-01-01 00:00 UTC
REPO = Path(__file__).resolve().parents[1]


def _with_db(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


class Bench:
    def __init__(self, admin: str) -> None:
        self.admin, self.created = admin, []

    def db(self, tag: str, kind: str) -> str:
        name = f"gimbench_agg_{tag}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        dsn = _with_db(self.admin, name)
        migrate(dsn, kind)
        return dsn

    def drop(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def mart(self, tag: str, interactions: int, hours: float) -> tuple[str, str]:
        im, idb = self.db(tag, "infomart"), self.db(tag + "idb", "idb")
        simulate_batch(idb, interactions=interactions, start=START, span_seconds=int(hours * 3600), write_truth=False)
        etl(im, idb)
        return im, idb


def etl(im: str, idb: str) -> None:
    src = [DataSource("idb", idb)]
    for job in ("extract", "transform"):
        run_job(job, infomart_dsn=im, sources=src, config_path=REPO / "config" / "gim.ini")


def baseline(im: str) -> float:
    """One INSERT ... SELECT ... GROUP BY per hierarchy of the finest level, over all facts."""
    with psycopg.connect(im, autocommit=True) as conn:
        lo, hi = conn.execute("SELECT min(start_ts), max(coalesce(end_ts, start_ts)) + 1 FROM interaction_resource_fact"
                              ).fetchone()
        keys = list(range(lo - lo % 900, hi + 900, 900))
        for name in NAMES:
            conn.execute(f"CREATE TEMP TABLE b_{name.lower()} (LIKE {HIERARCHIES[name].table('SUBHOUR')})")
        t = time.perf_counter()
        for name in NAMES:
            sql = insert_from_facts(HIERARCHIES[name], flavor=False, present=set())
            if sql:
                sql = sql.replace(f"INSERT INTO {HIERARCHIES[name].table('SUBHOUR')}", f"INSERT INTO b_{name.lower()}")
                conn.execute(sql, {"keys": keys, "lo": keys[0], "hi": keys[-1] + 900, "S": 900, "online": 1})
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interactions", type=int, default=100_000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--mart", type=int, default=1_000_000)
    ap.add_argument("--mart-days", type=float, default=10.0)
    ap.add_argument("--add", type=int, default=1000)
    ap.add_argument("--admin-dsn", default=os.environ.get("GIM_TEST_DSN"))
    args = ap.parse_args()
    admin, tmp = args.admin_dsn, None
    if not admin:
        from gim_jobs.db import embedded

        tmp = Path(tempfile.mkdtemp(prefix="gim-bench-agg-"))
        admin = embedded.server_uri(tmp / "pg", "postgres")
    b, out = Bench(admin), {}
    try:
        im, _idb = b.mart("full", args.interactions, args.hours)
        with Aggregator(im, 15) as agg:
            agg.ensure_tables()
            t = time.perf_counter()
            st = agg.run_until_idle()
            full = time.perf_counter() - t
        base = baseline(im)
        out["full"] = {"interactions": args.interactions, "seconds": round(full, 3), "baseline_seconds": round(base, 3),
                       "ratio": round(full / base, 2), "target": "<= 3", "intervals": st["intervals"],
                       "aggregate_rows": st["rows"]}
        print(json.dumps(out["full"]), flush=True)

        inc = {}
        for tag, n, hours in (("small", args.add, 1.0), ("big", args.mart, args.mart_days * 24)):
            im, idb = b.mart(tag, n, hours)
            with Aggregator(im, 15) as agg:
                agg.ensure_tables()
                agg.run_until_idle()
                simulate_batch(idb, interactions=args.add, start=START + int(hours * 3600), span_seconds=600,
                               write_truth=False)
                etl(im, idb)
                t = time.perf_counter()
                st = agg.run_until_idle()
                inc[tag] = {"mart_interactions": n, "seconds": round(time.perf_counter() - t, 3),
                            "intervals": st["intervals"]}
            print(json.dumps({tag: inc[tag]}), flush=True)
        out["incremental"] = {**inc, "target": "<= 1 s, big/small about 1",
                              "ratio_big_small": round(inc["big"]["seconds"] / max(inc["small"]["seconds"], 1e-6), 2)}
        print(json.dumps(out["incremental"]))
    finally:
        b.drop()
        if tmp is not None:  # our own embedded server: stop it and remove its folder
            import shutil

            from gim_jobs.db import embedded

            embedded.stop_server(tmp / "pg")
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
