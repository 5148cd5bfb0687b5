"""Airflow glue: the operator every gim DAG uses, and the DAG factory.

Everything a job does lives in ``gim_jobs`` (no Airflow imports there); this module only translates
between Airflow and :func:`gim_jobs.control.run_job`:

* the run type (``scheduled`` for the timetable's runs, ``manual`` for triggers) and the launch
  rules that read the configuration *when the run starts* (R4, R14): ``run-scheduler=false`` or a
  slot the current options no longer have makes a scheduled run skip with the reason in its log;
* DSNs from the Airflow connections ``gim_infomart`` and ``gim_idb_*`` (``extra.roles`` lists the
  extraction roles; ``extra.dsn`` may hold a raw libpq DSN, e.g. for a unix socket); without them
  the CLI's resolution applies (``GIM_INFOMART_DSN`` / ``GIM_IDB_*`` / the embedded PostgreSQL);
* ``on_kill`` (UI "mark failed", ``airflow tasks ... --state failed``, timeouts) asks the job to stop
  between batches and cancels its running SQL, so a stopped job leaves consistent tables (R18).

Imported by DAG files as ``gim_operators`` (the plugins folder is on ``sys.path``); keep its
top-level imports cheap.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from typing import Any

from airflow.sdk import BaseOperator

DAG_START_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class GimTag(enum.StrEnum):
    """The closed list of DAG tags."""

    GIM = "gim"
    ETL = "etl"
    MAINTENANCE = "maintenance"
    AGGREGATION = "aggregation"
    EXPORT = "export"
    STATS = "stats"


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "gim",
    "retries": 0,  # a failed job is rerun by the next slot; jobs are idempotent
    "depends_on_past": False,
}

# How long a scheduled task waits for another instance of its job to finish before giving up (R5).
SCHEDULED_LOCK_WAIT_SECONDS = 300
# R7: how often scheduled maintenance looks whether the ETL cycle has finished, and for how long.
ETL_POKE_SECONDS = 5.0
MAINTENANCE_MAX_WAIT_SECONDS = 4 * 3600


def _scheduled_maintenance(dsn: str) -> dict[str, Any] | None:
    from gim_jobs.control import running_jobs

    for r in running_jobs(dsn):
        if r["job_name"] == "Job_MaintainGIM" and r["run_type"] == "scheduled":
            return r
    return None


def _etl_busy(context: Any, dsn: str) -> bool:
    """An ETL cycle is active: a gim_etl_cycle run is queued/running (covers the gap between its
    two tasks), or an extract/transform holds its lock (covers runs not started by that DAG)."""
    from gim_jobs.control import running_jobs

    if any(r["job_name"] in ("Job_ExtractICON", "Job_TransformGIM") for r in running_jobs(dsn)):
        return True
    ti = context.get("ti")
    if ti is not None and hasattr(ti, "get_dr_count"):
        return ti.get_dr_count(dag_id="gim_etl_cycle", states=["running", "queued"]) > 0
    return False


def _conn_dsn(conn: Any) -> str:
    extra = conn.extra_dejson or {}
    if extra.get("dsn"):
        return str(extra["dsn"])
    from psycopg.conninfo import make_conninfo

    parts = {
        "host": conn.host or None,
        "port": conn.port or None,
        "user": conn.login or None,
        "password": conn.password or None,
        "dbname": conn.schema or None,
    }
    return make_conninfo(**{k: v for k, v in parts.items() if v is not None})


def infomart_dsn_from_airflow() -> str | None:
    """DSN of the Airflow connection ``gim_infomart``, or None when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    try:
        return _conn_dsn(Connection.get("gim_infomart"))
    except (AirflowNotFoundException, AirflowRuntimeError):
        return None


def idb_sources_from_airflow() -> list[Any] | None:
    """Data sources from connections ``gim_idb_*`` (found through ``AIRFLOW_CONN_GIM_IDB_*``
    variables and the Airflow Variable ``gim_idb_connections``, a comma-separated id list)."""
    from airflow.sdk import Connection, Variable

    from gim_jobs.db.connect import DataSource, parse_roles

    ids = {k[len("AIRFLOW_CONN_"):].lower() for k in os.environ if k.startswith("AIRFLOW_CONN_GIM_IDB")}
    try:
        listed = Variable.get("gim_idb_connections", default="")
    except Exception:  # noqa: BLE001 - no Variable backend reachable: env ids only
        listed = ""
    ids |= {i.strip() for i in str(listed).split(",") if i.strip()}
    if not ids:
        return None
    sources = []
    for conn_id in sorted(ids):
        conn = Connection.get(conn_id)
        roles = (conn.extra_dejson or {}).get("roles")
        sources.append(DataSource(conn_id.removeprefix("gim_idb_") or conn_id, _conn_dsn(conn), parse_roles(roles)))
    return sources


def airflow_run_type(context: Any) -> str:
    """``scheduled`` for timetable (and backfill) runs, ``manual`` for everything a person started."""
    rt = context["dag_run"].run_type
    value = getattr(rt, "value", rt)
    return "scheduled" if value in ("scheduled", "backfill") else "manual"


def scheduled_launch_refusal(job_key: str, context: Any, cfg: Any) -> str | None:
    """Why a *scheduled* launch must not run under the options in force now (None: it may run)."""
    from gim_jobs import schedule

    s = cfg.schedule
    if not s.run_scheduler:
        return "run-scheduler = false: scheduled launches are paused (R4); running jobs finish"
    if job_key in ("extract", "transform") and context["dag"].dag_id == "gim_etl_cycle":
        slot = context.get("logical_date")
        if slot is not None and schedule.next_etl_slot(
            slot, s.etl_start_time, s.etl_end_time, s.etl_frequency, s.timezone, inclusive=True
        ) != slot:
            return (
                f"slot {slot} is not an ETL start under the options now configured "
                f"({s.etl_start_time_text}-{s.etl_end_time_text} every {s.etl_frequency} min "
                f"{s.timezone}): options changed (R14)"
            )
    flags = {"maintain": "run_maintain", "update_stats": "run_update_stats", "aggregate": "run_aggregates",
             "export": "run_export"}
    if job_key in flags and not getattr(s, flags[job_key]):
        return f"{flags[job_key].replace('_', '-')} = false: this job is switched off"
    if job_key == "maintain":
        return _maintenance_slot_refusal(context, s)
    return None


def _maintenance_slot_refusal(context: Any, s: Any) -> str | None:
    """Added with Job_MaintainGIM (tests/e2e/test_maintenance_rules.py showed it): a scheduled
    maintenance run for a slot that is not ``maintain-start-time`` under the options now in force
    (e.g. the 03:00 slot of the previous options, which ``catchup=False`` creates as the "latest due
    slot" and which ran at 10:25, inside the ETL window, after maintain-start-time had changed), or
    launched only after the next ETL slot had already fallen due (scheduler down, pool busy), is
    skipped: maintenance starts at maintain-start-time, outside the ETL window (R6, R14); the next
    daily slot runs it."""
    import pendulum

    from gim_jobs import schedule

    slot = context.get("logical_date")
    if slot is None:
        return None
    hour, minute = divmod(s.maintain_start_time, 60)
    if schedule.next_cron2(slot, f"{minute} {hour}", s.timezone, inclusive=True) != slot:
        return (f"slot {slot} is not maintain-start-time {s.maintain_start_time_text} {s.timezone} under the "
                f"options now configured: options changed (R14)")
    nxt = schedule.next_etl_slot(slot, s.etl_start_time, s.etl_end_time, s.etl_frequency, s.timezone)
    if pendulum.now("UTC") >= nxt:
        return (f"maintenance of {slot} launched too late: the ETL cycle of {nxt} has fallen due since (R6, R9); "
                f"the next maintain-start-time runs it")
    return None


class GimJobOperator(BaseOperator):
    """Run one Genesys job through gim_jobs.control.run_job."""

    ui_color = "#d6eaf8"
    template_fields = ()

    def __init__(self, *, job: str, **kwargs: Any) -> None:
        from gim_jobs.registry import job_def

        jd = job_def(job)
        kwargs.setdefault("task_id", jd.key)
        kwargs.setdefault("pool", jd.pool)
        kwargs.setdefault("task_display_name", jd.name)
        super().__init__(**kwargs)
        self.job = jd.key

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from gim_jobs.config import ConfigError, current_config
        from gim_jobs.control import JobError, run_job
        from gim_jobs.db.connect import infomart_dsn

        run_type = airflow_run_type(context)
        dsn = infomart_dsn_from_airflow() or infomart_dsn()
        deadline = None
        if run_type == "scheduled":
            try:
                cfg = current_config()
                reason = scheduled_launch_refusal(self.job, context, cfg)
            except ConfigError as exc:
                raise AirflowFailException(f"not started: the configuration has errors (R21):\n{exc}") from exc
            if reason is None:
                reason = self._apply_maintenance_rules(context, dsn)
            if reason:
                self.log.warning("scheduled launch skipped: %s", reason)
                raise AirflowSkipException(reason)
            if self.job == "maintain":
                deadline = self._maintenance_deadline(cfg)
        elif self.job == "maintain" and _etl_busy(context, dsn):
            self.log.warning("manual Job_MaintainGIM while an ETL cycle runs: R7-R9 do not apply to manual "
                             "runs (R15); the operator is responsible")
        dag_run = context["dag_run"]
        try:
            outcome = run_job(
                self.job,
                run_type=run_type,
                dag_id=dag_run.dag_id,
                run_id=dag_run.run_id,
                params=dict(context.get("params") or {}),
                wait_seconds=SCHEDULED_LOCK_WAIT_SECONDS if run_type == "scheduled" else 0,
                infomart_dsn=dsn,
                sources=idb_sources_from_airflow(),
                deadline=deadline,
            )
        except JobError as exc:  # refused (R5, R15, R21), stopped (R9, R18) or failed: no retry
            raise AirflowFailException(f"{exc.status}: {exc}") from exc
        self.log.info("%s %s: %s rows in %.1f s %s", outcome.job.name, outcome.status, outcome.rows,
                      outcome.seconds, outcome.message or "")
        return {"job_id": str(outcome.job_id), "status": outcome.status, "rows": outcome.rows,
                "details": outcome.details}

    def _apply_maintenance_rules(self, context: Any, dsn: str) -> str | None:
        """R7-R10 for scheduled launches. Returns a reason to skip, or None to go ahead."""
        from gim_jobs.control import preempt

        maint = _scheduled_maintenance(dsn)
        if self.job in ("extract", "transform") and maint:
            # R9: an ETL cycle due while scheduled maintenance runs stops maintenance first.
            self.log.warning("scheduled Job_MaintainGIM (%s) runs: stopping it for the ETL cycle (R9)",
                             maint.get("run_id"))
            preempt(dsn, "Job_MaintainGIM", f"ETL cycle {context['dag_run'].run_id} is due (R9)", timeout=60)
        elif self.job in ("update_stats", "aggregate", "export") and maint:
            rule = "R10" if self.job == "update_stats" else "R8"
            return f"scheduled Job_MaintainGIM runs ({maint.get('run_id')}): {self.job} waits for it ({rule})"
        elif self.job == "maintain":
            self._wait_for_etl(context, dsn)  # R7
        return None

    def _wait_for_etl(self, context: Any, dsn: str) -> None:
        """R7: scheduled maintenance starts only when no ETL cycle runs (short poke loop, no
        reschedule mode: Airflow issue #71172). Gives up after MAINTENANCE_MAX_WAIT_SECONDS."""
        import time

        waited, logged = 0.0, False
        while _etl_busy(context, dsn):
            if not logged:
                self.log.info("an ETL cycle runs: scheduled maintenance waits for it to finish (R7)")
                logged = True
            if waited >= MAINTENANCE_MAX_WAIT_SECONDS:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(
                    f"ETL kept running for {waited:.0f} s: scheduled maintenance gave up for today (R7)"
                )
            time.sleep(ETL_POKE_SECONDS)
            waited += ETL_POKE_SECONDS
        if logged:
            self.log.info("ETL cycle finished after %.0f s: maintenance starts", waited)

    def _maintenance_deadline(self, cfg: Any) -> Any:
        """Scheduled maintenance must be done by the next ETL slot (R9): it stops itself there."""
        import pendulum

        from gim_jobs import schedule

        s = cfg.schedule
        return schedule.next_etl_slot(pendulum.now("UTC"), s.etl_start_time, s.etl_end_time, s.etl_frequency,
                                      s.timezone)

    def on_kill(self) -> None:
        from gim_jobs.control import request_local_stop

        request_local_stop("stopped from Airflow (task killed or marked failed)")


def etl_timetable() -> Any:
    """The ETL-window timetable from ``[schedule]`` as it is now (read at parse time: the
    dag-processor re-parses every 30 s, so a change takes effect within that, R14). A config with
    errors still yields a DAG (the defaults' window); its runs are refused at start (R21)."""
    from gim_timetables import EtlWindowTimetable

    from gim_jobs.config import ConfigError, current_config

    try:
        s = current_config().schedule
        return EtlWindowTimetable(
            start=s.etl_start_time_text, end=s.etl_end_time_text, every_minutes=s.etl_frequency,
            timezone=s.timezone,
        )
    except (ConfigError, OSError):
        return EtlWindowTimetable(start="06:30", end="00:30", every_minutes=30, timezone="GMT")


def cron_timetable(option: str, default: str) -> Any:
    """A daily 2-field-cron timetable from ``[schedule] <option>`` (R13), DST-consistent with
    ``gim schedule`` (Cron2Timetable). A config with errors yields the default; runs are refused."""
    from gim_timetables import Cron2Timetable

    from gim_jobs.config import ConfigError, current_config

    try:
        s = current_config().schedule
        return Cron2Timetable(getattr(s, option).text, timezone=s.timezone)
    except (ConfigError, OSError):
        return Cron2Timetable(default, timezone="GMT")


def job_dag(job: str, *, dag_id: str | None = None, schedule: Any = None, display_name: str | None = None,
            tags: tuple[GimTag, ...] = (), doc_md: str | None = None, params: dict[str, Any] | None = None) -> Any:
    """A DAG for one job: the one place dag ids, pools, tags and run limits are derived."""
    from airflow.sdk import DAG

    from gim_jobs.registry import job_def

    jd = job_def(job)
    dag = DAG(
        dag_id=dag_id or jd.dag_id,
        dag_display_name=display_name or jd.name,
        description=jd.description,
        schedule=schedule,
        start_date=DAG_START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=[GimTag.GIM.value, *(t.value for t in tags)],
        doc_md=doc_md,
        params=params or {},
    )
    return dag
