"""A real Airflow (``airflow standalone``: api-server, scheduler, dag-processor, triggerer) for the
e2e tier, on the project's dags/ and plugins/, with its metadata in a PostgreSQL database of the
test server, and a small REST client to watch and drive it."""

from __future__ import annotations

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
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from gim_jobs.airflow_env import airflow_bin, airflow_env, prepare_airflow


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

    def wait_for(self, what: str, pred: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
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
    from psycopg import sql

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
