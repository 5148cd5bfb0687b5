"""Job_AggregateGIM on the real Airflow scheduler: continuous run in its window and restart (R11),
manual runs refused while run-aggregates = true (R16), insertPendingAgg refused by the REST API
(R19, 400) and handed to the running aggregation (R20). ETL runs every minute beside it, so the
aggregation has changing facts to follow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gim_jobs.control import request_stop
from tests.e2e.stack import AirflowStack, Seed, SharedAirflow

pytestmark = pytest.mark.e2e
DAG = "gim_aggregate"


def q(dsn: str, sql: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


class Env:
    def __init__(self, stack: AirflowStack, cfg: Path, im: str) -> None:
        self.stack, self.cfg, self.im = stack, cfg, im

    def runs(self, run_type: str | None = None, state: str | None = None) -> list[dict]:
        return [r for r in self.stack.runs(DAG) if (run_type is None or r["run_type"] == run_type)
                and (state is None or r["state"] == state)]

    def history(self) -> list[tuple]:
        return q(self.im, "SELECT run_type, run_id, status, message FROM ctl_etl_history "
                          "WHERE job_name = 'Job_AggregateGIM' ORDER BY id")


def _window_opening_now() -> dict[str, dict[str, str]]:
    """ETL every minute; the aggregation window opened this minute and lasts 15 minutes: the first
    run is due at once."""
    now = dt.datetime.now(dt.UTC)
    return {"schedule": {
        "etl-start-time": "00:00", "etl-end-time": "23:59", "etl-frequency": "1", "run-scheduler": "true",
        "run-maintain": "false", "run-update-stats": "false", "run-export": "false", "timezone": "GMT",
        "run-aggregates": "true", "aggregate-schedule": f"{now.minute} {now.hour}", "aggregate-duration": "00:15"}}


@pytest.fixture(scope="module")
def env(shared_airflow: SharedAirflow) -> Iterator[Env]:
    af = shared_airflow.activate("test_aggregate_scheduler", _window_opening_now, seed=Seed(interactions=300, seed=11))
    yield Env(af.stack, af.cfg, af.im)
    shared_airflow.release()


def test_r11_runs_continuously_in_its_window_and_is_restarted_when_stopped(env: Env) -> None:
    st = env.stack
    first = st.wait_for("a scheduled aggregation running", lambda: env.runs("scheduled", "running"), timeout=120)[0]
    def aggregated() -> bool:
        return q(env.im, "SELECT to_regclass('agt_agent_day') IS NOT NULL")[0][0] and \
            q(env.im, "SELECT EXISTS (SELECT 1 FROM agt_agent_day)")[0][0]

    st.wait_for("facts aggregated by the running job", aggregated, timeout=150)
    # still the same run: continuous, not one run per batch
    assert env.runs("scheduled", "running")[0]["dag_run_id"] == first["dag_run_id"]
    assert request_stop(env.im, "Job_AggregateGIM", "e2e stop inside the window")
    stopped = dt.datetime.now(dt.UTC)

    def restarted():
        return [r for r in env.runs("scheduled", "running") if r["dag_run_id"] != first["dag_run_id"]]

    again = st.wait_for("the aggregation restarted (R11)", restarted, timeout=60, every=1)[0]
    assert (dt.datetime.fromisoformat(again["start_date"]) - stopped).total_seconds() < 30
    assert any(s == "STOPPED" for _rt, _r, s, _m in env.history())


def test_r19_bad_parameter_refused_by_the_rest_api(env: Env) -> None:
    with pytest.raises(RuntimeError, match=" 400 "):
        env.stack.trigger(DAG, {"insertPendingAgg": "H_NOPE-DAY:2024-01-01:2024-01-01"})
    with pytest.raises(RuntimeError, match=" 400 "):
        env.stack.trigger(DAG, {"insertPendingAgg": "H_AGENT-WEEK:2024-01-01:2024-01-01"})


def test_r16_manual_run_refused_while_run_aggregates_true_and_r20_request_reaches_the_aggregation(env: Env) -> None:
    st = env.stack
    st.wait_for("a scheduled aggregation running", lambda: env.runs("scheduled", "running"), timeout=60, every=1)
    manual = st.trigger(DAG)
    st.wait_for("the manual run finished", lambda: [r for r in env.runs("manual") if r["dag_run_id"] ==
                                                    manual["dag_run_id"] and r["state"] in ("failed", "success")],
                timeout=90)
    refused = [h for h in env.history() if h[1] == manual["dag_run_id"]]
    assert refused and refused[0][2] == "REFUSED" and "R16" in refused[0][3]
    # the scheduled aggregation is back after the manual run (R11)
    st.wait_for("aggregation running again", lambda: env.runs("scheduled", "running"), timeout=60, every=1)

    day = dt.datetime.now(dt.UTC).date().isoformat()
    with psycopg.connect(env.im, autocommit=True) as conn:
        conn.execute("UPDATE agt_agent_hour SET offered = offered + 1000")
    req = st.trigger(DAG, {"insertPendingAgg": f"H_AGENT-HOUR:{day}:{day}"})
    st.wait_for("the request run succeeded", lambda: [r for r in env.runs("manual", "success")
                                                      if r["dag_run_id"] == req["dag_run_id"]], timeout=90)
    st.wait_for("the running aggregation recomputed the range", lambda: q(
        env.im, "SELECT NOT EXISTS (SELECT 1 FROM agt_agent_hour WHERE offered >= 1000) AND NOT EXISTS "
                "(SELECT 1 FROM ctl_aggregate_pending WHERE source = 'insertPendingAgg')")[0][0], timeout=90)
    assert env.runs("scheduled", "running")
