"""Schema migrations, owned in one place.

Each database kind has an ordered folder of SQL files, ``sql/<kind>/NNN_name.sql``. ``migrate``
applies the ones a database has not seen, each in its own transaction together with its row in the
schema-info table, under an advisory lock so two processes starting at once do not race. Running it
again is a no-op; running it on an older database upgrades it. A file is never edited once released:
changes go into a new file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg
from psycopg import sql

Kind = Literal["infomart", "idb"]
_INFO_TABLE = {"infomart": "ctl_schema_info", "idb": "gsys_schema_info"}
_LOCK_KEY = 0x6_1D_5C_4E  # any constant; one lock for migrations on a database
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def migrations(kind: Kind) -> list[Migration]:
    folder = resources.files("gim_jobs.db").joinpath("sql", kind)
    out = []
    for entry in folder.iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in sql/{kind}: {versions}")
    return out


def current_version(conn: psycopg.Connection, kind: Kind) -> int:
    table = _INFO_TABLE[kind]
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
    if not exists:
        return 0
    row = conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(sql.Identifier(table)))
    return int(row.fetchone()[0])


def migrate(dsn: str, kind: Kind, *, target: int | None = None) -> list[int]:
    """Bring the database up to ``target`` (default: newest). Returns the versions applied."""
    table = _INFO_TABLE[kind]
    applied: list[int] = []
    with psycopg.connect(dsn, autocommit=False, connect_timeout=10) as conn:
        for mig in migrations(kind):
            if target is not None and mig.version > target:
                break
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (version int PRIMARY KEY, name text NOT NULL, "
                        "applied_at timestamptz NOT NULL DEFAULT now())"
                    ).format(sql.Identifier(table))
                )
                done = conn.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE version = %s").format(sql.Identifier(table)), (mig.version,)
                ).fetchone()
                if done:
                    continue
                conn.execute(mig.text)
                conn.execute(
                    sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(sql.Identifier(table)),
                    (mig.version, mig.name),
                )
                applied.append(mig.version)
    return applied
