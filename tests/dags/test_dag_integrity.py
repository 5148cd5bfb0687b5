"""DAG integrity: one DagBag for the session, policy checks on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
EXPECTED = {
    "gim_etl_cycle.py": {"gim_etl_cycle"},
    "gim_extract_icon.py": {"gim_extract_icon"},
    "gim_transform.py": {"gim_transform"},
    "gim_update_stats.py": {"gim_update_stats"},
    "gim_export.py": {"gim_export"},
    "gim_maintain.py": {"gim_maintain"},
    "gim_aggregate.py": {"gim_aggregate"},
}


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), bundle_path=DAGS, bundle_name="dags-folder")


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_inventory_of_dag_ids_per_file(dagbag) -> None:
    found: dict[str, set[str]] = {}
    for dag in dagbag.dags.values():
        found.setdefault(Path(dag.fileloc).name, set()).add(dag.dag_id)
    for fname, ids in EXPECTED.items():
        assert found.get(fname) == ids, (fname, found.get(fname))


def test_every_dag_serializes(dagbag) -> None:
    """What catches an unregistered timetable (notes/airflow3.md §1.1)."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in dagbag.dags.values():
        DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def test_display_names_tags_owner_limits(dagbag) -> None:
    from gim_operators import GimTag

    allowed = {t.value for t in GimTag}
    for dag in dagbag.dags.values():
        assert dag.dag_display_name.startswith(("Job_", "ETL cycle")), dag.dag_id
        assert dag.tags and set(dag.tags) <= allowed, dag.tags
        assert dag.max_active_runs == 1 and dag.catchup is False
        for t in dag.tasks:
            assert t.owner == "gim"


def test_r05_every_task_uses_its_jobs_one_slot_pool(dagbag) -> None:
    pools = json.loads((REPO / "config" / "pools.json").read_text())
    assert all(p["slots"] == 1 for p in pools.values())
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            assert t.pool in pools, (dag.dag_id, t.task_id, t.pool)
            assert t.pool == f"gim_{t.task_id}"


def test_etl_cycle_runs_extract_then_transform(dagbag) -> None:
    dag = dagbag.dags["gim_etl_cycle"]
    assert dag.get_task("transform").upstream_task_ids == {"extract"}
    assert type(dag.timetable).__module__ == "gim_timetables"


PARSE_SCRIPT = r"""
import json, sys, time
import airflow.sdk  # noqa: F401  (Airflow itself is loaded before timing: the processor has it)
import psycopg

def no_connect(*a, **k):
    raise AssertionError("a DAG file connected to a database at parse time")

psycopg.connect = no_connect
psycopg.Connection.connect = classmethod(no_connect)
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="dags-folder")
print(json.dumps({"seconds": time.perf_counter() - t0, "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids)}))
"""


def test_dags_folder_parses_fast_without_database() -> None:
    """Cold parse of the whole folder in a fresh interpreter (what the dag-processor does), with
    every psycopg connect turned into an error: no database access at parse time, < 1 s."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(DAGS)], capture_output=True, text=True,
                         check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["errors"] == {}
    assert set().union(*EXPECTED.values()) <= set(res["dags"])
    assert res["seconds"] < 1.0, f"dags/ took {res['seconds']:.2f} s to parse"
