"""docker-compose.yml cannot run here (no Docker engine); check its shape instead."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_present() -> None:
    services = set(_compose()["services"])
    assert {"postgres", "redis", "airflow-worker", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "idb-simulator"} <= services


def test_airflow_components_share_settings_and_mount_the_project() -> None:
    comp = _compose()
    airflow = {k: v for k, v in comp["services"].items() if k.startswith("airflow-") or k == "idb-simulator"}
    secrets = {v["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for v in airflow.values()}
    assert len(secrets) == 1, "every component must share one JWT secret"
    for name, svc in airflow.items():
        mounts = {m.split(":")[1] for m in svc["volumes"]}
        assert {"/opt/gim/dags", "/opt/gim/plugins", "/opt/gim/config"} <= mounts, name
        env = svc["environment"]
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/gim/dags"
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/gim/plugins"
        assert "gim_infomart" in env["AIRFLOW_CONN_GIM_INFOMART"]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_init_imports_pools_and_creates_schemas() -> None:
    cmd = " ".join(_compose()["services"]["airflow-init"]["command"])
    assert "pools import /opt/gim/config/pools.json" in cmd
    assert "gim init-db" in cmd and "airflow db migrate" in cmd
    assert (REPO / "config" / "pools.json").exists()


def test_postgres_init_creates_the_three_databases() -> None:
    sql = (REPO / "docker" / "postgres-init.sql").read_text()
    for db in ("airflow", "gim_infomart", "gim_idb"):
        assert f"CREATE DATABASE {db}" in sql


def test_celery_executor_with_redis_broker_and_postgres_results() -> None:
    comp = _compose()
    worker = comp["services"]["airflow-worker"]
    assert worker["command"] == "celery worker"
    for name, svc in comp["services"].items():
        if name.startswith("airflow-"):
            env = svc["environment"]
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
            assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
            assert "postgres:5432" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
            assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
