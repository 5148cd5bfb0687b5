"""ICON IDB source: a deterministic contact-center traffic simulator writing ICON-like rows.

Public API (see each module's docstring):

* ``simulate_batch(dsn, interactions=, start=, span_seconds=, config=, faults=)`` -> ``SimSummary``
* ``LiveSimulator(dsn, rate_per_min=, ...)`` with ``.step(now_ts)``; ``run_live(dsn, rate, stop)``
* ``ground_truth(dsn, interval_seconds=900)`` -> dict; truth tables in schema ``sim`` (``truth.py``)
* ``SimConfig``, ``FaultSpec``; ``cli_simulate`` for ``gim idb simulate``
"""

from gim_jobs.idb.config import FaultSpec, SimConfig
from gim_jobs.idb.simulator import LiveSimulator, SimSummary, cli_simulate, run_live, simulate_batch
from gim_jobs.idb.truth import ground_truth

__all__ = ["FaultSpec", "LiveSimulator", "SimConfig", "SimSummary", "cli_simulate", "ground_truth", "run_live",
           "simulate_batch"]
