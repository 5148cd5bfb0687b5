"""Job registry, mutual exclusion, preemption signals and job history.

Airflow decides *when* a job runs; the Info Mart database decides *who may touch it*. Every job,
whether Airflow or ``gim run`` starts it, goes through :func:`run_job`, which

* refuses to start on a bad configuration (R21) or a manual run of a job that may not be run by
  hand (R15),
* takes a session-level advisory lock for the job on its own connection (R5): PostgreSQL releases
  it when the holder's process or connection dies, so a killed job never blocks the next one,
* records the run in ``ctl_etl_history`` (RUNNING at start, then COMPLETED / FAILED / STOPPED) and
  who holds the job in ``ctl_job_lease``, where another job can ask it to stop (preemption, R9),
* hands the job a :class:`JobContext` with the config, DSNs, and the cooperative-stop check.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gim_jobs import __version__
from gim_jobs.db.connect import DataSource, connect
from gim_jobs.registry import JOBS, JobDef, UnknownJob, job_def

__all__ = ["JOBS", "JobDef", "job_def", "run_job", "JobContext", "JobResult", "JobError", "JobRefused",
           "JobBusy", "JobStopped", "request_stop", "request_local_stop", "running_jobs", "preempt",
           "wait_until_stopped"]

log = logging.getLogger("gim")

RUN_TYPES = ("scheduled", "manual", "cli")

# A stop asked of this process (Airflow's on_kill, a signal): checked by JobContext.check_stop, and
# the job's registered working connections get their running statement cancelled.
_LOCAL_STOP = threading.Event()
_LOCAL_STOP_REASON: list[str] = []
_WORK_CONNS: list[psycopg.Connection] = []


def request_local_stop(reason: str) -> None:
    """Stop the job running in this process at its next check; cancel its running SQL now."""
    _LOCAL_STOP_REASON.append(reason)
    _LOCAL_STOP.set()
    for conn in list(_WORK_CONNS):
        try:
            conn.cancel_safe(timeout=3)
        except Exception:  # noqa: BLE001 - best effort; the stop flag still ends the job
            log.warning("could not cancel a running statement", exc_info=True)


class JobError(Exception):
    """Base of the errors a job run ends with; ``status`` is what ctl_etl_history records."""

    status = "FAILED"
    exit_code = 1


class JobRefused(JobError):
    """A rule says the job may not start now (bad config, manual run not allowed, ...)."""

    status = "REFUSED"
    exit_code = 2


class JobBusy(JobRefused):
    """Another instance of the same job runs (R5)."""

    exit_code = 3


class JobStopped(JobError):
    """The job stopped early because it was asked to (preemption or operator stop, R9/R18)."""

    status = "STOPPED"
    exit_code = 4


@dataclass
class JobResult:
    rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass
class JobOutcome:
    job: JobDef
    job_id: uuid.UUID
    status: str
    rows: int
    message: str | None
    details: dict[str, Any]
    seconds: float


@dataclass
class JobContext:
    """What a job function receives. Jobs never import Airflow; everything they need is here."""

    job: JobDef
    job_id: uuid.UUID
    config: Any  # gim_jobs.config.GimConfig
    infomart_dsn: str
    sources: list[DataSource]
    run_type: str
    params: dict[str, Any]
    log: logging.Logger
    deadline: dt.datetime | None = None
    _lease_conn: psycopg.Connection | None = None
    _last_check: float = 0.0
    _stop_reason: str | None = None

    def stop_requested(self) -> str | None:
        """The reason another job or the operator asked this one to stop, else None (cheap)."""
        if _LOCAL_STOP.is_set() and not self._stop_reason:
            self._stop_reason = _LOCAL_STOP_REASON[-1] if _LOCAL_STOP_REASON else "stop requested"
        if self.deadline is not None and not self._stop_reason and dt.datetime.now(dt.UTC) >= self.deadline:
            self._stop_reason = f"deadline {self.deadline:%Y-%m-%d %H:%M:%S %Z} reached (next ETL slot, R9)"
        if self._stop_reason or self._lease_conn is None:
            return self._stop_reason
        now = time.monotonic()
        if now - self._last_check < 0.5:
            return None
        self._last_check = now
        row = self._lease_conn.execute(
            "SELECT stop_requested, stop_reason FROM ctl_job_lease WHERE job_name = %s AND job_id = %s",
            (self.job.name, self.job_id),
        ).fetchone()
        if row and row[0]:
            self._stop_reason = row[1] or "stop requested"
        return self._stop_reason

    def check_stop(self) -> None:
        """Raise JobStopped between two committed batches when a stop was requested."""
        reason = self.stop_requested()
        if reason:
            raise JobStopped(f"{self.job.name} stopped: {reason}")

    def register(self, conn: psycopg.Connection) -> psycopg.Connection:
        """Register a working connection: a local stop (on_kill) cancels its running statement, and
        its backend pid is published in ``ctl_job_lease.work_pids`` so a preempting job or ``gim
        stop`` can cancel it from another process (R9, R18)."""
        _WORK_CONNS.append(conn)
        if self._lease_conn is not None:
            self._lease_conn.execute(
                "UPDATE ctl_job_lease SET work_pids = array_append(work_pids, %s) WHERE job_name = %s AND job_id = %s",
                (conn.info.backend_pid, self.job.name, self.job_id),
            )
        return conn

    def pause(self) -> None:
        """Test knob ``[gim-etl] job-test-delay-seconds``: sleep between batches, still stoppable."""
        delay = float(getattr(self.config.gim_etl, "job_test_delay_seconds", 0) or 0)
        end = time.monotonic() + delay
        while time.monotonic() < end:
            self.check_stop()
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))


def _lock_key_sql() -> str:
    return "hashtextextended('gim-job:' || %s, 0)"


def schema_version_check(dsn: str) -> None:
    from gim_jobs.db.migrate import current_version, migrations

    want = [m.version for m in migrations("infomart")]
    with connect(dsn, autocommit=True, app="gim-check") as conn:
        have = current_version(conn, "infomart")
        missing = want if have == 0 else [
            v for v in want
            if not conn.execute("SELECT 1 FROM ctl_schema_info WHERE version = %s", (v,)).fetchone()
        ]
    if missing:
        raise JobRefused(
            f"the Info Mart schema lacks migration(s) {missing} (at version {have}, this gim-airflow needs "
            f"{want[-1]}): run `gim init-db`"
        )


def request_stop(dsn: str, job_name: str, reason: str, *, cancel_sql: bool = True) -> bool:
    """Ask the running instance of ``job_name`` to stop at its next check and (``cancel_sql``)
    cancel the statements its working connections run now. True if an instance runs.

    Cancelling is safe: every job commits in batches, so a cancelled statement only rolls back the
    batch in flight, which the next run does again."""
    with connect(dsn, autocommit=True, app="gim-stop") as conn:
        row = conn.execute(
            """UPDATE ctl_job_lease l SET stop_requested = true, stop_reason = %s
                WHERE job_name = %s AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)
            RETURNING work_pids""",
            (reason, job_name),
        ).fetchone()
        if row is None:
            return False
        if cancel_sql and row[0]:
            conn.execute("SELECT pg_cancel_backend(p) FROM unnest(%s::int[]) AS p", (row[0],))
        return True


def wait_until_stopped(dsn: str, job_name: str, timeout: float) -> bool:
    """Wait until no live process holds ``job_name``; True when it is free within ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        if not any(r["job_name"] == job_name for r in running_jobs(dsn)):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.25)


def preempt(dsn: str, job_name: str, reason: str, *, timeout: float = 30.0) -> bool:
    """Stop ``job_name`` (request + cancel its SQL) and wait until it has let go (R9).
    Returns False when nothing ran; raises JobError when it did not stop within ``timeout``."""
    if not request_stop(dsn, job_name, reason):
        return False
    if not wait_until_stopped(dsn, job_name, timeout):
        raise JobError(f"{job_name} was asked to stop ({reason}) but still runs after {timeout:.0f} s")
    return True


def running_jobs(dsn: str) -> list[dict[str, Any]]:
    """The jobs whose lock is held right now (lease rows of dead holders are ignored)."""
    with connect(dsn, autocommit=True, app="gim-status") as conn:
        rows = conn.execute(
            """SELECT l.job_name, l.job_id, l.run_type, l.dag_id, l.run_id, l.host, l.pid, l.started_at,
                      l.stop_requested
                 FROM ctl_job_lease l
                WHERE EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)"""
        ).fetchall()
    keys = ("job_name", "job_id", "run_type", "dag_id", "run_id", "host", "pid", "started_at", "stop_requested")
    # (the query below lists exactly these columns)
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _acquire(conn: psycopg.Connection, job: JobDef, wait_seconds: float) -> None:
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        got = conn.execute(f"SELECT pg_try_advisory_lock({_lock_key_sql()})", (job.name,)).fetchone()[0]
        if got:
            return
        if time.monotonic() >= deadline:
            holder = conn.execute(
                "SELECT run_type, dag_id, run_id, host, pid, started_at FROM ctl_job_lease WHERE job_name = %s",
                (job.name,),
            ).fetchone()
            who = (
                f" (started {holder[5]:%Y-%m-%d %H:%M:%S %Z} by a {holder[0]} run"
                f"{' ' + holder[2] if holder[2] else ''} on {holder[3]} pid {holder[4]})"
                if holder else ""
            )
            raise JobBusy(
                f"{job.name} is already running{who}; a second instance may not start (R5)"
            )
        time.sleep(0.5)


def run_job(
    job: str | JobDef,
    *,
    run_type: str = "cli",
    dag_id: str | None = None,
    run_id: str | None = None,
    params: dict[str, Any] | None = None,
    wait_seconds: float = 0.0,
    config_path: Any = None,
    infomart_dsn: str | None = None,
    sources: list[DataSource] | None = None,
    before_start: Callable[[JobContext], None] | None = None,
    deadline: dt.datetime | None = None,
) -> JobOutcome:
    """Run one job with every start rule applied; see the module docstring.

    ``run_type`` is ``scheduled`` (Airflow's timetable), ``manual`` (triggered by hand in Airflow)
    or ``cli`` (``gim run``, also by hand). ``before_start`` runs after the lock is taken and
    before the job, for rules that must be checked while holding it.
    """
    from gim_jobs.config import ConfigError, current_config
    from gim_jobs.db.connect import idb_sources
    from gim_jobs.db.connect import infomart_dsn as default_infomart_dsn

    try:
        jd = job if isinstance(job, JobDef) else job_def(job)
    except UnknownJob as exc:
        raise JobRefused(str(exc)) from exc
    _LOCAL_STOP.clear()
    _LOCAL_STOP_REASON.clear()
    if run_type not in RUN_TYPES:
        raise JobRefused(f"run_type must be one of {', '.join(RUN_TYPES)}, not {run_type!r}")
    jlog = logging.getLogger(f"gim.{jd.key}")
    try:
        cfg = current_config(config_path)
    except ConfigError as exc:
        raise JobRefused(f"{jd.name} not started: the configuration has errors (R21):\n{exc}") from exc
    if run_type != "scheduled" and not jd.manual_allowed:
        raise JobRefused(
            f"{jd.name} cannot be run manually (R15): it runs only on its schedule "
            f"({'update-stats-schedule' if jd.key == 'update_stats' else 'export-schedule'} in [schedule])"
        )
    dsn = infomart_dsn or default_infomart_dsn()
    schema_version_check(dsn)
    srcs = sources if sources is not None else idb_sources()

    job_id = uuid.uuid4()
    started = time.monotonic()
    lease = connect(dsn, autocommit=True, app=f"gim-{jd.key}-lease")
    try:
        _acquire(lease, jd, wait_seconds)
        backend_pid = lease.info.backend_pid
        with lease.transaction():
            lease.execute(
                """UPDATE ctl_etl_history SET status = 'FAILED', end_time = now(),
                          message = 'the job process ended without finishing (killed or crashed); '
                                    || 'its committed batches are kept and the next run continues'
                    WHERE job_name = %s AND status = 'RUNNING'""",
                (jd.name,),
            )
            lease.execute(
                """INSERT INTO ctl_job_lease (job_name, job_id, run_type, dag_id, run_id, host, pid, backend_pid)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (job_name) DO UPDATE SET job_id = EXCLUDED.job_id, run_type = EXCLUDED.run_type,
                       dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id, host = EXCLUDED.host,
                       pid = EXCLUDED.pid, backend_pid = EXCLUDED.backend_pid, started_at = now(),
                       heartbeat_at = now(), stop_requested = false, stop_reason = NULL""",
                (jd.name, job_id, run_type, dag_id, run_id, socket.gethostname(), os.getpid(), backend_pid),
            )
            lease.execute(
                """INSERT INTO ctl_etl_history (job_id, job_name, job_version, run_type, dag_id, run_id, host, pid,
                                                status)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'RUNNING')""",
                (job_id, jd.name, __version__, run_type, dag_id, run_id, socket.gethostname(), os.getpid()),
            )
        ctx = JobContext(jd, job_id, cfg, dsn, srcs, run_type, dict(params or {}), jlog, deadline, lease)
        if deadline is not None:
            lease.execute("UPDATE ctl_job_lease SET deadline = %s WHERE job_name = %s", (deadline, jd.name))
        status, rows, message, details = "COMPLETED", 0, None, {}
        error: BaseException | None = None
        try:
            if before_start:
                before_start(ctx)
            start_delay = float(getattr(cfg.gim_etl, "job_test_start_delay_seconds", 0) or 0)
            if start_delay:
                jlog.warning("test knob job-test-start-delay-seconds: sleeping %.1f s", start_delay)
                until = time.monotonic() + start_delay
                while time.monotonic() < until:
                    ctx.check_stop()
                    time.sleep(min(0.2, max(0.0, until - time.monotonic())))
            module = importlib.import_module(jd.module)
            result: JobResult = module.run(ctx)
            rows, message, details = result.rows, result.message, result.details
        except JobError as exc:
            status, message, error = exc.status, str(exc), exc
        except Exception as exc:  # recorded, then re-raised: the caller (Airflow) marks the run failed
            ctx._last_check = 0.0  # noqa: SLF001 - force a fresh look at the lease row
            if isinstance(exc, psycopg.errors.QueryCanceled) and ctx.stop_requested():
                stopped = JobStopped(f"{jd.name} stopped: {ctx.stop_requested()}")
                status, message, error = stopped.status, str(stopped), stopped
            else:
                status, message, error = "FAILED", f"{type(exc).__name__}: {exc}", exc
        except BaseException as exc:  # KeyboardInterrupt / SystemExit from a stop signal
            status, message, error = "STOPPED", f"interrupted ({type(exc).__name__})", exc
        finally:
            _WORK_CONNS.clear()
            with lease.transaction():
                lease.execute(
                    """UPDATE ctl_etl_history SET status = %s, end_time = now(), row_count = %s, message = %s,
                              details = %s WHERE job_id = %s""",
                    (status, rows, message, Jsonb(details), job_id),
                )
                lease.execute("DELETE FROM ctl_job_lease WHERE job_name = %s AND job_id = %s", (jd.name, job_id))
            lease.execute(f"SELECT pg_advisory_unlock({_lock_key_sql()})", (jd.name,))
        if error is not None:
            raise error
        return JobOutcome(jd, job_id, status, rows, message, details, time.monotonic() - started)
    finally:
        lease.close()
