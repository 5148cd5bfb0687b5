"""Job_ExportGIM: incremental CSV export of the facts and dimensions (R12, R15, R22).

Output
    Each folder ``<output-directory>/export_<HWM>_<YYYY_MM_DD_HH_MI_SS>`` holds
    ``export_<...>.zip`` (one ``<table>.csv`` per exported table, header row included even when
    the table has no changed rows) and ``export_<...>.zip.sha1`` (``<sha1>  export_<...>.zip``, so
    ``sha1sum -c`` checks it). ``HWM`` is the audit key up to which the folder is complete; the
    date-time is the greatest fact start/end time (GMT) exported to this directory so far. The CSV
    files are RFC 4180: comma, ``"`` quoting only where needed, CRLF record ends (a newline inside
    a quoted value is kept as it is), a header row; NULL and the empty string are both an empty
    unquoted field; encoded in ``output-files-encoding``. The zip's comment is a JSON manifest
    (audit-key range, data times, start-date, row counts); it is covered by the ``.sha1``. Zips
    are deterministic (fixed member times and order, rows in primary-key order), so exporting the
    same data twice gives byte-identical folders.

What is exported (discovered from the catalog, ``gim_export_relations()`` in 005_export.sql)
    Tables of schema ``public`` with ``create_audit_key`` / ``update_audit_key`` (facts: also
    ``start_ts`` and a name ending in ``_fact``; the rest count as dimensions), and calendars
    (``date_time`` and custom calendars: ``date_time_key`` + ``cal_date``). Never ``gidb_*``,
    ``agt_*``, ``ag2_*``, ``ctl_*``, ``stg_*``. With ``use-export-views = true`` the job reads the
    frozen views ``exp_<table>`` instead (created by ``gim init-db``; a table added later is not
    exported through views until ``SELECT gim_create_export_views()`` is run).

Which rows: the audit-key high-water mark (HWM)
    A folder covering ``(lo, hi]`` holds the rows of fact and dimension tables with
    ``lo < update_audit_key <= hi`` (the schema's contract: ``update_audit_key >= create_audit_key``,
    equal on insert), and the calendar rows of the 15-minute intervals its facts' start..end times
    span. The first folder of a directory starts at ``lo = -1`` so the code dimensions seeded with
    audit key 0 are exported too.

    The new HWM ``M`` of a run must be a key below which every audit key that will ever commit has
    committed; otherwise a transaction holding a lower key that commits after the export would be
    skipped for good. Audit keys come from a sequence and are taken inside the writer's transaction
    (Job_TransformGIM inserts its ``ctl_audit_log`` row at the start of a chunk transaction), so
    visible keys can have holes that fill later. The rule: the job takes ``LOCK TABLE
    ctl_audit_log IN SHARE MODE`` for an instant, which waits for every transaction that has
    inserted an audit row to commit or roll back and makes new inserters wait; ``M =
    max(audit_key)`` read under that lock has every lower key settled (an INSERT takes its
    ROW EXCLUSIVE lock before it draws ``nextval``, so no key below ``M`` is still to come). The
    lock is released at once; the export snapshot is taken after it, so it sees every key ``<= M``;
    rows with keys above ``M`` that it also sees are left to the next run. Holes left by rolled
    back transactions cost nothing (a "no gaps" rule would stall on them forever).

Chunks (``chunk-size-seconds``)
    The rows of ``(HWM, M]`` are cut into folders at audit-key boundaries, in key order. A key's
    data time is the earliest start time of the facts it wrote: for Job_TransformGIM, the start of
    the transform chunk it committed (it writes the interactions and login sessions that started in
    its window, even where their parties and agent states run on for hours). Data time is divided
    into windows of ``chunk-size-seconds`` aligned on the epoch (the default 28800 gives 00-08,
    08-16, 16-24 h GMT, matching the default export-schedule). A folder takes keys while their data
    time lies in its window or before it (late data rides with the folder being written); a key of
    a later window starts the next folder. Keys with dimension rows only join the current folder.
    So a backlog is exported as one folder per window, in order, each complete for its HWM, and a
    live system gets about one folder per run. A key is never split (the HWM would lie). No folder
    is written when nothing changed (nor before the first committed audit key).

``start-date``
    Applies when the directory holds no export folder (a new *stream*): facts starting before it
    are never exported to that directory, in the first run and every later one (the value is kept
    with each folder, so changing the option later changes nothing, and a killed and rerun export
    gives the same folders). Dimensions and calendars are not filtered.

Snapshot and threads (``thread-pool-size``)
    A coordinating connection opens a REPEATABLE READ transaction and ``pg_export_snapshot()``;
    ``min(thread-pool-size, tables)`` worker connections import it (``SET TRANSACTION SNAPSHOT``),
    so every table of every folder of the run comes from one consistent snapshot. Workers COPY
    their table (``COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)``, UTF8) into a temporary CSV
    file, transcoding on the way; the main thread adds the files to the zip in table order.

Encoding (``output-files-encoding``)
    PostgreSQL sends UTF-8; Python encodes to the configured codec (incrementally: a BOM-writing
    codec writes one BOM). A character the codec cannot represent fails the export with the table,
    line, character and the row's key: silently replacing data (Java's ``?``) would corrupt the
    consumer's copy unnoticed; the operator switches to ``utf8`` or fixes the data, and the next
    run exports it.

Crash safety
    A folder is written under ``.tmp_export_*``, its files fsynced, then renamed to its final name
    (atomic), the parent fsynced, and only then is its ``ctl_export_history`` row inserted. At
    start the job deletes ``.tmp_export_*`` leftovers and reconciles the directory with the control
    table: the newest complete folder and the newest control row of the directory must name the
    same folder. A newest folder without a row (killed between rename and insert) is verified (its
    ``.sha1`` and manifest, and that it continues the previous folder) and adopted; anything else
    fails with what differs and how to fix it. A rerun therefore continues after the last complete
    folder and exports the rest again; nothing is skipped.

Retries (``max-retries``, ``retry-delay-seconds``)
    On transient database errors (lost connection, serialization failure, deadlock, lock timeout:
    ``psycopg.OperationalError`` except a cancel) the run's remaining work is retried after the
    delay; folders already complete stay. Logic errors (encoding, a directory that disagrees with
    the control table, file-system errors) fail at once.

Retention (``days-to-keep-output-files``)
    Export folders whose modification time (when they were written) is older than that many days
    are deleted at the end of each run, except the newest one, which is the resume point. The data
    time in the name is not used: a backlog exported today has old data times but is new output.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import queue
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from gim_jobs.control import JobContext, JobError, JobResult
from gim_jobs.db.connect import connect

FOLDER_RE = re.compile(r"^export_(\d+)_(\d{4})_(\d\d)_(\d\d)_(\d\d)_(\d\d)_(\d\d)$")
TMP_PREFIX = ".tmp_export_"
NAME_TS_FORMAT = "%Y_%m_%d_%H_%M_%S"
FIRST_LO = -1  # the first folder of a directory starts below the seeded audit key 0
AUDIT_LOCK_TIMEOUT_SECONDS = 300
BATCH_BYTES = 1 << 20  # COPY rows are transcoded and written in batches of about this size
MANIFEST_FORMAT = 1


class ExportError(JobError):
    """A problem a retry would not fix; the message says what and how to fix it."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled)


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------

def folder_name(hwm: int, data_ts: int) -> str:
    return f"export_{hwm}_{datetime.fromtimestamp(data_ts, UTC).strftime(NAME_TS_FORMAT)}"


def parse_folder_name(name: str) -> tuple[int, int] | None:
    """``(hwm, data_ts)`` of an export folder name, or None."""
    m = FOLDER_RE.match(name)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[1:])
    try:
        ts = int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp())
    except ValueError:
        return None
    return int(m.group(1)), ts


@dataclass(frozen=True)
class Folder:
    path: Path
    hwm: int
    data_ts: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def zip_path(self) -> Path:
        return self.path / f"{self.name}.zip"

    @property
    def sha1_path(self) -> Path:
        return self.path / f"{self.name}.zip.sha1"


def complete_folders(outdir: Path) -> list[Folder]:
    """The export folders of ``outdir`` (final name, zip and sha1 present), oldest HWM first."""
    found = []
    if not outdir.is_dir():
        return found
    for p in outdir.iterdir():
        parsed = parse_folder_name(p.name)
        if parsed and p.is_dir():
            f = Folder(p, *parsed)
            if f.zip_path.is_file() and f.sha1_path.is_file():
                found.append(f)
    return sorted(found, key=lambda f: f.hwm)


def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()  # noqa: S324 - the format Genesys documents, not a security use
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(zip_path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(zip_path) as zf:
        return json.loads(zf.comment.decode("utf-8"))


def verify_folder(folder: Folder) -> dict[str, Any]:
    """Check a folder's zip against its .sha1 and its manifest against its name; the manifest."""
    recorded = folder.sha1_path.read_text(encoding="ascii", errors="replace").split()
    actual = _sha1_file(folder.zip_path)
    if not recorded or recorded[0].lower() != actual:
        raise ExportError(
            f"export folder {folder.path} is damaged: its zip's SHA-1 is {actual}, its .sha1 file says "
            f"{recorded[0] if recorded else '(nothing)'}; move it away and rerun to export its data again"
        )
    try:
        manifest = read_manifest(folder.zip_path)
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ExportError(f"export folder {folder.path}: unreadable zip or manifest ({exc})") from exc
    if manifest.get("folder") != folder.name or manifest.get("audit_key_hwm") != folder.hwm:
        raise ExportError(f"export folder {folder.path}: its manifest names {manifest.get('folder')!r}, "
                          f"not the folder it is in")
    return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------------
# CSV: RFC 4180 line ends and transcoding
# ---------------------------------------------------------------------------------------------

def crlf(data: bytes) -> bytes:
    """LF record ends -> CRLF for whole CSV records from COPY; newlines inside quoted values stay.

    A batch always starts outside quotes (it holds whole records), so the parts between ``"``
    bytes alternate outside / inside a quoted value (an escaped ``""`` yields an empty part)."""
    if b'"' not in data:
        return data.replace(b"\n", b"\r\n")
    parts = data.split(b'"')
    parts[0::2] = [p.replace(b"\n", b"\r\n") for p in parts[0::2]]
    return b'"'.join(parts)


class CsvSink:
    """Writes COPY CSV batches (UTF-8, LF) to ``fh`` as RFC 4180 in ``encoding``."""

    def __init__(self, fh: Any, encoding: str, table: str, key_column: str):
        self.fh = fh
        self.encoding = encoding
        self.table = table
        self.key_column = key_column
        self.passthrough = codecs.lookup(encoding).name == "utf-8"
        self.encoder = None if self.passthrough else codecs.getincrementalencoder(encoding)("strict")
        self.lines = 0

    def write(self, data: bytes) -> None:
        data = crlf(data)
        if self.encoder is None:
            self.fh.write(data)
            return
        text = data.decode("utf-8")
        try:
            self.fh.write(self.encoder.encode(text))
        except UnicodeEncodeError as exc:
            raise ExportError(self._unencodable(text, exc)) from None
        self.lines += text.count("\n")

    def close(self) -> None:
        if self.encoder is not None:
            self.fh.write(self.encoder.encode("", final=True))

    def _unencodable(self, text: str, exc: UnicodeEncodeError) -> str:
        line = self.lines + text.count("\n", 0, exc.start) + 1
        start = text.rfind("\n", 0, exc.start) + 1
        key = text[start:text.find("\n", start)].split(",", 1)[0]
        ch = text[exc.start]
        return (
            f"{self.table}.csv line {line} (row with {self.key_column} = {key}): character {ch!r} (U+{ord(ch):04X}) "
            f"cannot be encoded in {self.encoding} ([gim-export] output-files-encoding); use an encoding that "
            "can represent it, such as utf8, or correct the data; the next run exports it"
        )


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Relation:
    table: str  # the CSV name and the base table
    relation: str  # what is read: the table, or exp_<table>
    kind: str  # fact, dimension, calendar
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    text_columns: frozenset[str]


def export_relations(conn: psycopg.Connection, views: bool) -> list[Relation]:
    rows = conn.execute("SELECT * FROM gim_export_relations(%s)", (views,)).fetchall()
    return [Relation(t, r, k, tuple(c), tuple(pk or ()), frozenset(tc or ())) for t, r, k, c, pk, tc in rows]


@dataclass
class KeyStats:
    rows: int = 0
    fact_rows: int = 0
    min_start: int | None = None
    max_start: int | None = None
    max_time: int | None = None

    def add(self, rows: int, fact_rows: int, min_start: int | None, max_start: int | None,
            max_time: int | None) -> None:
        self.rows += rows
        self.fact_rows += fact_rows
        if min_start is not None:
            self.min_start = min_start if self.min_start is None else min(self.min_start, min_start)
            self.max_start = max_start if self.max_start is None else max(self.max_start, max_start)
        if max_time is not None:
            self.max_time = max_time if self.max_time is None else max(self.max_time, max_time)


@dataclass
class Chunk:
    lo: int  # exclusive
    hi: int  # inclusive
    window: int | None = None  # the latest key data time // chunk-size-seconds it holds
    stats: KeyStats = field(default_factory=KeyStats)


def plan_chunks(stats: dict[int, KeyStats], lo: int, hi: int, chunk_seconds: int) -> list[Chunk]:
    """Cut ``(lo, hi]`` into folders at audit-key boundaries; see the module docstring."""
    chunks: list[Chunk] = []
    cur: Chunk | None = None
    last = lo
    for key in sorted(k for k, s in stats.items() if s.rows and lo < k <= hi):
        s = stats[key]
        window = s.min_start // chunk_seconds if s.fact_rows and s.min_start is not None else None
        if cur is None:
            cur = Chunk(lo, key)
        elif window is not None and cur.window is not None and window > cur.window:
            cur.hi = last
            chunks.append(cur)
            cur = Chunk(last, key)
        if window is not None and (cur.window is None or window > cur.window):
            cur.window = window
        cur.stats.add(s.rows, s.fact_rows, s.min_start, s.max_start, s.max_time)
        last = key
    if cur is not None:
        cur.hi = hi
        chunks.append(cur)
    return chunks


def _select(rel: Relation, chunk: Chunk, start_ts: int | None) -> sql.Composed:
    cols = sql.SQL(", ").join(
        sql.SQL("nullif({c}, '') AS {c}").format(c=sql.Identifier(c)) if c in rel.text_columns
        else sql.Identifier(c)
        for c in rel.columns
    )
    if rel.kind == "calendar":
        st = chunk.stats
        if st.min_start is None:
            where = sql.SQL("false")
        else:
            top = st.max_time if st.max_time is not None else st.min_start  # greatest(start, end) >= start
            where = sql.SQL("date_time_key BETWEEN {} AND {}").format(
                sql.Literal(st.min_start - st.min_start % 900), sql.Literal(top - top % 900))
    else:
        where = sql.SQL("update_audit_key > {} AND update_audit_key <= {}").format(
            sql.Literal(chunk.lo), sql.Literal(chunk.hi))
        if rel.kind == "fact" and start_ts is not None:
            where = sql.SQL("{} AND start_ts >= {}").format(where, sql.Literal(start_ts))
    order = (sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, rel.key_columns)))
             if rel.key_columns else sql.SQL(""))
    return sql.SQL("SELECT {} FROM {} WHERE {}{}").format(cols, sql.Identifier(rel.relation), where, order)


def _stats_query(rel: Relation, lo: int, hi: int, start_ts: int | None) -> sql.Composed:
    if rel.kind == "fact":
        measures = sql.SQL("count(*), count(*), min(start_ts), max(start_ts), max(greatest(start_ts, end_ts))")
        extra = sql.SQL(" AND start_ts >= {}").format(sql.Literal(start_ts)) if start_ts is not None else sql.SQL("")
    else:
        measures = sql.SQL("count(*), 0, NULL::bigint, NULL::bigint, NULL::bigint")
        extra = sql.SQL("")
    return sql.SQL(
        "SELECT update_audit_key, {} FROM {} WHERE update_audit_key > {} AND update_audit_key <= {}{} GROUP BY 1"
    ).format(measures, sql.Identifier(rel.relation), sql.Literal(lo), sql.Literal(hi), extra)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

@dataclass
class Stream:
    """Where the directory's export stream stands."""

    hwm: int  # the newest folder's audit-key HWM; FIRST_LO for a new stream
    data_ts: int | None  # the data time in its name
    start_ts: int | None  # the stream's start-date (epoch seconds)


class _Export:
    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.opt = ctx.config.gim_export
        self.outdir = Path(self.opt.output_directory)
        self.dirkey = str(self.outdir)
        self.encoding = self.opt.output_files_encoding
        self.folders: list[dict[str, Any]] = []
        self.adopted: list[str] = []
        self.removed: list[str] = []
        self.rows = 0

    # -- reconcile ---------------------------------------------------------------------------
    def reconcile(self, conn: psycopg.Connection) -> Stream:
        self.outdir.mkdir(parents=True, exist_ok=True)
        for p in self.outdir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                self.ctx.log.warning("deleting %s, left by an export that did not finish", p)
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        folders = complete_folders(self.outdir)
        row = conn.execute(
            """SELECT folder, audit_key_hwm, start_ts FROM ctl_export_history
                WHERE output_directory = %s ORDER BY id DESC LIMIT 1""",
            (self.dirkey,),
        ).fetchone()
        start_cfg = self.opt.start_date
        if not folders:
            if row:
                self.ctx.log.warning(
                    "%s holds no export folder although %s was written there: starting a new export stream "
                    "(everything again%s)", self.outdir, row[0],
                    f", from start-date {start_cfg:%Y-%m-%d %H:%M:%S}" if start_cfg else "")
            return Stream(FIRST_LO, None, int(start_cfg.timestamp()) if start_cfg else None)
        newest = folders[-1]
        c_folder, c_hwm, c_start = row if row else (None, None, None)
        if c_folder == newest.name:
            return Stream(newest.hwm, newest.data_ts, c_start)
        if c_hwm is not None and newest.hwm <= c_hwm:
            raise ExportError(
                f"{self.outdir} and ctl_export_history disagree: the newest complete export folder is {newest.name} "
                f"(audit key HWM {newest.hwm}) but the last export recorded there is {c_folder} (HWM {c_hwm}). "
                f"Restore the missing folder(s); or, to export again from {newest.name}, delete the "
                f"ctl_export_history rows of {self.dirkey} with audit_key_hwm > {newest.hwm}; or empty the "
                "directory to export everything again"
            )
        unrecorded = [f for f in folders if c_hwm is None or f.hwm > c_hwm]
        if len(unrecorded) > 1:
            raise ExportError(
                f"{self.outdir} holds {len(unrecorded)} export folders that ctl_export_history does not list "
                f"({', '.join(f.name for f in unrecorded)}); a killed run leaves at most one. Move them out of the "
                "directory (their data is exported again), or empty the directory to export everything again"
            )
        manifest = verify_folder(newest)
        want_lo = c_hwm if c_hwm is not None else FIRST_LO
        if manifest.get("audit_key_from") != want_lo:
            raise ExportError(
                f"export folder {newest.name} continues audit key {manifest.get('audit_key_from')}, but the last "
                f"export recorded for {self.outdir} ends at {want_lo}: it was not written after it. Move it out of "
                "the directory (its data is exported again)"
            )
        if c_folder is not None and manifest.get("start_ts") != c_start:
            raise ExportError(f"export folder {newest.name} was written with another start-date than {c_folder}")
        self._record(conn, newest, manifest, adopted=True)
        self.adopted.append(newest.name)
        self.ctx.log.warning("adopted %s: complete and verified, but its run ended before recording it", newest.name)
        return Stream(newest.hwm, newest.data_ts, manifest.get("start_ts"))

    def _record(self, conn: psycopg.Connection, folder: Folder, m: dict[str, Any], *, adopted: bool) -> None:
        conn.execute(
            """INSERT INTO ctl_export_history (output_directory, folder, audit_key_from, audit_key_hwm, max_data_ts,
                       min_chunk_ts, max_chunk_ts, start_ts, row_count, table_rows, zip_bytes, sha1, encoding,
                       export_views, job_id, adopted)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (self.dirkey, folder.name, m["audit_key_from"], m["audit_key_hwm"], m["max_data_ts"], m["min_chunk_ts"],
             m["max_chunk_ts"], m["start_ts"], sum(m["tables"].values()), Jsonb(m["tables"]),
             folder.zip_path.stat().st_size, _sha1_file(folder.zip_path) if adopted else m["_sha1"],
             m["encoding"], m["export_views"], str(self.ctx.job_id), adopted),
        )

    # -- new HWM -----------------------------------------------------------------------------
    @staticmethod
    def safe_hwm(conn: psycopg.Connection) -> int:
        """The greatest audit key with every lower key settled; see the module docstring."""
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{AUDIT_LOCK_TIMEOUT_SECONDS}s")))
            conn.execute("LOCK TABLE ctl_audit_log IN SHARE MODE")
            return int(conn.execute("SELECT coalesce(max(audit_key), 0) FROM ctl_audit_log").fetchone()[0])

    # -- one attempt -------------------------------------------------------------------------
    def attempt(self) -> None:
        """One try: reconcile, pick the new HWM, export every chunk from one snapshot, retention.
        ``ctl`` (autocommit) reads and writes the control table; ``coord`` holds the snapshot."""
        ctx = self.ctx
        with connect(ctx.infomart_dsn, autocommit=True, app="gim-export") as ctl, \
                connect(ctx.infomart_dsn, autocommit=True, app="gim-export-snapshot") as coord:
            ctx.register(ctl)
            ctx.register(coord)
            stream = self.reconcile(ctl)
            rels = export_relations(ctl, self.opt.use_export_views)
            if not rels:
                raise ExportError("nothing to export: no exportable tables"
                                  + (" or export views (run SELECT gim_create_export_views())"
                                     if self.opt.use_export_views else ""))
            hi = self.safe_hwm(ctl)
            if hi > max(stream.hwm, 0):
                coord.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                snapshot = coord.execute("SELECT pg_export_snapshot()").fetchone()[0]
                workers: queue.Queue[psycopg.Connection] = queue.Queue()
                opened: list[psycopg.Connection] = []
                try:
                    for _ in range(max(1, min(self.opt.thread_pool_size, len(rels)))):
                        w = connect(ctx.infomart_dsn, autocommit=True, app="gim-export-worker")
                        opened.append(w)
                        ctx.register(w)
                        w.execute("SET client_encoding TO 'UTF8'")
                        w.execute("SET TimeZone TO 'UTC'")
                        w.execute("SET DateStyle TO 'ISO, YMD'")
                        w.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        w.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                        workers.put(w)
                    with ThreadPoolExecutor(max_workers=len(opened), thread_name_prefix="gim-export") as pool:
                        self._run_chunks(ctl, pool, workers, opened, rels, stream, hi)
                finally:
                    for w in opened:
                        w.close()
                coord.execute("COMMIT")
            else:
                ctx.log.info("nothing to export: no audit key above %s", stream.hwm)
            self.retention(ctl)

    def _on_worker(self, workers: queue.Queue[psycopg.Connection], fn: Callable[[psycopg.Connection], Any]) -> Any:
        conn = workers.get()
        try:
            return fn(conn)
        finally:
            workers.put(conn)

    def _gather(self, futures: list[Future[Any]], opened: list[psycopg.Connection]) -> None:
        """After a failure: cancel what the workers run and wait for them."""
        for f in futures:
            f.cancel()
        for w in opened:
            try:
                w.cancel_safe(timeout=3)
            except Exception:  # noqa: BLE001 - best effort
                pass
        for f in futures:
            try:
                f.result()
            except BaseException:  # noqa: BLE001, S110 - the first error is what is reported
                pass

    def _run_chunks(self, conn: psycopg.Connection, pool: ThreadPoolExecutor,
                    workers: queue.Queue[psycopg.Connection], opened: list[psycopg.Connection],
                    rels: list[Relation], stream: Stream, hi: int) -> None:
        ctx = self.ctx
        audited = [r for r in rels if r.kind != "calendar"]

        def stats_of(rel: Relation) -> list[tuple]:
            return self._on_worker(
                workers, lambda w: w.execute(_stats_query(rel, stream.hwm, hi, stream.start_ts)).fetchall())

        futures = [pool.submit(stats_of, r) for r in audited]
        stats: dict[int, KeyStats] = {}
        try:
            for f in futures:
                for key, rows, fact_rows, mn, mx, mt in f.result():
                    stats.setdefault(int(key), KeyStats()).add(rows, fact_rows, mn, mx, mt)
        except BaseException:
            self._gather(futures, opened)
            raise
        chunks = plan_chunks(stats, stream.hwm, hi, self.opt.chunk_size_seconds)
        if not chunks:
            ctx.log.info("nothing to export: no row changed in audit keys (%s, %s]", stream.hwm, hi)
            return
        ctx.log.info("exporting audit keys (%s, %s] in %d folder(s)", stream.hwm, hi, len(chunks))
        data_ts = stream.data_ts
        for chunk in chunks:
            ctx.check_stop()
            if chunk.stats.max_time is not None:
                data_ts = max(data_ts or 0, chunk.stats.max_time)
            name_ts = data_ts if data_ts is not None else (stream.start_ts or 0)
            self._write_folder(conn, pool, workers, opened, rels, chunk, stream.start_ts, name_ts)
            data_ts = name_ts
            ctx.pause()

    def _copy(self, w: psycopg.Connection, rel: Relation, chunk: Chunk, start_ts: int | None, path: Path) -> int:
        query = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER true)").format(_select(rel, chunk, start_ts))
        with path.open("wb") as fh:
            sink = CsvSink(fh, self.encoding, rel.table, rel.columns[0])
            with w.cursor() as cur:
                with cur.copy(query) as cp:
                    buf: list[Any] = []
                    size = 0
                    for data in cp:
                        buf.append(data)
                        size += len(data)
                        if size >= BATCH_BYTES:
                            sink.write(b"".join(buf))
                            buf.clear()
                            size = 0
                    if buf:
                        sink.write(b"".join(buf))
                rows = cur.rowcount
            sink.close()
        return int(rows)

    def _write_folder(self, conn: psycopg.Connection, pool: ThreadPoolExecutor,
                      workers: queue.Queue[psycopg.Connection], opened: list[psycopg.Connection],
                      rels: list[Relation], chunk: Chunk, start_ts: int | None, name_ts: int) -> None:
        ctx = self.ctx
        name = folder_name(chunk.hi, name_ts)
        final = self.outdir / name
        if final.exists():
            raise ExportError(f"{final} exists already although the export stream is at an older audit key; "
                              "move it away and rerun")
        tmp = self.outdir / f"{TMP_PREFIX}{chunk.hi}_{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        ordered = sorted(rels, key=lambda r: r.table)
        futures = [
            pool.submit(self._on_worker, workers,
                        lambda w, r=r: self._copy(w, r, chunk, start_ts, tmp / f"{r.table}.csv"))
            for r in ordered
        ]
        zip_path = tmp / f"{name}.zip"
        zip_time = datetime.fromtimestamp(max(name_ts, 315532800), UTC).timetuple()[:6]  # zip: >= 1980
        table_rows: dict[str, int] = {}
        try:
            with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for rel, fut in zip(ordered, futures, strict=True):
                    table_rows[rel.table] = fut.result()
                    csv_path = tmp / f"{rel.table}.csv"
                    info = zipfile.ZipInfo(f"{rel.table}.csv", date_time=zip_time)  # type: ignore[arg-type]
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    info.file_size = csv_path.stat().st_size
                    with csv_path.open("rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    csv_path.unlink()
                    ctx.check_stop()
                    ctx.pause()
                manifest = {
                    "format": MANIFEST_FORMAT, "job": "Job_ExportGIM", "folder": name,
                    "audit_key_from": chunk.lo, "audit_key_hwm": chunk.hi, "max_data_ts": name_ts,
                    "min_chunk_ts": chunk.stats.min_start, "max_chunk_ts": chunk.stats.max_start,
                    "start_ts": start_ts, "encoding": self.encoding, "export_views": self.opt.use_export_views,
                    "tables": table_rows,
                }
                zf.comment = json.dumps(manifest, sort_keys=True).encode("utf-8")
        except BaseException:
            self._gather(futures, opened)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_file(zip_path)
        sha1 = _sha1_file(zip_path)
        sha1_path = tmp / f"{name}.zip.sha1"
        sha1_path.write_text(f"{sha1}  {name}.zip\n", encoding="ascii")
        _fsync_file(sha1_path)
        _fsync_dir(tmp)
        ctx.check_stop()
        os.rename(tmp, final)
        _fsync_dir(self.outdir)
        folder = Folder(final, chunk.hi, name_ts)
        self._record(conn, folder, {**manifest, "_sha1": sha1}, adopted=False)
        rows = sum(table_rows.values())
        self.rows += rows
        self.folders.append({"folder": name, "audit_key_from": chunk.lo, "audit_key_hwm": chunk.hi, "rows": rows,
                             "tables": table_rows, "sha1": sha1})
        ctx.log.info("wrote %s: %d rows, audit keys (%s, %s]", name, rows, chunk.lo, chunk.hi)

    # -- retention ---------------------------------------------------------------------------
    def retention(self, conn: psycopg.Connection) -> None:
        cutoff = time.time() - self.opt.days_to_keep_output_files * 86400
        folders = complete_folders(self.outdir)
        for f in folders[:-1]:  # never the newest: it is where the next run continues
            if f.path.stat().st_mtime < cutoff:
                shutil.rmtree(f.path)
                self.removed.append(f.name)
                conn.execute("UPDATE ctl_export_history SET removed = now() "
                             "WHERE output_directory = %s AND folder = %s AND removed IS NULL", (self.dirkey, f.name))
                self.ctx.log.info("deleted %s (older than %s days)", f.name, self.opt.days_to_keep_output_files)


def run(ctx: JobContext) -> JobResult:
    """Export what changed since the last export; see the module docstring."""
    opt = ctx.config.gim_export
    if opt.encrypt_certificate is not None:
        raise ExportError(
            f"[gim-export] encrypt-certificate is set ({opt.encrypt_certificate}) but this version cannot encrypt "
            "export zips; nothing was exported (unset it to export unencrypted)"
        )
    job = _Export(ctx)
    retries = 0
    while True:
        try:
            job.attempt()
            break
        except Exception as exc:
            if not _transient(exc) or retries >= opt.max_retries:
                raise
            retries += 1
            ctx.log.warning("transient error (%s: %s); retry %d of %d in %d s", type(exc).__name__, exc,
                            retries, opt.max_retries, opt.retry_delay_seconds)
            until = time.monotonic() + opt.retry_delay_seconds
            while time.monotonic() < until:
                ctx.check_stop()
                time.sleep(min(0.5, max(0.0, until - time.monotonic())))
    n = len(job.folders)
    msg = (f"{job.rows} rows exported in {n} folder(s), audit key HWM {job.folders[-1]['audit_key_hwm']}" if n
           else "nothing changed since the last export")
    return JobResult(rows=job.rows, message=msg, details={
        "output_directory": str(job.outdir), "folders": job.folders, "adopted": job.adopted,
        "removed": job.removed, "retries": retries,
    })
