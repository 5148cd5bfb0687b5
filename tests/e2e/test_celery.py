"""The DAGs through a real Celery worker (CeleryExecutor) with Redis as broker and PostgreSQL for
Airflow's metadata and Celery's results: proof the project does not depend on a single-process
executor. Uses the Redis and PostgreSQL services of this machine (127.0.0.1:6379, :5432); skipped
where they are absent (set GIM_CELERY_PG_DSN / GIM_CELERY_REDIS_URL to point elsewhere)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import psycopg
import pytest

from tests.e2e.stack import AirflowStack, Seed, airflow_with_databases

pytestmark = pytest.mark.e2e

PG = os.environ.get("GIM_CELERY_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("GIM_CELERY_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowStack, str, str]]:
    r, p = urlparse(REDIS), psycopg.conninfo.conninfo_to_dict(PG)
    if not _reachable(r.hostname or "127.0.0.1", r.port or 6379) or not _reachable(
            str(p.get("host") or "127.0.0.1"), int(p.get("port") or 5432)):
        pytest.skip(f"needs Redis at {REDIS} and PostgreSQL at {PG} (services of the CI machine)")
    home = tmp_path_factory.mktemp("airflow-celery")
    queue = f"gim_{uuid.uuid4().hex[:8]}"

    def result_backend(af: str) -> str:
        info = psycopg.conninfo.conninfo_to_dict(af)
        return (f"db+postgresql+psycopg://{info.get('user') or 'postgres'}@{info.get('host')}:"
                f"{info.get('port') or 5432}/{info['dbname']}")

    with airflow_with_databases(
        PG, home, "gimcel", {"schedule": {"run-scheduler": "false"}}, seed=Seed(interactions=200, seed=11),
        extra_env=lambda dbs: {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": REDIS,
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend(dbs["af"]), "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue},
        components=[["api-server"], ["scheduler"], ["dag-processor"],
                    ["celery", "worker", "--concurrency", "2", "--queues", queue]],
    ) as af:
        yield af.stack, af.im, queue


def test_extract_and_transform_run_on_a_celery_worker(celery_stack) -> None:
    stack, im, queue = celery_stack
    stack.wait_for("the DAGs to be parsed", lambda: stack.api("GET", "/dags?dag_id_pattern=gim_")["total_entries"] >= 3,
                   timeout=120)
    for dag_id in ("gim_extract_icon", "gim_transform"):
        run = stack.trigger(dag_id)
        done = stack.wait_for(
            f"{dag_id} to finish on the Celery worker",
            lambda d=dag_id, r=run["dag_run_id"]: next(
                (x for x in stack.runs(d) if x["dag_run_id"] == r and x["state"] in ("success", "failed")), None),
            timeout=240)
        assert done["state"] == "success", stack.tail()
        tis = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        assert [t["queue"] for t in tis] == [queue]  # the Celery queue only our worker listens on
    with psycopg.connect(im) as conn:
        hist = conn.execute("SELECT job_name, status, run_type FROM ctl_etl_history ORDER BY id").fetchall()
        facts = conn.execute("SELECT count(*) FROM interaction_fact").fetchone()[0]
    assert hist == [("Job_ExtractICON", "COMPLETED", "manual"), ("Job_TransformGIM", "COMPLETED", "manual")]
    assert facts > 0
    assert "celery" in stack.tail(400).lower()
