"""Job_MaintainGIM and the maintenance rules on the real Airflow scheduler (standalone), compressed clock.

The e2e tier's shared Airflow, handed to this module with fresh databases, and one scenario built from
the wall clock (GMT) when it starts:

    M-1  last ETL slot of the window (ETL every minute; the window is the whole day but M-1 .. M+2)
    M    maintain-start-time, just outside the window (R6)
    M+1  update-stats-schedule
    M+2  etl-start-time: the first slot of the next window

* the ETL cycle of M-1 is made slow (``job-test-start-delay-seconds``) so it still runs at M: scheduled
  maintenance waits for it (R7), then runs, made slow too (start delay, then
  ``job-test-delay-seconds`` between batches) while purging old facts;
* update-stats at M+1 is skipped while maintenance runs (R8/R10);
* the ETL cycle of M+2 stops maintenance (R9: its deadline is that slot, and the cycle preempts it):
  history STOPPED with the R9 reason, the cycle completes after it, the purge kept whole batches;
* meanwhile run-maintain was switched off and maintain-start-time moved to M+1: that scheduled run is
  skipped (R4/R14);
* a manual maintenance triggered while an ETL cycle runs proceeds with a warning (R15) and finishes
  the purge the stopped run left.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pendulum
import psycopg
import pytest

from tests.conftest import write_config
from tests.e2e.stack import AirflowEnv, AirflowStack, Seed, SharedAirflow

pytestmark = pytest.mark.e2e

OLD_FACTS = 100_000  # purged 10 000 per batch
QUIET = {"schedule": {"etl-start-time": "00:00", "etl-end-time": "23:59", "etl-frequency": "1", "timezone": "GMT",
                      "run-maintain": "false", "run-scheduler": "true", "run-update-stats": "false",
                      "run-export": "false", "run-aggregates": "false"}}


class Env:
    def __init__(self, stack: AirflowStack, cfg: Path, infomart: str, started: float) -> None:
        self.stack, self.cfg, self.infomart, self.started = stack, cfg, infomart, started

    def write(self, overrides: dict[str, dict[str, str]]) -> None:
        write_config(self.cfg, overrides)

    def history(self, job: str | None = None) -> list[dict]:
        with psycopg.connect(self.infomart) as conn:
            cur = conn.execute(
                """SELECT job_id::text, job_name, status, run_type, dag_id, run_id, start_time, end_time, message
                     FROM ctl_etl_history WHERE %(j)s::text IS NULL OR job_name = %(j)s ORDER BY id""", {"j": job})
            cols = [c.name for c in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def one(self, sql: str, params: tuple | None = None):
        with psycopg.connect(self.infomart) as conn:
            return conn.execute(sql, params).fetchone()[0]

    def run_at(self, dag_id: str, at: dt.datetime) -> dict | None:
        for r in self.stack.runs(dag_id):
            if r["run_type"] == "scheduled" and pendulum.parse(r["logical_date"]) == at:
                return r
        return None

    def done_run_at(self, dag_id: str, at: dt.datetime) -> dict | None:
        r = self.run_at(dag_id, at)
        return r if r and r["state"] in ("success", "failed") else None

    def log(self, dag_id: str, run_id: str, task_id: str) -> str:
        out = self.stack.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
                                    "/logs/1?full_content=true")
        return json.dumps(out)


def _old_facts(af: AirflowEnv) -> None:
    """Facts older than days-to-keep-gim-facts (30): what the maintenance purges."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(af.im) as conn:
        conn.execute(
            """INSERT INTO interaction_resource_fact (interaction_resource_id, interaction_id, data_source_key,
                      media_type_key, interaction_type_key, resource_key, technical_descriptor_key, party_guid,
                      media_server_ixn_guid, start_ts, end_ts, start_date_time_key, end_date_time_key,
                      active_flag, create_audit_key, update_audit_key)
               SELECT 1e12::bigint + i, 1e12::bigint + i, 99, 1, 1, 4294967297, 1, 'old-' || i, 'old-' || i, s,
                      s + 60, s - s %% 900, (s + 60) - (s + 60) %% 900, 0, 0, 0
                 FROM generate_series(1, %s) i, LATERAL (SELECT %s::bigint + i %% 86400 AS s) x""",
            (OLD_FACTS, int(now.timestamp()) - 40 * 86400))


@pytest.fixture(scope="module")
def env(shared_airflow: SharedAirflow) -> Iterator[Env]:
    started = time.monotonic()
    af = shared_airflow.activate("test_maintenance_rules", QUIET, seed=Seed(interactions=50, seed=3),
                                 prepare=_old_facts)
    try:
        yield Env(af.stack, af.cfg, af.im, started)
    finally:
        shared_airflow.release()
        print(f"\ne2e maintenance module: {time.monotonic() - started:.0f} s (log {af.stack.log_path})")


def _hhmm(t: dt.datetime) -> str:
    return f"{t:%H:%M}"


def test_r07_r08_r09_r10_r04_r15_maintenance_rules_on_the_scheduler(env: Env) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=45)
    m1 = soon.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)  # M-1: 45-105 s from now
    M = m1 + dt.timedelta(minutes=1)
    S = M + dt.timedelta(minutes=2)
    year = str(M.year)
    scenario = {
        "schedule": {**QUIET["schedule"], "etl-start-time": _hhmm(S), "etl-end-time": _hhmm(m1),
                     "maintain-start-time": _hhmm(M), "run-maintain": "true", "run-update-stats": "true",
                     "update-stats-schedule": f"{(M + dt.timedelta(minutes=1)):%-M %-H}"},
        "gim-etl": {"days-to-keep-gim-facts": "30", "days-to-keep-cfg-facts": "30", "days-to-keep-gidb-facts": "14"},
        "date-time": {"date-time-start-year": year}, "date-time-ny": {"date-time-start-year": year},
    }
    env.write(scenario)
    # just before the last slot of the window: slow jobs (the ETL cycle of M-1, then maintenance)
    while dt.datetime.now(dt.UTC) < m1 - dt.timedelta(seconds=20):
        time.sleep(1)
    slow = {**scenario, "gim-etl": {**scenario["gim-etl"], "job-test-start-delay-seconds": "40",
                                    "job-test-delay-seconds": "5"}}
    env.write(slow)

    def maint_running():
        return next((h for h in env.history("Job_MaintainGIM")
                     if h["run_type"] == "scheduled" and h["status"] == "RUNNING"), None)

    maint = env.stack.wait_for("scheduled maintenance to start", maint_running, timeout=300, every=1)
    # R4/R14 while it runs: switch scheduled maintenance off and move it to M+1; ETL back to fast
    later = {**scenario, "schedule": {**scenario["schedule"], "run-maintain": "false",
                                      "maintain-start-time": _hhmm(M + dt.timedelta(minutes=1))}}
    env.write(later)

    etl_next = env.stack.wait_for("the ETL cycle of M+2", lambda: env.done_run_at("gim_etl_cycle", S), timeout=240)
    skipped_maint = env.stack.wait_for(
        "the scheduled maintenance of M+1", lambda: env.done_run_at("gim_maintain", M + dt.timedelta(minutes=1)),
        timeout=120)
    hist = env.history()
    by_run: dict[str, list[dict]] = {}
    for h in hist:
        by_run.setdefault(h["run_id"] or "", []).append(h)

    # R7: the cycle of M-1 still ran at M; scheduled maintenance (due at M) started after it ended
    etl_m1 = env.run_at("gim_etl_cycle", m1)
    assert etl_m1 and etl_m1["state"] == "success", etl_m1
    cycle = by_run[etl_m1["dag_run_id"]]
    assert [(h["job_name"], h["status"]) for h in cycle] == [("Job_ExtractICON", "COMPLETED"),
                                                            ("Job_TransformGIM", "COMPLETED")]
    assert cycle[-1]["end_time"] > M, "the ETL cycle of M-1 ended before maintenance was due"
    maint = next(h for h in hist if h["job_id"] == maint["job_id"])
    maint_run = env.run_at("gim_maintain", M)
    assert maint_run and maint_run["dag_run_id"] == maint["run_id"]
    assert maint["start_time"] >= cycle[-1]["end_time"], "R7: maintenance started while the ETL cycle ran"
    assert "waits for it to finish (R7)" in env.log("gim_maintain", maint["run_id"], "maintain")

    # R9: the cycle due at M+2 stopped maintenance within seconds, then completed
    assert maint["status"] == "STOPPED" and "R9" in maint["message"], maint
    assert S - dt.timedelta(seconds=1) <= maint["end_time"] <= S + dt.timedelta(seconds=15), (maint, S)
    nxt = by_run[etl_next["dag_run_id"]]
    assert [(h["job_name"], h["status"]) for h in nxt] == [("Job_ExtractICON", "COMPLETED"),
                                                          ("Job_TransformGIM", "COMPLETED")]
    assert nxt[0]["start_time"] >= maint["end_time"]
    # nothing half done: whole purge batches only, what is recorded is what happened, no stray tables
    left = env.one("SELECT count(*) FROM interaction_resource_fact WHERE data_source_key = 99")
    assert (OLD_FACTS - left) % 10_000 == 0
    recorded = env.one("SELECT coalesce(sum(rows_deleted), 0) FROM ctl_purge_history "
                       "WHERE job_id = %s AND table_name = 'interaction_resource_fact'", (maint["job_id"],))
    assert recorded == OLD_FACTS - left
    assert env.one(r"""SELECT count(*) FROM pg_class WHERE relkind = 'r' AND NOT relispartition
                         AND relname ~ '_p\d{8}_\d{4}$'""") == 0

    # R8/R10: update-stats due at M+1 while maintenance ran: skipped with the reason, no job started
    stats = env.run_at("gim_update_stats", M + dt.timedelta(minutes=1))
    assert stats, "no update-stats run at M+1"
    assert maint["start_time"] <= pendulum.parse(stats["logical_date"]) <= maint["end_time"]
    assert env.stack.task_states("gim_update_stats", stats["dag_run_id"]) == {"update_stats": "skipped"}
    assert "(R10)" in env.log("gim_update_stats", stats["dag_run_id"], "update_stats")
    assert not by_run.get(stats["dag_run_id"])

    # R4/R14: run-maintain switched off while maintenance ran: the next scheduled one is skipped
    assert env.stack.task_states("gim_maintain", skipped_maint["dag_run_id"]) == {"maintain": "skipped"}
    assert "run-maintain = false" in env.log("gim_maintain", skipped_maint["dag_run_id"], "maintain")
    assert not by_run.get(skipped_maint["dag_run_id"])

    # R15: a manual maintenance while an ETL cycle runs proceeds (with a warning) and finishes the rest
    env.write({**later, "gim-etl": {**later["gim-etl"], "job-test-start-delay-seconds": "10"}})
    since = dt.datetime.now(dt.UTC)
    env.stack.wait_for("a slow ETL cycle to run", lambda: [
        h for h in env.history("Job_ExtractICON") if h["status"] == "RUNNING" and h["start_time"] > since],
        timeout=120, every=1)
    manual = env.stack.trigger("gim_maintain")
    done = env.stack.wait_for("the manual maintenance", lambda: [
        h for h in env.history("Job_MaintainGIM") if h["run_id"] == manual["dag_run_id"]
        and h["status"] != "RUNNING"], timeout=180)[0]
    env.write(later)
    assert (done["status"], done["run_type"]) == ("COMPLETED", "manual"), done
    assert "R7-R9 do not apply to manual runs (R15)" in env.log("gim_maintain", manual["dag_run_id"], "maintain")
    assert env.one("SELECT count(*) FROM interaction_resource_fact WHERE data_source_key = 99") == 0
    print(f"\nscenario M = {M:%H:%M} GMT; module so far {time.monotonic() - env.started:.0f} s")
