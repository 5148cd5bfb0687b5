"""Job_ExtractICON: copy new and changed IDB rows into the ``gidb_*`` staging tables.

Every data source (a Genesys DAP: one IDB plus its extraction roles) is read table by table and
role by role. Roles decide what is read: ``ICON_CFG`` the ``gc_*``/``gcx_*`` configuration tables,
``ICON_CORE`` the ``g_*`` rows with ``media_type = 'voice'``, ``ICON_MM`` the other ``g_*`` rows,
``ICON_OCS`` the outbound ``gc_campaign``, ``gc_calling_list`` and ``g_ocs_attempt``. Each (source,
table, role) is a *stream* with its own high-water mark in ``ctl_extract_hwm``, so several IDBs are
extracted into one Info Mart independently, and a role added later starts from zero instead of
inheriting another role's mark.

High-water mark
    IDB rows carry ``gsys_useq``, the value of one IDB-wide sequence taken at insert and again at
    every update. A stream's mark is a bound of the ``gsys_useq`` range already copied. Time columns
    are never used as marks, so a row written late with an old ``*_ts`` is not lost.

Chunks, exactly once
    A chunk is the IDB rows of ``SELECT ... WHERE gsys_useq > hwm AND gsys_useq <= cap ORDER BY
    gsys_useq FETCH FIRST extract-data-chunk-size ROWS WITH TIES`` (WITH TIES: rows sharing a
    ``gsys_useq``, which ICON does not promise to be unique, are never split between chunks). In one
    REPEATABLE READ snapshot of the IDB we take its bound and figures (row count, latest data time,
    highest ``gsys_useq``) with that query, then stream its rows with ``COPY (SELECT ... WHERE
    gsys_useq > hwm AND gsys_useq <= bound) TO STDOUT (FORMAT BINARY)``: the same rows, without a
    sort. A thread reads the next chunk from the IDB while this one is written to the Info Mart
    (nothing is committed by reading ahead). Into the Info Mart a chunk goes one of two ways:

    * straight into ``gidb_<table>`` with COPY (the staging columns' defaults supply
      ``data_source_key`` and the chunk's ``stg_seq``), inside a savepoint: the fast path while every
      row is new (bulk loads, the insert-only history tables);
    * if that hits a key already staged (an update of an active row), through a temporary table and
      ``INSERT ... ON CONFLICT (pk) DO UPDATE ... WHERE excluded.gsys_useq > gidb.gsys_useq`` (a newer
      version replaces the staged one; an older or equal one changes nothing); the table stays on
      this path for the rest of the run.

    The rows, the mark advance and the chunk's ``ctl_extract_history`` row commit in one Info Mart
    transaction, so a killed job or a restarted server loses nothing and doubles nothing: the rerun
    starts from the last committed mark and re-reading a row is harmless. A full chunk sets the
    mark to its highest ``gsys_useq``; a short one to the cap. (The session runs with
    ``synchronous_commit = off``: a commit lost in a server crash loses its rows and its mark
    together, and the rerun reads them again.) Tables this run grew by 10 % or more are ANALYZEd at
    the end, so the transform right after plans its joins on real statistics.

Bulk loads
    When a table's backlog is at least what its staging table holds (and ``DEFER_MIN_CHUNKS``
    chunks), its secondary indexes are dropped before the load and rebuilt after it: one sort instead
    of a random btree insert per row (``maybe_defer_indexes``). Each dropped index is recorded in
    ``ctl_extract_deferred_index`` in the transaction that drops it; a run killed mid-load leaves the
    record and the next run rebuilds the index before it reads anything. Rows and marks are written
    exactly as without it. Run parameter ``defer_indexes=false`` turns it off.

The concurrency gap, and the cap
    ``gsys_useq`` values are taken when a row is written but become visible when the writing IDB
    transaction commits. A transaction that took value 100 and commits after we read up to 105
    would be skipped forever by a plain ``gsys_useq > hwm``. So each run computes, per source, a
    *safe cap* before reading:

    1. read the sequence's current value ``s`` (every value handed out so far is <= ``s``);
    2. list the other sessions of that IDB that are inside a transaction and either hold a
       transaction id or are running a statement (``pg_stat_activity``). Any transaction that took
       a value <= ``s`` and has not committed yet is among them: it began before ``s`` was read;
    3. wait (``wait_seconds``, default 10 s) until every one of them has ended (or began a new
       transaction); then every row with ``gsys_useq <= s`` is committed or gone, and ``s`` is the
       cap of this run.

    If some are still open after the wait (a forgotten ``BEGIN`` in a psql session, a stuck
    writer), the source is held at its current marks for this run and a warning names the
    sessions: reading on would risk skipping their rows for good. Other sources are not held.
    This needs the IDB user to see other sessions (superuser or ``pg_read_all_stats``); without
    that we warn and read up to ``s`` (the gap is then open, as in a plain ``> hwm`` reader).

    A sequence behind a stream's mark means the IDB was replaced or restored: the source fails
    with that message rather than silently reading nothing.

Failures
    A source that cannot be reached, or fails mid-way, does not stop the others; their committed
    chunks stay. The job then fails with one line per failed source naming it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from gim_jobs import __version__
from gim_jobs.control import JobContext, JobError, JobResult, JobStopped
from gim_jobs.db.connect import DataSource, connect, redact

CFG, CORE, MM, OCS = "ICON_CFG", "ICON_CORE", "ICON_MM", "ICON_OCS"
# Genesys CTL_EXTRACT_HISTORY.DATA_SOURCE_TYPE of each role.
DATA_SOURCE_TYPE = {CORE: 1, MM: 2, OCS: 3, CFG: 4}
# The media filter a g_* stream reads with.
MEDIA_FILTER = {CORE: "media_type = 'voice'", MM: "media_type <> 'voice'"}
DEFAULT_WAIT_SECONDS = 10.0
# Every chunk transaction holds this advisory lock (shared) while it takes gidb_stage_seq values;
# the transform takes it exclusively for an instant to read a staged-change bound below which every
# row is committed (see gim_jobs.jobs.transform).
STAGE_LOCK = 0x6715_7A6E
# A table's backlog of at least this many chunks, and at least what the table holds, is a bulk load:
# its secondary indexes are dropped for the load and rebuilt after it (009_etl_speed.sql).
DEFER_MIN_CHUNKS = 2
# Staging tables whose stg_seq index is BRIN (002_staging.sql).
BRIN_TABLES = ("g_party_history", "g_agent_state_history", "g_agent_state_rc")
IDB_SEQUENCE = "gsys_seq_gen"


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: tuple[str, ...]
    roles: tuple[str, ...]
    time_expr: str
    """SQL over the table's columns giving a row's data time (UTC epoch seconds)."""


TABLES: tuple[TableSpec, ...] = (
    TableSpec("gc_tenant", ("id",), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gc_agent", ("id",), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gc_group", ("id",), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gc_endpoint", ("id",), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gcx_group_agent", ("group_id", "agent_id"), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gcx_group_endpoint", ("group_id", "endpoint_id"), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gc_skill", ("id",), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gcx_skill_level", ("agent_id", "skill_id"), (CFG,), "greatest(created_ts, deleted_ts)"),
    TableSpec("g_ir", ("irid",), (CORE, MM), "greatest(created_ts, terminated_ts)"),
    TableSpec("g_call", ("callid",), (CORE, MM), "greatest(created_ts, terminated_ts)"),
    TableSpec("g_party", ("partyid",), (CORE, MM), "greatest(created_ts, terminated_ts)"),
    TableSpec("g_party_history", ("id",), (CORE, MM), "added_ts"),
    TableSpec("g_login_session", ("lsid",), (CORE, MM), "greatest(login_ts, logout_ts)"),
    TableSpec("g_agent_state_history", ("id",), (CORE, MM), "added_ts"),
    TableSpec("g_agent_state_rc", ("id",), (CORE, MM), "added_ts"),
    TableSpec("gc_campaign", ("id",), (OCS,), "greatest(created_ts, deleted_ts)"),
    TableSpec("gc_calling_list", ("id",), (OCS,), "greatest(created_ts, deleted_ts)"),
    TableSpec("g_ocs_attempt", ("attempt_id",), (OCS,), "greatest(dialing_ts, ended_ts)"),
)
STAGING_EXTRA = ("data_source_key", "stg_id", "stg_seq")


class SourceError(JobError):
    """One data source could not be extracted; the message names it."""


@dataclass
class SourceOutcome:
    name: str
    rows: int = 0
    chunks: int = 0
    cap: int | None = None
    held_by: list[str] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Info Mart side
# ---------------------------------------------------------------------------------------------


def upsert_data_source(mart: psycopg.Connection, src: DataSource) -> int:
    """The data_source_key of ``src`` (by name), recording its current roles."""
    with mart.transaction():
        return int(
            mart.execute(
                """INSERT INTO ctl_data_source (name, roles) VALUES (%s, %s)
                   ON CONFLICT (name) DO UPDATE SET roles = excluded.roles,
                       updated = CASE WHEN ctl_data_source.roles = excluded.roles
                                      THEN ctl_data_source.updated ELSE now() END
                   RETURNING data_source_key""",
                (src.name, ",".join(src.roles)),
            ).fetchone()[0]
        )


def staging_columns(mart: psycopg.Connection) -> dict[str, list[tuple[str, str]]]:
    """IDB column names and types of every gidb_* table, in table order."""
    rows = mart.execute(
        """SELECT table_name, column_name, format_type(a.atttypid, a.atttypmod)
             FROM information_schema.columns c
             JOIN pg_attribute a ON a.attrelid = ('public.' || c.table_name)::regclass
                                AND a.attname = c.column_name
            WHERE c.table_schema = 'public' AND starts_with(c.table_name, 'gidb_')
            ORDER BY c.table_name, c.ordinal_position"""
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, col, typ in rows:
        if col not in STAGING_EXTRA:
            out.setdefault(table.removeprefix("gidb_"), []).append((col, typ))
    return out


def _hwms(mart: psycopg.Connection, dsk: int) -> dict[tuple[str, str], int]:
    rows = mart.execute(
        "SELECT table_name, role, hwm_useq FROM ctl_extract_hwm WHERE data_source_key = %s", (dsk,)
    ).fetchall()
    return {(t, r): int(h) for t, r, h in rows}


# ---------------------------------------------------------------------------------------------
# IDB side
# ---------------------------------------------------------------------------------------------

_IN_FLIGHT = """
SELECT pid, xact_start, backend_xid IS NOT NULL, state, coalesce(usename, '?'),
       coalesce(application_name, ''), coalesce(client_addr::text, 'local')
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
   AND backend_type = 'client backend' AND (backend_xid IS NOT NULL OR state = 'active')
"""


def _sequence_value(idb: psycopg.Connection) -> int:
    last, called = idb.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(IDB_SEQUENCE))
    ).fetchone()
    return int(last) if called else int(last) - 1


def safe_cap(idb: psycopg.Connection, wait_seconds: float, log: Any) -> tuple[int | None, list[str]]:
    """The highest gsys_useq below which every IDB row is committed (see module docstring).

    Returns ``(cap, [])``, or ``(None, [descriptions])`` when transactions that may hold lower
    sequence values are still open after ``wait_seconds``. ``idb`` must be in autocommit mode
    (each statement sees fresh activity data).
    """
    can_see = idb.execute(
        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') "
        "FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    s = _sequence_value(idb)
    open_txns = {(r[0], r[1]): r for r in idb.execute(_IN_FLIGHT).fetchall()}
    if not (can_see and can_see[0]):
        log.warning(
            "the IDB user cannot see other sessions' transactions (needs pg_read_all_stats): rows of "
            "IDB transactions that commit late may be missed"
        )
        return s, []
    deadline = time.monotonic() + max(0.0, wait_seconds)
    delay = 0.02
    while open_txns:
        now_open = {(r[0], r[1]): r for r in idb.execute(_IN_FLIGHT).fetchall()}
        open_txns = {k: now_open[k] for k in open_txns if k in now_open}
        if not open_txns or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    if open_txns:
        return None, [
            f"pid {pid} ({user}@{addr}, {app or 'no application_name'}, {state}) in a transaction since "
            f"{xs:%Y-%m-%d %H:%M:%S %Z}"
            for (pid, xs), (_p, _x, _has, state, user, app, addr) in sorted(open_txns.items())
        ]
    return s, []


def _idb_columns(idb: psycopg.Connection) -> dict[str, dict[str, str]]:
    rows = idb.execute(
        """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"""
    ).fetchall()
    out: dict[str, dict[str, str]] = {}
    for table, col, typ in rows:
        out.setdefault(table, {})[col] = typ
    return out


# ---------------------------------------------------------------------------------------------
# One stream group: a table read once for one or more roles that share a mark
# ---------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    spec: TableSpec
    roles: tuple[str, ...]
    columns: list[str]
    hwm: int

    @property
    def where(self) -> sql.Composable:
        if len(self.spec.roles) == 1 or set(self.roles) >= {CORE, MM}:  # one role: the whole table
            return sql.SQL("")
        return sql.SQL(" AND (") + sql.SQL(" OR ").join(sql.SQL(MEDIA_FILTER[r]) for r in self.roles) + sql.SQL(")")



@dataclass
class _Chunk:
    lo: int
    hi: int
    n: int
    max_ts: int | None
    max_seq: int | None
    data: bytes
    started: datetime


_DONE = object()


@contextmanager
def _prefetch(chunks: Iterator[_Chunk]) -> Iterator[Iterator[_Chunk]]:
    """Run ``chunks`` one item ahead in a thread, so reading chunk k+1 from the IDB overlaps writing
    chunk k to the Info Mart. At most two chunks are held in memory. Nothing is committed by the
    reader: the high-water mark still advances only with the rows written. On exit (normal or not)
    the reader is stopped and joined before the IDB connection is used again."""
    q: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for ch in chunks:
                if not put(ch):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[_Chunk]:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    t = threading.Thread(target=reader, name="gim-extract-reader", daemon=True)
    t.start()
    try:
        yield consume()
    finally:
        stop.set()
        t.join()


class _Extractor:
    def __init__(self, ctx: JobContext, mart: psycopg.Connection, staging: dict[str, list[tuple[str, str]]]):
        self.ctx = ctx
        self.mart = mart
        self.staging = staging
        self.chunk_rows = int(ctx.config.gim_etl.extract_data_chunk_size)
        self._temp_ready: set[str] = set()
        self._upsert: dict[str, sql.Composed] = {}
        self.staged: dict[str, int] = {}
        self.direct: dict[str, bool] = {}
        self.defer_indexes = bool(ctx.params.get("defer_indexes", True))
        self.deferred: set[str] = set()
        self.rebuilt: list[str] = []

    def prepare_session(self) -> None:
        """Temporary tables for every table, created in one transaction (DDL commits are not free)."""
        with self.mart.transaction():
            for spec in TABLES:
                self._ensure_temp(spec)

    def _ensure_temp(self, spec: TableSpec) -> None:
        if spec.name in self._temp_ready:
            return
        cols = self.staging[spec.name]
        self.mart.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(f"x_{spec.name}"),
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in cols),
            )
        )
        names = [c for c, _ in cols]
        non_key = [c for c in names if c not in spec.key]
        # data_source_key, stg_id and stg_seq come from the column defaults (see 002_staging.sql)
        self._upsert[spec.name] = sql.SQL(
            "INSERT INTO {gidb} AS t ({cols}) SELECT {cols} FROM {tmp} "
            "ON CONFLICT (data_source_key, {key}) DO UPDATE SET {sets}, stg_seq = excluded.stg_seq "
            "WHERE excluded.gsys_useq > t.gsys_useq"
        ).format(
            gidb=sql.Identifier(f"gidb_{spec.name}"),
            cols=sql.SQL(", ").join(map(sql.Identifier, names)),
            tmp=sql.Identifier(f"x_{spec.name}"),
            key=sql.SQL(", ").join(map(sql.Identifier, spec.key)),
            sets=sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in non_key),
        )
        self._temp_ready.add(spec.name)

    def _copy_in(self, target: str, columns: list[str], data: bytes) -> None:
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, columns)))
        with self.mart.cursor().copy(stmt) as dst:
            dst.write(data)  # the whole chunk in one call: a write per row costs more than the server's work

    def _chunks(self, idb: psycopg.Connection, st: _Stream, cap: int) -> Iterator[_Chunk]:
        """The chunks of a stream from its mark up to ``cap``, read from the IDB.

        Each chunk is read in one REPEATABLE READ snapshot: first its bound and figures (row count,
        latest data time, highest gsys_useq) over ``ORDER BY gsys_useq FETCH FIRST n ROWS WITH TIES``
        (WITH TIES: rows sharing a gsys_useq, which ICON does not promise to be unique, are never
        split between chunks), then its rows as the plain range ``(lo, hi]``, which needs no sort and
        is the same set. Knowing the figures before the rows spares the Info Mart a pass over what it
        just wrote.
        """
        spec = st.spec
        stats = sql.SQL(
            "SELECT count(*), max(te), max(gsys_useq) FROM (SELECT {te} AS te, gsys_useq FROM {t} "
            "WHERE gsys_useq > %s AND gsys_useq <= %s{where} ORDER BY gsys_useq FETCH FIRST %s ROWS WITH TIES) x"
        ).format(te=sql.SQL(spec.time_expr), t=sql.Identifier(spec.name), where=st.where)
        select = sql.SQL(
            "COPY (SELECT {cols} FROM {t} WHERE gsys_useq > %s AND gsys_useq <= %s{where}) TO STDOUT (FORMAT BINARY)"
        ).format(cols=sql.SQL(", ").join(map(sql.Identifier, st.columns)), t=sql.Identifier(spec.name),
                 where=st.where)
        lo = st.hwm
        while lo < cap:
            started = datetime.now(UTC)
            with idb.transaction():
                idb.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                n, max_ts, max_seq = idb.execute(stats, (lo, cap, self.chunk_rows)).fetchone()
                # a full chunk ends at its highest gsys_useq; a short one at the cap
                hi = int(max_seq) if n >= self.chunk_rows else cap
                buf = bytearray()
                if n:
                    with idb.cursor().copy(select, (lo, hi)) as src_copy:
                        for block in src_copy:
                            buf += block
            yield _Chunk(lo, hi, n, max_ts, max_seq, bytes(buf), started)
            lo = hi

    def run_stream(self, idb: psycopg.Connection, src: DataSource, dsk: int, st: _Stream, cap: int,
                   out: SourceOutcome) -> None:
        """Copy one stream chunk by chunk; the next chunk is read from the IDB (in a thread) while
        this one is written to the Info Mart, as the two servers work in parallel."""
        spec = st.spec
        self._ensure_temp(spec)
        with _prefetch(self._chunks(idb, st, cap)) as chunks:
            for ch in chunks:
                changed = self._write_chunk(src, dsk, st, ch)
                out.rows += ch.n
                out.chunks += 1
                self.staged[spec.name] = self.staged.get(spec.name, 0) + changed
                if ch.n:
                    self.ctx.log.debug("%s %s: %d rows (%d staged) useq (%d, %d]", src.name, spec.name, ch.n,
                                       changed, ch.lo, ch.hi)
                self.ctx.check_stop()
                if ch.n:
                    self.ctx.pause()

    def _write_chunk(self, src: DataSource, dsk: int, st: _Stream, ch: _Chunk) -> int:
        """One chunk's rows, mark advance and history row in one Info Mart transaction; returns the
        number of staged rows it inserted or replaced."""
        spec = st.spec
        with self.mart.transaction():
            self.mart.execute("SELECT pg_advisory_xact_lock_shared(%s)", (STAGE_LOCK,))
            seq = self.mart.execute("SELECT nextval('gidb_stage_seq')").fetchone()[0]
            self.mart.execute("SELECT set_config('gim.stg_seq', %s, true), set_config('gim.data_source_key', %s, true)",
                              (str(seq), str(dsk)))
            changed = 0
            done = not ch.n
            if not done and self.direct.get(spec.name, True):
                # Fast path: rows never staged before go straight in; a key already staged (an
                # update of an active row) sends this table to the upsert path for the run.
                try:
                    with self.mart.transaction():
                        self._copy_in(f"gidb_{spec.name}", st.columns, ch.data)
                    changed, done = ch.n, True
                except psycopg.errors.UniqueViolation:
                    self.direct[spec.name] = False
            if not done:
                self._copy_in(f"x_{spec.name}", st.columns, ch.data)
                changed = self.mart.execute(self._upsert[spec.name]).rowcount
            for role in st.roles:
                self.mart.execute(
                    """INSERT INTO ctl_extract_hwm AS h (data_source_key, table_name, role, hwm_useq, max_ts,
                                                         row_count, job_id, updated)
                       VALUES (%(dsk)s, %(t)s, %(role)s, %(hi)s, %(mts)s, %(n)s, %(job)s, now())
                       ON CONFLICT (data_source_key, table_name, role) DO UPDATE
                          SET hwm_useq = excluded.hwm_useq, max_ts = greatest(h.max_ts, excluded.max_ts),
                              row_count = h.row_count + excluded.row_count, job_id = excluded.job_id,
                              updated = excluded.updated""",
                    {"dsk": dsk, "t": spec.name, "role": role, "hi": ch.hi, "mts": ch.max_ts, "n": ch.n,
                     "job": str(self.ctx.job_id)},
                )
            self.mart.execute(
                """INSERT INTO ctl_extract_history (data_source_key, dap_name, data_source_type, table_name,
                          role, job_id, job_name, job_version, extract_start_time, extract_end_time,
                          max_time, max_ts, row_count, hwm_from, hwm_to, max_seq)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(),
                           to_timestamp(%s) AT TIME ZONE 'UTC', %s, %s, %s, %s, %s)""",
                (dsk, src.name, DATA_SOURCE_TYPE[st.roles[0]], spec.name, ",".join(st.roles),
                 str(self.ctx.job_id), self.ctx.job.name, __version__, ch.started, ch.max_ts, ch.max_ts, ch.n,
                 ch.lo, ch.hi, ch.max_seq),
            )
        return changed

    def restore_indexes(self) -> list[str]:
        """Rebuild every index a bulk load dropped (this run's, or those of a run killed mid-load),
        each with the deletion of its ``ctl_extract_deferred_index`` row in one transaction."""
        rows = self.mart.execute(
            "SELECT index_name, table_name, definition FROM ctl_extract_deferred_index ORDER BY table_name, index_name"
        ).fetchall()
        for name, table, definition in rows:
            t = time.perf_counter()
            with self.mart.transaction():
                if self.mart.execute("SELECT to_regclass(%s)", (f"public.{name}",)).fetchone()[0] is None:
                    self.mart.execute(definition)
                self.mart.execute("DELETE FROM ctl_extract_deferred_index WHERE index_name = %s", (name,))
            self.ctx.log.info("rebuilt index %s of %s in %.1f s", name, table, time.perf_counter() - t)
            self.rebuilt.append(name)
        self.deferred.clear()
        return [r[0] for r in rows]

    def maybe_defer_indexes(self, idb: psycopg.Connection, spec: TableSpec, hwm: int, cap: int) -> None:
        """Drop the secondary indexes of ``gidb_<table>`` for this run when its backlog is a bulk load.

        Maintaining an index row by row costs a random btree insert per row; building it once after
        the load costs one sort. That pays when the backlog is at least what the table already holds
        (and a few chunks): a first load, a catch-up. The count stops at that threshold, so a small
        increment on a big mart costs a short index scan. Unique indexes (the primary key detects
        already staged rows) and the stg_seq index (the transform's change scan; cheap to keep, as a
        chunk shares one value) stay. If a concurrent transform holds the table, the load runs with
        its indexes rather than wait.
        """
        if not self.defer_indexes or spec.name in self.deferred:
            return
        table = f"gidb_{spec.name}"
        held = self.mart.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                                 (table,)).fetchone()[0]
        if held < 0:  # never vacuumed or analyzed: count (such a table is young, hence small)
            held = self.mart.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
        threshold = max(DEFER_MIN_CHUNKS * self.chunk_rows, int(held))
        backlog = idb.execute(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE gsys_useq > %s AND gsys_useq <= %s LIMIT %s) x")
            .format(sql.Identifier(spec.name)), (hwm, cap, threshold)).fetchone()[0]
        if backlog < threshold:
            return
        indexes = self.mart.execute(
            """SELECT c.relname, pg_get_indexdef(i.indexrelid)
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE i.indrelid = %s::regclass AND NOT i.indisunique AND NOT i.indisprimary
                  AND pg_get_indexdef(i.indexrelid, 1, true) <> 'stg_seq'
                ORDER BY 1""", (table,)).fetchall()
        if not indexes:
            self.deferred.add(spec.name)
            return
        try:
            with self.mart.transaction():
                self.mart.execute("SET LOCAL lock_timeout = '2s'")
                for name, definition in indexes:
                    self.mart.execute(
                        """INSERT INTO ctl_extract_deferred_index (index_name, table_name, definition, job_id)
                           VALUES (%s, %s, %s, %s)""", (name, table, definition, str(self.ctx.job_id)))
                    self.mart.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        except psycopg.errors.LockNotAvailable:
            self.ctx.log.info("%s is in use: loading its backlog with its indexes", table)
            return
        self.deferred.add(spec.name)
        self.ctx.log.info("bulk load of %s (%s+ rows): indexes %s rebuilt after it", table, f"{backlog:,}",
                          ", ".join(n for n, _ in indexes))

    def analyze_changed(self) -> None:
        """Summarize new BRIN ranges of the tables this run wrote, and ANALYZE the ones it grew by
        10 % or more: the transform reads them right away, before autovacuum would, and a plan made
        on stale statistics can be far off."""
        for name, n in self.staged.items():
            if n and name in BRIN_TABLES:
                # summarize the block ranges just filled, or the transform's stg_seq range scans read
                # every unsummarized range
                self.mart.execute("SELECT brin_summarize_new_values(%s::regclass)", (f"gidb_{name}_stg_seq",))
            if n < 1000:
                continue
            table = f"gidb_{name}"
            est = self.mart.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
            if est is None or est[0] < 0 or n >= 0.1 * est[0]:
                self.mart.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))

    def run_source(self, src: DataSource, wait_seconds: float, out: SourceOutcome) -> None:
        dsk = upsert_data_source(self.mart, src)
        try:
            idb = connect(src.dsn, autocommit=True, app=f"gim-extract-{src.name}")
        except psycopg.Error as exc:
            raise SourceError(f"data source {src.name!r}: cannot connect ({exc})") from exc
        with idb:
            idb_cols = _idb_columns(idb)
            cap, held_by = safe_cap(idb, wait_seconds, self.ctx.log)
            hwms = _hwms(self.mart, dsk)
            if cap is None:
                out.held_by = held_by
                self.ctx.log.warning(
                    "data source %r: extraction held at its current high-water marks: IDB transactions "
                    "that may hold lower gsys_useq values are still open after %.0f s (their rows would be "
                    "skipped if we read on); end or commit them: %s",
                    src.name, wait_seconds, "; ".join(held_by),
                )
                return
            out.cap = cap
            behind = {k: v for k, v in hwms.items() if v > cap}
            if behind:
                (t, r), v = next(iter(behind.items()))
                raise SourceError(
                    f"data source {src.name!r}: the IDB sequence ({cap}) is behind the high-water mark of "
                    f"{t}/{r} ({v}): the IDB was replaced or restored; delete its rows from ctl_extract_hwm "
                    f"to extract it again from the start"
                )
            for spec in TABLES:
                roles = tuple(r for r in spec.roles if r in src.roles)
                if not roles:
                    continue
                if spec.name not in idb_cols:
                    raise SourceError(f"data source {src.name!r}: the IDB has no table {spec.name}")
                cols = [c for c, _ in self.staging[spec.name]]
                mismatch = [
                    f"{c} ({idb_cols[spec.name].get(c, 'missing')} in the IDB, {t} in the Info Mart)"
                    for c, t in self.staging[spec.name] if idb_cols[spec.name].get(c) != t
                ]
                if mismatch:
                    raise SourceError(
                        f"data source {src.name!r}: IDB table {spec.name} does not match gidb_{spec.name}: "
                        + ", ".join(mismatch)
                    )
                # Roles whose marks are equal are read together (one scan of the IDB table).
                groups: dict[int, list[str]] = {}
                for r in roles:
                    groups.setdefault(hwms.get((spec.name, r), 0), []).append(r)
                self.maybe_defer_indexes(idb, spec, min(groups), cap)
                for hwm, group in sorted(groups.items()):
                    self.run_stream(idb, src, dsk, _Stream(spec, tuple(group), cols, hwm), cap, out)


def run(ctx: JobContext) -> JobResult:
    """Extract every data source; see the module docstring."""
    wait_seconds = float(ctx.params.get("idb_txn_wait_seconds", DEFAULT_WAIT_SECONDS))
    outcomes: list[SourceOutcome] = []
    with connect(ctx.infomart_dsn, autocommit=True, app="gim-extract") as mart:
        # A commit lost in a server crash loses its chunk and its mark together: the rerun reads again.
        mart.execute("SET synchronous_commit = off")
        # index builds after a bulk load (the server's default is 64 MB)
        mart.execute("SET maintenance_work_mem = '256MB'")
        staging = staging_columns(mart)
        ex = _Extractor(ctx, mart, staging)
        ex.prepare_session()
        ex.restore_indexes()  # left by a run killed mid-load
        try:
            for src in ctx.sources:
                out = SourceOutcome(src.name)
                outcomes.append(out)
                try:
                    ex.run_source(src, wait_seconds, out)
                except JobStopped:
                    raise
                except SourceError as exc:
                    out.error = str(exc)
                except psycopg.Error as exc:
                    if mart.closed or mart.broken:
                        raise
                    mart.rollback()
                    out.error = f"data source {src.name!r} ({redact(src.dsn)}): {type(exc).__name__}: {exc}".strip()
                if out.error:
                    ctx.log.error("%s", out.error)
        finally:
            if ex.deferred and not (mart.closed or mart.broken):
                ex.restore_indexes()
        ex.analyze_changed()
    rows = sum(o.rows for o in outcomes)
    details = {
        "sources": {
            o.name: {"rows": o.rows, "chunks": o.chunks, "cap": o.cap, "held_by": o.held_by, "error": o.error}
            for o in outcomes
        },
        "rebuilt_indexes": ex.rebuilt,
    }
    failed = [o for o in outcomes if o.error]
    if failed:
        raise SourceError(
            f"extraction failed for {len(failed)} of {len(outcomes)} data source(s) (the others' chunks are "
            "committed):\n" + "\n".join(o.error or "" for o in failed)
        )
    held = [o.name for o in outcomes if o.held_by]
    msg = f"{rows} rows from {len(outcomes)} data source(s)"
    if held:
        msg += f"; held by open IDB transactions: {', '.join(held)}"
    return JobResult(rows=rows, details=details, message=msg)
