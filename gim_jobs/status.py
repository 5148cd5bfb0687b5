"""What `gim status` and `gim history` show: the same facts the Info Mart Manager page will read."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from gim_jobs.config import check_config
from gim_jobs.db.connect import connect
from gim_jobs.registry import JOBS


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])


def history(dsn: str, *, job: str | None = None, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Newest job runs first, optionally filtered by job name and status."""
    q = """SELECT job_name, status, run_type, start_time, end_time,
                  extract(epoch FROM coalesce(end_time, now()) - start_time) AS seconds,
                  row_count, dag_id, run_id, message
             FROM ctl_etl_history
            WHERE (%(job)s::text IS NULL OR job_name = %(job)s)
              AND (%(status)s::text IS NULL OR status = %(status)s)
            ORDER BY start_time DESC, id DESC LIMIT %(limit)s"""
    with connect(dsn, autocommit=True, app="gim-status") as conn:
        cur = conn.execute(q, {"job": job, "status": status, "limit": limit})
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def status(dsn: str, config_path: Any = None) -> dict[str, Any]:
    """A snapshot: configuration check, running jobs, last run of each job, extraction marks, discards."""
    from gim_jobs.control import running_jobs

    chk = check_config(config_path)
    out: dict[str, Any] = {
        "config": {"path": str(chk.path), "ok": chk.ok, "errors": [str(p) for p in chk.errors],
                   "warnings": [str(p) for p in chk.warnings]},
        "now": dt.datetime.now(dt.UTC),
    }
    out["running"] = running_jobs(dsn)
    with connect(dsn, autocommit=True, app="gim-status") as conn:
        last = {}
        for jd in JOBS.values():
            row = conn.execute(
                """SELECT status, start_time, end_time, row_count, message FROM ctl_etl_history
                    WHERE job_name = %s AND status <> 'RUNNING' ORDER BY start_time DESC LIMIT 1""",
                (jd.name,),
            ).fetchone()
            ok = conn.execute(
                """SELECT max(end_time) FROM ctl_etl_history WHERE job_name = %s AND status = 'COMPLETED'""",
                (jd.name,),
            ).fetchone()[0]
            last[jd.name] = {
                "last_status": row[0] if row else None, "last_start": row[1] if row else None,
                "last_end": row[2] if row else None, "last_rows": row[3] if row else None,
                "last_message": row[4] if row else None, "last_success": ok,
            }
        out["jobs"] = last
        if _table_exists(conn, "ctl_extract_hwm"):
            cur = conn.execute(
                """SELECT ds.name AS data_source, h.* FROM ctl_extract_hwm h
                     LEFT JOIN ctl_data_source ds USING (data_source_key) ORDER BY 1, h.table_name"""
            )
            cols = [c.name for c in cur.description]
            out["extraction"] = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        if _table_exists(conn, "stg_transform_discards"):
            out["discards"] = conn.execute("SELECT count(*) FROM stg_transform_discards").fetchone()[0]
        if _table_exists(conn, "interaction_fact"):
            out["interaction_facts"] = conn.execute("SELECT count(*) FROM interaction_fact").fetchone()[0]
    return out
