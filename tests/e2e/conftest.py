"""The e2e tier's shared Airflow: one ``airflow standalone`` for the modules that run on it, started
when the first of them needs it and stopped after the last test of this package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import SharedAirflow, airflow_with_databases

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the Celery module (its own Airflow) before the modules sharing one, so two Airflows never
    run at the same time on the CI machine's two cores. Only the order inside this package changes."""
    here = [i for i, item in enumerate(items) if item.path.parent == HERE]
    ordered = sorted((items[i] for i in here), key=lambda item: item.path.name != "test_celery.py")
    for i, item in zip(here, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="package")
def shared_airflow(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedAirflow]:
    home = tmp_path_factory.mktemp("airflow-shared")
    with airflow_with_databases(pg_admin_dsn, home, "gime2e", SharedAirflow.IDLE, extra_env={
        # a module unpauses the DAGs once its databases and config are in place (SharedAirflow.activate)
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }) as env:
        yield SharedAirflow(pg_admin_dsn, env)
