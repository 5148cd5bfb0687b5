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


def _flush(dsn: str, sql: str = "SELECT 1") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)
        conn.execute("SELECT pg_stat_force_next_flush()")


def _inherited_stats(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = %s AND inherited", (table,)).fetchone()[0]


SEED_IF = """INSERT INTO interaction_fact (interaction_id, data_source_key, media_type_key, interaction_type_key,
                 media_server_ixn_guid, media_server_root_ixn_guid, start_ts, start_date_time_key, active_flag,
                 create_audit_key, update_audit_key)
             SELECT g, 1, 1, 1, 'i' || g, 'i' || g, 1700000000 + g, 1700000000 + g - (1700000000 + g) %% 900, 1, 1, 1
               FROM generate_series(%s, %s) g"""


def test_r10_update_stats_analyzes_partitioned_fact_tables_when_their_partitions_changed(
        infomart_dsn, make_config) -> None:
    """PostgreSQL counts no changes on a partitioned parent and autovacuum never analyzes it: the
    job analyzes interaction_fact as a whole when its partitions changed by 10 % since it last did."""
    def run() -> dict[str, dict]:
        out = run_job("update_stats", infomart_dsn=infomart_dsn, sources=[], config_path=make_config(),
                      run_type="scheduled")
        assert out.status == "COMPLETED"
        return {t["table"]: t for t in out.details["tables"]}

    _flush(infomart_dsn, SEED_IF % (1, 2000))
    assert _inherited_stats(infomart_dsn, "interaction_fact") == 0
    first = run()
    assert first["interaction_fact"]["action"] == "analyze partitioned"
    assert first["interaction_fact"]["modified"] is None  # never analyzed before
    assert first["interaction_fact_default"]["action"] == "analyze"  # the partition holding the rows
    assert _inherited_stats(infomart_dsn, "interaction_fact") > 0
    # +5 %: below the parent's threshold
    _flush(infomart_dsn, SEED_IF % (2001, 2100))
    assert "interaction_fact" not in run()
    # +25 % more: analyzed again, the change counted since the last time
    _flush(infomart_dsn, SEED_IF % (2101, 2600))
    again = run()["interaction_fact"]
    assert again["action"] == "analyze partitioned" and again["modified"] == 600
    # a new partition counts as a change, however few rows it holds
    _flush(infomart_dsn, "CREATE TABLE interaction_fact_ptest PARTITION OF interaction_fact "
                         "FOR VALUES FROM (1800000000) TO (1800086400)")
    assert run()["interaction_fact"]["partitions"] == 2
    assert "interaction_fact" not in run()
