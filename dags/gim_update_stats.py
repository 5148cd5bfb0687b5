"""
### Airflow DAG: Job_UpdateStats

ANALYZE (and VACUUM where dead rows warrant it) the Info Mart tables the ETL changed, on
`update-stats-schedule` (2-field cron, default `0/10 *`) when `run-update-stats = true` (R10). It runs
beside ETL; while scheduled Job_MaintainGIM runs it skips (R10). It cannot be run by hand (R15).
"""

from gim_operators import GimJobOperator, GimTag, cron_timetable, job_dag

with job_dag("update_stats", schedule=cron_timetable("update_stats_schedule", "0/10 *"), tags=(GimTag.STATS,),
             doc_md=__doc__):
    GimJobOperator(job="update_stats")
