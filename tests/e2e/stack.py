"""A real Airflow (``airflow standalone``: api-server, scheduler, dag-processor, triggerer) for the
e2e tier, on the project's dags/ and plugins/, with its metadata in a PostgreSQL database of the
test server, and a small REST client to watch and drive it.

Starting Airflow costs ~30-50 s, so the modules that run on ``airflow standalone`` share one
(:class:`SharedAirflow`, the package fixture ``shared_airflow`` in ``tests/e2e/conftest.py``). Each
module still gets a clean slate: :meth:`SharedAirflow.activate` pauses every DAG, stops and deletes
every run of the previous module, recreates the Info Mart and IDB databases the stack points at
(their names are fixed in the stack's environment), writes the module's config/gim.ini (re-read at
every parse and at job start, R14), waits until every DAG was re-parsed under it, and unpauses.
:func:`airflow_with_databases` is the one "scratch databases + migrate + seed + config + Airflow"
block, used for the shared stack and by modules that need their own (Celery)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from gim_jobs.airflow_env import airflow_bin, airflow_env, prepare_airflow
from gim_jobs.db.migrate import migrate
from tests.conftest import REPO, write_config

# task instance states of work that is not over yet
UNFINISHED_TI_STATES = ("scheduled", "queued", "running", "restarting", "up_for_retry", "up_for_reschedule",
                        "deferred")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlalchemy_url(dsn: str) -> str:
    """A SQLAlchemy (psycopg 3) URL for a libpq DSN, unix-socket hosts included."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = quote(str(info.get("user") or "postgres"))
    pw = f":{quote(str(info['password']))}" if info.get("password") else ""
    host = str(info.get("host") or "")
    db = quote(str(info.get("dbname") or "postgres"))
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}{pw}@/{db}?host={quote(host, safe='/')}"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql+psycopg://{user}{pw}@{host}{port}/{db}"


class AirflowStack:
    def __init__(self, home: Path, metadata_dsn: str, extra_env: dict[str, str], *,
                 components: list[list[str]] | None = None) -> None:
        """``components``: None runs ``airflow standalone``; else each entry is one ``airflow ...``
        command line run as its own process (e.g. api-server, scheduler, celery worker)."""
        self.home = home
        self.components = components
        self.port = free_port()
        self.env = airflow_env(metadata_uri=sqlalchemy_url(metadata_dsn), home=home, port=self.port)
        self.env.update(
            {
                # compressed clock: see config changes (R14) and new slots within seconds
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
                "AIRFLOW__CORE__PARALLELISM": "6",
            }
        )
        self.env.update(extra_env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        # kept outside pytest's tmp dirs so a failed CI run leaves it for reading
        logs = Path(os.environ.get("GIM_E2E_LOGS", "/tmp/gim-e2e-logs"))
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{home.parent.name}-{self.port}.log"
        self._token: str | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 240) -> None:
        prepare_airflow(self.env)
        commands = self.components or [["standalone"]]
        with self.log_path.open("ab") as log:
            for args in commands:
                self.procs.append(subprocess.Popen([airflow_bin(), *args], env=self.env, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True))
        self.proc = self.procs[0]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"an airflow component exited ({dead[0].args}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/v2/version", timeout=3):
                    pass
                pw_file = self.home / "simple_auth_manager_passwords.json.generated"
                if pw_file.exists():
                    return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"airflow standalone not ready in {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        for proc in self.procs:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue

    def tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # ---------------------------------------------------------------- REST
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        if self._token is None:
            pw = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
            req = urllib.request.Request(
                f"{self.base}/auth/token", data=json.dumps({"username": "admin", "password": pw}).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                self._token = json.loads(resp.read())["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            f"{self.base}/api/v2{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc
        return json.loads(raw) if raw else None

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Runs of a DAG, oldest first (by run_after)."""
        try:
            out = self.api("GET", f"/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")
        except RuntimeError as exc:
            if " 404 " in str(exc):
                return []
            raise
        return out["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        out = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {t["task_id"]: t["state"] for t in out["task_instances"]}

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})

    # ---------------------------------------------------------------- reset between modules
    def dags(self) -> list[dict[str, Any]]:
        return self.api("GET", "/dags?limit=100")["dags"]

    def set_paused(self, paused: bool) -> None:
        for d in self.dags():
            if d["is_paused"] != paused:
                self.api("PATCH", f"/dags/{d['dag_id']}", {"is_paused": paused})

    def all_runs(self, states: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Runs of every DAG (at most 100: callers loop until none is left)."""
        query = "".join(f"&state={s}" for s in states)
        return self.api("GET", f"/dags/~/dagRuns?limit=100{query}")["dag_runs"]

    def busy_task_processes(self) -> list[str]:
        """Titles of this stack's executor processes running a task (LocalExecutor workers and task
        runners set ``airflow worker -- ...`` as their title; an idle worker ends in ``<idle>``). A task
        marked failed through the API may still run until its supervisor notices: only this says it
        has gone."""
        sessions = {p.pid for p in self.procs}
        busy = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                title = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            session = int(stat.rsplit(")", 1)[1].split()[3])
            if session in sessions and title.startswith("airflow worker --") and not title.endswith("<idle>"):
                busy.append(title)
        return busy

    def quiesce(self, timeout: float = 180) -> None:
        """Pause every DAG, fail the runs still queued or running (their tasks get ``on_kill``) and
        wait until no task process is left, then delete every run: the next module starts with no
        history and nothing running."""
        self.set_paused(True)
        stable = 0

        def idle() -> bool:
            nonlocal stable
            active = self.all_runs(("queued", "running"))
            for r in active:
                self.api("PATCH", f"/dags/{r['dag_id']}/dagRuns/{quote(r['dag_run_id'], safe='')}",
                         {"state": "failed"})
            unfinished = self.api("GET", "/dags/~/dagRuns/~/taskInstances?limit=1"
                                  + "".join(f"&state={s}" for s in UNFINISHED_TI_STATES))["total_entries"]
            stable = stable + 1 if not active and not unfinished and not self.busy_task_processes() else 0
            return stable >= 2  # twice in a row: nothing was between queue and worker

        self.wait_for("every run stopped and no task process left", idle, timeout=timeout, every=1)
        while runs := self.all_runs():
            for r in runs:
                self.api("DELETE", f"/dags/{r['dag_id']}/dagRuns/{quote(r['dag_run_id'], safe='')}")
        # Task logs are appended to per run id: a later run with the same id (same DAG and slot) would
        # show the old log too. Kept for reading, out of the API's reach.
        logs = self.home / "logs"
        if old := sorted(logs.glob("dag_id=*")):
            dest = logs / "deleted-runs" / f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
            dest.mkdir(parents=True)
            for d in old:
                d.rename(dest / d.name)

    def wait_reparsed(self, since: dt.datetime, n_dags: int, timeout: float = 180) -> None:
        """Wait until each of (at least) ``n_dags`` DAGs was parsed twice after ``since``: the first
        parse may have read the files before ``since``; the second started after the first ended."""
        first: dict[str, dt.datetime] = {}

        def parsed() -> bool:
            dags = self.dags()
            done = len(dags) >= n_dags
            for d in dags:
                t = dt.datetime.fromisoformat(d["last_parsed_time"]) if d["last_parsed_time"] else None
                if t is None or t <= since:
                    done = False
                elif d["dag_id"] not in first:
                    first[d["dag_id"]] = t
                    done = False
                elif t <= first[d["dag_id"]]:
                    done = False
            return done

        self.wait_for(f"every DAG re-parsed after {since:%H:%M:%S}", parsed, timeout=timeout, every=1)

    def wait_for(self, what: str, pred: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            val = pred()
            if val:
                return val
            if any(p.poll() is not None for p in self.procs):
                raise AssertionError(f"an airflow component died while waiting for {what}:\n{self.tail()}")
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (full log: {self.log_path})"
                             f"\n--- log tail ---\n{self.tail(30)}")


def with_database(dsn: str, db: str) -> str:
    """``dsn`` pointing at database ``db`` instead."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = db
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


@contextmanager
def scratch_databases(admin_dsn: str, prefix: str, *keys: str) -> Iterator[dict[str, str]]:
    """Create one fresh database per key (``{key: dsn}``) and drop them all afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {k: f"{prefix}_{k}_{tag}" for k in keys}
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for n in names.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(n)))
    try:
        yield {k: with_database(admin_dsn, n) for k, n in names.items()}
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            for n in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(n)))


def recreate_databases(admin_dsn: str, dsns: dict[str, str]) -> None:
    """Drop (disconnecting any client) and create again each database of ``dsns``, empty."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for dsn in dsns.values():
            name = sql.Identifier(str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


@dataclass(frozen=True)
class Seed:
    """Simulated IDB traffic of the last hour, extracted by the ETL cycles of a module."""

    interactions: int
    seed: int


def prepare_databases(im: str, idb: str | None, seed: Seed | None) -> None:
    """Migrate the Info Mart (and the IDB), and fill the IDB with ``seed``'s traffic."""
    migrate(im, "infomart")
    if idb is None:
        return
    migrate(idb, "idb")
    if seed is not None:
        from gim_jobs.idb import simulator

        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        simulator.simulate_batch(idb, interactions=seed.interactions, start=now - dt.timedelta(hours=1),
                                 span_seconds=3600, config=simulator.SimConfig(seed=seed.seed))


@dataclass
class AirflowEnv:
    """What a test module gets: the Airflow, the config file it reads, the databases it points at."""

    stack: AirflowStack
    cfg: Path
    im: str
    idb: str
    home: Path


@contextmanager
def airflow_with_databases(admin_dsn: str, home: Path, prefix: str, config: dict[str, dict[str, str]], *,
                           seed: Seed | None = None,
                           extra_env: dict[str, str] | Callable[[dict[str, str]], dict[str, str]] | None = None,
                           components: list[list[str]] | None = None) -> Iterator[AirflowEnv]:
    """Scratch Info Mart, IDB and Airflow metadata databases on ``admin_dsn``'s server (migrated,
    the IDB seeded), ``home/gim.ini`` written from ``config``, and a started Airflow pointed at them
    (``GIM_CONFIG``, ``GIM_INFOMART_DSN``, ``GIM_IDB_DSN``); all stopped and dropped afterwards.
    ``extra_env`` may be a function of the databases' DSNs (``{"im", "idb", "af"}``)."""
    with scratch_databases(admin_dsn, prefix, "im", "idb", "af") as dbs:
        prepare_databases(dbs["im"], dbs["idb"], seed)
        cfg = write_config(home / "gim.ini", config)
        stack = AirflowStack(home / "airflow", dbs["af"], {
            "GIM_CONFIG": str(cfg), "GIM_INFOMART_DSN": dbs["im"], "GIM_IDB_DSN": dbs["idb"], "GIM_IDB_NAME": "main",
            "GIM_HOME": str(home / "gim"), **((extra_env(dbs) if callable(extra_env) else extra_env) or {}),
        }, components=components)
        try:
            stack.start()
            yield AirflowEnv(stack, cfg, dbs["im"], dbs["idb"], home)
        finally:
            stack.stop()


class SharedAirflow:
    """One ``airflow standalone`` for several test modules, handed to one module at a time."""

    # nothing is launched until a module activates the stack
    IDLE = {"schedule": {"run-scheduler": "false"}}

    def __init__(self, admin_dsn: str, env: AirflowEnv) -> None:
        self.admin_dsn, self.env = admin_dsn, env
        self.n_dags = len(list((REPO / "dags").glob("gim_*.py")))
        self.active: str | None = None
        self._quiet = True  # nothing unpaused or run since the start or the last release()

    @property
    def stack(self) -> AirflowStack:
        return self.env.stack

    def activate(self, name: str, config: dict[str, dict[str, str]] | Callable[[], dict[str, dict[str, str]]], *,
                 seed: Seed | None = None, prepare: Callable[[AirflowEnv], None] | None = None,
                 paused: bool = False) -> AirflowEnv:
        """Hand the stack to module ``name``: no run left from before, its config (a callable is
        called at the hand-over, so a config built from the clock is current), fresh databases
        (migrated, the IDB seeded, then ``prepare``), every DAG re-parsed under the config, and
        unpaused unless ``paused``."""
        t0 = time.monotonic()
        if not self._quiet:
            self.stack.quiesce()
        self._quiet = False
        # config first: the DAGs (all paused) are re-parsed under it while the databases are made
        written = dt.datetime.now(dt.UTC)
        write_config(self.env.cfg, config() if callable(config) else config)
        recreate_databases(self.admin_dsn, {"im": self.env.im, "idb": self.env.idb})
        prepare_databases(self.env.im, self.env.idb, seed)
        if prepare is not None:
            prepare(self.env)
        self.stack.wait_reparsed(written, self.n_dags)
        if not paused:
            self.stack.set_paused(False)
        self.active = name
        print(f"\nshared airflow handed to {name} in {time.monotonic() - t0:.0f} s ({self.stack.log_path})")
        return self.env

    def release(self) -> None:
        """Stop and delete whatever the module ran (DAGs paused): the next module starts clean."""
        self.stack.quiesce()
        self.active = None
        self._quiet = True
