"""The six Genesys jobs: names, DAG ids, and whether a person may start them (R15).

Kept free of heavy imports so DAG files can read it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownJob(ValueError):
    """A job name that is none of the six; the message lists the valid ones."""


@dataclass(frozen=True)
class JobDef:
    key: str
    name: str
    dag_id: str
    module: str
    manual_allowed: bool
    description: str

    @property
    def pool(self) -> str:
        """The 1-slot Airflow pool every task of this job uses, in every DAG."""
        return f"gim_{self.key}"


JOBS: dict[str, JobDef] = {
    j.key: j
    for j in (
        JobDef("extract", "Job_ExtractICON", "gim_extract_icon", "gim_jobs.jobs.extract", True,
               "copy new IDB rows into gidb_* staging"),
        JobDef("transform", "Job_TransformGIM", "gim_transform", "gim_jobs.jobs.transform", True,
               "turn staged rows into facts and dimensions"),
        JobDef("aggregate", "Job_AggregateGIM", "gim_aggregate", "gim_jobs.jobs.aggregate", True,
               "keep agt_* aggregates current"),
        JobDef("maintain", "Job_MaintainGIM", "gim_maintain", "gim_jobs.jobs.maintain", True,
               "purge, calendars, partitions"),
        JobDef("update_stats", "Job_UpdateStats", "gim_update_stats", "gim_jobs.jobs.update_stats", False,
               "ANALYZE / VACUUM changed tables"),
        JobDef("export", "Job_ExportGIM", "gim_export", "gim_jobs.jobs.export", False,
               "incremental CSV export"),
    )
}


def job_def(name: str) -> JobDef:
    """Look a job up by key (``extract``), Genesys name (``Job_ExtractICON``) or DAG id."""
    for j in JOBS.values():
        if name in (j.key, j.name, j.dag_id) or name.lower() == j.name.lower():
            return j
    valid = ", ".join(f"{j.key} ({j.name})" for j in JOBS.values())
    raise UnknownJob(f"unknown job {name!r}; valid jobs: {valid}")
