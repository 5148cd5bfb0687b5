"""What the Info Mart Manager page, `gim status`, `gim history` and `gim schedule --svg` show.

One set of functions for the web page (``plugins/gim_ui.py``) and the CLI, so both always say the
same thing:

* :func:`status` -- is the mart current? Configuration check, running jobs, last run and last
  success of every job, failures of the last 24 hours, extraction high-water marks with the data
  lag per source and table and the ``delayed-data-threshold`` alarm, discards, rows waiting in the
  transform, pending aggregation, rows in the default partitions (outside every time partition,
  R25), and what the scheduler starts next.
* :func:`history` -- ``ctl_etl_history``, newest first, filtered by job and status, each row with
  the Airflow UI paths of its run and task log.
* :func:`day_view` -- one local day: the planned launches, the runs recorded that day, and the
  picture (:mod:`gim_jobs.timeline`).

Tables that later migrations add are looked up with ``to_regclass`` first, so this works on any
schema version (a missing table shows as ``None`` / ``"n/a"``).

Data lag: ``ctl_extract_hwm.max_ts`` is the newest data time (UTC epoch seconds) extracted per
(source, table, role); the lag is now minus that. A source's *data clock* is the newest ``max_ts``
of its event (``g_*``) tables -- the clock the transform uses -- and the source is in alarm when
its lag exceeds ``[gim-etl] delayed-data-threshold`` (Genesys logs 55-20110 then). Per table the
lag is shown too; configuration tables (``gc*``) change rarely, so they never raise the alarm.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import psycopg

from gim_jobs.config import check_config
from gim_jobs.db.connect import connect
from gim_jobs.registry import JOBS, job_def

__all__ = [
    "DEFAULT_DELAYED_DATA_THRESHOLD",
    "JOB_STATUSES",
    "PENDING_AGGREGATION_TABLE",
    "airflow_paths",
    "day_history",
    "day_view",
    "history",
    "status",
]

JOB_STATUSES = ("RUNNING", "COMPLETED", "FAILED", "STOPPED", "REFUSED", "SKIPPED")
"""The values of ``ctl_etl_history.status`` (see migration 001)."""

DEFAULT_DELAYED_DATA_THRESHOLD = 900
"""``[gim-etl] delayed-data-threshold`` when the configuration cannot be read."""

PENDING_AGGREGATION_TABLE = "ctl_aggregate_pending"
"""The aggregation job's queue of intervals still to (re-)aggregate, one row per interval; shown as
"n/a" until a migration creates it."""

DEFAULT_PARTITION_COUNT_LIMIT = 100_000
"""``gim status`` counts the rows of each default partition up to this many ("at least")."""

_HISTORY_COLUMNS = """id, job_id, job_name, status, run_type, start_time, end_time,
       extract(epoch FROM coalesce(end_time, now()) - start_time)::float8 AS seconds,
       row_count, dag_id, run_id, host, message"""


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])


def _job_name(job: str | None) -> str | None:
    """A job filter given as key, Genesys name or DAG id -> the Genesys name (``UnknownJob`` if none)."""
    return job_def(job).name if job else None


def airflow_paths(row: dict[str, Any]) -> dict[str, str] | None:
    """Paths (relative to the Airflow UI root) of the run and the task log of a history row.

    Airflow 3 UI routes ``dags/:dagId/runs/:runId`` and ``dags/:dagId/runs/:runId/tasks/:taskId``
    (the task page opens on its log). Rows of ``gim run`` (no DAG run) have none.
    """
    dag_id, run_id = row.get("dag_id"), row.get("run_id")
    if not dag_id or not run_id:
        return None
    run = f"dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"
    out = {"run": run}
    task_id = row.get("task_id")
    if task_id:
        out["log"] = f"{run}/tasks/{quote(str(task_id), safe='')}"
    return out


def _decorate(row: dict[str, Any]) -> dict[str, Any]:
    jd = next((j for j in JOBS.values() if j.name == row.get("job_name")), None)
    row["task_id"] = jd.key if jd else None
    row["airflow"] = airflow_paths(row)
    return row


def history(
    dsn: str,
    *,
    job: str | None = None,
    status: str | None = None,
    limit: int = 20,
    offset: int = 0,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Job runs from ``ctl_etl_history``, newest first.

    ``job`` (key, Genesys name or DAG id; ``UnknownJob`` if it is none of the six) and ``status``
    (case-insensitive) filter; ``since``/``until`` keep the runs overlapping ``[since, until)``.
    Each row also has ``task_id`` and ``airflow`` (``{"run", "log"}`` UI paths, or None).
    """
    q = f"""SELECT {_HISTORY_COLUMNS}
              FROM ctl_etl_history
             WHERE (%(job)s::text IS NULL OR job_name = %(job)s)
               AND (%(status)s::text IS NULL OR status = %(status)s)
               AND (%(until)s::timestamptz IS NULL OR start_time < %(until)s)
               AND (%(since)s::timestamptz IS NULL OR coalesce(end_time, 'infinity') >= %(since)s)
             ORDER BY start_time DESC, id DESC
             LIMIT %(limit)s OFFSET %(offset)s"""
    params = {"job": _job_name(job), "status": status.strip().upper() if status else None,
              "since": since, "until": until, "limit": max(0, int(limit)), "offset": max(0, int(offset))}
    with connect(dsn, autocommit=True, app="gim-status") as conn:
        cur = conn.execute(q, params)
        cols = [c.name for c in cur.description]
        return [_decorate(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]


def day_history(dsn: str, day: dt.date, tz: str, *, limit: int = 5000) -> list[dict[str, Any]]:
    """Every run that overlaps local ``day`` in zone ``tz``, newest first."""
    from gim_jobs import schedule

    d0 = schedule.local_time(day, 0, tz)
    d1 = schedule.local_time(day + dt.timedelta(days=1), 0, tz)
    return history(dsn, since=d0, until=d1, limit=limit)


# ---------------------------------------------------------------------------------------------
# status()
# ---------------------------------------------------------------------------------------------

_JOBS_SQL = """
SELECT j.name, l.status, l.start_time, l.end_time, l.row_count, l.message, l.run_type, l.dag_id, l.run_id,
       s.start_time AS success_start, s.end_time AS success_end,
       (SELECT count(*) FROM ctl_etl_history f
         WHERE f.job_name = j.name AND f.start_time >= %(since)s AND f.status = 'FAILED') AS failed_24h
  FROM unnest(%(names)s::text[]) WITH ORDINALITY AS j(name, ord)
  LEFT JOIN LATERAL (
        SELECT status, start_time, end_time, row_count, message, run_type, dag_id, run_id
          FROM ctl_etl_history h
         WHERE h.job_name = j.name AND h.status <> 'RUNNING'
         ORDER BY h.start_time DESC, h.id DESC LIMIT 1) l ON true
  LEFT JOIN LATERAL (
        SELECT start_time, end_time FROM ctl_etl_history h
         WHERE h.job_name = j.name AND h.status = 'COMPLETED'
         ORDER BY h.start_time DESC, h.id DESC LIMIT 1) s ON true
 ORDER BY j.ord"""

_HWM_SQL = """
SELECT coalesce(ds.name, 'source ' || h.data_source_key) AS data_source, h.data_source_key, h.table_name,
       h.role, h.hwm_useq, h.max_ts, h.row_count, h.updated
  FROM ctl_extract_hwm h
  LEFT JOIN ctl_data_source ds USING (data_source_key)
 ORDER BY 1, h.table_name, h.role"""


def _epoch(ts: int | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(int(ts), dt.UTC)


def _is_event_table(table: str) -> bool:
    """IDB ``g_*`` tables hold events (interactions, parties, agent states); ``gc*`` configuration."""
    return table.startswith("g_")


def _extraction(conn: psycopg.Connection, now: dt.datetime, threshold: int) -> tuple[list, list]:
    cur = conn.execute(_HWM_SQL)
    cols = [c.name for c in cur.description]
    streams = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    sources: dict[str, dict[str, Any]] = {}
    for s in streams:
        s["event_table"] = _is_event_table(s["table_name"])
        s["newest_event"] = _epoch(s["max_ts"])
        s["lag_seconds"] = (
            None if s["newest_event"] is None else max(0, int((now - s["newest_event"]).total_seconds()))
        )
        s["late"] = bool(s["event_table"] and s["lag_seconds"] is not None and s["lag_seconds"] > threshold)
        src = sources.setdefault(s["data_source"], {
            "data_source": s["data_source"], "data_source_key": s["data_source_key"], "newest_event": None,
            "last_extracted": None, "tables": 0, "rows_extracted": 0,
        })
        src["tables"] += 1
        src["rows_extracted"] += int(s["row_count"] or 0)
        if src["last_extracted"] is None or s["updated"] > src["last_extracted"]:
            src["last_extracted"] = s["updated"]
        if s["event_table"] and s["newest_event"] is not None and (
            src["newest_event"] is None or s["newest_event"] > src["newest_event"]
        ):
            src["newest_event"] = s["newest_event"]
    for src in sources.values():
        newest = src["newest_event"]
        src["lag_seconds"] = None if newest is None else max(0, int((now - newest).total_seconds()))
        src["alarm"] = None if newest is None else src["lag_seconds"] > threshold
    return list(sources.values()), streams


def _next_launches(cfg: Any, now: dt.datetime) -> list[dict[str, Any]]:
    """The next scheduled launch of each job (and the aggregation window open now, if any)."""
    from gim_jobs import schedule

    s = cfg.schedule
    if not s.run_scheduler:
        return []
    today = schedule.to_local(now, s.timezone).date()
    seen: dict[str, dict[str, Any]] = {}
    if s.run_aggregates:
        win = schedule.aggregate_window_at(now, s.aggregate_schedule, s.aggregate_duration, s.timezone)
        if win is not None:
            seen["Job_AggregateGIM"] = {"job": "Job_AggregateGIM", "dag_id": "gim_aggregate", "start": win[0],
                                        "end": win[1], "open_now": True, "note": "window open now (R11)"}
    for off in range(3):
        for p in schedule.plan_day(today + dt.timedelta(days=off), s):
            if p.start > now and p.job not in seen:
                seen[p.job] = {"job": p.job, "dag_id": p.dag_id, "start": p.start, "end": p.end,
                               "open_now": False, "note": p.note}
    return sorted(seen.values(), key=lambda r: r["start"])


def status(dsn: str, config_path: Any = None, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """A snapshot of the mart (see the module docstring); every time is an aware UTC datetime."""
    from gim_jobs.control import running_jobs

    now = now or dt.datetime.now(dt.UTC)
    chk = check_config(config_path)
    cfg = chk.config
    threshold = cfg.gim_etl.delayed_data_threshold if cfg else DEFAULT_DELAYED_DATA_THRESHOLD
    out: dict[str, Any] = {
        "now": now,
        "timezone": cfg.schedule.timezone if cfg else "UTC",
        "config": {"path": str(chk.path), "ok": chk.ok, "errors": [str(p) for p in chk.errors],
                   "warnings": [str(p) for p in chk.warnings]},
        "run_scheduler": cfg.schedule.run_scheduler if cfg else None,
        "delayed_data_threshold": threshold,
    }
    out["running"] = running_jobs(dsn)
    with connect(dsn, autocommit=True, app="gim-status") as conn:
        names = [jd.name for jd in JOBS.values()]
        cur = conn.execute(_JOBS_SQL, {"names": names, "since": now - dt.timedelta(hours=24)})
        jobs: dict[str, dict[str, Any]] = {}
        for r in cur.fetchall():
            (name, st, start, end, rows, msg, run_type, dag_id, run_id, ok_start, ok_end, failed) = r
            jobs[name] = {
                "last_status": st, "last_start": start, "last_end": end, "last_rows": rows,
                "last_message": msg, "last_run_type": run_type, "last_dag_id": dag_id, "last_run_id": run_id,
                "last_success": ok_end, "last_success_start": ok_start, "failed_24h": int(failed),
            }
        out["jobs"] = jobs
        out["last_success"] = {name: j["last_success"] for name, j in jobs.items()}

        if _table_exists(conn, "ctl_extract_hwm"):
            out["sources"], out["extraction"] = _extraction(conn, now, threshold)
        else:
            out["sources"], out["extraction"] = [], []
        alarms = [s for s in out["sources"] if s["alarm"]]
        known = [s for s in out["sources"] if s["alarm"] is not None]
        out["alarm"] = bool(alarms) if known else None
        out["alarm_messages"] = [
            f"delayed data: source {s['data_source']} is {s['lag_seconds']} s behind (newest event "
            f"{s['newest_event']:%Y-%m-%d %H:%M:%S} UTC), over delayed-data-threshold = {threshold} s"
            for s in alarms
        ]

        out["discards"] = None
        out["discards_by_code"] = []
        if _table_exists(conn, "stg_transform_discards"):
            out["discards"] = conn.execute("SELECT count(*) FROM stg_transform_discards").fetchone()[0]
            out["discards_by_code"] = [
                {"code": c, "rows": n} for c, n in conn.execute(
                    """SELECT code, count(*) FROM stg_transform_discards GROUP BY code
                        ORDER BY 2 DESC, 1 LIMIT 10""").fetchall()
            ]
        out["transform_waiting"] = (
            conn.execute("SELECT count(*) FROM stg_transform_pending").fetchone()[0]
            if _table_exists(conn, "stg_transform_pending") else None
        )
        out["pending_aggregation"] = (
            conn.execute(f"SELECT count(*) FROM {PENDING_AGGREGATION_TABLE}").fetchone()[0]
            if _table_exists(conn, PENDING_AGGREGATION_TABLE) else "n/a"
        )
        # rows outside every partition (R25): they never fail a cycle, but purge can only delete
        # them row by row; Job_MaintainGIM moves them into partitions on its next run
        out["default_partitions"] = {}
        if _table_exists(conn, "ctl_partitioned_table"):
            from gim_jobs.jobs.maintain import default_partition_rows

            out["default_partitions"] = default_partition_rows(dsn, limit=DEFAULT_PARTITION_COUNT_LIMIT)
        out["interaction_facts"] = (
            conn.execute("SELECT count(*) FROM interaction_fact").fetchone()[0]
            if _table_exists(conn, "interaction_fact") else None
        )
    out["next_launches"] = _next_launches(cfg, now) if cfg else []
    return out


# ---------------------------------------------------------------------------------------------
# One day: plan, runs, picture
# ---------------------------------------------------------------------------------------------


def day_view(
    day: dt.date,
    config_path: Any = None,
    *,
    dsn: str | None = None,
    now: dt.datetime | None = None,
    href: Any = None,
) -> dict[str, Any]:
    """Local ``day``: the planned launches (as ``gim schedule --json``), the runs recorded that day
    (when ``dsn`` is given) and the SVG. Raises ``ConfigError`` when the configuration has errors."""
    from gim_jobs import schedule, timeline
    from gim_jobs.config import load_config

    cfg = load_config(config_path)
    s = cfg.schedule
    plan = timeline.timeline_plan(day, s)
    today_plan = [p for p in plan if schedule.to_local(p.start, s.timezone).date() == day]
    actual = day_history(dsn, day, s.timezone) if dsn else []
    notice = None if s.run_scheduler else "run-scheduler = false: the scheduler starts nothing (R4)"
    svg = timeline.render_day_svg(plan, actual, day, s.timezone, now=now, href=href, notice=notice)
    return {
        "date": day.isoformat(), "timezone": s.timezone, "run_scheduler": s.run_scheduler,
        "launches": schedule.plan_to_json(today_plan, s.timezone),
        "plan": plan, "actual": actual, "svg": svg,
    }
