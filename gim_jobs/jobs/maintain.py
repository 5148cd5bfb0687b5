"""Job_MaintainGIM: partitions (R25), calendars (R24) and purge (R23), in small committed batches.

A run does three steps, in this order, each a series of short transactions; between two of them the
job checks for a stop (R9 preemption by a due ETL cycle, R18 operator stop, the deadline of a
scheduled run = the next ETL slot) and sleeps the test knob ``job-test-delay-seconds``. A stop
cancels the running statement (``ctx.register``) and only rolls back the batch in flight: every
committed batch leaves consistent tables, and the next run does the rest. For a scheduled run the
deadline is also armed as ``statement_timeout``, so no statement outlives it.

Partitions (R25)
    The tables listed (``enabled``) in ``ctl_partitioned_table`` are range-partitioned on a time
    column with a default partition (see migration 006 for which tables and why). For each, the job
    1. converts it if it is still a plain table (``gim_partition_convert``: the old table becomes the
       default partition);
    2. makes sure partitions of ``partitioning-interval-size-gim`` seconds (aligned on multiples of
       it from the epoch) cover now .. now + ``partitioning-ahead-range`` days, and every interval
       of the default partition's rows from the table's purge cutoff up to that horizon: rows found
       there are moved out in the same transaction (plain table created, rows moved, ATTACH). Rows
       outside (older than retention: purged below; far future: wait until they are in range) stay
       in the default partition, where ``default_partition_rows`` reports them. Existing partitions
       are never changed: after a change of the interval size new partitions fill the gaps.
    DDL runs with ``lock_timeout`` (5 s): a table locked by a long reader is skipped this run with a
    warning, never waited on for long.

Calendars (R24)
    ``date_time`` ([date-time], GMT unless configured) and one table per ``[date-time-<name>]``
    (created ``LIKE date_time``), each filled by ``gim_fill_calendar`` (one set-based INSERT per
    local year: generate_series over the UTC 15-minute keys, local attributes from AT TIME ZONE, so
    a DST day has 92 or 100 rows and no key is missing or doubled) from January 1st of
    ``date-time-start-year`` (earlier if a fact starts earlier) to ``date-time-max-days-ahead`` days
    after today; the end is pushed out only when fewer than ``date-time-min-days-ahead`` days remain.
    Missing rows anywhere in that span are added; existing rows are never changed. The options are
    recorded in ``ctl_calendar`` (``gim_ensure_date_time``, which the transform calls, reads them);
    a change of anything but the ``*-days-ahead`` / start year is logged as a warning: old rows keep
    the old values, new rows get the new ones (Genesys: only the days-ahead options are safe to
    change; to re-populate, delete the table's rows and run the job).

Purge (R23)
    Cutoff = now - days (rounded down to a 15-minute key); a row is eligible when its time is
    strictly older.

    ========================================  ====================================  ============================
    option                                    tables                                time
    ========================================  ====================================  ============================
    days-to-keep-gim-facts                    interaction_fact,                     start (start_date_time_key)
                                              interaction_resource_fact,
                                              sm_res_state_fact, sm_res_session_fact,
                                              contact_attempt_fact
    days-to-keep-gidb-facts                   gidb_g_* staging, by whole            start of the root interaction
                                              interaction (g_ir, g_call, g_party,   / login session; rows whose
                                              g_party_history) and login session    parent is gone by their own
                                              (g_login_session,                     time
                                              g_agent_state_history); g_agent_state_rc
    days-to-keep-cfg-facts                    deleted configuration: gidb_gc_*,     end (deleted_ts / end_ts)
                                              gidb_gcx_*, resource_group_fact_
                                              (outbound gidb_gc_campaign,
                                              gidb_gc_calling_list too)
    days-to-keep-gidb-facts (outbound)        gidb_g_ocs_attempt                    dialing start (dialing_ts)
    days-to-keep-discards-and-job-history     stg_transform_discards, ctl_etl_history, created / start / end time
                                              ctl_audit_log, ctl_extract_history,
                                              ctl_transform_history, ctl_purge_history,
                                              ctl_fact_deleted
    ========================================  ====================================  ============================

    * Still-active rows are protected: a fact with ``end_ts`` NULL (or a staged interaction whose
      fact is active, a login session not logged out) is purged only when it is also older than
      ``days-to-keep-active-facts`` (by then the transform has closed it). Staged rows the
      transform has not processed yet (``stg_seq`` above its high-water mark, or in its work list)
      are never purged; an interaction or session goes as a whole, in one transaction.
      ``ctl_etl_history`` rows of running jobs stay. Dimensions (``resource_``, ``group_``, ...)
      and ``ctl_export_history`` (Job_ExportGIM reconciles its folders with it) are not purged.
    * Partitioned tables: partitions entirely older than the cutoff are DROPPED, those of all fact
      tables in one transaction (one commit; a partition a reader holds longer than the lock
      timeout waits for the next run, the others go one by one); a partition holding a protected
      active row is purged row by row instead; the default partition's
      eligible rows are deleted in batches. The partition holding the cutoff is kept whole until
      it is entirely older, so on a partitioned table a row goes at most one partition interval
      after it became eligible.
    * Other tables: ``DELETE`` of at most ``batch_rows`` (10 000) rows per transaction, by ctid.
    * Every table considered gets a ``ctl_purge_history`` row (cutoff, rows deleted, partitions
      dropped with their rows - the planner's row count where the partition has statistics -,
      completed = false when the run stopped before the table was done).

Manual runs (``gim run maintain``, an Airflow trigger) take params ``batch_rows`` and
``unit_batch`` (interactions / sessions per gidb transaction), and ``steps`` (comma list of
``partitions``, ``calendars``, ``purge``; default all).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from gim_jobs.control import JobContext, JobRefused, JobResult
from gim_jobs.db.connect import connect

BATCH_ROWS = 10_000
UNIT_BATCH = 2_000
LOCK_TIMEOUT = "5s"
DAY = 86_400
STEPS = ("partitions", "calendars", "purge")
FACT_TABLES = ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact",
               "contact_attempt_fact")
HISTORY_OPTION = "days_to_keep_discards_and_job_history"

__all__ = ["run", "default_partition_rows", "partitioned_tables", "PurgeSpec", "PURGE_SPECS"]


def _opt(option: str) -> str:
    return option.replace("_", "-")


# ---------------------------------------------------------------------------------------------
# What is purged
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeSpec:
    """A table purged by its own time column: rows with ``column < cutoff`` (and ``where``)."""

    table: str
    option: str  # field of GimEtlOptions
    column: str
    kind: str = "epoch"  # or "timestamptz"
    where: str = ""  # more conditions on alias t; params: hwm, active_cut
    active: bool = False  # the active-fact protection applies (end_ts NULL)


_STAGED = "t.stg_seq <= %(hwm)s"
_OCS_STAGED = "t.stg_seq <= (SELECT h.hwm_value FROM ctl_transform_hwm h WHERE h.hwm_name = 'ocs_stage_seq')"
_CFG_GIDB = ("gc_tenant", "gc_agent", "gc_group", "gc_endpoint", "gcx_group_agent", "gcx_group_endpoint",
             "gc_skill", "gcx_skill_level")

PURGE_SPECS: list[PurgeSpec] = [
    *(PurgeSpec(t, "days_to_keep_gim_facts", "start_date_time_key", active=True) for t in FACT_TABLES),
    *(PurgeSpec(f"gidb_{t}", "days_to_keep_cfg_facts", "deleted_ts", where=_STAGED) for t in _CFG_GIDB),
    PurgeSpec("resource_group_fact_", "days_to_keep_cfg_facts", "end_ts", where="t.active_flag = 0"),
    # outbound (ICON_OCS) staging: transformed by its own high-water mark
    *(PurgeSpec(f"gidb_{t}", "days_to_keep_cfg_facts", "deleted_ts", where=_OCS_STAGED)
      for t in ("gc_campaign", "gc_calling_list")),
    PurgeSpec("gidb_g_ocs_attempt", "days_to_keep_gidb_facts", "dialing_ts",
              where=f"{_OCS_STAGED} AND (t.ended_ts IS NOT NULL OR t.dialing_ts < %(active_cut)s)"),
    PurgeSpec("stg_transform_discards", HISTORY_OPTION, "created_ts"),
    PurgeSpec("ctl_etl_history", HISTORY_OPTION, "start_time", "timestamptz", where="t.status <> 'RUNNING'"),
    PurgeSpec("ctl_audit_log", HISTORY_OPTION, "created_ts"),
    PurgeSpec("ctl_extract_history", HISTORY_OPTION, "extract_end_time", "timestamptz"),
    PurgeSpec("ctl_transform_history", HISTORY_OPTION, "transform_end_time", "timestamptz"),
    PurgeSpec("ctl_purge_history", HISTORY_OPTION, "finished", "timestamptz"),
    PurgeSpec("ctl_fact_deleted", HISTORY_OPTION, "created_ts"),
]
_SPEC_BY_TABLE = {s.table: s for s in PURGE_SPECS}

# gidb staging: rows whose interaction / session is gone already (or never came), by their own time.
# Order matters: an interaction record whose root is gone goes first, then the rows that hung on it.
GIDB_ORPHANS: list[PurgeSpec] = [
    PurgeSpec("gidb_g_ir", "days_to_keep_gidb_facts", "created_ts",
              where=f"{_STAGED} AND t.irid IS DISTINCT FROM t.root_irid AND NOT EXISTS (SELECT 1 FROM gidb_g_ir r "
                    "WHERE r.data_source_key = t.data_source_key AND r.irid = t.root_irid)"),
    PurgeSpec("gidb_g_call", "days_to_keep_gidb_facts", "created_ts",
              where=f"{_STAGED} AND NOT EXISTS (SELECT 1 FROM gidb_g_ir r "
                    "WHERE r.data_source_key = t.data_source_key AND r.irid = t.irid)"),
    PurgeSpec("gidb_g_party", "days_to_keep_gidb_facts", "created_ts",
              where=f"{_STAGED} AND NOT EXISTS (SELECT 1 FROM gidb_g_ir r "
                    "WHERE r.data_source_key = t.data_source_key AND r.irid = t.irid)"),
    PurgeSpec("gidb_g_party_history", "days_to_keep_gidb_facts", "added_ts",
              where=f"{_STAGED} AND NOT EXISTS (SELECT 1 FROM gidb_g_party p "
                    "WHERE p.data_source_key = t.data_source_key AND p.partyid = t.partyid)"),
    PurgeSpec("gidb_g_agent_state_history", "days_to_keep_gidb_facts", "added_ts",
              where=f"{_STAGED} AND NOT EXISTS (SELECT 1 FROM gidb_g_login_session s "
                    "WHERE s.data_source_key = t.data_source_key AND s.lsid = t.lsid)"),
    PurgeSpec("gidb_g_agent_state_rc", "days_to_keep_gidb_facts", "added_ts", where=_STAGED),
]

# Whole interactions: the root interaction record is older than the cutoff, transformed, not in
# the transform's work list, and its fact is no longer active (or older than the active limit).
_IXN_UNITS = """
INSERT INTO t_purge_units (dsk, key, ts)
SELECT r.data_source_key, r.irid, r.created_ts FROM gidb_g_ir r
 WHERE r.irid = r.root_irid AND r.created_ts < %(cut)s AND r.stg_seq <= %(hwm)s
   AND (r.created_ts < %(active_cut)s
        OR NOT EXISTS (SELECT 1 FROM interaction_fact f WHERE f.data_source_key = r.data_source_key
                                                         AND f.media_server_ixn_guid = r.irid AND f.end_ts IS NULL))
   AND NOT EXISTS (SELECT 1 FROM stg_transform_work w
                    WHERE w.kind = 1 AND w.data_source_key = r.data_source_key AND w.key = r.irid)
 ORDER BY r.created_ts
"""
_IXN_BATCH = [
    """CREATE TEMP TABLE t_bi ON COMMIT DROP AS
       SELECT u.dsk, u.key AS root, ir.irid, ir.stg_seq FROM t_purge_units u
         JOIN gidb_g_ir ir ON ir.data_source_key = u.dsk AND ir.root_irid = u.key
        WHERE u.n > %(lo)s AND u.n <= %(hi)s""",
    """CREATE TEMP TABLE t_bp ON COMMIT DROP AS
       SELECT i.dsk, i.root, p.partyid, p.callid, p.irid, p.stg_seq FROM t_bi i
         JOIN gidb_g_party p ON p.data_source_key = i.dsk AND p.irid = i.irid""",
    """CREATE TEMP TABLE t_bh ON COMMIT DROP AS
       SELECT p.dsk, p.root, h.id, h.stg_seq FROM t_bp p
         JOIN gidb_g_party_history h ON h.data_source_key = p.dsk AND h.partyid = p.partyid""",
    # an interaction with any row the transform has not seen yet waits for the next run
    """CREATE TEMP TABLE t_skip ON COMMIT DROP AS
       SELECT DISTINCT dsk, root FROM (SELECT dsk, root FROM t_bi WHERE stg_seq > %(hwm)s
                                       UNION ALL SELECT dsk, root FROM t_bp WHERE stg_seq > %(hwm)s
                                       UNION ALL SELECT dsk, root FROM t_bh WHERE stg_seq > %(hwm)s) x""",
]
_IXN_DELETES = [
    ("gidb_g_party_history", """DELETE FROM gidb_g_party_history x USING t_bh b
        WHERE x.data_source_key = b.dsk AND x.id = b.id
          AND NOT EXISTS (SELECT 1 FROM t_skip s WHERE s.dsk = b.dsk AND s.root = b.root)"""),
    ("gidb_g_call", """DELETE FROM gidb_g_call x USING t_bp b
        WHERE x.data_source_key = b.dsk AND x.callid = b.callid AND x.irid = b.irid AND x.stg_seq <= %(hwm)s
          AND NOT EXISTS (SELECT 1 FROM t_skip s WHERE s.dsk = b.dsk AND s.root = b.root)"""),
    ("gidb_g_party", """DELETE FROM gidb_g_party x USING t_bp b
        WHERE x.data_source_key = b.dsk AND x.partyid = b.partyid
          AND NOT EXISTS (SELECT 1 FROM t_skip s WHERE s.dsk = b.dsk AND s.root = b.root)"""),
    ("gidb_g_ir", """DELETE FROM gidb_g_ir x USING t_bi b
        WHERE x.data_source_key = b.dsk AND x.irid = b.irid
          AND NOT EXISTS (SELECT 1 FROM t_skip s WHERE s.dsk = b.dsk AND s.root = b.root)"""),
]
# Whole login sessions: logged out (or older than the active limit), transformed, not in the work list.
_SESSION_UNITS = """
INSERT INTO t_purge_units (dsk, key, ts)
SELECT s.data_source_key, s.lsid, s.login_ts FROM gidb_g_login_session s
 WHERE s.login_ts < %(cut)s AND s.stg_seq <= %(hwm)s
   AND (s.logout_ts IS NOT NULL OR s.login_ts < %(active_cut)s)
   AND NOT EXISTS (SELECT 1 FROM stg_transform_work w
                    WHERE w.kind = 2 AND w.data_source_key = s.data_source_key AND w.key = s.lsid)
   AND NOT EXISTS (SELECT 1 FROM gidb_g_agent_state_history a
                    WHERE a.data_source_key = s.data_source_key AND a.lsid = s.lsid AND a.stg_seq > %(hwm)s)
 ORDER BY s.login_ts
"""
_SESSION_DELETES = [
    ("gidb_g_agent_state_history", """DELETE FROM gidb_g_agent_state_history x USING t_purge_units u
        WHERE u.n > %(lo)s AND u.n <= %(hi)s AND x.data_source_key = u.dsk AND x.lsid = u.key"""),
    ("gidb_g_login_session", """DELETE FROM gidb_g_login_session x USING t_purge_units u
        WHERE u.n > %(lo)s AND u.n <= %(hi)s AND x.data_source_key = u.dsk AND x.lsid = u.key"""),
]


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class PurgeStat:
    table: str
    option: str
    days: int
    cutoff: int
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    rows: int = 0
    partitions: list[str] = field(default_factory=list)
    rows_in_partitions: int = 0
    batches: int = 0
    completed: bool = False
    message: str | None = None


@dataclass
class _Maint:
    ctx: JobContext
    conn: psycopg.Connection
    now: float
    batch_rows: int
    unit_batch: int
    rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def etl(self) -> Any:
        return self.ctx.config.gim_etl

    def cutoff(self, option: str) -> int:
        c = int(self.now) - int(getattr(self.etl, option)) * DAY
        return c - c % 900

    def active_cutoff(self, option: str) -> int:
        days = max(int(getattr(self.etl, option)), int(self.etl.days_to_keep_active_facts))
        c = int(self.now) - days * DAY
        return c - c % 900

    def hwm(self) -> int:
        row = self.conn.execute(
            "SELECT hwm_value FROM ctl_transform_hwm WHERE hwm_name = 'gidb_stage_seq'").fetchone()
        return int(row[0]) if row else 0

    def arm(self) -> None:
        """Before a batch: stop if asked to; make the statement end at the deadline at the latest."""
        self.ctx.check_stop()
        if self.ctx.deadline is not None:
            left = (self.ctx.deadline - dt.datetime.now(dt.UTC)).total_seconds()
            ms = max(1, int(left * 1000) + 200)
            self.conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(ms)))

    def between(self, did_work: bool = True) -> None:
        """Between two committed batches."""
        self.ctx.check_stop()
        if did_work:
            self.ctx.pause()


def session_settings(conn: psycopg.Connection) -> None:
    """The settings of the job's connection (also used by bench/maintain.py)."""
    conn.execute("SET TimeZone = 'UTC'")
    # Every batch (a DELETE, a partition DROP, a move out of the default partition) is
    # idempotent, and the WAL is written in order: commits lost in a server crash are the last
    # ones of the run, batches and the purge history rows after them together, and the next
    # run redoes them. Not waiting for the WAL flush at each commit makes a partition DROP (a
    # few catalog rows) several times cheaper; extract and transform run the same way.
    conn.execute("SET synchronous_commit = off")


def run(ctx: JobContext) -> JobResult:
    params = ctx.params or {}
    steps = [s.strip() for s in str(params.get("steps") or ",".join(STEPS)).split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise JobRefused(f"unknown maintenance step(s) {bad}; valid: {', '.join(STEPS)}")
    with connect(ctx.infomart_dsn, autocommit=True, app="gim-maintain") as conn:
        ctx.register(conn)
        session_settings(conn)
        m = _Maint(ctx, conn, time.time(), int(params.get("batch_rows") or BATCH_ROWS),
                   int(params.get("unit_batch") or UNIT_BATCH))
        for step in STEPS:
            if step in steps:
                ctx.log.info("maintenance step: %s", step)
                {"partitions": _partitions, "calendars": _calendars, "purge": _purge}[step](m)
    d = m.details
    parts = d.get("partitions", {})
    purge = d.get("purge", {})
    msg = (f"{sum(len(v.get('created', [])) for v in parts.values())} partition(s) created, "
           f"{sum(v.get('rows_moved', 0) for v in parts.values())} row(s) moved out of default partitions; "
           f"{sum(v.get('rows_added', 0) for v in d.get('calendars', {}).values())} calendar row(s) added; "
           f"{sum(v['rows'] + v['rows_in_partitions'] for v in purge.values())} row(s) purged, "
           f"{sum(len(v['partitions']) for v in purge.values())} partition(s) dropped")
    return JobResult(rows=m.rows, details=d, message=msg)


# ---------------------------------------------------------------------------------------------
# Partitions
# ---------------------------------------------------------------------------------------------


def partitioned_tables(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The registry rows of ctl_partitioned_table, with ``partitioned`` (is it one now?)."""
    cur = conn.execute(
        """SELECT r.table_name, r.key_column, r.key_type, r.enabled, c.relkind = 'p' AS partitioned
             FROM ctl_partitioned_table r LEFT JOIN pg_class c ON c.oid = to_regclass('public.' || r.table_name)
            ORDER BY r.table_name""")
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def default_partition_rows(dsn: str, *, limit: int | None = None) -> dict[str, int]:
    """Rows in the default partition of every partitioned Info Mart table (for ``gim status``):
    rows outside every partition, waiting for Job_MaintainGIM to move or purge them.

    ``limit`` bounds the work: a table's count stops at ``limit`` (read as "at least"), so
    ``gim status`` stays fast right after migration 008, when a big mart's facts all sit in the
    default partitions until the first Job_MaintainGIM run moves them out."""
    out: dict[str, int] = {}
    with connect(dsn, autocommit=True, app="gim-status") as conn:
        rows = conn.execute(
            """SELECT p.relname, d.relname FROM pg_partitioned_table pt
                 JOIN pg_class p ON p.oid = pt.partrelid JOIN pg_class d ON d.oid = pt.partdefid
                 JOIN pg_namespace n ON n.oid = p.relnamespace
                WHERE n.nspname = 'public' AND pt.partdefid <> 0 ORDER BY 1""").fetchall()
        for parent, default in rows:
            stmt = (sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(default)) if limit is None else
                    sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %(n)s) x").format(sql.Identifier(default)))
            out[parent] = int(conn.execute(stmt, {"n": limit} if limit is not None else None).fetchone()[0])
    return out


# The partitions of some tables with their bounds as PostgreSQL prints them, in one catalog query;
# parsed below. (gim_partitions() answers the same per table, but as a function called per table it
# cost ~3-15 ms a call, parsing the bounds in SQL ~8 ms for all fact tables: most of a partition
# purge's time. This costs ~1-3 ms for all fact tables together.)
_PARTITIONS_SQL = """
    SELECT p.relname::text, c.relname::text, pg_get_expr(c.relpartbound, 0)
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
     WHERE i.inhparent = ANY (%s::regclass[]) AND c.relpartbound IS NOT NULL"""
_RANGE_BOUND = re.compile(r"FOR VALUES FROM \('?([^')]*)'?\) TO \('?([^')]*)'?\)$")


def _bound_value(text: str) -> int | None:
    """A range bound printed by pg_get_expr, as epoch seconds: a bigint key, or a timestamptz key
    (printed in the session's time zone with its offset); None for MINVALUE / MAXVALUE."""
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    try:
        return int(text)
    except ValueError:
        return round(dt.datetime.fromisoformat(text).timestamp())


def _partitions_many(conn: psycopg.Connection,
                     tables: list[str]) -> dict[str, tuple[str | None, list[tuple[str, int, int]]]]:
    """Per partitioned table: its default partition (or None) and its range partitions (name, lo,
    hi) sorted by lo. A partition unbounded on one side (made by hand with MINVALUE / MAXVALUE) gets
    the far past / future there, so it is never dropped whole."""
    out: dict[str, tuple[str | None, list[tuple[str, int, int]]]] = {t: (None, []) for t in tables}
    if not tables:
        return out
    for parent, name, bound in conn.execute(_PARTITIONS_SQL, (tables,)).fetchall():
        parts = out.setdefault(parent, (None, []))[1]
        if bound == "DEFAULT":
            out[parent] = (name, parts)
            continue
        m = _RANGE_BOUND.match(bound)
        if m is None:
            raise JobRefused(f"{parent}: partition {name} is not a range partition ({bound}); "
                             "Job_MaintainGIM only manages range partitions on the table's time column")
        lo, hi = (_bound_value(v) for v in m.groups())
        parts.append((name, -(1 << 62) if lo is None else lo, (1 << 62) if hi is None else hi))
    for parts in out.values():
        parts[1].sort(key=lambda r: r[1])
    return out


def _partitions_of(conn: psycopg.Connection, table: str) -> tuple[str | None, list[tuple[str, int, int]]]:
    return _partitions_many(conn, [table])[table]


def _key_expr(column: str, kind: str) -> sql.Composable:
    """The partition key as epoch seconds."""
    if kind == "timestamptz":
        return sql.SQL("floor(extract(epoch FROM {}))::bigint").format(sql.Identifier(column))
    return sql.Identifier(column)


def _bound(value: int, kind: str) -> sql.Composable:
    if kind == "timestamptz":
        return sql.Literal(dt.datetime.fromtimestamp(value, dt.UTC))
    return sql.Literal(int(value))


def _range_cond(column: str, kind: str, lo_name: str = "lo", hi_name: str = "hi") -> sql.Composable:
    if kind == "timestamptz":
        return sql.SQL("{c} >= to_timestamp(%({lo})s) AND {c} < to_timestamp(%({hi})s)").format(
            c=sql.Identifier(column), lo=sql.SQL(lo_name), hi=sql.SQL(hi_name))
    return sql.SQL("{c} >= %({lo})s AND {c} < %({hi})s").format(c=sql.Identifier(column), lo=sql.SQL(lo_name),
                                                              hi=sql.SQL(hi_name))


def _gaps(lo: int, hi: int, existing: list[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """Parts of [lo, hi) no existing partition covers."""
    out, s = [], lo
    for _, a, b in existing:
        if b <= s or a >= hi:
            continue
        if a > s:
            out.append((s, min(a, hi)))
        s = max(s, b)
        if s >= hi:
            break
    if s < hi:
        out.append((s, hi))
    return out


def _partition_name(table: str, lo: int) -> str:
    return f"{table}_p{dt.datetime.fromtimestamp(lo, dt.UTC):%Y%m%d_%H%M}"


def _purge_spec(table: str) -> PurgeSpec | None:
    return _SPEC_BY_TABLE.get(table)


def _partitions(m: _Maint) -> None:
    size = int(m.etl.partitioning_interval_size_gim)
    horizon = int(m.now) + int(m.etl.partitioning_ahead_range) * DAY
    out: dict[str, Any] = {}
    m.details["partitions"] = out
    for reg in partitioned_tables(m.conn):
        if not reg["enabled"]:
            continue
        table, column, kind = reg["table_name"], reg["key_column"], reg["key_type"]
        info: dict[str, Any] = {"created": [], "rows_moved": 0}
        out[table] = info
        try:
            if not reg["partitioned"]:
                m.arm()
                with m.conn.transaction():
                    m.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                    m.conn.execute("SELECT gim_partition_convert(%s)", (table,))
                info["converted"] = True
                m.ctx.log.info("%s converted to a partitioned table (the old table is its default partition)", table)
                m.between()
            default, existing = _partitions_of(m.conn, table)
            spec = _purge_spec(table)
            keep_from = m.cutoff(spec.option) if spec else int(m.now) - 366 * DAY
            wanted = set(range(int(m.now) // size * size, horizon, size))
            if default:
                m.arm()
                wanted |= {int(b) for (b,) in m.conn.execute(
                    sql.SQL("SELECT DISTINCT {k} - {k} %% %(size)s FROM {d} WHERE {k} >= %(lo)s AND {k} < %(hi)s")
                    .format(k=_key_expr(column, kind), d=sql.Identifier(default)),
                    {"size": size, "lo": keep_from, "hi": horizon}).fetchall()}
            for bucket in sorted(wanted):
                for lo, hi in _gaps(bucket, bucket + size, existing):
                    m.arm()
                    moved = _create_partition(m, table, default, column, kind, lo, hi)
                    existing = sorted([*existing, (_partition_name(table, lo), lo, hi)], key=lambda r: r[1])
                    info["created"].append(_partition_name(table, lo))
                    info["rows_moved"] += moved
                    m.rows += moved
                    m.ctx.check_stop()
            m.between(did_work=bool(info["created"]))
        except psycopg.errors.LockNotAvailable as exc:
            info["skipped"] = f"lock not available within {LOCK_TIMEOUT}: {exc}".strip()
            m.ctx.log.warning("%s: partitions skipped this run, the table is locked by another session (%s)",
                              table, LOCK_TIMEOUT)
        if info["created"]:
            m.ctx.log.info("%s: %d partition(s) created, %d row(s) moved out of the default partition", table,
                           len(info["created"]), info["rows_moved"])


def _create_partition(m: _Maint, table: str, default: str | None, column: str, kind: str, lo: int,
                      hi: int) -> int:
    """Create partition [lo, hi) of ``table``; rows of the default partition in that range move into
    it in the same transaction. Returns the rows moved."""
    name = _partition_name(table, lo)
    ident = {"t": sql.Identifier(table), "p": sql.Identifier(name), "lo": _bound(lo, kind), "hi": _bound(hi, kind)}
    with m.conn.transaction():
        m.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        has_rows = default is not None and m.conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {d} WHERE {cond})").format(
                d=sql.Identifier(default), cond=_range_cond(column, kind)), {"lo": lo, "hi": hi}).fetchone()[0]
        if not has_rows:
            m.conn.execute(sql.SQL("CREATE TABLE {p} PARTITION OF {t} FOR VALUES FROM ({lo}) TO ({hi})").format(**ident))
            return 0
        cols = sql.SQL(", ").join(sql.Identifier(c) for (c,) in m.conn.execute(
            """SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
                ORDER BY attnum""", (table,)).fetchall())
        m.conn.execute(sql.SQL("CREATE TABLE {p} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                               "INCLUDING STORAGE)").format(**ident))
        moved = m.conn.execute(
            sql.SQL("WITH moved AS (DELETE FROM {d} WHERE {cond} RETURNING {cols}) "
                    "INSERT INTO {p} ({cols}) SELECT {cols} FROM moved").format(
                d=sql.Identifier(default), cond=_range_cond(column, kind), cols=cols, p=ident["p"]),
            {"lo": lo, "hi": hi}).rowcount
        m.conn.execute(sql.SQL("ALTER TABLE {t} ATTACH PARTITION {p} FOR VALUES FROM ({lo}) TO ({hi})").format(**ident))
    return max(0, moved)


# ---------------------------------------------------------------------------------------------
# Calendars
# ---------------------------------------------------------------------------------------------

_CAL_FIELDS = ("time_zone", "first_day_of_week", "minimal_days_in_first_week", "simple_week_numbering",
               "fiscal_year_start_month", "fiscal_year_start_day")


def _local_midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def _earliest_fact(conn: psycopg.Connection) -> int | None:
    lows = [conn.execute(sql.SQL("SELECT min(start_date_time_key) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in FACT_TABLES]
    lows = [int(v) for v in lows if v is not None]
    return min(lows) if lows else None


def _calendars(m: _Maint) -> None:
    out: dict[str, Any] = {}
    m.details["calendars"] = out
    earliest = _earliest_fact(m.conn)
    for cal in m.ctx.config.calendars.values():
        table = cal.date_time_table_name
        info: dict[str, Any] = {"rows_added": 0, "time_zone": cal.date_time_tz}
        out[table] = info
        tz = zoneinfo.ZoneInfo(cal.date_time_tz)
        m.arm()
        with m.conn.transaction():
            if m.conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0] is None:
                m.conn.execute(sql.SQL("CREATE TABLE {} (LIKE date_time INCLUDING ALL)").format(sql.Identifier(table)))
                m.ctx.log.info("calendar table %s created for [%s]", table, cal.section)
                info["created"] = True
            _register_calendar(m, cal)
        today = dt.datetime.fromtimestamp(m.now, tz).date()
        last = m.conn.execute(sql.SQL("SELECT max(cal_date) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        end = last
        if last is None or last < today + dt.timedelta(days=cal.date_time_min_days_ahead):
            end = max(last or today, today + dt.timedelta(days=cal.date_time_max_days_ahead))
        start = dt.date(cal.date_time_start_year, 1, 1)
        if earliest is not None:
            start = min(start, dt.datetime.fromtimestamp(earliest, tz).date().replace(month=1, day=1))
        info["from"], info["to"] = start.isoformat(), end.isoformat()
        fm, fd = cal.fiscal_year_start
        for year in range(start.year, end.year + 1):
            lo = _local_midnight(max(start, dt.date(year, 1, 1)), tz)
            hi = _local_midnight(min(end + dt.timedelta(days=1), dt.date(year + 1, 1, 1)), tz) - 1
            m.arm()
            added = int(m.conn.execute(
                "SELECT gim_fill_calendar(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (table, cal.date_time_tz, lo, hi, cal.first_day_of_week, cal.minimal_days_in_first_week,
                 cal.simple_week_numbering, fm, fd)).fetchone()[0])
            info["rows_added"] += added
            m.rows += added
            m.between(did_work=added > 0)
        if info["rows_added"]:
            m.ctx.log.info("calendar %s (%s): %d row(s) added, %s .. %s", table, cal.date_time_tz,
                           info["rows_added"], info["from"], info["to"])


def _register_calendar(m: _Maint, cal: Any) -> None:
    fm, fd = cal.fiscal_year_start
    new = {"time_zone": cal.date_time_tz, "first_day_of_week": cal.first_day_of_week,
           "minimal_days_in_first_week": cal.minimal_days_in_first_week,
           "simple_week_numbering": cal.simple_week_numbering, "fiscal_year_start_month": fm,
           "fiscal_year_start_day": fd}
    cur = m.conn.execute(f"SELECT {', '.join(_CAL_FIELDS)} FROM ctl_calendar WHERE table_name = %s",
                         (cal.date_time_table_name,))
    old = cur.fetchone()
    if old is not None:
        has_rows = m.conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
            sql.Identifier(cal.date_time_table_name))).fetchone()[0]
        changed = {k: (o, new[k]) for k, o in zip(_CAL_FIELDS, old, strict=True) if o != new[k]}
        if changed and has_rows:
            m.ctx.log.warning(
                "calendar %s: [%s] options changed since its rows were made (%s); existing rows keep the old "
                "values, new rows get the new ones. To re-populate: DELETE FROM %s, then run Job_MaintainGIM",
                cal.date_time_table_name, cal.section,
                ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()), cal.date_time_table_name)
    m.conn.execute(
        """INSERT INTO ctl_calendar AS c (table_name, section, time_zone, first_day_of_week,
                  minimal_days_in_first_week, simple_week_numbering, fiscal_year_start_month,
                  fiscal_year_start_day, start_year, max_days_ahead, min_days_ahead)
           VALUES (%(t)s, %(s)s, %(time_zone)s, %(first_day_of_week)s, %(minimal_days_in_first_week)s,
                   %(simple_week_numbering)s, %(fiscal_year_start_month)s, %(fiscal_year_start_day)s, %(y)s,
                   %(max)s, %(min)s)
           ON CONFLICT (table_name) DO UPDATE SET section = excluded.section, time_zone = excluded.time_zone,
                  first_day_of_week = excluded.first_day_of_week,
                  minimal_days_in_first_week = excluded.minimal_days_in_first_week,
                  simple_week_numbering = excluded.simple_week_numbering,
                  fiscal_year_start_month = excluded.fiscal_year_start_month,
                  fiscal_year_start_day = excluded.fiscal_year_start_day, start_year = excluded.start_year,
                  max_days_ahead = excluded.max_days_ahead, min_days_ahead = excluded.min_days_ahead, updated = now()
            WHERE (c.section, c.time_zone, c.first_day_of_week, c.minimal_days_in_first_week,
                   c.simple_week_numbering, c.fiscal_year_start_month, c.fiscal_year_start_day, c.start_year,
                   c.max_days_ahead, c.min_days_ahead)
                  IS DISTINCT FROM (excluded.section, excluded.time_zone, excluded.first_day_of_week,
                   excluded.minimal_days_in_first_week, excluded.simple_week_numbering,
                   excluded.fiscal_year_start_month, excluded.fiscal_year_start_day, excluded.start_year,
                   excluded.max_days_ahead, excluded.min_days_ahead)""",
        {**new, "t": cal.date_time_table_name, "s": cal.section, "y": cal.date_time_start_year,
         "max": cal.date_time_max_days_ahead, "min": cal.date_time_min_days_ahead})


# ---------------------------------------------------------------------------------------------
# Purge
# ---------------------------------------------------------------------------------------------


def _purge(m: _Maint) -> None:
    out: dict[str, Any] = {}
    m.details["purge"] = out
    partitioned = {r["table_name"] for r in partitioned_tables(m.conn) if r["partitioned"]}
    hwm = m.hwm()
    _purge_tables(m, PURGE_SPECS[: len(FACT_TABLES)], out, hwm, partitioned)
    _purge_gidb(m, out, hwm)
    _purge_tables(m, PURGE_SPECS[len(FACT_TABLES):], out, hwm, partitioned)


def _record(m: _Maint, st: PurgeStat, out: dict[str, Any]) -> None:
    out[st.table] = {"option": _opt(st.option), "cutoff": st.cutoff, "rows": st.rows,
                     "partitions": st.partitions, "rows_in_partitions": st.rows_in_partitions,
                     "batches": st.batches, "completed": st.completed}
    m.rows += st.rows + st.rows_in_partitions
    try:
        m.conn.execute("SET statement_timeout = 0")
        m.conn.execute(
            """INSERT INTO ctl_purge_history (job_id, table_name, option_name, days_to_keep, cutoff, rows_deleted,
                      partitions_dropped, rows_in_partitions, dropped_partitions, batches, completed, message,
                      started)
               VALUES (%s, %s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s)""",
            (str(m.ctx.job_id), st.table, _opt(st.option), st.days, st.cutoff, st.rows, len(st.partitions),
             st.rows_in_partitions, st.partitions, st.batches, st.completed, st.message, st.started))
    except psycopg.Error:  # a second cancel while recording: the rows themselves are committed
        m.ctx.log.warning("could not record the purge of %s in ctl_purge_history", st.table, exc_info=True)
    if st.rows or st.partitions:
        m.ctx.log.info("purged %s: %d row(s) deleted, %d partition(s) dropped (%d rows) older than %s (%s = %d)%s",
                       st.table, st.rows, len(st.partitions), st.rows_in_partitions,
                       dt.datetime.fromtimestamp(st.cutoff, dt.UTC).isoformat(), _opt(st.option), st.days,
                       "" if st.completed else " - stopped before the end")


class _Recording:
    """Context: record the PurgeStat whatever happens (a stop records completed = false)."""

    def __init__(self, m: _Maint, stats: list[PurgeStat], out: dict[str, Any]) -> None:
        self.m, self.stats, self.out = m, stats, out

    def __enter__(self) -> list[PurgeStat]:
        return self.stats

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for st in self.stats:
            if exc is None:
                st.completed = True
            elif not st.completed and st.message is None:
                st.message = f"stopped: {exc}"[:500]
            _record(self.m, st, self.out)


def _cond(spec: PurgeSpec) -> sql.Composable:
    col = sql.SQL("t.") + sql.Identifier(spec.column)
    parts: list[sql.Composable] = [
        sql.SQL("{} < to_timestamp(%(cut)s)").format(col) if spec.kind == "timestamptz"
        else sql.SQL("{} < %(cut)s").format(col)]
    if spec.active:
        parts.append(sql.SQL("(t.end_ts IS NOT NULL OR t.start_ts < %(active_cut)s)"))
    if spec.where:
        parts.append(sql.SQL(spec.where))  # constant SQL written in this module
    return sql.SQL(" AND ").join(parts)


def _batched_delete(m: _Maint, target: str, spec: PurgeSpec, st: PurgeStat, params: dict[str, Any]) -> None:
    """DELETE eligible rows of one plain table (or partition) ``batch_rows`` at a time, each batch
    its own transaction."""
    stmt = sql.SQL("DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM {t} t WHERE {cond} LIMIT %(n)s))").format(
        t=sql.Identifier(target), cond=_cond(spec))
    while True:
        m.arm()
        n = m.conn.execute(stmt, {**params, "n": m.batch_rows}).rowcount
        st.rows += max(0, n)
        if n > 0:
            st.batches += 1
        if n < m.batch_rows:
            return
        m.between()


def _rows_estimates(conn: psycopg.Connection, tables: list[str]) -> dict[str, int]:
    """Rows of partitions about to be dropped, for the record: the planner's count when a table has
    statistics (VACUUM / ANALYZE / autovacuum keep it close; reading a whole partition to count it
    would cost more than dropping it), else counted."""
    est = dict(conn.execute("SELECT relname::text, reltuples FROM pg_class WHERE oid = ANY (%s::regclass[])",
                            (tables,)).fetchall())
    return {t: int(est[t]) if est.get(t) is not None and est[t] >= 0 else
            int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])
            for t in tables}


def _drop_partitions(m: _Maint, drops: list[tuple[PurgeStat, str]]) -> None:
    """DROP the partitions, all in one transaction.

    A commit that removes files waits for its WAL flush (whatever ``synchronous_commit`` says) and
    then truncates every file of the dropped tables; one transaction for every eligible partition
    of every table pays the commit, the lock setup and the row estimates once instead of per
    partition. When one of them is locked by another session
    (``lock_timeout``), the others are dropped one by one and the locked one waits for the next run."""
    if not drops:
        return
    m.arm()
    try:
        with m.conn.transaction():
            m.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
            rows = _rows_estimates(m.conn, [name for _, name in drops])
            m.conn.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(
                sql.Identifier(name) for _, name in drops)))
    except psycopg.errors.LockNotAvailable:
        if len(drops) > 1:
            for one in drops:
                m.ctx.check_stop()
                _drop_partitions(m, [one])
            return
        st, name = drops[0]
        st.message = f"partition {name} locked by another session: dropped next run"
        m.ctx.log.warning("%s: %s", st.table, st.message)
        return
    for st, name in drops:
        st.partitions.append(name)
        st.rows_in_partitions += rows[name]
    m.between()


def _purge_tables(m: _Maint, specs: list[PurgeSpec], out: dict[str, Any], hwm: int, partitioned: set[str]) -> None:
    """Purge tables by their own time column: first every partition of them entirely older than its
    cutoff (one DROP transaction for all), then the eligible rows left (default partitions,
    partitions holding a protected active fact, plain tables) in batches, table by table."""
    stats = [PurgeStat(spec.table, spec.option, int(getattr(m.etl, spec.option)), m.cutoff(spec.option))
             for spec in specs]
    with _Recording(m, stats, out):
        parts = _partitions_many(m.conn, [s.table for s in specs if s.table in partitioned])
        drops: list[tuple[PurgeStat, str]] = []
        targets: list[list[str]] = []
        params = [{"cut": st.cutoff, "active_cut": m.active_cutoff(spec.option), "hwm": hwm}
                  for spec, st in zip(specs, stats, strict=True)]
        for spec, st, p in zip(specs, stats, params, strict=True):
            active_cut = p["active_cut"]
            if spec.table not in partitioned:
                targets.append([spec.table])
                continue
            default, ranges = parts[spec.table]
            mine = [default] if default else []
            for name, _lo, hi in ranges:
                if hi > st.cutoff:
                    continue
                # only a partition reaching past the active limit can hold a protected active fact
                if spec.active and hi > active_cut:
                    m.arm()
                    if m.conn.execute(sql.SQL(
                            "SELECT EXISTS (SELECT 1 FROM {} t WHERE t.end_ts IS NULL AND t.start_ts >= %(a)s)")
                            .format(sql.Identifier(name)), {"a": active_cut}).fetchone()[0]:
                        mine.append(name)  # still-active facts in it: row by row
                        continue
                drops.append((st, name))
            targets.append(mine)
        _drop_partitions(m, drops)
        for spec, st, p, mine in zip(specs, stats, params, targets, strict=True):
            for target in mine:
                _batched_delete(m, target, spec, st, p)
                m.ctx.check_stop()
            st.completed = True


def _purge_gidb(m: _Maint, out: dict[str, Any], hwm: int) -> None:
    option = "days_to_keep_gidb_facts"
    days = int(getattr(m.etl, option))
    cut = m.cutoff(option)
    params = {"cut": cut, "active_cut": m.active_cutoff(option), "hwm": hwm}
    tables = ["gidb_g_ir", "gidb_g_call", "gidb_g_party", "gidb_g_party_history", "gidb_g_login_session",
              "gidb_g_agent_state_history", "gidb_g_agent_state_rc"]
    stats = {t: PurgeStat(t, option, days, cut) for t in tables}
    with _Recording(m, list(stats.values()), out):
        m.conn.execute("CREATE TEMP TABLE IF NOT EXISTS t_purge_units (n bigserial, dsk integer, key text, ts bigint)")
        for units_sql, batch_sql, deletes in ((_IXN_UNITS, _IXN_BATCH, _IXN_DELETES),
                                              (_SESSION_UNITS, [], _SESSION_DELETES)):
            m.arm()
            m.conn.execute("TRUNCATE t_purge_units RESTART IDENTITY")
            total = m.conn.execute(units_sql, params).rowcount
            for lo in range(0, max(0, total), m.unit_batch):
                m.arm()
                p = {**params, "lo": lo, "hi": lo + m.unit_batch}
                with m.conn.transaction():
                    for stmt in batch_sql:
                        m.conn.execute(stmt, p)
                    counts = [(t, m.conn.execute(stmt, p).rowcount) for t, stmt in deletes]
                for t, n in counts:
                    stats[t].rows += max(0, n)
                    stats[t].batches += 1
                m.between()
        for spec in GIDB_ORPHANS:
            _batched_delete(m, spec.table, spec, stats[spec.table], params)
            m.ctx.check_stop()
