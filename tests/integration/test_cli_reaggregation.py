"""`gim run aggregate -p insertPendingAgg=...` from a shell (R19, R20, R5)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import psycopg
from typer.testing import CliRunner

from gim_jobs.cli import app
from gim_jobs.control import run_job, running_jobs
from gim_jobs.registry import JOBS

SLEEPY_AGG = replace(JOBS["aggregate"], module="tests.integration.sleepy_job")


def _env(monkeypatch, dsn: str, cfg) -> None:
    monkeypatch.setenv("GIM_INFOMART_DSN", dsn)
    monkeypatch.setenv("GIM_CONFIG", str(cfg))


def test_r19_bad_request_refused_before_anything_changes(infomart_dsn, make_config, monkeypatch) -> None:
    _env(monkeypatch, infomart_dsn, make_config())
    res = CliRunner().invoke(app, ["run", "aggregate", "-p", "insertPendingAgg=H_NOPE-DAY:2026-01-02:2026-01-01"])
    assert res.exit_code == 2 and "insertPendingAgg" in res.output
    with psycopg.connect(infomart_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM ctl_aggregate_pending").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ctl_etl_history").fetchone()[0] == 0


def test_r20_request_is_queued_for_the_running_aggregation(infomart_dsn, make_config, monkeypatch) -> None:
    cfg = make_config()
    _env(monkeypatch, infomart_dsn, cfg)
    with psycopg.connect(infomart_dsn) as conn:
        conn.execute("SELECT gim_ensure_date_time(%s, %s)", (1793491200, 1793491200 + 2 * 86400 - 1))  # 2026-11-01..02
    t = threading.Thread(target=lambda: run_job(SLEEPY_AGG, infomart_dsn=infomart_dsn, sources=[], config_path=cfg,
                                                run_type="scheduled", params={"steps": 15}))
    t.start()
    try:
        while not running_jobs(infomart_dsn):
            time.sleep(0.05)
        res = CliRunner().invoke(app, ["run", "aggregate", "-p",
                                       "insertPendingAgg=H_AGENT,H_QUEUE-DAY.Online:2026-11-01:2026-11-02"])
        assert res.exit_code == 0, res.output
        assert "queued" in res.output and "R20" in res.output
        with psycopg.connect(infomart_dsn) as conn:
            rows = conn.execute("SELECT hierarchy, level, flavor, source FROM ctl_aggregate_pending").fetchall()
        assert rows == [("H_AGENT,H_QUEUE", "DAY", "Online", "insertPendingAgg")]
        # a day missing from the calendar is refused with the reason, nothing queued
        res = CliRunner().invoke(app, ["run", "aggregate", "-p", "insertPendingAgg=ALLSETS:2031-01-01:2031-01-01"])
        assert res.exit_code == 2 and "date_time calendar" in res.output
    finally:
        t.join()
