"""Benchmark: Job_ExportGIM against a raw COPY of the same rows into a zip.

    .venv/bin/python bench/export.py [--interactions 100000] [--days 7] [--pipeline] [--json]

Creates a fresh Info Mart (on ``--admin-dsn`` / ``GIM_TEST_DSN``, else an embedded PostgreSQL in a
temporary folder) and fills it with N interactions over ``--days`` days: by default synthetic facts
written with SQL (per interaction one interaction_fact row, 2-3 interaction_resource_fact rows, one
sm_res_state_fact row; sessions, 500 agents with non-ASCII (latin1) names; one audit key per hour of data, as
the transform commits), or with ``--pipeline`` the real simulator -> Job_ExtractICON ->
Job_TransformGIM. Then, in the same run:

* baseline: one connection COPYs every exported table (``COPY (SELECT * FROM t) TO STDOUT (FORMAT
  csv, HEADER)``, the calendar rows of the data range) straight into members of one zip
  (ZIP_DEFLATED, default level) - the least work that produces the same rows as zipped CSV;
* Job_ExportGIM through ``run_job`` (scheduled) with the default options (``chunk-size-seconds``
  28800, so one folder per 8 h of data, ``thread-pool-size`` 10), then again as one folder
  (``chunk-size-seconds`` larger than the data) and once in latin1.

It prints rows/s of each and the ratio export / baseline throughput (target >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gim_jobs.control import run_job  # noqa: E402
from gim_jobs.db.migrate import migrate  # noqa: E402

START = 1_740_960_000  # 2025-03-03 00:00:00 UTC
NAMES = ["Zoë", "Ångström", "José", "Müller", "Øyvind", "François", "Renée", "Smith", "Sølvi", "Ana"]

FILL = """
INSERT INTO ctl_audit_log (job_id, max_chunk_ts)
SELECT 'bench', %(start)s + h * 3600 FROM generate_series(0, %(hours)s) h;
-- audit key 1: configuration; key 2 + h: the facts starting in hour h
INSERT INTO resource_ (resource_key, resource_type, resource_type_code, resource_subtype, resource_name,
                       agent_first_name, agent_last_name, employee_id, icon_dbid, resource_cfg_type_id,
                       start_ts, create_audit_key, update_audit_key)
SELECT (1::bigint << 32) | a, 'Agent', 'AGENT', 'Agent', 'agent' || a, (%(names)s::text[])[1 + a %% 10],
       (%(names)s::text[])[1 + (a / 10) %% 10], 'E' || a, a, 1, %(start)s, 1, 1
  FROM generate_series(1, 500) a;
INSERT INTO interaction_fact (interaction_id, data_source_key, tenant_key, media_type_key, interaction_type_key,
       media_server_ixn_guid, media_server_root_ixn_guid, source_address, target_address, subject, status, start_ts,
       end_ts, start_date_time_key, end_date_time_key, active_flag, create_audit_key, update_audit_key)
SELECT i, 1, 101, 1 + i %% 3, 1 + i %% 2, 'ixn-' || md5(i::text), 'ixn-' || md5(i::text), '+1555' || (1000000 + i),
       'queue' || i %% 20, CASE WHEN i %% 5 = 0 THEN 'Rückruf, "bitte" ' || i WHEN i %% 5 = 1 THEN '' END, 0,
       s, s + d, s - s %% 900, (s + d) - (s + d) %% 900, 0, 2 + (s - %(start)s) / 3600, 2 + (s - %(start)s) / 3600
  FROM generate_series(1::bigint, %(n)s) i,
       LATERAL (SELECT %(start)s + (i::bigint * %(span)s) / %(n)s AS s, 60 + (i * 7919) %% 900 AS d) x;
INSERT INTO interaction_resource_fact (interaction_resource_id, interaction_id, data_source_key, tenant_key,
       media_type_key, interaction_type_key, resource_key, last_queue_resource_key, technical_descriptor_key,
       party_guid, media_server_ixn_guid, start_ts, end_ts, start_date_time_key, end_date_time_key, ring_duration,
       talk_duration, hold_duration, after_call_work_duration, mediation_duration, ring_count, talk_count,
       hold_count, after_call_work_count, active_flag, create_audit_key, update_audit_key)
SELECT f.interaction_id * 4 + p, f.interaction_id, 1, 101, f.media_type_key, f.interaction_type_key,
       (1::bigint << 32) | (1 + (f.interaction_id * 31 + p) %% 500), (2::bigint << 32) | (f.interaction_id %% 20),
       1 + (f.interaction_id + p) %% 55, 'party-' || f.interaction_id || '-' || p, f.media_server_ixn_guid,
       f.start_ts + p * 5, f.end_ts, f.start_date_time_key, f.end_date_time_key, 5 + p, 40 + p, p, 10, 3, 1, 1, 0, 1,
       0, f.create_audit_key, f.update_audit_key
  FROM interaction_fact f, generate_series(0, 1 + f.interaction_id %% 2) p;
INSERT INTO sm_res_state_fact (sm_res_state_fact_key, data_source_key, tenant_key, resource_key, media_type_key,
       resource_state_key, resource_state_reason_key, login_session_guid, source_id, start_ts, end_ts,
       start_date_time_key, end_date_time_key, total_duration, active_flag, create_audit_key, update_audit_key)
SELECT f.interaction_id, 1, 101, (1::bigint << 32) | (1 + f.interaction_id %% 500), 1, 1 + f.interaction_id %% 4,
       NULL, 'sess-' || (f.interaction_id / 40), f.interaction_id, f.start_ts, f.end_ts, f.start_date_time_key,
       f.end_date_time_key, f.end_ts - f.start_ts, 0, f.create_audit_key, f.update_audit_key
  FROM interaction_fact f;
INSERT INTO sm_res_session_fact (sm_res_session_fact_key, data_source_key, tenant_key, resource_key, media_type_key,
       login_session_guid, start_ts, end_ts, start_date_time_key, end_date_time_key, total_duration, active_flag,
       create_audit_key, update_audit_key)
SELECT min(f.interaction_id), 1, 101, (1::bigint << 32) | (1 + min(f.interaction_id) %% 500), 1,
       'sess-' || (f.interaction_id / 40), min(f.start_ts), max(f.end_ts), min(f.start_date_time_key),
       max(f.end_date_time_key), max(f.end_ts) - min(f.start_ts), 0, min(f.create_audit_key), min(f.create_audit_key)
  FROM interaction_fact f GROUP BY f.interaction_id / 40;
"""


def _with_db(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


def fill_synthetic(dsn: str, n: int, days: float) -> None:
    span = int(days * 86400)
    with psycopg.connect(dsn) as conn:
        params = {"start": START, "hours": span // 3600 + 1, "n": n, "span": span, "names": NAMES}
        for stmt in filter(str.strip, FILL.split(";\n")):
            conn.execute(stmt, params)
        conn.execute("SELECT gim_fill_calendar('date_time', 'GMT', %s, %s)", (START, START + span + 86400))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def fill_pipeline(dsn: str, idb: str, n: int, days: float, cfg: Path) -> None:
    from gim_jobs.db.connect import DataSource
    from gim_jobs.idb import simulate_batch

    migrate(idb, "idb")
    simulate_batch(idb, interactions=n, start=START, span_seconds=int(days * 86400), write_truth=False)
    for job in ("extract", "transform"):
        run_job(job, infomart_dsn=dsn, sources=[DataSource("idb", idb)], config_path=cfg)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def baseline(dsn: str, out: Path) -> tuple[float, int]:
    """COPY every exported table's rows into one zip on one connection; (seconds, rows)."""
    t0 = time.perf_counter()
    rows = 0
    with psycopg.connect(dsn) as conn, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        rels = conn.execute("SELECT table_name, kind FROM gim_export_relations(false)").fetchall()
        lo, hi = conn.execute("SELECT min(start_ts), max(greatest(start_ts, end_ts)) FROM interaction_fact").fetchone()
        for table, kind in rels:
            where = (sql.SQL("date_time_key BETWEEN {} AND {}").format(lo - lo % 900, hi - hi % 900)
                     if kind == "calendar" else sql.SQL("true"))
            query = sql.SQL("COPY (SELECT * FROM {} WHERE {}) TO STDOUT (FORMAT csv, HEADER)").format(
                sql.Identifier(table), where)
            with conn.cursor() as cur, zf.open(f"{table}.csv", "w", force_zip64=True) as dst:
                with cur.copy(query) as cp:
                    for data in cp:
                        dst.write(data)
                rows += cur.rowcount
    return time.perf_counter() - t0, rows


def run_export(dsn: str, root: Path, name: str, opts: dict[str, str]) -> tuple[float, int, int]:
    from conftest import write_config

    outdir = root / name
    cfg = write_config(root / f"{name}.ini", {"gim-export": opts}, outdir)
    t0 = time.perf_counter()
    res = run_job("export", run_type="scheduled", infomart_dsn=dsn, sources=[], config_path=cfg)
    seconds = time.perf_counter() - t0
    shutil.rmtree(outdir, ignore_errors=True)
    return seconds, res.rows, len(res.details["folders"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--pipeline", action="store_true", help="fill the facts with simulator + extract + transform")
    ap.add_argument("--admin-dsn", default=os.environ.get("GIM_TEST_DSN"))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args, _ = ap.parse_known_args(argv)  # ./dev bench passes the same arguments to every benchmark

    tmp = Path(tempfile.mkdtemp(prefix="gim-bench-export-"))
    admin = args.admin_dsn
    embedded_pg = None
    if not admin:
        from gim_jobs.db import embedded

        embedded_pg = tmp / "pg"
        admin = embedded.server_uri(embedded_pg, "postgres")
    names = [f"gimbench_exp_{uuid.uuid4().hex[:8]}", f"gimbench_idb_{uuid.uuid4().hex[:8]}"]
    with psycopg.connect(admin, autocommit=True) as conn:
        for n in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(n)))
    dsn, idb = (_with_db(admin, n) for n in names)
    try:
        from conftest import write_config

        migrate(dsn, "infomart")
        t0 = time.perf_counter()
        if args.pipeline:
            fill_pipeline(dsn, idb, args.interactions, args.days, write_config(tmp / "etl.ini", None, tmp / "x"))
        else:
            fill_synthetic(dsn, args.interactions, args.days)
        fill_s = time.perf_counter() - t0
        base_s, base_rows = baseline(dsn, tmp / "baseline.zip")
        runs = {
            "default": run_export(dsn, tmp, "default", {}),
            "one_folder": run_export(dsn, tmp, "one", {"chunk-size-seconds": str(10**9)}),  # one window
            "latin1": run_export(dsn, tmp, "latin1", {"output-files-encoding": "latin1"}),
        }
        base_rps = base_rows / base_s
        result = {
            "interactions": args.interactions, "days": args.days, "fill": "pipeline" if args.pipeline else "synthetic",
            "fill_seconds": round(fill_s, 2),
            "baseline_seconds": round(base_s, 2), "baseline_rows": base_rows, "baseline_rows_per_s": round(base_rps),
            "baseline_zip_bytes": (tmp / "baseline.zip").stat().st_size,
        }
        for key, (s, rows, folders) in runs.items():
            result[key] = {"seconds": round(s, 2), "rows": rows, "folders": folders, "rows_per_s": round(rows / s),
                           "ratio_to_baseline": round((rows / s) / base_rps, 2)}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"Job_ExportGIM: {args.interactions:,} interactions over {args.days:g} days "
                  f"({result['fill']} facts, filled in {fill_s:.1f} s)")
            print(f"  baseline COPY -> zip, 1 connection: {base_s:.2f} s  {base_rows:,} rows  {base_rps:,.0f} rows/s")
            for key, r in ((k, result[k]) for k in runs):
                print(f"  export {key:<10} {r['seconds']:.2f} s  {r['rows']:,} rows in {r['folders']} folder(s)  "
                      f"{r['rows_per_s']:,} rows/s  ratio {r['ratio_to_baseline']}")
            print("target: ratio >= 0.5")
        return 0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for n in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(n)))
        if embedded_pg is not None:
            from gim_jobs.db import embedded

            embedded.stop_server(embedded_pg)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
