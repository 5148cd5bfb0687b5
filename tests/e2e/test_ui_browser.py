"""The Info Mart Manager page in a real browser, behind the real Airflow login.

The e2e tier's shared ``airflow standalone`` (tests/e2e/stack.py), handed to this module with fresh
databases and every DAG paused; a few ``ctl_etl_history`` rows and extraction marks seeded directly
into the Info Mart; Debian's headless Chromium driven over
the DevTools protocol (a small client on ``websockets``, already a pinned dependency through uvicorn).
Unauthenticated requests are refused; then the test logs in through Airflow's own login page and
reads the status, history and schedule pages, and the page inside the Airflow UI (nav entry, iframe).
Screenshots are written to the test's tmp folder (path printed; kept after the run).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.stack import AirflowStack, SharedAirflow

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
SEED_MESSAGE = "seeded failure: IDB main unreachable (e2e)"
SEED_ROWS = 4321


# ---------------------------------------------------------------------------------------------
# A minimal Chrome DevTools Protocol client
# ---------------------------------------------------------------------------------------------


class Browser:
    """Headless Chromium with one page, driven over CDP (JSON over a websocket)."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.loads(resp.read()) if t["type"] == "page")
        self._ctx = contextlib.ExitStack()
        self.ws = self._ctx.enter_context(connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10))
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        end = time.monotonic() + 60
        while time.monotonic() < end:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(method)

    def js(self, expr: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, what: str, expr: str, timeout: float = 30) -> Any:
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                last = self.js(expr)
            except RuntimeError as exc:  # navigation in progress: the context went away
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.25)
        raise AssertionError(f"browser: timed out waiting for {what} ({expr}); last {last!r}; "
                             f"at {self.js('location.href')}: {self.js('document.body && document.body.innerText')!r:.600}")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(0.3)
        self.wait(f"{url} loaded", "document.readyState === 'complete' && location.href !== 'about:blank'")

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def type_into(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            h = int(self.js("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)") or 1000)
            params["clip"] = {"x": 0, "y": 0, "width": 1400, "height": min(max(h, 600), 6000), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._ctx.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


# ---------------------------------------------------------------------------------------------
# The stack and its data
# ---------------------------------------------------------------------------------------------


def _seed(im: str, now: dt.datetime, real_run_id: str | None) -> None:
    def run(job: str, status: str, start: dt.datetime, secs: float | None, rows: int = 0, message: str | None = None,
            dag_id: str | None = "gim_etl_cycle", run_id: str | None = None, run_type: str = "scheduled") -> None:
        conn.execute(
            """INSERT INTO ctl_etl_history (job_id, job_name, job_version, run_type, dag_id, run_id, host, pid,
                                            start_time, end_time, status, row_count, message)
               VALUES (%s, %s, 'e2e', %s, %s, %s, 'e2e', 1, %s, %s, %s, %s, %s)""",
            (uuid.uuid4(), job, run_type, dag_id, run_id or f"scheduled__{start:%Y-%m-%dT%H:%M:%S}+00:00", start,
             None if secs is None else start + dt.timedelta(seconds=secs), status, rows, message),
        )

    # today's runs (GMT), so the timeline shows them: within the last 4 hours, or shortly after
    # midnight in the first hours of the day
    anchor = max(now, now.replace(hour=4, minute=30, second=0, microsecond=0))

    def at(minutes_ago: float) -> dt.datetime:
        return anchor - dt.timedelta(minutes=minutes_ago)

    with psycopg.connect(im, autocommit=True) as conn:
        run("Job_ExtractICON", "COMPLETED", at(180), 95, rows=1500)
        run("Job_TransformGIM", "COMPLETED", at(178), 70, rows=900)
        run("Job_ExtractICON", "FAILED", at(120), 12, message=SEED_MESSAGE)
        run("Job_ExtractICON", "COMPLETED", at(60), 120, rows=SEED_ROWS, run_id=real_run_id)
        run("Job_TransformGIM", "COMPLETED", at(58), 200, rows=2222, run_id=real_run_id)
        run("Job_MaintainGIM", "STOPPED", at(240), 1800, message="stopped: the ETL cycle is due (R9)",
            dag_id=None, run_id=None, run_type="cli")
        dsk = conn.execute("INSERT INTO ctl_data_source (name, roles) VALUES ('main', 'ICON_CFG,ICON_CORE') "
                           "RETURNING data_source_key").fetchone()[0]
        newest = int((now - dt.timedelta(seconds=3000)).timestamp())
        for table, role, hwm, ts in (("g_ir", "ICON_CORE", 81234, newest), ("g_party", "ICON_CORE", 81200, newest - 30),
                                     ("gc_agent", "ICON_CFG", 512, newest - 86400 * 3)):
            conn.execute("""INSERT INTO ctl_extract_hwm (data_source_key, table_name, role, hwm_useq, max_ts, row_count,
                                                         job_id) VALUES (%s, %s, %s, %s, %s, 100, 'e2e')""",
                         (dsk, table, role, hwm, ts))


class Env:
    def __init__(self, stack: AirflowStack, im: str, shots: Path, real_run_id: str) -> None:
        self.stack, self.im, self.shots, self.real_run_id = stack, im, shots, real_run_id


@pytest.fixture(scope="module")
def env(shared_airflow_if_chromium: SharedAirflow) -> Iterator[Env]:
    shared = shared_airflow_if_chromium
    # nothing is scheduled (every DAG paused): the page shows only the seeded rows (and the configured plan)
    af = shared.activate("test_ui_browser", {"schedule": {"run-scheduler": "true"}}, paused=True)
    try:
        stack = af.stack

        def dag_parsed() -> bool:
            try:
                return bool(stack.api("GET", "/dags/gim_etl_cycle"))
            except RuntimeError:
                return False

        stack.wait_for("gim_etl_cycle parsed", dag_parsed, timeout=120)
        real = stack.trigger("gim_etl_cycle")  # paused: stays queued, but it is a real run to link to
        _seed(af.im, dt.datetime.now(dt.UTC), real["dag_run_id"])
        shots = af.home / "screenshots"
        shots.mkdir(exist_ok=True)
        yield Env(stack, af.im, shots, real["dag_run_id"])
    finally:
        shared.release()


@pytest.fixture(scope="module")
def shared_airflow_if_chromium(request: pytest.FixtureRequest) -> SharedAirflow:
    """Skip before the shared Airflow is started (or handed over) when there is no browser."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium chromium-driver)")
    return request.getfixturevalue("shared_airflow")


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="gim-chromium-"))
    b = Browser(profile)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=20) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# Tests (in order: refused, log in, pages, inside the Airflow UI)
# ---------------------------------------------------------------------------------------------


def test_unauthenticated_access_is_refused(env: Env, browser: Browser) -> None:
    base = env.stack.base
    for path in ("/gim/", "/gim/history", "/gim/schedule", "/gim/schedule.svg"):
        code, headers, body = _get(base + path)
        assert code == 302 and headers["location"].startswith("/auth/login?next="), (path, code, headers)
        assert "Job_ExtractICON" not in body
    for path in ("/gim/api/status", "/gim/api/history", "/gim/api/schedule"):
        code, _, body = _get(base + path)
        assert code == 401 and "Job_" not in body, (path, code, body)
    code, _, body = _get(base + "/gim/api/status", {"Authorization": "Bearer forged.token.value"})
    assert code == 403 and "Job_" not in body
    # the plugin is registered: app and nav entry (the REST API itself needs a login)
    plugins = env.stack.api("GET", "/plugins")["plugins"]
    ui = next(p for p in plugins if p["name"] == "gim_ui")
    assert ui["fastapi_apps"][0]["url_prefix"] == "/gim"
    assert ui["external_views"][0]["href"] == "gim/" and ui["external_views"][0]["url_route"] == "gim"

    browser.goto(base + "/gim/")
    browser.wait("the login page", "location.pathname.startsWith('/auth/login') && !!document.querySelector('input')")
    assert SEED_MESSAGE not in browser.text() and "Job_ExtractICON" not in browser.text()
    browser.screenshot(env.shots / "00-login-required.png", full_page=False)


def test_login_through_airflow_and_read_the_status_page(env: Env, browser: Browser) -> None:
    pw = json.loads((env.stack.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    browser.goto(env.stack.base + "/gim/")  # -> the login page, which comes back here afterwards
    browser.wait("the login form", "document.querySelectorAll('input').length >= 2")
    browser.type_into("input[name=username], input#username, input[type=text]", "admin")
    browser.type_into("input[type=password]", pw)
    browser.js("(document.querySelector('button[type=submit]') || document.querySelector('form button')).click()")
    browser.wait("the status page after login",
                 "location.pathname === '/gim/' && document.body.dataset.page === 'status'", timeout=30)
    text = browser.text()
    assert "Info Mart Manager" in text and "ETL status" in text
    assert "ALARM: delayed data" in text and "source main is" in text  # 3000 s behind, threshold 900 s
    assert "Job_ExtractICON" in text and str(SEED_ROWS) in text and "Job_MaintainGIM" in text
    assert "Failed runs in the last 24 h" in text
    assert browser.js("document.querySelector('#sources tr.alarm td').innerText") == "main"
    assert browser.js("document.querySelectorAll('#extraction tr').length") == 4  # header + 3 marks
    assert "81234" in browser.js("document.querySelector('#extraction').innerText")
    last = browser.js("document.querySelector(\"#jobs tr[data-job='Job_ExtractICON'] .badge\").innerText")
    assert last == "COMPLETED"
    env.shots.joinpath("status.html").write_text(browser.js("document.documentElement.outerHTML"))
    shot = browser.screenshot(env.shots / "01-status.png")
    print(f"\nscreenshot: {shot}")


def test_history_page_filters_and_links_to_the_airflow_run(env: Env, browser: Browser) -> None:
    base = env.stack.base
    browser.goto(base + "/gim/history")
    browser.wait("the history table", "!!document.querySelector('#history')")
    rows = browser.js("[...document.querySelectorAll('#history tr[data-job]')].map(r => r.dataset.job + ' ' + r.dataset.status)")
    assert len(rows) == 6 and rows[0] == "Job_TransformGIM COMPLETED", rows
    assert SEED_MESSAGE in browser.text()
    browser.screenshot(env.shots / "02-history.png")

    browser.js("document.querySelector('select[name=status]').value = 'FAILED'")
    browser.js("document.querySelector('form.filters').submit()")
    browser.wait("the filtered history", "location.search.includes('status=FAILED') && !!document.querySelector('#history')")
    rows = browser.js("[...document.querySelectorAll('#history tr[data-job]')].map(r => r.dataset.status)")
    assert rows == ["FAILED"]

    browser.goto(base + "/gim/history?job=Job_TransformGIM")
    browser.wait("transform runs", "!!document.querySelector('#history')")
    link = browser.js("document.querySelector('#history tr[data-job] a.airflow-link').getAttribute('href')")
    from urllib.parse import quote

    assert link == f"../dags/gim_etl_cycle/runs/{quote(env.real_run_id, safe='')}"
    # opened on its own (not in the UI's iframe) the link is a plain link to the Airflow run page
    browser.js("document.querySelector('#history tr[data-job] a.airflow-link').click()")
    browser.wait("the Airflow run page", "location.pathname.startsWith('/dags/gim_etl_cycle/runs/')"
                 f" && document.body.innerText.includes({json.dumps(env.real_run_id)})"
                 " && document.body.innerText.includes('Task Instances')", timeout=45)
    browser.screenshot(env.shots / "03-airflow-run.png", full_page=False)
    # the log link: the run's task instance page (it opens on the log)
    browser.goto(base + "/gim/history?job=Job_TransformGIM")
    browser.wait("transform runs", "!!document.querySelector('#history')")
    log = browser.js("document.querySelectorAll('#history tr[data-job] a.airflow-link')[1].getAttribute('href')")
    assert log == f"{link}/tasks/transform"
    browser.js("document.querySelectorAll('#history tr[data-job] a.airflow-link')[1].click()")
    browser.wait("the task instance page", "location.pathname.endsWith('/tasks/transform')"
                 " && document.body.innerText.includes('Job_TransformGIM')", timeout=45)


def test_schedule_page_shows_the_day_as_svg_with_the_runs(env: Env, browser: Browser) -> None:
    browser.goto(env.stack.base + "/gim/schedule")
    browser.wait("the timeline", "!!document.querySelector('#timeline svg')")
    etl_marks = browser.js("document.querySelectorAll(\"#timeline g[data-lane='etl'] line.launch\").length")
    assert etl_marks == 37  # the shipped sample schedule, 06:30-00:30 every 30 min
    runs = browser.js("[...document.querySelectorAll('#timeline rect[data-status]')].map(r => r.dataset.job + ' ' + r.dataset.status)")
    assert sorted(runs) == sorted(["Job_ExtractICON COMPLETED", "Job_TransformGIM COMPLETED", "Job_ExtractICON FAILED",
                                   "Job_ExtractICON COMPLETED", "Job_TransformGIM COMPLETED", "Job_MaintainGIM STOPPED"])
    assert browser.js("document.querySelector('#timeline svg').getBoundingClientRect().width") > 1000
    assert "Runs recorded that day: 6" in browser.text()
    shot = browser.screenshot(env.shots / "04-schedule.png")
    print(f"\nscreenshot: {shot}")
    browser.goto(env.stack.base + "/gim/schedule.svg")
    assert browser.js("document.documentElement.namespaceURI") == "http://www.w3.org/2000/svg"


def test_page_inside_the_airflow_ui_nav_and_iframe(env: Env, browser: Browser) -> None:
    base = env.stack.base
    browser.goto(base + "/")
    browser.wait("the Airflow UI with the nav entry", "document.body.innerText.includes('Info Mart Manager')",
                 timeout=45)
    browser.goto(base + "/plugin/gim")
    frame_text = ("(() => { const f = document.querySelector('iframe');"
                  " return f && f.contentDocument && f.contentDocument.body ? f.contentDocument.body.innerText : ''; })()")
    browser.wait("the status page in the UI's iframe", f"{frame_text}.includes('Job_ExtractICON')", timeout=45)
    assert "ALARM: delayed data" in browser.js(frame_text)
    time.sleep(1)
    shot = browser.screenshot(env.shots / "05-in-airflow-ui.png", full_page=False)
    print(f"\nscreenshot: {shot}")
    # a run link inside the iframe opens the run in the Airflow UI around it (not nested in the frame)
    browser.js("(() => { const d = document.querySelector('iframe').contentDocument;"
               " d.querySelector(\"#jobs tr[data-job='Job_ExtractICON'] a.airflow-link\").click(); })()")
    browser.wait("the UI routed to the run page, the iframe gone",
                 "location.pathname.startsWith('/dags/gim_etl_cycle/runs/') && !document.querySelector('iframe')"
                 f" && document.body.innerText.includes({json.dumps(env.real_run_id)})", timeout=30)
    browser.screenshot(env.shots / "06-run-from-iframe.png", full_page=False)
