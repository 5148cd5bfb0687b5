"""Outbound (ICON_OCS) end to end: simulator dialer -> Job_ExtractICON (role ICON_OCS) -> Job_TransformGIM
(contact_attempt_fact, campaign) -> Job_AggregateGIM (H_CAMPAIGN, H_AGENT_CAMPAIGN). Real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from gim_jobs.control import run_job
from gim_jobs.db.connect import DataSource
from gim_jobs.idb import LiveSimulator, SimConfig, simulate_batch
from gim_jobs.idb.outbound import RESULTS, attempt_truth

T0 = 1704103200  # 2024-01-01 10:00 UTC (a Monday)


def q(dsn: str, sql: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def one(dsn: str, sql: str, params: tuple | None = None):
    return q(dsn, sql, params)[0][0]


# ---------------------------------------------------------------------------------------------- simulator
def test_dialer_writes_campaigns_and_attempts_and_truth_matches_the_rows(idb_dsn: str) -> None:
    s = simulate_batch(idb_dsn, interactions=800, start=T0, span_seconds=3 * 3600, config=SimConfig(seed=3))
    assert s.rows["g_ocs_attempt"] > 50
    assert q(idb_dsn, "SELECT id, name FROM gc_campaign ORDER BY id") == [
        (1, "Renewals"), (2, "Collections"), (3, "Survey")]
    assert one(idb_dsn, "SELECT count(*) FROM gc_calling_list") == 4
    assert {r[0] for r in q(idb_dsn, "SELECT DISTINCT call_result FROM g_ocs_attempt WHERE state = 1")} <= set(RESULTS)
    # answered attempts have an agent and talk; the others have none
    assert one(idb_dsn, """SELECT count(*) FROM g_ocs_attempt WHERE state = 1 AND
                            (call_result = 'ANSWER') <> (agent_id IS NOT NULL AND talk_duration > 0)""") == 0
    assert one(idb_dsn, "SELECT count(*) FROM g_ocs_attempt WHERE ended_ts < dialing_ts") == 0
    # truth: one row per attempt, same results and talk
    assert one(idb_dsn, """SELECT count(*) FROM g_ocs_attempt a FULL JOIN sim.truth_attempt t USING (attempt_id)
                            WHERE t.attempt_id IS NULL OR a.attempt_id IS NULL
                               OR a.call_result IS DISTINCT FROM t.call_result
                               OR coalesce(a.talk_duration, 0) <> t.talk_seconds
                               OR (a.state = 1) <> t.ended""") == 0
    truth = attempt_truth(idb_dsn)
    assert sum(r["attempts"] for r in truth) == s.rows["g_ocs_attempt"]
    assert sum(r["connected"] for r in truth) > 0


def test_live_dialer_inserts_active_attempts_then_updates_them(idb_dsn: str) -> None:
    with LiveSimulator(idb_dsn, rate_per_min=20, config=SimConfig(seed=4), clock=lambda: T0) as sim:
        sim.step(T0 + 600)
        active = [r[0] for r in q(idb_dsn, "SELECT attempt_id FROM g_ocs_attempt WHERE state = 0")]
        assert active and one(idb_dsn, "SELECT count(*) FROM g_ocs_attempt WHERE state = 0 AND "
                                       "(call_result IS NOT NULL OR ended_ts IS NOT NULL)") == 0
        mark = one(idb_dsn, "SELECT max(gsys_useq) FROM g_ocs_attempt")
        sim.step(T0 + 3600)
        assert one(idb_dsn, "SELECT count(*) FROM g_ocs_attempt WHERE attempt_id = ANY(%s) AND state = 1 "
                            "AND gsys_seq <= %s AND gsys_useq > %s", (active, mark, mark)) == len(active)
        assert one(idb_dsn, "SELECT count(*) FROM sim.truth_attempt t JOIN g_ocs_attempt a USING (attempt_id) "
                            "WHERE t.ended <> (a.state = 1)") == 0
    assert one(idb_dsn, "SELECT count(*) FROM sim.truth_attempt") == one(idb_dsn, "SELECT count(*) FROM g_ocs_attempt")


def test_dialer_is_deterministic_and_does_not_change_inbound_traffic(new_database) -> None:
    from gim_jobs.db.migrate import migrate

    dumps = []
    for share in (0.25, 0.25, 0.0):
        dsn = new_database("idb")
        migrate(dsn, "idb")
        simulate_batch(dsn, interactions=400, start=T0, span_seconds=2 * 3600,
                       config=SimConfig(seed=5, outbound_per_inbound=share))
        dumps.append((q(dsn, "SELECT irid, created_ts, terminated_ts FROM g_ir ORDER BY irid"),
                      q(dsn, "SELECT id, partyid, changetype, added_ts FROM g_party_history ORDER BY id"),
                      q(dsn, "SELECT attempt_id, chain_id, attempt_no, campaign_id, calling_list_id, agent_id, "
                             "call_result, state, dialing_ts, connected_ts, ended_ts, talk_duration "
                             "FROM g_ocs_attempt ORDER BY attempt_id")))
    assert dumps[0] == dumps[1] and dumps[0][2]
    assert dumps[0][:2] == dumps[2][:2] and dumps[2][2] == []


# ---------------------------------------------------------------------------------------------- pipeline
AGENT_BASE = 1 << 32
FACT_VS_TRUTH = f"""
SELECT f.campaign_key, coalesce(f.resource_key - {AGENT_BASE}, -1), f.start_date_time_key, count(*),
       count(*) FILTER (WHERE f.call_result_code = 'ANSWER'), sum(f.talk_duration), count(*) FILTER (WHERE f.active_flag = 1)
  FROM contact_attempt_fact f GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""


def facts_by_campaign(dsn: str) -> list[tuple]:
    return [tuple(int(v) for v in r) for r in q(dsn, FACT_VS_TRUTH)]


def truth_by_campaign(idb: str) -> list[tuple]:
    return [(r["campaign_id"], r["agent_id"], r["interval_start"], r["attempts"], r["connected"], r["talk_seconds"],
             r["active"]) for r in attempt_truth(idb)]


@pytest.fixture
def pipeline(infomart_dsn, idb_dsn, make_config):
    cfg = make_config()
    src = [DataSource("idb", idb_dsn)]

    def cycle(**params) -> None:
        for job in ("extract", "transform"):
            res = run_job(job, infomart_dsn=infomart_dsn, sources=src, config_path=cfg, params=params or None)
            assert res.status == "COMPLETED", res

    return infomart_dsn, idb_dsn, cycle


def test_contact_attempt_fact_equals_the_dialers_truth_and_active_attempts_are_updated_not_doubled(pipeline):
    im, idb, cycle = pipeline
    simulate_batch(idb, interactions=900, start=T0, span_seconds=3 * 3600, config=SimConfig(seed=3))
    cycle(ocs_chunk_rows=40)
    truth = truth_by_campaign(idb)
    assert sum(r[6] for r in truth) > 0, "some attempts are still dialing / talking at the span end"
    assert facts_by_campaign(im) == truth
    assert one(im, "SELECT count(*) FROM contact_attempt_fact WHERE active_flag = 1 AND "
                   "(end_ts IS NOT NULL OR call_result_code <> 'UNKNOWN')") == 0
    # dimensions from the OCS configuration, agents from the ICON_CFG configuration
    assert q(im, "SELECT campaign_key, campaign_name FROM campaign ORDER BY 1") == [
        (1, "Renewals"), (2, "Collections"), (3, "Survey")]
    assert one(im, "SELECT count(*) FROM calling_list WHERE calling_list_name NOT LIKE 'unknown%%'") == 4
    assert one(im, """SELECT count(*) FROM contact_attempt_fact f LEFT JOIN resource_ r USING (resource_key)
                       WHERE f.resource_key IS NOT NULL AND (r.resource_type_code IS DISTINCT FROM 'AGENT'
                             OR r.resource_name LIKE 'unknown%%')""") == 0
    # the ICON_OCS streams: their own extraction marks (DATA_SOURCE_TYPE 3) and transform mark
    assert {r[0] for r in q(im, "SELECT table_name FROM ctl_extract_hwm WHERE role = 'ICON_OCS'")} == {
        "gc_campaign", "gc_calling_list", "g_ocs_attempt"}
    assert {r[0] for r in q(im, "SELECT DISTINCT data_source_type FROM ctl_extract_history "
                               "WHERE role = 'ICON_OCS'")} == {3}
    ocs_hwm = one(im, "SELECT hwm_value FROM ctl_transform_hwm WHERE hwm_name = 'ocs_stage_seq'")
    assert ocs_hwm == one(im, "SELECT max(stg_seq) FROM gidb_g_ocs_attempt") > 0
    assert one(im, "SELECT count(*) FROM ctl_transform_history WHERE hwm_name = 'ocs_stage_seq'") >= 1
    # the audit row of each outbound chunk says what it wrote
    assert one(im, """SELECT count(*) FROM ctl_audit_log a JOIN ctl_transform_history h USING (audit_key)
                       WHERE h.hwm_name = 'ocs_stage_seq' AND a.inserted IS NULL""") == 0

    # rerun with nothing new: no fact changes
    before = q(im, "SELECT * FROM contact_attempt_fact ORDER BY contact_attempt_fact_key")
    cycle()
    assert q(im, "SELECT * FROM contact_attempt_fact ORDER BY contact_attempt_fact_key") == before

    # the next run (resumed model) ends the attempts left active: updated in place, not doubled
    active = [r[0] for r in q(im, "SELECT attempt_guid FROM contact_attempt_fact WHERE active_flag = 1")]
    first_audit = one(im, "SELECT max(update_audit_key) FROM contact_attempt_fact")
    s2 = simulate_batch(idb, interactions=300, start=T0 + 3 * 3600, span_seconds=3600, config=SimConfig(seed=3))
    assert s2.resumed and s2.rows["g_ocs_attempt (update)"] >= len(active)
    cycle()
    assert facts_by_campaign(im) == truth_by_campaign(idb)
    assert one(im, "SELECT count(*) FROM contact_attempt_fact") == one(idb, "SELECT count(*) FROM g_ocs_attempt")
    ended = q(im, """SELECT count(*), min(update_audit_key), bool_and(create_audit_key <= %s)
                      FROM contact_attempt_fact WHERE attempt_guid = ANY(%s) AND active_flag = 0""",
              (first_audit, active))[0]
    assert ended[0] == len(active) and ended[1] > first_audit and ended[2]


def test_malformed_attempt_rows_are_discarded_with_a_reason(pipeline):
    im, idb, cycle = pipeline
    simulate_batch(idb, interactions=200, start=T0, span_seconds=3600, config=SimConfig(seed=8))
    with psycopg.connect(idb) as conn:
        conn.execute("""INSERT INTO g_ocs_attempt (attempt_id, chain_id, attempt_no, record_handle, campaign_id,
                               calling_list_id, call_result, state, dialing_ts, ended_ts, talk_duration) VALUES
                        ('bad.end', 1, 1, 1, 1, 11, 'BUSY', 1, %(t)s, %(t)s - 60, 0),
                        ('bad.result', 2, 1, 2, 1, 11, 'LOUD_NOISE', 1, %(t)s, %(t)s + 5, 0),
                        ('bad.campaign', 3, 1, 3, NULL, 11, 'BUSY', 1, %(t)s, %(t)s + 5, 0),
                        ('ok.unknown_campaign', 4, 1, 4, 77, 770, NULL, 0, %(t)s, NULL, NULL)""",
                     {"t": T0 + 1800})
    cycle()
    disc = dict(q(im, "SELECT source_key, code FROM stg_transform_discards WHERE table_name = 'g_ocs_attempt'"))
    assert disc == {"bad.end": "end_before_start", "bad.result": "unknown_call_result",
                    "bad.campaign": "missing_campaign"}
    assert one(im, "SELECT reason FROM stg_transform_discards WHERE source_key = 'bad.result'").startswith(
        "unknown call_result LOUD_NOISE")
    assert one(im, "SELECT count(*) FROM contact_attempt_fact WHERE attempt_guid LIKE 'bad.%%'") == 0
    # an attempt of a campaign not configured (yet): a placeholder dimension row, the fact is kept
    assert q(im, """SELECT f.active_flag, f.call_result_code, c.campaign_name FROM contact_attempt_fact f
                     JOIN campaign c USING (campaign_key) WHERE f.attempt_guid = 'ok.unknown_campaign'""") == [
        (1, "UNKNOWN", "unknown campaign 77")]
    # the row fixed in the IDB: its fact appears, the discard stays listed; a row broken later: its
    # fact goes (and, where ctl_fact_deleted exists, its span is recorded for the aggregation)
    with psycopg.connect(idb) as conn:
        conn.execute("UPDATE g_ocs_attempt SET ended_ts = dialing_ts + 9 WHERE attempt_id = 'bad.end'")
        conn.execute("UPDATE g_ocs_attempt SET campaign_id = NULL WHERE attempt_id = 'ok.unknown_campaign'")
    cycle()
    assert q(im, "SELECT call_result_code, end_ts - start_ts FROM contact_attempt_fact "
                 "WHERE attempt_guid = 'bad.end'") == [("BUSY", 9)]
    assert one(im, "SELECT count(*) FROM contact_attempt_fact WHERE attempt_guid = 'ok.unknown_campaign'") == 0
    assert one(im, "SELECT code FROM stg_transform_discards WHERE source_key = 'ok.unknown_campaign'") == \
        "missing_campaign"
    assert one(im, "SELECT code FROM stg_transform_discards WHERE source_key = 'bad.end'") == "end_before_start"
    if one(im, "SELECT to_regclass('ctl_fact_deleted') IS NOT NULL"):
        assert q(im, "SELECT table_name, start_ts FROM ctl_fact_deleted") == [("contact_attempt_fact", T0 + 1800)]


# ---------------------------------------------------------------------------------------------- aggregates
def _campaign_independent(dsn: str, level_sql: str, agent: bool) -> list[tuple]:
    dims = "coalesce(f.resource_key, -1), f.campaign_key, f.media_type_key" if agent else \
        "f.campaign_key, f.media_type_key"
    return [tuple(int(v) for v in r) for r in q(dsn, f"""
        SELECT {level_sql}, {dims}, count(*), count(*) FILTER (WHERE f.call_result_code = 'ANSWER'),
               sum(f.talk_duration)
          FROM contact_attempt_fact f GROUP BY 1, {dims} ORDER BY 1, {dims}""")]


def test_campaign_aggregates_equal_independent_fact_queries(pipeline):
    from gim_jobs.aggregation.hierarchies import HIERARCHIES
    from gim_jobs.jobs.aggregate import Aggregator

    im, idb, cycle = pipeline
    simulate_batch(idb, interactions=900, start=T0, span_seconds=3 * 3600, config=SimConfig(seed=3))
    cycle()
    levels = {"SUBHOUR": "f.start_date_time_key", "DAY": "f.start_date_time_key - mod(f.start_date_time_key, 86400)"}

    def check() -> None:
        for name, agent in (("H_CAMPAIGN", False), ("H_AGENT_CAMPAIGN", True)):
            h = HIERARCHIES[name]
            for level, key in levels.items():
                have = [tuple(int(v) for v in r) for r in q(im, f"""
                    SELECT date_time_key, {', '.join(h.dims)}, attempts, connected, engage_time
                      FROM {h.table(level)} ORDER BY 1, {', '.join(h.dims)}""")]
                want = _campaign_independent(im, key, agent)
                assert have and have == want, (name, level)
        # no agent: -1; every attempt is in both hierarchies
        assert q(im, "SELECT sum(attempts) FROM agt_agent_campaign_day WHERE resource_key = -1") == q(
            im, "SELECT count(*) FROM contact_attempt_fact WHERE resource_key IS NULL")

    with Aggregator(im, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
    check()
    # attempts ended by the next (resumed) run: their intervals are recomputed
    simulate_batch(idb, interactions=300, start=T0 + 3 * 3600, span_seconds=3600, config=SimConfig(seed=3))
    cycle()
    with Aggregator(im, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
    check()
    assert q(im, "SELECT sum(attempts), sum(connected) FROM ag2_campaign_day")[0][0] == one(
        im, "SELECT count(*) FROM contact_attempt_fact")
