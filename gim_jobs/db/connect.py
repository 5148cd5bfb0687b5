"""Which databases the jobs talk to, and how they connect.

DSNs come from the environment (CLI) or are handed in by the Airflow glue (connections
``gim_infomart`` and ``gim_idb_*``). With nothing configured, the embedded PostgreSQL under
``.gim/`` hosts two databases, ``gim_infomart`` and ``gim_idb``, so the demo and the tests run on a
machine that has only Python.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

VALID_ROLES = ("ICON_CFG", "ICON_CORE", "ICON_MM", "ICON_OCS")
DEFAULT_ROLES = ("ICON_CFG", "ICON_CORE", "ICON_MM", "ICON_OCS")
EMBEDDED_INFOMART_DB = "gim_infomart"
EMBEDDED_IDB_DB = "gim_idb"
DEFAULT_SOURCE_NAME = "main"


class DatabaseConfigError(ValueError):
    """A DSN or data-source definition is unusable; the message says which and why."""


@dataclass(frozen=True)
class DataSource:
    """One IDB and the extraction roles Job_ExtractICON pulls through it (a Genesys DAP)."""

    name: str
    dsn: str
    roles: tuple[str, ...] = DEFAULT_ROLES

    def __post_init__(self) -> None:
        bad = [r for r in self.roles if r not in VALID_ROLES]
        if bad:
            raise DatabaseConfigError(
                f"data source {self.name!r}: unknown role(s) {', '.join(bad)}; valid roles are "
                f"{', '.join(VALID_ROLES)}"
            )
        if not self.roles:
            raise DatabaseConfigError(f"data source {self.name!r}: needs at least one role")


def parse_roles(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_ROLES
    return tuple(r.strip().upper() for r in text.split(",") if r.strip())


def _embedded(database: str) -> str:
    from gim_jobs.db.embedded import server_uri

    ensure_database(server_uri(database="postgres"), database)
    return server_uri(database=database)


def infomart_dsn() -> str:
    """The Info Mart DSN: ``GIM_INFOMART_DSN`` or the embedded ``gim_infomart`` database."""
    dsn = os.environ.get("GIM_INFOMART_DSN")
    return dsn if dsn else _embedded(EMBEDDED_INFOMART_DB)


def idb_sources() -> list[DataSource]:
    """The IDB data sources for the CLI.

    ``GIM_IDB_SOURCES`` (a JSON list of ``{"name", "dsn", "roles"}``) lists several IDBs; else
    ``GIM_IDB_DSN`` (+ ``GIM_IDB_ROLES``, ``GIM_IDB_NAME``) names one; else the embedded ``gim_idb``
    is used. The name keys the data source in the Info Mart (``ctl_data_source``), so the CLI's
    default name ``main`` matches the Airflow connection ``gim_idb_main``: both extract the same IDB
    as the same data source.
    """
    raw = os.environ.get("GIM_IDB_SOURCES")
    if raw:
        try:
            items = json.loads(raw)
            return [
                DataSource(
                    name=str(it["name"]),
                    dsn=str(it["dsn"]),
                    roles=parse_roles(it.get("roles")) if isinstance(it.get("roles"), str | None)
                    else tuple(it["roles"]),
                )
                for it in items
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise DatabaseConfigError(
                f'GIM_IDB_SOURCES must be a JSON list of {{"name", "dsn", "roles"}} objects: {exc}'
            ) from exc
    name = os.environ.get("GIM_IDB_NAME") or DEFAULT_SOURCE_NAME
    dsn = os.environ.get("GIM_IDB_DSN")
    if dsn:
        return [DataSource(name, dsn, parse_roles(os.environ.get("GIM_IDB_ROLES")))]
    return [DataSource(name, _embedded(EMBEDDED_IDB_DB), DEFAULT_ROLES)]


def connect(dsn: str, *, autocommit: bool = False, app: str = "gim") -> psycopg.Connection:
    """Open a connection with a recognisable application_name and a sane connect timeout."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit, application_name=app, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(f"cannot connect to {redact(dsn)}: {exc}".strip()) from exc


@contextmanager
def connection(dsn: str, *, autocommit: bool = False, app: str = "gim") -> Iterator[psycopg.Connection]:
    conn = connect(dsn, autocommit=autocommit, app=app)
    try:
        yield conn
    finally:
        conn.close()


def ensure_database(admin_dsn: str, name: str) -> None:
    """CREATE DATABASE ``name`` if it does not exist (idempotent, safe to race)."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass


def redact(dsn: str) -> str:
    """A DSN fit for logs: the password replaced by ***."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable dsn>"
    if "password" in info:
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})
