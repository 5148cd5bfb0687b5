"""
### Airflow DAG: Job_ExportGIM

Incremental CSV export of the Info Mart facts and dimensions changed since the last export (by audit
key) into `[gim-export] output-directory`, one folder `export_<auditKeyHWM>_<max data time GMT>`
per chunk with a zip of one CSV per table and its `.sha1` (R22). It runs on `export-schedule`
(2-field cron, default `20 0/8` = 00:20, 08:20, 16:20) when `run-export = true` (R12), never while
scheduled Job_MaintainGIM runs (R8), one instance at a time (R5), and cannot be run by hand (R15).
"""

from gim_operators import GimJobOperator, GimTag, cron_timetable, job_dag

with job_dag("export", schedule=cron_timetable("export_schedule", "20 0/8"), tags=(GimTag.EXPORT,),
             doc_md=__doc__):
    GimJobOperator(job="export")
