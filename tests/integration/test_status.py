"""The Info Mart Manager facts on a real PostgreSQL: status(), history(), the CLI views, and the
plugin's FastAPI app with and without an authenticated Airflow user."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import psycopg
import pytest

from gim_jobs.registry import UnknownJob
from gim_jobs.status import history, status

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.append(str(PLUGINS))

UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)


def ago(**kw: float) -> dt.datetime:
    return NOW - dt.timedelta(**kw)


def add_run(conn: psycopg.Connection, job: str, status: str, start: dt.datetime, end: dt.datetime | None = None,
            *, rows: int = 0, run_type: str = "scheduled", dag_id: str | None = None, run_id: str | None = None,
            message: str | None = None) -> None:
    conn.execute(
        """INSERT INTO ctl_etl_history (job_id, job_name, job_version, run_type, dag_id, run_id, host, pid,
                                        start_time, end_time, status, row_count, message)
           VALUES (%s, %s, 'test', %s, %s, %s, 'h', 1, %s, %s, %s, %s, %s)""",
        (uuid.uuid4(), job, run_type, dag_id, run_id, start, end, status, rows, message),
    )


def add_hwm(conn: psycopg.Connection, source: str, table: str, role: str, hwm: int, max_ts: dt.datetime | None,
            rows: int = 10) -> None:
    dsk = conn.execute(
        """INSERT INTO ctl_data_source (name, roles) VALUES (%s, 'ICON_CFG,ICON_CORE')
           ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING data_source_key""", (source,)
    ).fetchone()[0]
    conn.execute(
        """INSERT INTO ctl_extract_hwm (data_source_key, table_name, role, hwm_useq, max_ts, row_count, job_id)
           VALUES (%s, %s, %s, %s, %s, %s, 'j')""",
        (dsk, table, role, hwm, int(max_ts.timestamp()) if max_ts else None, rows),
    )


ETL_RUN = "scheduled__2026-01-01T06:30:00+00:00"


@pytest.fixture
def seeded(infomart_dsn: str) -> str:
    """Runs of several jobs and statuses, two sources (one 2000 s behind, one current), discards."""
    global NOW  # seed relative to the moment the test runs, not when the module was imported
    NOW = dt.datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(infomart_dsn, autocommit=True) as conn:
        add_run(conn, "Job_ExtractICON", "COMPLETED", ago(hours=30), ago(hours=30) + dt.timedelta(seconds=90),
                rows=500, dag_id="gim_etl_cycle", run_id="scheduled__old")
        add_run(conn, "Job_ExtractICON", "FAILED", ago(hours=2), ago(hours=2) + dt.timedelta(seconds=5),
                message="OperationalError: cannot connect to IDB main", dag_id="gim_etl_cycle", run_id="scheduled__f")
        add_run(conn, "Job_ExtractICON", "COMPLETED", ago(minutes=40), ago(minutes=39), rows=1234,
                dag_id="gim_etl_cycle", run_id=ETL_RUN)
        add_run(conn, "Job_TransformGIM", "COMPLETED", ago(minutes=39), ago(minutes=37), rows=321,
                dag_id="gim_etl_cycle", run_id=ETL_RUN)
        add_run(conn, "Job_TransformGIM", "RUNNING", ago(minutes=1), None, dag_id="gim_etl_cycle",
                run_id="manual__x")
        add_run(conn, "Job_MaintainGIM", "STOPPED", ago(hours=5), ago(hours=4), message="stopped: ETL due (R9)",
                run_type="cli")
        add_run(conn, "Job_UpdateStats", "REFUSED", ago(hours=3), ago(hours=3),
                message="Job_UpdateStats cannot be run manually (R15)", run_type="cli")
        add_hwm(conn, "main", "g_ir", "ICON_CORE", 900, ago(seconds=2000))
        add_hwm(conn, "main", "g_party", "ICON_CORE", 950, ago(seconds=2100))
        add_hwm(conn, "main", "gc_agent", "ICON_CFG", 40, ago(days=20))
        add_hwm(conn, "second", "g_ir", "ICON_CORE", 77, ago(seconds=60))
        add_hwm(conn, "second", "gc_agent", "ICON_CFG", 3, None, rows=0)
        for i, code in enumerate(["NO_IR", "NO_IR", "BAD_STATE"]):
            conn.execute(
                """INSERT INTO stg_transform_discards (data_source_key, table_name, source_key, code, reason, job_id,
                          create_audit_key, etl_ts, etl_date_time_key, created_ts)
                   VALUES (1, 'gidb_g_party', %s, %s, 'why', 'j', 1, 0, 0, 0)""", (f"k{i}", code),
            )
    return infomart_dsn


# ---------------------------------------------------------------------------------------------
# history()
# ---------------------------------------------------------------------------------------------


def test_history_newest_first_with_filters_paging_and_airflow_links(seeded: str) -> None:
    rows = history(seeded, limit=100)
    assert len(rows) == 7
    starts = [r["start_time"] for r in rows]
    assert starts == sorted(starts, reverse=True)
    assert rows[0]["job_name"] == "Job_TransformGIM" and rows[0]["status"] == "RUNNING"
    # running: measured up to the real clock; NOW was taken at import, possibly minutes earlier in a suite run
    since_import = (dt.datetime.now(UTC) - NOW).total_seconds()
    assert rows[0]["end_time"] is None and 50 <= rows[0]["seconds"] < 600 + since_import

    for spelling in ("extract", "Job_ExtractICON", "gim_extract_icon", "job_extracticon"):
        got = history(seeded, job=spelling, limit=100)
        assert [r["status"] for r in got] == ["COMPLETED", "FAILED", "COMPLETED"], spelling
    assert [r["job_name"] for r in history(seeded, status="failed")] == ["Job_ExtractICON"]
    assert [(r["job_name"], r["status"]) for r in history(seeded, job="extract", status="COMPLETED", limit=1)] == [
        ("Job_ExtractICON", "COMPLETED")]
    assert history(seeded, job="export") == []
    with pytest.raises(UnknownJob, match="valid jobs"):
        history(seeded, job="Job_Nope")
    page1, page2 = history(seeded, limit=3), history(seeded, limit=3, offset=3)
    assert [r["id"] for r in page1 + page2] == [r["id"] for r in rows[:6]]
    # runs overlapping a range (the running one included)
    recent = history(seeded, since=ago(minutes=38), until=NOW + dt.timedelta(minutes=1), limit=100)
    assert [(r["job_name"], r["status"]) for r in recent] == [("Job_TransformGIM", "RUNNING"),
                                                               ("Job_TransformGIM", "COMPLETED")]

    tr = next(r for r in rows if r["job_name"] == "Job_TransformGIM" and r["status"] == "COMPLETED")
    assert tr["task_id"] == "transform"
    assert tr["airflow"] == {
        "run": "dags/gim_etl_cycle/runs/scheduled__2026-01-01T06%3A30%3A00%2B00%3A00",
        "log": "dags/gim_etl_cycle/runs/scheduled__2026-01-01T06%3A30%3A00%2B00%3A00/tasks/transform",
    }
    assert next(r for r in rows if r["run_type"] == "cli")["airflow"] is None


# ---------------------------------------------------------------------------------------------
# status()
# ---------------------------------------------------------------------------------------------


def test_status_lag_alarm_last_success_failures_discards(seeded: str, make_config) -> None:
    st = status(seeded, make_config(), now=NOW)
    assert st["config"]["ok"] and st["delayed_data_threshold"] == 900 and st["timezone"] == "GMT"
    jobs = st["jobs"]
    assert list(jobs) == ["Job_ExtractICON", "Job_TransformGIM", "Job_AggregateGIM", "Job_MaintainGIM",
                          "Job_UpdateStats", "Job_ExportGIM"]
    ex = jobs["Job_ExtractICON"]
    assert (ex["last_status"], ex["last_rows"], ex["failed_24h"]) == ("COMPLETED", 1234, 1)
    assert ex["last_success"] == ago(minutes=39)
    assert jobs["Job_TransformGIM"]["last_status"] == "COMPLETED"  # the RUNNING row is not "last run"
    assert jobs["Job_MaintainGIM"]["last_status"] == "STOPPED" and jobs["Job_MaintainGIM"]["last_success"] is None
    assert jobs["Job_ExportGIM"]["last_status"] is None
    assert st["last_success"]["Job_TransformGIM"] == ago(minutes=37)

    src = {s["data_source"]: s for s in st["sources"]}
    assert src["main"]["lag_seconds"] == 2000 and src["main"]["alarm"] is True  # data clock = newest g_* table
    assert src["main"]["newest_event"] == ago(seconds=2000)
    assert src["second"]["lag_seconds"] == 60 and src["second"]["alarm"] is False
    assert st["alarm"] is True
    assert st["alarm_messages"] == [
        f"delayed data: source main is 2000 s behind (newest event {ago(seconds=2000):%Y-%m-%d %H:%M:%S} UTC), "
        "over delayed-data-threshold = 900 s"]
    by_table = {(x["data_source"], x["table_name"]): x for x in st["extraction"]}
    assert len(by_table) == 5
    assert by_table[("main", "g_party")]["late"] and by_table[("main", "g_party")]["hwm_useq"] == 950
    assert by_table[("main", "gc_agent")]["lag_seconds"] > 86400 and not by_table[("main", "gc_agent")]["late"]
    assert by_table[("second", "gc_agent")]["lag_seconds"] is None
    assert st["discards"] == 3 and st["discards_by_code"] == [{"code": "NO_IR", "rows": 2},
                                                              {"code": "BAD_STATE", "rows": 1}]
    assert st["pending_aggregation"] == 0  # migration 007 created the queue; nothing queued
    assert st["transform_waiting"] == 0 and st["interaction_facts"] == 0
    assert st["running"] == []  # a RUNNING history row without a live lease is not running
    nxt = {n["job"]: n for n in st["next_launches"]}
    assert set(nxt) == {"ETL cycle", "Job_MaintainGIM", "Job_AggregateGIM", "Job_UpdateStats", "Job_ExportGIM"}
    assert all(n["start"] > NOW or n["open_now"] for n in nxt.values())
    json.dumps(st, default=str)  # what `gim status --json` prints


def test_status_threshold_option_and_sources_without_events(seeded: str, infomart_dsn: str, make_config) -> None:
    st = status(seeded, make_config({"gim-etl": {"delayed-data-threshold": "3600"}}), now=NOW)
    assert st["delayed_data_threshold"] == 3600
    assert st["alarm"] is False and st["alarm_messages"] == []
    # just over the threshold -> alarm; exactly at it -> not
    st = status(seeded, make_config({"gim-etl": {"delayed-data-threshold": "1999"}}), now=NOW)
    assert {s["data_source"]: s["alarm"] for s in st["sources"]} == {"main": True, "second": False}
    st = status(seeded, make_config({"gim-etl": {"delayed-data-threshold": "2000"}}), now=NOW)
    assert st["alarm"] is False


def test_status_on_an_empty_mart_and_a_broken_config(infomart_dsn: str, make_config) -> None:
    cfg = make_config({"schedule": {"etl-frequency": "0", "timezone": "Mars/Olympus"}})
    st = status(infomart_dsn, cfg, now=NOW)
    assert not st["config"]["ok"]
    assert any("etl-frequency" in e for e in st["config"]["errors"])
    assert any("timezone" in e for e in st["config"]["errors"])
    assert st["alarm"] is None and st["sources"] == [] and st["extraction"] == []
    assert st["next_launches"] == [] and st["timezone"] == "UTC"
    assert all(j["last_status"] is None for j in st["jobs"].values())


def test_status_without_the_later_tables(new_database) -> None:
    """Only migration 001 applied (no staging, no facts): status() still answers."""
    from gim_jobs.db.migrate import migrate

    dsn = new_database("im")
    migrate(dsn, "infomart", target=1)
    st = status(dsn, now=NOW)
    assert st["sources"] == [] and st["discards"] is None and st["interaction_facts"] is None
    assert st["pending_aggregation"] == "n/a" and st["alarm"] is None


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _cli(monkeypatch, dsn: str, *args: str):
    from typer.testing import CliRunner

    from gim_jobs.cli import app

    monkeypatch.setenv("GIM_INFOMART_DSN", dsn)
    return CliRunner().invoke(app, list(args))


def test_cli_status_history_schedule_read_the_same_facts(seeded: str, make_config, monkeypatch, tmp_path) -> None:
    cfg = str(make_config())
    res = _cli(monkeypatch, seeded, "status", "--json", "--config", cfg)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["alarm"] is True and data["jobs"]["Job_ExtractICON"]["last_rows"] == 1234

    res = _cli(monkeypatch, seeded, "status", "--config", cfg)
    assert res.exit_code == 0, res.output
    assert "*** ALARM delayed data: source main is" in res.output
    assert "Job_ExtractICON   COMPLETED" in res.output and "pending aggregation intervals 0" in res.output

    res = _cli(monkeypatch, seeded, "history", "--job", "extract", "--status", "FAILED", "--config", cfg)
    assert res.exit_code == 0, res.output
    assert "Job_ExtractICON   FAILED" in res.output and "cannot connect to IDB main" in res.output
    res = _cli(monkeypatch, seeded, "history", "--json", "--limit", "2")
    assert [r["job_name"] for r in json.loads(res.output)] == ["Job_TransformGIM", "Job_TransformGIM"]
    res = _cli(monkeypatch, seeded, "history", "--job", "nope")
    assert res.exit_code == 2 and "unknown job" in res.output

    today = NOW.date().isoformat()
    out = tmp_path / "day.svg"
    res = _cli(monkeypatch, seeded, "schedule", "--date", today, "--svg", str(out), "--config", cfg)
    assert res.exit_code == 0, res.output
    root = ET.fromstring(out.read_text())
    bars = root.findall(".//{http://www.w3.org/2000/svg}rect[@data-status]")
    assert len(bars) >= 2  # today's recorded runs overlaid (which ones depends on the hour)
    assert len(root.findall(".//{http://www.w3.org/2000/svg}line[@class='planned launch']")) > 37


# ---------------------------------------------------------------------------------------------
# The plugin's FastAPI app
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def plugin_app(seeded: str, make_config):
    """The plugin app mounted under /gim as the api-server mounts it, wired to the seeded mart."""
    import gim_ui
    from fastapi import FastAPI

    sub = gim_ui.create_app()
    sub.dependency_overrides[gim_ui.get_infomart_dsn] = lambda: seeded
    cfg = make_config()
    sub.dependency_overrides[gim_ui.get_config_path] = lambda: cfg
    root = FastAPI()
    root.mount(gim_ui.URL_PREFIX, sub)
    return root, sub


PAGES = ["/gim/", "/gim/history", "/gim/history?job=Job_ExtractICON&status=FAILED", "/gim/schedule",
         "/gim/schedule?date=2026-06-10", "/gim/schedule.svg"]
APIS = ["/gim/api/status", "/gim/api/history", "/gim/api/history?status=FAILED", "/gim/api/schedule"]


def test_plugin_refuses_every_route_without_an_airflow_login(plugin_app) -> None:
    """The real dependency, no override: pages send a browser to Airflow's login, APIs answer 401,
    and the app has no docs/OpenAPI routes (FastAPI serves those without the app's dependencies)."""
    from fastapi.testclient import TestClient

    root, _ = plugin_app
    client = TestClient(root)
    for path in PAGES + APIS + ["/gim/docs", "/gim/openapi.json", "/gim/redoc"]:
        resp = client.get(path, follow_redirects=False)
        if path in PAGES:
            assert resp.status_code == 302, (path, resp.status_code)
            loc = resp.headers["location"]
            assert loc.startswith("/auth/login?next=http") and "%2Fgim%2F" in loc, loc
        elif path in APIS:
            assert resp.status_code == 401, (path, resp.status_code)
            assert resp.json() == {"detail": "Not authenticated"}
        else:
            assert resp.status_code == 404, (path, resp.status_code)
        assert "Job_ExtractICON" not in resp.text and "1234" not in resp.text, path


def test_plugin_refuses_a_forged_token_and_accepts_a_real_one(plugin_app, airflow_db) -> None:
    """The real dependency end to end: Airflow's auth manager validates the JWT (header or cookie)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    am = create_auth_manager()
    am.init()
    root, _ = plugin_app
    client = TestClient(root)
    forged = client.get("/gim/api/status", headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 403 and "Job_ExtractICON" not in forged.text
    garbage_cookie = TestClient(root, cookies={"_token": "garbage"}).get("/gim/", follow_redirects=False)
    assert garbage_cookie.status_code == 302 and "Job_" not in garbage_cookie.text  # back to the login page
    other_secret = am.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))[:-4] + "AAAA"
    assert client.get("/gim/api/status", headers={"Authorization": f"Bearer {other_secret}"}).status_code == 403
    token = am.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    ok = client.get("/gim/api/status", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["alarm"] is True
    page = TestClient(root, cookies={"_token": token}).get("/gim/")
    assert page.status_code == 200 and "Job_ExtractICON" in page.text


def test_plugin_pages_and_json_for_a_logged_in_user(plugin_app) -> None:
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    root, sub = plugin_app
    sub.dependency_overrides[get_user] = lambda: object()  # stands for the user Airflow resolved
    client = TestClient(root)

    page = client.get("/gim/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'id="data-alarm">ALARM: delayed data' in html
    # seeded 2000 s before NOW (taken when this module was imported); the page measures from the real
    # clock, so in a long suite run the lag is 2000 s plus however long ago the import was
    m = re.search(r"source main is (\d+) s behind", html)
    assert m and 2000 <= int(m.group(1)) <= 2000 + (dt.datetime.now(UTC) - NOW).total_seconds() + 5
    assert "Job_ExtractICON" in html and "1234" in html and "<td>second</td>" in html
    assert "id='discards'>3<" in html and "id='pending-agg'>0<" in html
    assert 'href="history"' in html and 'href="schedule"' in html  # relative: works behind a base path

    api = client.get("/gim/api/status").json()
    assert api["alarm"] is True and api["discards"] == 3 and api["jobs"]["Job_ExtractICON"]["last_rows"] == 1234

    hist = client.get("/gim/history", params={"job": "Job_ExtractICON", "status": "FAILED"}).text
    assert hist.count("<tr data-job=") == 1 and "cannot connect to IDB main" in hist
    assert "<option value='Job_ExtractICON' selected>" in hist and "<option value='FAILED' selected>" in hist
    full = client.get("/gim/history").text
    assert full.count("<tr data-job=") == 7
    assert ('href="../dags/gim_etl_cycle/runs/scheduled__2026-01-01T06%3A30%3A00%2B00%3A00/tasks/transform"'
            in full)
    assert client.get("/gim/history", params={"job": "Job_Nope"}).status_code == 400
    api_hist = client.get("/gim/api/history", params={"status": "completed", "limit": 2}).json()
    assert [r["job_name"] for r in api_hist] == ["Job_TransformGIM", "Job_ExtractICON"]
    assert client.get("/gim/api/history", params={"limit": 0}).status_code == 422

    sched = client.get("/gim/schedule")
    assert sched.status_code == 200 and '<svg xmlns="http://www.w3.org/2000/svg"' in sched.text
    svg = client.get("/gim/schedule.svg", params={"date": "2026-06-10"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root_el = ET.fromstring(svg.text)
    assert len(root_el.findall(".//{http://www.w3.org/2000/svg}g[@data-lane='etl']/"
                               "{http://www.w3.org/2000/svg}line[@class='planned launch']")) == 37
    api_s = client.get("/gim/api/schedule", params={"date": "2026-06-10"}).json()
    assert api_s["timezone"] == "GMT" and len([x for x in api_s["launches"] if x["job"] == "ETL cycle"]) == 37
    assert client.get("/gim/schedule", params={"date": "10/06/2026"}).status_code == 400


def test_plugin_escapes_database_text(plugin_app, seeded: str) -> None:
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    with psycopg.connect(seeded, autocommit=True) as conn:
        add_run(conn, "Job_ExportGIM", "FAILED", ago(seconds=5), ago(seconds=1),
                message="<script>alert(1)</script>", dag_id="gim_export", run_id='x"><script>')
    root, sub = plugin_app
    sub.dependency_overrides[get_user] = lambda: object()
    client = TestClient(root)
    for path in ("/gim/", "/gim/history", "/gim/schedule"):
        html = client.get(path).text
        assert "<script>alert(1)</script>" not in html and 'x"><script>' not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/gim/history").text


def test_plugin_answers_503_when_the_mart_is_unreachable(plugin_app) -> None:
    import gim_ui
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    root, sub = plugin_app
    sub.dependency_overrides[get_user] = lambda: object()
    sub.dependency_overrides[gim_ui.get_infomart_dsn] = lambda: "host=127.0.0.1 port=1 dbname=x connect_timeout=2"
    client = TestClient(root)
    assert client.get("/gim/api/status").status_code == 503
    page = client.get("/gim/")
    assert page.status_code == 503 and "unreachable" in page.text


def test_plugin_registration_is_cheap_and_complete() -> None:
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(PLUGINS)!r}); import gim_ui; "
            "print('fastapi' in sys.modules, 'airflow.api_fastapi.core_api.security' in sys.modules, "
            "gim_ui.GimUiPlugin.fastapi_apps[0]['url_prefix'], gim_ui.GimUiPlugin.external_views[0]['href'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # FastAPI and Airflow's API security are imported only when the api-server first calls the app
    assert out == ["False", "False", "/gim", "gim/"]


def test_plugin_reads_the_infomart_dsn_from_the_airflow_connection(monkeypatch, airflow_db) -> None:
    """Server-side (api-server) the DSN comes from connection gim_infomart, else GIM_INFOMART_DSN."""
    import gim_ui

    monkeypatch.setenv("GIM_INFOMART_DSN", "dbname=from_env")
    monkeypatch.delenv("AIRFLOW_CONN_GIM_INFOMART", raising=False)
    assert gim_ui.get_infomart_dsn() == "dbname=from_env"
    monkeypatch.setenv("AIRFLOW_CONN_GIM_INFOMART", "postgresql://gim:s3cret@db.example:5433/infomart")
    dsn = psycopg.conninfo.conninfo_to_dict(gim_ui.get_infomart_dsn())
    assert dsn == {"host": "db.example", "port": "5433", "user": "gim", "password": "s3cret", "dbname": "infomart"}
    monkeypatch.setenv("AIRFLOW_CONN_GIM_INFOMART", json.dumps({"conn_type": "postgres",
                                                                "extra": {"dsn": "host=/run/pg dbname=im"}}))
    assert gim_ui.get_infomart_dsn() == "host=/run/pg dbname=im"
