"""
### Airflow DAG: Job_TransformGIM (manual)

Turns staged `gidb_*` rows into facts and dimensions. Scheduled transformation runs inside the
`gim_etl_cycle` DAG; trigger this DAG to transform by hand, even while extraction runs (R15). With
nothing staged it succeeds doing nothing. It refuses to start while another transformation runs (R5).
"""

from gim_operators import GimJobOperator, GimTag, job_dag

with job_dag("transform", tags=(GimTag.ETL,), doc_md=__doc__):
    GimJobOperator(job="transform")
