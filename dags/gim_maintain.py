"""
### Airflow DAG: Job_MaintainGIM

Purges the Info Mart per the `days-to-keep-*` options (R23), keeps the default `date_time` calendar
and every `[date-time-<name>]` calendar filled ahead (R24), and creates partitions
`partitioning-ahead-range` days ahead (R25), in small committed batches.

It starts daily at `maintain-start-time` (in `[schedule] timezone`, outside the ETL window, R6) when
`run-maintain = true`. A scheduled run waits for a running ETL cycle (R7); while it runs, scheduled
extract, transform, aggregate, export and update-stats launches do not run (R8, R10); an ETL cycle that
falls due stops it between batches (R9) and the next run finishes the rest. It can be run by hand
(R15; R7-R9 then do not apply: the operator is responsible), one instance at a time (R5). Params of a
manual run: `batch_rows`, `unit_batch`, `steps` (`partitions,calendars,purge`).
"""

from gim_operators import GimJobOperator, GimTag, job_dag


def maintain_timetable():
    """Daily at ``[schedule] maintain-start-time`` (read at every parse: a change takes effect within
    one DAG-file parse interval, R14). A config with errors yields 03:00 GMT; its runs are refused."""
    from gim_timetables import Cron2Timetable

    from gim_jobs.config import ConfigError, current_config

    try:
        s = current_config().schedule
        hour, minute = divmod(s.maintain_start_time, 60)
        return Cron2Timetable(f"{minute} {hour}", timezone=s.timezone)
    except (ConfigError, OSError):
        return Cron2Timetable("0 3", timezone="GMT")


with job_dag("maintain", schedule=maintain_timetable(), tags=(GimTag.MAINTENANCE,), doc_md=__doc__):
    GimJobOperator(job="maintain")
