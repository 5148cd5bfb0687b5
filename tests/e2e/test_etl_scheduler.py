"""The ETL cycle on the real Airflow scheduler (standalone), on a compressed clock.

The e2e tier's shared Airflow, handed to this module with fresh databases; the tests run in order and
change config/gim.ini under it, the way an admin would (R14). ETL every minute, all day; jobs made slow
with the test knob where a test needs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pendulum
import psycopg
import pytest

from tests.conftest import REPO, write_config
from tests.e2e.stack import AirflowStack, Seed, SharedAirflow

pytestmark = pytest.mark.e2e

ETL_EVERY_MINUTE = {"schedule": {"etl-start-time": "00:00", "etl-end-time": "23:59", "etl-frequency": "1",
                                 "run-maintain": "false", "run-scheduler": "true", "run-update-stats": "false",
                                 "run-export": "false", "run-aggregates": "false"}}


class Env:
    def __init__(self, stack: AirflowStack, cfg: Path, infomart: str, idb: str) -> None:
        self.stack, self.cfg, self.infomart, self.idb = stack, cfg, infomart, idb

    def set_config(self, extra: dict[str, dict[str, str]] | None = None) -> None:
        merged = {k: dict(v) for k, v in ETL_EVERY_MINUTE.items()}
        for sec, opts in (extra or {}).items():
            merged.setdefault(sec, {}).update(opts)
        write_config(self.cfg, merged)

    def history(self, run_id: str | None = None) -> list[dict]:
        with psycopg.connect(self.infomart) as conn:
            cur = conn.execute(
                """SELECT job_name, status, run_type, run_id, start_time, end_time, message FROM ctl_etl_history
                    WHERE %(r)s::text IS NULL OR run_id = %(r)s ORDER BY id""", {"r": run_id})
            cols = [c.name for c in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def scheduled_runs(self, state: str | None = None) -> list[dict]:
        return [r for r in self.stack.runs("gim_etl_cycle")
                if r["run_type"] == "scheduled" and (state is None or r["state"] == state)]


@pytest.fixture(scope="module")
def env(shared_airflow: SharedAirflow) -> Iterator[Env]:
    af = shared_airflow.activate("test_etl_scheduler", ETL_EVERY_MINUTE, seed=Seed(interactions=300, seed=7))
    yield Env(af.stack, af.cfg, af.im, af.idb)
    shared_airflow.release()


def test_r02_r03_scheduled_cycles_extract_then_transform_every_slot(env: Env) -> None:
    runs = env.stack.wait_for("two successful scheduled ETL cycles",
                              lambda: len(env.scheduled_runs("success")) >= 2 and env.scheduled_runs("success"),
                              timeout=240)
    slots = [pendulum.parse(r["logical_date"]) for r in runs]
    assert all(s.second == 0 and s.microsecond == 0 for s in slots), slots  # every etl-frequency = 1 min
    assert (slots[-1] - slots[-2]).total_seconds() == 60, slots  # consecutive slots, none skipped
    for r in runs[-2:]:
        hist = env.history(r["dag_run_id"])
        assert [(h["job_name"], h["status"], h["run_type"]) for h in hist] == [
            ("Job_ExtractICON", "COMPLETED", "scheduled"), ("Job_TransformGIM", "COMPLETED", "scheduled")]
        assert hist[0]["end_time"] <= hist[1]["start_time"]  # R3: transform after extract
        assert pendulum.instance(hist[0]["start_time"]) >= pendulum.parse(r["logical_date"])
    with psycopg.connect(env.infomart) as conn:
        assert conn.execute("SELECT count(*) FROM interaction_fact").fetchone()[0] > 0


def test_r04_run_scheduler_false_pauses_scheduled_launches_and_true_resumes(env: Env) -> None:
    env.set_config({"schedule": {"run-scheduler": "false"}})
    changed = pendulum.now("UTC")

    def paused_run():
        for r in env.scheduled_runs():
            if r["state"] == "success" and pendulum.parse(r["logical_date"]) > changed:
                states = env.stack.task_states("gim_etl_cycle", r["dag_run_id"])
                if states and all(s == "skipped" for s in states.values()):
                    return r
        return None

    run = env.stack.wait_for("a scheduled cycle skipped by run-scheduler=false", paused_run, timeout=180)
    assert env.history(run["dag_run_id"]) == []  # no job started
    env.set_config({"schedule": {"run-scheduler": "true"}})
    resumed_after = pendulum.now("UTC")
    env.stack.wait_for(
        "a scheduled cycle running again after run-scheduler=true",
        lambda: [r for r in env.scheduled_runs("success")
                 if pendulum.parse(r["logical_date"]) > resumed_after and env.history(r["dag_run_id"])],
        timeout=180)


def test_r03_long_cycle_next_starts_at_once_one_late_cycle_only_and_r05_cli_refused(env: Env) -> None:
    """A cycle lasting over two slots: the next cycle starts as soon as it ends, for the latest due slot
    only (the slot in between never runs); meanwhile `gim run extract` from a shell is refused (R5)."""
    env.set_config({"gim-etl": {"job-test-start-delay-seconds": "130"}})
    set_at = pendulum.now("UTC")

    def long_run_started():
        for h in env.history():
            if h["job_name"] == "Job_ExtractICON" and h["status"] == "RUNNING" and \
                    pendulum.instance(h["start_time"]) > set_at:
                return h
        return None

    running = env.stack.wait_for("a slow scheduled extraction to start", long_run_started, timeout=150)
    cli_env = dict(os.environ, GIM_INFOMART_DSN=env.infomart, GIM_IDB_DSN=env.idb, GIM_CONFIG=str(env.cfg))
    proc = subprocess.run([sys.executable, "-m", "gim_jobs.cli", "run", "extract"], env=cli_env,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "already running" in proc.stderr and "(R5)" in proc.stderr

    env.set_config({})  # back to fast jobs for the cycles that follow
    long_id = running["run_id"]

    def next_after_long():
        runs = env.scheduled_runs()
        ids = [r["dag_run_id"] for r in runs]
        if long_id not in ids:
            return None
        i = ids.index(long_id)
        if runs[i]["state"] != "success" or i + 1 >= len(runs) or runs[i + 1]["state"] != "success":
            return None
        return runs[i], runs[i + 1]

    long_run, nxt = env.stack.wait_for("the cycle after the long one", next_after_long, timeout=300)
    long_end = pendulum.parse(long_run["end_date"])
    long_slot, next_slot = pendulum.parse(long_run["logical_date"]), pendulum.parse(nxt["logical_date"])
    assert (long_end - long_slot).total_seconds() > 120, "the long cycle overran two slots"
    # one late cycle, no backlog: the slots missed while it ran are not all run; the next run is the
    # latest due one and starts promptly after the long cycle ended
    assert (next_slot - long_slot).total_seconds() >= 120, (long_slot, next_slot)
    assert pendulum.parse(nxt["start_date"]) - long_end < dt.timedelta(seconds=45)
    assert not [r for r in env.scheduled_runs()
                if long_slot < pendulum.parse(r["logical_date"]) < next_slot], "a missed slot ran too"
    assert json.dumps(env.history(long_id), default=str).count("COMPLETED") == 2
