"""
### Airflow DAG: Job_AggregateGIM

Keeps the `agt_*` aggregate tables (views `ag2_*`) current from changed facts. When
`run-aggregates = true` a run starts at each `aggregate-schedule` time (2-field cron) and lives
until the window of `aggregate-duration` ends, processing pending intervals every few seconds
(R11). Stopped inside the window (Mark as failed, `gim stop aggregate`, a crash), the next run is
created within seconds (the timetable's restart slot). To stop aggregation for good set
`run-aggregates = false` first (R17). Scheduled runs skip while scheduled maintenance runs (R8).

**Trigger by hand** only inside an aggregation window and only while `run-aggregates = false`
(R16); otherwise the run is refused with the reason.

**Re-aggregation** (R19/R20): fill *insertPendingAgg* with `<AGR_SET>:<START>:<END>`, e.g.
`H_AGENT,H_QUEUE-DAY.Online:2024-01-01:2024-01-31` or `ALLSETS:2024-01-01:2024-01-01`. A malformed
value is refused by the trigger form / REST API (400). While aggregation runs, the request is queued
and the running aggregation deletes and recomputes that range and set; when aggregation is not
running, the run starts it and ignores the parameter (the log says so): trigger again.
"""

from typing import Any

from airflow.sdk import Param
from gim_operators import GimJobOperator, GimTag, job_dag
from gim_timetables import AggregateWindowTimetable

from gim_jobs.aggregation.params import PARAM_NAME, PATTERN, USAGE


def aggregate_timetable() -> Any:
    """Windows from ``[schedule]`` as configured now (re-read at every parse, R14)."""
    from gim_jobs.config import ConfigError, current_config

    try:
        s = current_config().schedule
        return AggregateWindowTimetable(s.aggregate_schedule.text, s.aggregate_duration, timezone=s.timezone,
                                        restart=s.run_aggregates)
    except (ConfigError, OSError):
        return AggregateWindowTimetable("0 1", 300, timezone="GMT", restart=False)


class AggregateOperator(GimJobOperator):
    """GimJobOperator that lets a queued manual run of this DAG in (``max_active_runs=1``): the
    running aggregation checks between cycles and ends so the manual run (a re-aggregation request,
    R20) can start; the timetable's restart slot brings the scheduled aggregation back after it."""

    def execute(self, context: Any) -> dict[str, Any]:
        from gim_jobs.jobs import aggregate

        ti = context.get("ti")
        dag_id = context["dag_run"].dag_id
        if ti is not None and hasattr(ti, "get_dr_count"):
            aggregate.yield_check = lambda: ti.get_dr_count(dag_id=dag_id, states=["queued"]) > 0
        try:
            return super().execute(context)
        finally:
            aggregate.yield_check = None


with job_dag(
    "aggregate",
    schedule=aggregate_timetable(),
    tags=(GimTag.AGGREGATION,),
    doc_md=__doc__,
    params={
        PARAM_NAME: Param(
            "", type="string", pattern=PATTERN, title="-insertPendingAgg",
            description="empty, or <AGR_SET>:<START>:<END> (R19). " + USAGE,
        ),
    },
):
    AggregateOperator(job="aggregate")
