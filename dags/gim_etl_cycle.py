"""
### Airflow DAG: ETL cycle: Job_ExtractICON then Job_TransformGIM

Runs every `etl-frequency` minutes from `etl-start-time` to `etl-end-time` (wall clock in `timezone`;
a window may span midnight) as set in `[schedule]` of `config/gim.ini` (R1-R3). A cycle that runs
longer than the frequency makes the next one start as soon as it ends (one late cycle, no backlog).
`run-scheduler = false` makes scheduled cycles skip (R4). Each job also refuses to start while
another instance of it runs, whoever started it (R5).
"""

from gim_operators import GimJobOperator, GimTag, etl_timetable, job_dag

with job_dag(
    "extract",
    dag_id="gim_etl_cycle",
    display_name="ETL cycle (Job_ExtractICON → Job_TransformGIM)",
    schedule=etl_timetable(),
    tags=(GimTag.ETL,),
    doc_md=__doc__,
):
    GimJobOperator(job="extract") >> GimJobOperator(job="transform")
