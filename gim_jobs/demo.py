"""`gim demo`: the whole system on the embedded defaults, in one command.

Starts (or reuses) the embedded PostgreSQL under ``.gim/pg`` with three databases (``gim_infomart``,
``gim_idb``, ``airflow``), creates/upgrades the schemas, seeds some hours of past IDB traffic on the
first start, runs live simulated traffic, and runs Airflow (``airflow standalone``: api-server with the
UI, scheduler, dag-processor, triggerer) on the project's dags/ and plugins/. Ctrl-C stops it all;
running it again resumes on the same data.

Unless ``GIM_CONFIG`` says otherwise it uses ``config/demo.ini``: the shipped sample schedule's ETL
window (06:30-00:30 GMT) would leave a demo started at night idle for hours, so the demo runs an ETL
cycle every few minutes all day.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from gim_jobs.paths import PROJECT_ROOT, gim_home


def _say(msg: str) -> None:
    print(f"[gim demo {dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - localhost only
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def _password(home: Path) -> str | None:
    for name in ("simple_auth_manager_passwords.json.generated",):
        f = home / name
        if f.exists():
            try:
                return json.loads(f.read_text()).get("admin")
            except ValueError:
                return None
    return None


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left (standalone's children can hang)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_demo(*, port: int = 8080, rate: float = 30.0, history_hours: float = 6.0) -> int:
    from gim_jobs.airflow_env import airflow_bin, airflow_env, prepare_airflow
    from gim_jobs.config import check_config
    from gim_jobs.db import embedded
    from gim_jobs.db.connect import connect, ensure_database, idb_sources, infomart_dsn
    from gim_jobs.db.migrate import migrate
    from gim_jobs.idb import simulator

    os.environ.setdefault("GIM_CONFIG", str(PROJECT_ROOT / "config" / "demo.ini"))
    chk = check_config()
    if not chk.ok:
        for p in chk.errors:
            print(f"error: {p}")
        _say(f"fix {chk.path} first (no job would start, R21)")
        return 1
    home = gim_home()
    _say(f"state folder {home}; config {chk.path}")
    _say("starting the embedded PostgreSQL ...")
    admin = embedded.server_uri()
    for db in ("gim_infomart", "gim_idb", "airflow"):
        ensure_database(admin, db)
    im = infomart_dsn()
    src = idb_sources()[0]
    migrate(im, "infomart")
    migrate(src.dsn, "idb")

    with connect(src.dsn, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM g_ir").fetchone()[0]
    sim_cfg = simulator.SimConfig(seed=42)
    if have == 0 and history_hours > 0:
        n = max(100, int(rate * 60 * history_hours))
        span = int(history_hours * 3600)
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=span)
        _say(f"seeding {n} interactions of the last {history_hours:g} h into the IDB ...")
        simulator.simulate_batch(src.dsn, interactions=n, start=start, span_seconds=span, config=sim_cfg)
    else:
        _say(f"IDB already holds {have} interactions: resuming")

    sock = embedded.ensure_server().get_postmaster_info().socket_dir
    env = airflow_env(metadata_uri=f"postgresql+psycopg://postgres@/airflow?host={sock}", port=port)
    _say("preparing Airflow (metadata migration, pools) ...")
    prepare_airflow(env)

    stop = threading.Event()
    sim_thread = threading.Thread(
        target=simulator.run_live, args=(src.dsn, rate, stop), kwargs={"config": sim_cfg}, daemon=True,
        name="idb-simulator",
    )
    sim_thread.start()
    _say(f"live IDB traffic: {rate:g} interactions/min")

    log_path = Path(env["AIRFLOW_HOME"]) / "standalone.log"
    _say(f"starting Airflow (log: {log_path}) ...")
    with log_path.open("ab") as log:
        proc = subprocess.Popen([airflow_bin(), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        if not _wait_http(f"http://localhost:{port}/api/v2/version", 240, proc):
            _say(f"Airflow did not come up; see {log_path}")
            return 1
        pw = _password(Path(env["AIRFLOW_HOME"]))
        _say(f"Airflow UI: http://localhost:{port}  login: admin / {pw or '(see simple_auth_manager_passwords.json.generated)'}")
        _say("ETL cycles run on the configured schedule; `gim status` / `gim history` in another shell. Ctrl-C stops.")
        last = 0.0
        while proc.poll() is None:
            time.sleep(1)
            if time.monotonic() - last > 60:
                last = time.monotonic()
                try:
                    with connect(im, autocommit=True) as conn:
                        facts = conn.execute(
                            "SELECT CASE WHEN to_regclass('interaction_fact') IS NULL THEN 0 "
                            "ELSE (SELECT count(*) FROM interaction_fact) END").fetchone()[0]
                        runs = conn.execute(
                            "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FROM ctl_etl_history"
                        ).fetchone()
                    _say(f"interaction_fact rows: {facts}; job runs completed {runs[0]} of {runs[1]}")
                except Exception as exc:  # noqa: BLE001 - a status line must never stop the demo
                    _say(f"status unavailable: {exc}")
        _say(f"Airflow exited ({proc.returncode}); see {log_path}")
        return 1
    except KeyboardInterrupt:
        _say("stopping ...")
        return 0
    finally:
        stop.set()
        _stop_group(proc)
        sim_thread.join(10)
        embedded.stop_server()
        _say(f"stopped (data kept in {home}; run `gim demo` again to resume)")
