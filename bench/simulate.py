"""Benchmark: the IDB traffic simulator in batch mode against a raw COPY of the same rows.

    .venv/bin/python bench/simulate.py [--interactions 100000] [--days 7] [--no-truth] [--faults]

Creates a fresh IDB database (on ``--admin-dsn`` / ``GIM_TEST_DSN``, else on an embedded PostgreSQL in
a temporary folder), runs ``simulate_batch`` and prints interactions/s and rows/s. Then, in the same
run, it reads back every row the simulator wrote (without gsys columns) and COPYs them into empty
copies of the tables (``CREATE TABLE ... (LIKE ... INCLUDING ALL)``: same defaults, keys and
indexes) in one transaction per table, and prints the ratio simulator time / raw COPY time: the
cost of generating the traffic in Python on top of what PostgreSQL needs to ingest it anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gim_jobs.db.migrate import migrate  # noqa: E402
from gim_jobs.idb import FaultSpec, SimConfig, simulate_batch  # noqa: E402
from gim_jobs.idb.truth import (  # noqa: E402
    TRUTH_FAULT_COLS,
    TRUTH_INTERACTION_COLS,
    TRUTH_PARTY_COLS,
    TRUTH_STATE_COLS,
)
from gim_jobs.idb.writer import (  # noqa: E402
    CALL_COLS,
    HIST_COLS,
    IR_COLS,
    PARTY_COLS,
    RC_COLS,
    SESSION_COLS,
    STATE_COLS,
)

TABLES = [
    ("g_ir", IR_COLS), ("g_call", CALL_COLS), ("g_party", PARTY_COLS), ("g_party_history", HIST_COLS),
    ("g_login_session", SESSION_COLS), ("g_agent_state_history", STATE_COLS), ("g_agent_state_rc", RC_COLS),
]
TRUTH_TABLES = [
    ("sim.truth_interaction", TRUTH_INTERACTION_COLS), ("sim.truth_party", TRUTH_PARTY_COLS),
    ("sim.truth_agent_state", TRUTH_STATE_COLS), ("sim.truth_fault", TRUTH_FAULT_COLS),
]


def _with_db(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


def raw_copy(dsn: str, tables: list[tuple[str, str]]) -> tuple[float, int]:
    """COPY the rows of ``tables`` into empty look-alike tables; returns (seconds, rows)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE SCHEMA raw")
        data = []
        for table, cols in tables:
            name = table.split(".")[-1]
            conn.execute(sql.SQL("CREATE TABLE raw.{} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(name), sql.SQL(table)))
            buf = bytearray()
            with conn.cursor().copy(f"COPY (SELECT {cols} FROM {table} ORDER BY gsys_seq) TO STDOUT"
                                    if table.startswith("g_") else
                                    f"COPY (SELECT {cols} FROM {table}) TO STDOUT") as cp:
                for chunk in cp:
                    buf += chunk
            data.append((name, cols, bytes(buf), buf.count(b"\n")))
        conn.commit()
        t0 = time.perf_counter()
        rows = 0
        for name, cols, payload, n in data:
            with conn.transaction(), conn.cursor().copy(f"COPY raw.{name} ({cols}) FROM STDIN") as cp:
                step = 1 << 20
                for i in range(0, len(payload), step):
                    cp.write(payload[i:i + step])
            rows += n
        return time.perf_counter() - t0, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-truth", action="store_true", help="do not write the sim.truth_* tables")
    ap.add_argument("--faults", action="store_true", help="inject FaultSpec.realistic() faults")
    ap.add_argument("--admin-dsn", default=os.environ.get("GIM_TEST_DSN"))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    tmp = None
    admin = args.admin_dsn
    if not admin:
        from gim_jobs.db import embedded

        tmp = Path(tempfile.mkdtemp(prefix="gim-bench-sim-"))
        admin = embedded.server_uri(tmp / "pg", "postgres")
    name = f"gimbench_sim_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = _with_db(admin, name)
    try:
        migrate(dsn, "idb")
        start = datetime(2025, 3, 3, tzinfo=UTC)
        summary = simulate_batch(dsn, interactions=args.interactions, start=start,
                                 span_seconds=int(args.days * 86400), config=SimConfig(seed=args.seed),
                                 faults=FaultSpec.realistic() if args.faults else None,
                                 write_truth=not args.no_truth)
        tables = TABLES + ([] if args.no_truth else TRUTH_TABLES)
        raw_s, raw_rows = raw_copy(dsn, tables)
        idb_rows = sum(v for k, v in summary.rows.items() if k.startswith("g_") and "update" not in k)
        result = {
            "interactions": summary.interactions,
            "days": args.days,
            "agents": summary.agents,
            "truth": not args.no_truth,
            "seconds": round(summary.seconds, 2),
            "interactions_per_s": round(summary.interactions_per_s),
            "rows": summary.rows_written,
            "idb_rows": idb_rows,
            "rows_per_interaction": round(summary.rows_written / max(1, summary.interactions), 1),
            "rows_per_s": round(summary.rows_per_s),
            "raw_copy_seconds": round(raw_s, 2),
            "raw_copy_rows": raw_rows,
            "raw_copy_rows_per_s": round(raw_rows / raw_s) if raw_s else None,
            "ratio_sim_to_raw_copy": round(summary.seconds / raw_s, 2) if raw_s else None,
            "answered": summary.answered, "abandoned": summary.abandoned,
            "active_at_end": summary.active_at_end,
        }
        if args.json:
            print(json.dumps(result))
        else:
            print(f"simulate_batch: {summary.interactions:,} interactions over {args.days:g} days, "
                  f"{summary.agents} agents, truth={'on' if not args.no_truth else 'off'}")
            print(f"  {summary.seconds:.2f} s  {result['interactions_per_s']:,} interactions/s  "
                  f"{summary.rows_written:,} rows ({result['rows_per_interaction']}/interaction)  "
                  f"{result['rows_per_s']:,} rows/s")
            print(f"raw COPY of the same rows: {raw_s:.2f} s  {result['raw_copy_rows_per_s']:,} rows/s")
            print(f"ratio simulator / raw COPY: {result['ratio_sim_to_raw_copy']}")
        return 0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if tmp is not None:
            from gim_jobs.db import embedded

            embedded.stop_server(tmp / "pg")


if __name__ == "__main__":
    raise SystemExit(main())
