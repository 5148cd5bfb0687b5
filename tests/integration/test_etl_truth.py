"""Simulator batches -> Job_ExtractICON + Job_TransformGIM -> facts equal the simulator's ground truth.

Two batches are simulated on one IDB (the second resumes the first, ending what was in flight), with an
ETL cycle after each, so the facts are built incrementally with active interactions updated later,
and the data clock moves past delayed-data-threshold for the first batch's faulty rows.
"""

from __future__ import annotations

from collections import defaultdict

import psycopg
import pytest

from gim_jobs.control import run_job
from gim_jobs.db.connect import DataSource
from tests.integration.test_extract import T0, q

FAULTS = dict(late_rows=0.01, out_of_order=0.01, duplicated=0.01, unknown_party=0.005, orphan_party=0.01,
              malformed=0.01)

TRUTH_IXN = """SELECT irid, offered_ts, answered, abandoned, abandoned_ringing, ended, talk_seconds, hold_seconds,
                      acw_seconds, complete
                 FROM sim.truth_interaction WHERE NOT excluded"""
MART_IXN = """
SELECT i.media_server_ixn_guid, i.start_ts,
       coalesce(bool_or(r.resource_type = 'Agent' AND f.consult_flag = 0 AND f.talk_count > 0), false),
       coalesce(bool_or(td.result_reason = 'AbandonedWhileQueued'), false),
       coalesce(bool_or(td.result_reason = 'AbandonedWhileRinging'), false),
       i.end_ts IS NOT NULL,
       coalesce(sum(f.talk_duration) FILTER (WHERE r.resource_type = 'Agent' AND f.consult_flag = 0), 0),
       coalesce(sum(f.hold_duration) FILTER (WHERE r.resource_type = 'Agent' AND f.consult_flag = 0), 0),
       coalesce(sum(f.after_call_work_duration), 0)
  FROM interaction_fact i
  LEFT JOIN interaction_resource_fact f ON f.interaction_id = i.interaction_id
  LEFT JOIN resource_ r ON r.resource_key = f.resource_key
  LEFT JOIN technical_descriptor td ON td.technical_descriptor_key = f.technical_descriptor_key
 GROUP BY i.interaction_id, i.start_date_time_key
"""
TRUTH_QUEUE = """
SELECT p.endpoint_id, count(*), count(*) FILTER (WHERE end_cause = 'completed'),
       count(*) FILTER (WHERE end_cause = 'abandoned'), count(*) FILTER (WHERE end_cause = 'cleared'),
       count(*) FILTER (WHERE end_ts IS NULL), coalesce(sum(end_ts - start_ts), 0)
  FROM sim.truth_party p JOIN sim.truth_interaction i USING (irid)
 WHERE p.party_type = 1 AND NOT i.excluded GROUP BY 1 ORDER BY 1"""
MART_QUEUE = """
SELECT r.icon_dbid, count(*), count(*) FILTER (WHERE td.technical_result = 'Diverted'),
       count(*) FILTER (WHERE td.result_reason = 'AbandonedWhileQueued'),
       count(*) FILTER (WHERE td.technical_result = 'Cleared'), count(*) FILTER (WHERE f.end_ts IS NULL),
       coalesce(sum(f.mediation_duration), 0)
  FROM interaction_resource_fact f JOIN resource_ r USING (resource_key)
  JOIN technical_descriptor td USING (technical_descriptor_key)
 WHERE r.resource_type = 'Queue' GROUP BY 1 ORDER BY 1"""
# agent parties on the customer's call; measures of ended parties (the truth adds a party's talk at release)
TRUTH_AGENT = """
SELECT p.agent_id, count(*), count(*) FILTER (WHERE established_ts IS NOT NULL),
       count(*) FILTER (WHERE end_cause = 'abandoned_ringing'), count(*) FILTER (WHERE end_cause = 'redirected'),
       count(*) FILTER (WHERE end_cause = 'transferred'),
       sum(p.talk_seconds) FILTER (WHERE p.end_ts IS NOT NULL), sum(p.hold_seconds) FILTER (WHERE p.end_ts IS NOT NULL),
       sum(p.acw_seconds)
  FROM sim.truth_party p JOIN sim.truth_interaction i USING (irid)
 WHERE p.party_type = 2 AND p.call_type <> 4 AND NOT i.excluded GROUP BY 1 ORDER BY 1"""
MART_AGENT = """
SELECT r.icon_dbid, count(*), count(*) FILTER (WHERE f.talk_count > 0),
       count(*) FILTER (WHERE td.result_reason = 'AbandonedWhileRinging'),
       count(*) FILTER (WHERE td.technical_result = 'Redirected'),
       count(*) FILTER (WHERE td.technical_result = 'Transferred'),
       sum(f.talk_duration) FILTER (WHERE f.end_ts IS NOT NULL), sum(f.hold_duration) FILTER (WHERE f.end_ts IS NOT NULL),
       sum(f.after_call_work_duration)
  FROM interaction_resource_fact f JOIN resource_ r USING (resource_key)
  JOIN technical_descriptor td USING (technical_descriptor_key)
 WHERE r.resource_type = 'Agent' AND f.consult_flag = 0 GROUP BY 1 ORDER BY 1"""
TRUTH_STATES = """SELECT agent_id, state, count(*), sum(end_ts - start_ts) FROM sim.truth_agent_state
                   WHERE end_ts IS NOT NULL AND state <> 5 GROUP BY 1, 2 ORDER BY 1, 2"""
MART_STATES = """SELECT r.icon_dbid, f.resource_state_key, count(*), sum(f.total_duration)
                   FROM sm_res_state_fact f JOIN resource_ r USING (resource_key)
                  WHERE f.end_ts IS NOT NULL AND f.resource_state_key <> 5 GROUP BY 1, 2 ORDER BY 1, 2"""


@pytest.fixture
def etl(infomart_dsn, idb_dsn, make_config):
    from gim_jobs.idb import FaultSpec, simulate_batch

    cfg = make_config()
    src = [DataSource("idb", idb_dsn)]

    def cycle() -> None:
        for job in ("extract", "transform"):
            assert run_job(job, infomart_dsn=infomart_dsn, sources=src, config_path=cfg).status == "COMPLETED"

    faults = FaultSpec(**FAULTS)
    simulate_batch(idb_dsn, interactions=2500, start=T0, span_seconds=8 * 3600, faults=faults)
    cycle()
    simulate_batch(idb_dsn, interactions=500, start=T0 + 8 * 3600, span_seconds=2 * 3600, faults=faults)
    cycle()
    return infomart_dsn, idb_dsn


def test_facts_equal_ground_truth_per_interaction_queue_agent_and_interval(etl):
    mart, idb = etl
    truth = {r[0]: r[1:] for r in q(idb, TRUTH_IXN)}
    facts = {r[0]: r[1:] for r in q(mart, MART_IXN)}
    assert len(truth) > 2500
    assert set(facts) == set(truth), "interactions transformed = interactions the truth does not exclude"
    for irid, t in truth.items():
        f = facts[irid]
        assert f[:5] == t[:5], irid  # offered time, answered, abandoned, abandoned ringing, ended
        if t[8]:  # complete: every segment is final
            assert f[5:8] == t[5:8], irid  # talk, hold, after-call work

    per_interval: dict[str, dict[int, list[int]]] = {"truth": defaultdict(lambda: [0] * 8),
                                                    "facts": defaultdict(lambda: [0] * 8)}
    for name, rows in (("truth", truth), ("facts", facts)):
        for irid, r in rows.items():
            acc = per_interval[name][r[0] - r[0] % 900]
            for i, v in enumerate(r[1:5]):
                acc[i] += int(v)
            if truth[irid][8]:
                for i, v in enumerate(r[5:8]):
                    acc[4 + i] += int(v)
            acc[7] += 1
    assert per_interval["facts"] == per_interval["truth"]

    assert q(mart, MART_QUEUE) == q(idb, TRUTH_QUEUE)
    assert q(mart, MART_AGENT) == q(idb, TRUTH_AGENT)
    assert q(mart, MART_STATES) == q(idb, TRUTH_STATES)


def test_faulty_rows_are_discarded_or_still_pending(etl):
    mart, idb = etl
    faults = q(idb, "SELECT kind, irid, table_name, row_key FROM sim.truth_fault")
    kinds = {k for k, *_ in faults}
    assert {"orphan_party", "malformed", "unknown_party", "duplicate", "late"} <= kinds
    discards = {(t, k): c for t, k, c in q(mart, "SELECT table_name, source_key, code FROM stg_transform_discards")}
    pending = {(t, k) for t, k in q(mart, "SELECT table_name, source_key FROM stg_transform_pending")}
    transformed = {r[0] for r in q(mart, "SELECT media_server_ixn_guid FROM interaction_fact")}
    parties = defaultdict(list)
    for irid, pid in q(idb, "SELECT irid, partyid FROM g_party"):
        parties[irid].append(pid)
    discarded_orphans = 0
    for kind, irid, table, key in faults:
        if kind == "malformed":
            assert discards[(table, key)] == "end_before_start"
            assert discards[("g_ir", irid)] == "interaction_discarded" and irid not in transformed
        elif kind == "orphan_party":  # its calls never come: first waiting, discarded after the threshold
            assert irid not in transformed
            if ("g_ir", irid) in discards:
                discarded_orphans += 1
                assert any(discards.get(("g_party", p)) == "missing_dependency" for p in parties[irid])
            else:
                assert any(("g_party", p) in pending for p in parties[irid])
        elif kind == "unknown_party":
            assert discards.get((table, key)) == "missing_dependency" or (table, key) in pending
        elif kind == "duplicate" and irid in transformed:
            assert discards[(table, key)] == "duplicate_row"
    assert discarded_orphans > 0, "the first batch's orphans are past delayed-data-threshold"
    with psycopg.connect(mart) as conn:
        reasons = conn.execute("SELECT DISTINCT code, reason FROM stg_transform_discards "
                               "WHERE code = 'missing_dependency' LIMIT 1").fetchall()
    assert "not staged" in reasons[0][1] and "delayed-data-threshold" in reasons[0][1]
