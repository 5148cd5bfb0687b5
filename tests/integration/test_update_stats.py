"""Job_UpdateStats on a real PostgreSQL (R10, R15)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import psycopg
import pytest

from gim_jobs.control import JobRefused, run_job, running_jobs
from gim_jobs.registry import JOBS


def _churn(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE churn_fact (id int PRIMARY KEY, v int)")
        conn.execute("CREATE TABLE quiet_fact (id int PRIMARY KEY)")
        conn.execute("INSERT INTO churn_fact SELECT g, 0 FROM generate_series(1, 5000) g")
        conn.execute("UPDATE churn_fact SET v = 1")  # 5000 dead rows
        conn.execute("SELECT pg_stat_force_next_flush()")


def _stats(dsn: str, table: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT last_analyze, last_vacuum, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s",
            (table,)).fetchone()


def test_r10_update_stats_analyzes_and_vacuums_changed_tables(infomart_dsn, make_config) -> None:
    _churn(infomart_dsn)
    time.sleep(0.2)
    out = run_job("update_stats", infomart_dsn=infomart_dsn, sources=[], config_path=make_config(),
                  run_type="scheduled")
    assert out.status == "COMPLETED"
    actions = {t["table"]: t["action"] for t in out.details["tables"]}
    assert actions.get("churn_fact") == "vacuum analyze"
    assert "quiet_fact" not in actions
    last_analyze, last_vacuum, mods = _stats(infomart_dsn, "churn_fact")
    assert last_analyze is not None and last_vacuum is not None
    # nothing changed since: a second run has nothing to do
    again = run_job("update_stats", infomart_dsn=infomart_dsn, sources=[], config_path=make_config(),
                    run_type="scheduled")
    assert "churn_fact" not in {t["table"] for t in again.details["tables"]}


def test_r10_update_stats_suspended_while_maintenance_runs(infomart_dsn, make_config) -> None:
    cfg = make_config()
    sleepy = replace(JOBS["maintain"], module="tests.integration.sleepy_job")
    t = threading.Thread(target=lambda: run_job(sleepy, infomart_dsn=infomart_dsn, sources=[], config_path=cfg,
                                                run_type="scheduled", params={"steps": 10}))
    t.start()
    while not running_jobs(infomart_dsn):
        time.sleep(0.05)
    with pytest.raises(JobRefused, match=r"suspended .*\(R10\)"):
        run_job("update_stats", infomart_dsn=infomart_dsn, sources=[], config_path=cfg, run_type="scheduled")
    t.join()


def test_r15_update_stats_refuses_manual_runs(infomart_dsn, make_config) -> None:
    with pytest.raises(JobRefused, match="R15"):
        run_job("update_stats", infomart_dsn=infomart_dsn, sources=[], config_path=make_config(), run_type="manual")
