"""The job runner: R5 (one instance per job, whoever starts it), R15, R18, R21, history rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from gim_jobs.control import JobBusy, JobRefused, JobStopped, request_stop, run_job, running_jobs
from gim_jobs.registry import JOBS

SLEEPY = replace(JOBS["extract"], module="tests.integration.sleepy_job")
REPO = Path(__file__).resolve().parents[2]


def _history(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT job_name, status, run_type, row_count, message FROM ctl_etl_history ORDER BY id"
        ).fetchall()


def _run_in_thread(dsn: str, cfg: Path, **params) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["outcome"] = run_job(SLEEPY, infomart_dsn=dsn, sources=[], config_path=cfg, params=params)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    return t, box


def _wait_running(dsn: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if running_jobs(dsn):
            return
        time.sleep(0.05)
    raise AssertionError("job did not start")


def test_r05_second_instance_refused_while_first_runs(infomart_dsn, make_config) -> None:
    cfg = make_config()
    t, box = _run_in_thread(infomart_dsn, cfg, steps=10, step_seconds=0.2)
    _wait_running(infomart_dsn)
    with pytest.raises(JobBusy, match=r"Job_ExtractICON is already running .*\(R5\)"):
        run_job(SLEEPY, infomart_dsn=infomart_dsn, sources=[], config_path=cfg, params={"steps": 1})
    t.join()
    assert box["outcome"].status == "COMPLETED"
    # the refused run never became a job run; a later one starts fine
    out = run_job(SLEEPY, infomart_dsn=infomart_dsn, sources=[], config_path=cfg, params={"steps": 1})
    assert out.status == "COMPLETED"
    assert [h[1] for h in _history(infomart_dsn)] == ["COMPLETED", "COMPLETED"]


def test_r05_waiting_start_runs_after_the_first_ends(infomart_dsn, make_config) -> None:
    cfg = make_config()
    t, _ = _run_in_thread(infomart_dsn, cfg, steps=5, step_seconds=0.2)
    _wait_running(infomart_dsn)
    t0 = time.monotonic()
    out = run_job(SLEEPY, infomart_dsn=infomart_dsn, sources=[], config_path=cfg, params={"steps": 1},
                  wait_seconds=30)
    t.join()
    assert out.status == "COMPLETED" and time.monotonic() - t0 > 0.3


def test_r05_cli_refused_while_another_process_runs_the_job(infomart_dsn, make_config, tmp_path) -> None:
    """Two processes: a job started from Python holds the lock; `gim run extract` refuses clearly."""
    cfg = make_config()
    t, _ = _run_in_thread(infomart_dsn, cfg, steps=15, step_seconds=0.2)
    _wait_running(infomart_dsn)
    env = dict(os.environ, GIM_INFOMART_DSN=infomart_dsn, GIM_CONFIG=str(cfg),
               GIM_IDB_SOURCES=json.dumps([]))
    proc = subprocess.run([sys.executable, "-m", "gim_jobs.cli", "run", "extract"], env=env,
                          capture_output=True, text=True, cwd=REPO)
    t.join()
    assert proc.returncode == 3, proc.stderr
    assert "already running" in proc.stderr and "R5" in proc.stderr


def test_r05_killed_holder_releases_the_job_and_is_recorded_failed(infomart_dsn, make_config) -> None:
    cfg = make_config()
    script = (
        "import sys; from dataclasses import replace; from gim_jobs.control import run_job; "
        "from gim_jobs.registry import JOBS; "
        "run_job(replace(JOBS['extract'], module='tests.integration.sleepy_job'), infomart_dsn=sys.argv[1], "
        "sources=[], config_path=sys.argv[2], params={'steps': 100, 'step_seconds': 0.2})"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, infomart_dsn, str(cfg)], cwd=REPO)
    try:
        _wait_running(infomart_dsn, 20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    out = run_job(SLEEPY, infomart_dsn=infomart_dsn, sources=[], config_path=cfg, params={"steps": 1},
                  wait_seconds=10)
    assert out.status == "COMPLETED"
    hist = _history(infomart_dsn)
    assert hist[0][1] == "FAILED" and "ended without finishing" in hist[0][4]
    assert hist[1][1] == "COMPLETED"


def test_r18_stop_request_ends_job_between_steps(infomart_dsn, make_config) -> None:
    cfg = make_config()
    t, box = _run_in_thread(infomart_dsn, cfg, steps=50, step_seconds=0.1)
    _wait_running(infomart_dsn)
    assert request_stop(infomart_dsn, "Job_ExtractICON", "operator test")
    t.join(10)
    assert isinstance(box.get("error"), JobStopped)
    h = _history(infomart_dsn)[-1]
    assert h[1] == "STOPPED" and "operator test" in h[4]


def test_r15_update_stats_and_export_cannot_be_run_by_hand(infomart_dsn, make_config) -> None:
    cfg = make_config()
    for job in ("update_stats", "export", "Job_UpdateStats", "Job_ExportGIM"):
        with pytest.raises(JobRefused, match=r"cannot be run manually \(R15\)"):
            run_job(job, infomart_dsn=infomart_dsn, sources=[], config_path=cfg, run_type="manual")
    assert _history(infomart_dsn) == []


def test_r21_config_error_blocks_every_job(infomart_dsn, make_config) -> None:
    bad = make_config({"schedule": {"etl-frequency": "0"}})
    for job in JOBS:
        with pytest.raises(JobRefused, match=r"configuration has errors \(R21\)") as ei:
            run_job(job, infomart_dsn=infomart_dsn, sources=[], config_path=bad, run_type="scheduled")
        assert "etl-frequency" in str(ei.value)


def test_r21_config_error_does_not_disturb_a_running_job(infomart_dsn, make_config, tmp_path) -> None:
    cfg = make_config()
    t, box = _run_in_thread(infomart_dsn, cfg, steps=8, step_seconds=0.2)
    _wait_running(infomart_dsn)
    cfg.write_text(cfg.read_text().replace("etl-frequency = 30", "etl-frequency = zero"))
    t.join()
    assert box["outcome"].status == "COMPLETED"
    with pytest.raises(JobRefused, match="R21"):
        run_job(SLEEPY, infomart_dsn=infomart_dsn, sources=[], config_path=cfg)


def test_unknown_job_is_refused_with_the_valid_names(infomart_dsn, make_config) -> None:
    with pytest.raises(JobRefused, match="valid jobs: extract"):
        run_job("extrakt", infomart_dsn=infomart_dsn, sources=[], config_path=make_config())


def test_schema_too_old_is_refused_with_the_fix(new_database, make_config) -> None:
    dsn = new_database("empty")
    with pytest.raises(JobRefused, match="gim init-db"):
        run_job(SLEEPY, infomart_dsn=dsn, sources=[], config_path=make_config())


SLEEPY_MAINTAIN = replace(JOBS["maintain"], module="tests.integration.sleepy_sql_job")


def test_r09_preempt_cancels_running_sql_and_frees_the_job_within_seconds(infomart_dsn, make_config) -> None:
    from gim_jobs.control import preempt

    cfg = make_config()
    box: dict = {}

    def target() -> None:
        try:
            run_job(SLEEPY_MAINTAIN, infomart_dsn=infomart_dsn, sources=[], config_path=cfg,
                    run_type="scheduled", params={"sleep": 60})
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    _wait_running(infomart_dsn)
    time.sleep(0.5)  # let it reach its statement
    t0 = time.monotonic()
    assert preempt(infomart_dsn, "Job_MaintainGIM", "ETL cycle due (R9)", timeout=10)
    elapsed = time.monotonic() - t0
    t.join(10)
    assert elapsed < 5, elapsed
    assert isinstance(box.get("error"), JobStopped)
    h = _history(infomart_dsn)[-1]
    assert h[:2] == ("Job_MaintainGIM", "STOPPED") and "R9" in h[4]
    assert preempt(infomart_dsn, "Job_MaintainGIM", "nothing runs") is False


def test_r09_deadline_stops_a_job_between_steps(infomart_dsn, make_config) -> None:
    import datetime as dt

    cfg = make_config()
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with pytest.raises(JobStopped, match="deadline"):
        run_job(SLEEPY, infomart_dsn=infomart_dsn, sources=[], config_path=cfg, params={"steps": 50},
                deadline=deadline)
    assert _history(infomart_dsn)[-1][1] == "STOPPED"
