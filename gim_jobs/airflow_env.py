"""The environment the project's Airflow runs in (demo, tests, CLI helpers).

No Airflow import here: this only builds the ``AIRFLOW__*`` variables and calls the ``airflow``
command, so ``gim demo`` can prepare and start Airflow as subprocesses. One place decides where
Airflow's home, metadata database, DAGs and plugins are, so the demo and the tests agree.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from gim_jobs.paths import PROJECT_ROOT, gim_home


def airflow_bin() -> str:
    """The ``airflow`` executable of this interpreter's environment (standalone needs it on PATH)."""
    cand = Path(sys.executable).with_name("airflow")
    return str(cand) if cand.exists() else (shutil.which("airflow") or "airflow")


def airflow_env(*, metadata_uri: str | None = None, home: Path | None = None, port: int = 8080,
                parallelism: int = 4) -> dict[str, str]:
    """Environment for Airflow processes; ``metadata_uri`` is a SQLAlchemy URL (default SQLite)."""
    home = home or gim_home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(64))
        secret_file.chmod(0o600)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata_uri or f"sqlite:///{home / 'airflow.db'}"
    return env


def run_airflow(args: list[str], env: dict[str, str], *, check: bool = True,
                capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one ``airflow`` CLI command; raise with its output when it fails and ``check``."""
    proc = subprocess.run([airflow_bin(), *args], env=env, text=True, capture_output=capture, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def prepare_airflow(env: dict[str, str]) -> None:
    """Migrate the metadata DB and import the job pools (both idempotent)."""
    run_airflow(["db", "migrate"], env)
    run_airflow(["pools", "import", str(PROJECT_ROOT / "config" / "pools.json")], env)
