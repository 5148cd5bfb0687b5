"""Where gim-airflow keeps its local state.

Everything a run leaves on disk (embedded PostgreSQL, Airflow home, exports by default) lives under
one folder, ``$GIM_HOME`` or ``<project>/.gim``, so a user can see it, back it up or delete it, and so
it never ends up in git.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def gim_home() -> Path:
    """The state folder; created on first use."""
    home = Path(os.environ.get("GIM_HOME") or PROJECT_ROOT / ".gim").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
