"""
### Airflow DAG: Job_ExtractICON (manual)

Copies new and changed IDB rows of every data source and extraction role into the `gidb_*` staging
tables, by high-water mark. Scheduled extraction runs inside the `gim_etl_cycle` DAG; trigger this
DAG to extract by hand (R15). It refuses to start while another extraction runs (R5).
"""

from gim_operators import GimJobOperator, GimTag, job_dag

with job_dag("extract", tags=(GimTag.ETL,), doc_md=__doc__):
    GimJobOperator(job="extract")
