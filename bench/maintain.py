"""Benchmark: Job_MaintainGIM purge, whole-partition DROP against batched DELETE, and preemption latency.

    .venv/bin/python bench/maintain.py [--interactions 1000000] [--days 30] [--trials 5] [--json]

Creates two fresh Info Marts (on ``--admin-dsn`` / ``GIM_TEST_DSN``, else an embedded PostgreSQL in a
temporary folder) holding the same synthetic facts: N interactions spread evenly over ``--days`` days
ending at today's UTC midnight, per interaction one interaction_fact row, 2-3
interaction_resource_fact rows and one sm_res_state_fact row, one sm_res_session_fact row per 40.
The fact tables are partitioned (migrations 008, 010); in one mart daily partitions are made before
the fill, in the other every row sits in the default partition (a mart whose partitions were never
made: purging it costs what purging a plain table costs). Then, in the same run:

* purge of the oldest day (``days-to-keep-gim-facts`` = days - 1, cutoff = the end of the first day,
  the same rows in both marts) with Job_MaintainGIM's own purge code: whole partitions dropped in the
  partitioned mart, ``DELETE`` of 10 000 rows per transaction in the default partition of the other.
  A DELETE only marks
  rows dead: the space and the index entries come back with the VACUUM that follows (which scans
  every index of the whole table), while DROP frees them at once. Printed: seconds and WAL bytes of
  DROP, of DELETE and of that VACUUM, and the ratios DELETE / DROP and (DELETE + VACUUM) / DROP
  (target >= 100);
* preemption latency: a scheduled Job_MaintainGIM purging the plain mart (10 000-row batches, no test
  delays) is preempted with ``gim_jobs.control.preempt`` (what a due ETL cycle calls, R9) at a random
  moment, ``--trials`` times; printed: seconds from the ``preempt()`` call until the job has stopped
  and let go (median, max; target <= 5).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gim_jobs.config import load_config  # noqa: E402
from gim_jobs.control import JobStopped, preempt, run_job, running_jobs  # noqa: E402
from gim_jobs.db.migrate import migrate  # noqa: E402
from gim_jobs.jobs import maintain  # noqa: E402
from tests.conftest import write_config  # noqa: E402

DAY = 86400

FILL = [
    """INSERT INTO interaction_fact (interaction_id, data_source_key, tenant_key, media_type_key, interaction_type_key,
              media_server_ixn_guid, media_server_root_ixn_guid, source_address, target_address, status, start_ts,
              end_ts, start_date_time_key, end_date_time_key, active_flag, create_audit_key, update_audit_key)
       SELECT i, 1, 101, 1 + i %% 3, 1 + i %% 2, 'ixn-' || i, 'ixn-' || i, '+1555' || (1000000 + i), 'queue' || i %% 20,
              0, s, s + d, s - s %% 900, (s + d) - (s + d) %% 900, 0, 1, 1
         FROM generate_series(1::bigint, %(n)s) i,
              LATERAL (SELECT %(start)s + (i * %(span)s) / (%(n)s + 1) AS s, 60 + (i * 7919) %% 900 AS d) x""",
    """INSERT INTO interaction_resource_fact (interaction_resource_id, interaction_id, data_source_key, tenant_key,
              media_type_key, interaction_type_key, resource_key, last_queue_resource_key, technical_descriptor_key,
              party_guid, media_server_ixn_guid, start_ts, end_ts, start_date_time_key, end_date_time_key,
              ring_duration, talk_duration, hold_duration, mediation_duration, ring_count, talk_count,
              active_flag, create_audit_key, update_audit_key)
       SELECT f.interaction_id * 4 + p, f.interaction_id, 1, 101, f.media_type_key, f.interaction_type_key,
              (1::bigint << 32) | (1 + (f.interaction_id * 31 + p) %% 500), (2::bigint << 32) | (f.interaction_id %% 20),
              1 + (f.interaction_id + p) %% 55, 'party-' || f.interaction_id || '-' || p, f.media_server_ixn_guid,
              f.start_ts + p * 5, f.end_ts, f.start_date_time_key, f.end_date_time_key, 5 + p, 40 + p, p, 3, 1, 1,
              0, 1, 1
         FROM interaction_fact f, generate_series(0, 1 + f.interaction_id %% 2) p""",
    """INSERT INTO sm_res_state_fact (sm_res_state_fact_key, data_source_key, tenant_key, resource_key, media_type_key,
              resource_state_key, login_session_guid, source_id, start_ts, end_ts, start_date_time_key,
              end_date_time_key, total_duration, active_flag, create_audit_key, update_audit_key)
       SELECT f.interaction_id, 1, 101, (1::bigint << 32) | (1 + f.interaction_id %% 500), 1, 1 + f.interaction_id %% 4,
              'sess-' || (f.interaction_id / 40), f.interaction_id, f.start_ts, f.end_ts, f.start_date_time_key,
              f.end_date_time_key, f.end_ts - f.start_ts, 0, 1, 1
         FROM interaction_fact f""",
    """INSERT INTO sm_res_session_fact (sm_res_session_fact_key, data_source_key, tenant_key, resource_key,
              media_type_key, login_session_guid, start_ts, end_ts, start_date_time_key, end_date_time_key,
              total_duration, active_flag, create_audit_key, update_audit_key)
       SELECT min(f.interaction_id), 1, 101, (1::bigint << 32) | (1 + min(f.interaction_id) %% 500), 1,
              'sess-' || (f.interaction_id / 40), min(f.start_ts), max(f.end_ts), min(f.start_date_time_key),
              max(f.end_date_time_key), max(f.end_ts) - min(f.start_ts), 0, 1, 1
         FROM interaction_fact f GROUP BY f.interaction_id / 40""",
]


def _with_db(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


def fill(dsn: str, *, partitioned: bool, n: int, start: int, days: int) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if partitioned:
            for table in maintain.FACT_TABLES:
                for lo in range(start, start + (days + 1) * DAY, DAY):
                    conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(maintain._partition_name(table, lo)), sql.Identifier(table),
                        sql.Literal(lo), sql.Literal(lo + DAY)))
        for stmt in FILL:
            conn.execute(stmt, {"n": n, "start": start, "span": days * DAY})
        conn.execute("VACUUM ANALYZE")
        checkpoint(conn)
    return time.perf_counter() - t0


def checkpoint(conn: psycopg.Connection) -> None:
    """Write out what the fill left dirty, so neither purge pays for the fill: after a bulk write the
    checkpointer's request queue is full, and removing files (DROP) waits on it in 10 ms sleeps.
    (A nightly purge after a day of ETL cycles finds the queue drained.) Needs superuser or
    pg_checkpoint; without, the figures include that wait."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        print("note: CHECKPOINT not allowed for this user: the DROP figure includes the fill's flush", flush=True)


def evict_caches(pgdata: Path, dsns: list[str]) -> int:
    """Make the marts' data cold, as a month-old day is in a real mart: stop the embedded server
    (empties shared_buffers), drop its files from the OS page cache (posix_fadvise DONTNEED: no root
    needed), start it again and read the system catalogs back in (a real server has them cached;
    the fact data it has not). Returns the files evicted."""
    from gim_jobs.db import embedded

    embedded.stop_server(pgdata)
    os.sync()
    n = 0
    for root, _dirs, files in os.walk(pgdata):
        for f in files:
            try:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    embedded.server_uri(pgdata)
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for (table,) in conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace "
                                         "AND relkind = 'r'").fetchall():
                conn.execute(sql.SQL("SELECT count(*) FROM pg_catalog.{}").format(sql.Identifier(table)))
    return n


def fact_rows(dsn: str, where: str = "true") -> int:
    with psycopg.connect(dsn) as conn:
        return sum(conn.execute(f"SELECT count(*) FROM {t} WHERE {where}").fetchone()[0] for t in maintain.FACT_TABLES)


class TimedConnection(psycopg.Connection):
    """Adds up the time spent in the statements that remove rows (``DROP TABLE``, ``DELETE``)."""

    removing = 0.0

    def execute(self, query, params=None, **kw):  # type: ignore[override]
        text = query.as_string(self) if isinstance(query, sql.Composable) else str(query)
        if not text.lstrip().startswith(("DROP TABLE", "DELETE")):
            return super().execute(query, params, **kw)
        t0 = time.perf_counter()
        try:
            return super().execute(query, params, **kw)
        finally:
            self.removing += time.perf_counter() - t0


def purge_facts(dsn: str, cfg: Path, now: float) -> tuple[float, int, dict, float]:
    """Job_MaintainGIM's purge of the fact tables (maintain.FACT_TABLES), timed (no job bookkeeping, no test knobs).
    Returns seconds, WAL bytes written, the per-table details, and the seconds of that spent in the
    DROP / DELETE statements themselves (the rest: finding partitions, the purge history rows and,
    for DROP, the commit that truncates the dropped files)."""
    ctx = SimpleNamespace(config=load_config(cfg), log=logging.getLogger("bench.maintain"), job_id=uuid.uuid4(),
                          deadline=None, check_stop=lambda: None, pause=lambda: None)
    out: dict = {}
    with TimedConnection.connect(dsn, autocommit=True) as conn:
        maintain.session_settings(conn)
        m = maintain._Maint(ctx, conn, now, maintain.BATCH_ROWS, maintain.UNIT_BATCH)  # type: ignore[arg-type]
        lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        t0 = time.perf_counter()
        maintain._purge_tables(m, maintain.PURGE_SPECS[: len(maintain.FACT_TABLES)], out, 0,
                               set(maintain.FACT_TABLES))
        seconds = time.perf_counter() - t0
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)::bigint", (lsn,)).fetchone()[0]
        return seconds, int(wal), out, conn.removing


def vacuum_facts(dsn: str) -> tuple[float, int]:
    """What the DELETE leaves to do before its space and index entries are reusable: VACUUM."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        t0 = time.perf_counter()
        for table in maintain.FACT_TABLES:
            conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(table)))
        seconds = time.perf_counter() - t0
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)::bigint", (lsn,)).fetchone()[0]
        return seconds, int(wal)


def preempt_latency(dsn: str, cfg: Path, trials: int) -> list[float]:
    """Seconds from preempt() to a stopped job, per trial; trials stop early once a run finishes
    before it was preempted (nothing left to purge)."""
    lat: list[float] = []
    for _ in range(trials):
        box: dict = {}

        def job(box: dict = box) -> None:
            try:
                box["out"] = run_job("maintain", infomart_dsn=dsn, sources=[], config_path=cfg, run_type="scheduled",
                                     params={"steps": "purge"})
            except JobStopped as exc:
                box["stopped"] = exc
            except Exception as exc:  # noqa: BLE001 - reported below
                box["error"] = exc

        t = threading.Thread(target=job)
        t.start()
        while not running_jobs(dsn) and t.is_alive():
            time.sleep(0.01)
        time.sleep(random.uniform(0.1, 1.0))
        t0 = time.perf_counter()
        stopped = preempt(dsn, "Job_MaintainGIM", "bench: ETL cycle due (R9)", timeout=60)
        elapsed = time.perf_counter() - t0
        t.join()
        if "error" in box:
            raise SystemExit(f"the maintenance run failed: {box['error']}")
        if not stopped or "stopped" not in box:
            break
        lat.append(elapsed)
    if not lat:
        raise SystemExit("the maintenance run finished before it was preempted: use more --interactions")
    return lat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--trials", type=int, default=5, help="preemption trials")
    ap.add_argument("--admin-dsn", default=os.environ.get("GIM_TEST_DSN"))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--warm", action="store_true",
                    help="purge right after the fill, with the data still in memory (default on the embedded "
                         "server: caches emptied first, as a month-old day is cold in a real mart)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="gim-bench-maintain-"))
    admin = args.admin_dsn
    embedded_pg = None
    if not admin:
        from gim_jobs.db import embedded

        embedded_pg = tmp / "pg"
        admin = embedded.server_uri(embedded_pg, "postgres")
    tag = uuid.uuid4().hex[:8]
    names = [f"gim_bench_maint_part_{tag}", f"gim_bench_maint_plain_{tag}"]
    with psycopg.connect(admin, autocommit=True) as conn:
        for n in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(n)))
    part, plain = (_with_db(admin, n) for n in names)
    try:
        today = int(time.time()) // DAY * DAY
        start = today - args.days * DAY
        for dsn in (part, plain):
            migrate(dsn, "infomart")
        t_fill_part = fill(part, partitioned=True, n=args.interactions, start=start, days=args.days)
        t_fill_plain = fill(plain, partitioned=False, n=args.interactions, start=start, days=args.days)
        total = fact_rows(plain)
        day_rows = fact_rows(plain, f"start_date_time_key < {start + DAY}")
        keep = args.days - 1  # cutoff = now - keep days = the end of the first day
        cfg = write_config(tmp / "gim.ini", {"gim-etl": {"days-to-keep-gim-facts": str(keep),
                                                         "days-to-keep-cfg-facts": str(keep),
                                                         "days-to-keep-gidb-facts": str(min(14, keep)),
                                                         "days-to-keep-active-facts": str(min(7, keep))}})
        cold = embedded_pg is not None and not args.warm
        if cold:  # (after the counts above, which read every row)
            evict_caches(embedded_pg, [part, plain])
        t_drop, wal_drop, out_drop, s_drop = purge_facts(part, cfg, today)
        t_delete, wal_delete, out_delete, s_delete = purge_facts(plain, cfg, today)
        t_vacuum, wal_vacuum = vacuum_facts(plain)
        left_part, left_plain = fact_rows(part), fact_rows(plain)
        assert left_part == left_plain == total - day_rows, (left_part, left_plain, total, day_rows)
        # (rows_in_partitions is the planner's count of the dropped partitions)
        assert abs(sum(v["rows_in_partitions"] for v in out_drop.values()) - day_rows) <= day_rows // 50
        assert sum(v["rows"] for v in out_delete.values()) == day_rows
        ratio = t_delete / t_drop
        ratio_reclaimed = (t_delete + t_vacuum) / t_drop
        ratio_statements = (s_delete + t_vacuum) / s_drop
        mb = 1 << 20
        if not args.json:
            print(f"mart: {args.interactions} interactions over {args.days} days = {total} fact rows "
                  f"(fill {t_fill_part:.0f} s partitioned, {t_fill_plain:.0f} s default partition only)")
            print(f"purge of the oldest day, {day_rows} rows in {len(maintain.FACT_TABLES)} fact tables, "
                  + ("caches emptied first (--warm: not):" if cold else "data still in memory after the fill:"))
            print(f"  partition DROP            {t_drop:8.4f} s  WAL {wal_drop / mb:8.2f} MB  "
                  f"({sum(len(v['partitions']) for v in out_drop.values())} partitions; space freed)")
            print(f"  batched DELETE            {t_delete:8.3f} s  WAL {wal_delete / mb:8.2f} MB  "
                  f"({sum(v['batches'] for v in out_delete.values())} transactions of <= {maintain.BATCH_ROWS} rows)")
            print(f"  + VACUUM to free it       {t_vacuum:8.3f} s  WAL {wal_vacuum / mb:8.2f} MB")
            print(f"  ratio DELETE / DROP = {ratio:.1f}x; (DELETE + VACUUM) / DROP = {ratio_reclaimed:.1f}x "
                  f"(target >= 100x); WAL {(wal_delete + wal_vacuum) / max(wal_drop, 1):.0f}x", flush=True)
            print(f"  the statements alone: DROP TABLE x{len(sum((v['partitions'] for v in out_drop.values()), []))} "
                  f"{s_drop:.4f} s; DELETE {s_delete:.3f} s (+ VACUUM {t_vacuum:.3f} s); "
                  f"(DELETE + VACUUM) / DROP = {ratio_statements:.1f}x; the rest of each purge (finding the "
                  f"partitions, purge history rows; for DROP also its commit, which truncates the files): "
                  f"{t_drop - s_drop:.4f} s / {t_delete - s_delete:.4f} s", flush=True)
        # preemption: purge most of the plain mart, stopped by preempt() at random moments
        cfg2 = write_config(tmp / "gim2.ini", {"gim-etl": {"days-to-keep-gim-facts": "5", "days-to-keep-cfg-facts": "5",
                                                           "days-to-keep-gidb-facts": "5"}})
        lat = preempt_latency(plain, cfg2, args.trials)
        result = {
            "interactions": args.interactions, "days": args.days, "cold_cache": cold, "fact_rows": total, "purged_rows": day_rows,
            "fill_seconds": {"partitioned": round(t_fill_part, 1), "plain": round(t_fill_plain, 1)},
            "drop_seconds": round(t_drop, 4), "delete_seconds": round(t_delete, 3),
            "vacuum_seconds": round(t_vacuum, 3), "ratio_delete_vacuum_over_drop": round(ratio_reclaimed, 1),
            "wal_bytes": {"drop": wal_drop, "delete": wal_delete, "vacuum": wal_vacuum},
            "delete_batches": sum(v["batches"] for v in out_delete.values()),
            "partitions_dropped": sum(len(v["partitions"]) for v in out_drop.values()),
            "ratio_delete_over_drop": round(ratio, 1),
            "statement_seconds": {"drop": round(s_drop, 4), "delete": round(s_delete, 3)},
            "ratio_statements_delete_vacuum_over_drop": round(ratio_statements, 1),
            "preempt_latency_seconds": {"median": round(statistics.median(lat), 3), "max": round(max(lat), 3),
                                        "all": [round(x, 3) for x in lat]},
        }
        if args.json:
            print(json.dumps(result))
        else:
            print(f"preemption latency, preempt() -> maintenance stopped, {len(lat)} trials: "
                  f"median {statistics.median(lat):.3f} s, max {max(lat):.3f} s (target <= 5 s)")
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
