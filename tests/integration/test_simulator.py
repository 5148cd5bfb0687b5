"""The IDB traffic simulator: deterministic, ICON-like rows, ground truth that matches them, live mode,
restarts, configuration changes and injected faults. Real PostgreSQL (``idb_dsn``)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from gim_jobs.idb import FaultSpec, LiveSimulator, SimConfig, ground_truth, simulate_batch
from gim_jobs.idb.simulator import SimulatorBusy
from gim_jobs.idb.writer import CALL_COLS, HIST_COLS, IR_COLS, PARTY_COLS, RC_COLS, SESSION_COLS, STATE_COLS

MONDAY = 1_740_960_000  # 2025-03-03 00:00 UTC, a Monday
DAY = 86_400

IDB_TABLES = {
    "g_ir": (IR_COLS, "irid"), "g_call": (CALL_COLS, "callid"), "g_party": (PARTY_COLS, "partyid"),
    "g_party_history": (HIST_COLS, "id"), "g_login_session": (SESSION_COLS, "lsid"),
    "g_agent_state_history": (STATE_COLS, "id"), "g_agent_state_rc": (RC_COLS, "id"),
    "gc_agent": ("id, employee_id, user_name, first_name, last_name, state, created_ts, deleted_ts", "id"),
    "gc_endpoint": ("id, dn, dn_type, switch_name, created_ts, deleted_ts", "id"),
    "gc_group": ("id, name, group_type, created_ts, deleted_ts", "id"),
    "gcx_group_agent": ("group_id, agent_id, created_ts, deleted_ts", "group_id, agent_id"),
    "gcx_skill_level": ("agent_id, skill_id, level, created_ts, deleted_ts", "agent_id, skill_id"),
    "sim.truth_interaction": ("*", "irid"), "sim.truth_party": ("*", "partyid"),
    "sim.truth_agent_state": ("*", "id"), "sim.truth_fault": ("*", "irid, kind, row_key"),
}


def q(dsn: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def one(dsn: str, sql: str, params=None):
    return q(dsn, sql, params)[0][0]


def dump(dsn: str) -> dict[str, list[tuple]]:
    return {t: q(dsn, f"SELECT {cols} FROM {t} ORDER BY {key}") for t, (cols, key) in IDB_TABLES.items()}


def batch(dsn: str, n: int = 1500, days: float = 1, seed: int = 7, start: int = MONDAY, **kw):
    return simulate_batch(dsn, interactions=n, start=start, span_seconds=int(days * DAY),
                          config=kw.pop("config", SimConfig(seed=seed)), **kw)


# ---------------------------------------------------------------------------------------------- batch
def test_batch_is_deterministic_for_a_seed(new_database: Callable[[str], str]) -> None:
    from gim_jobs.db.migrate import migrate

    dsns = []
    for _ in range(3):
        dsn = new_database("idb")
        migrate(dsn, "idb")
        dsns.append(dsn)
    faults = FaultSpec.realistic()
    batch(dsns[0], seed=11, faults=faults, flush_lines=4000)
    batch(dsns[1], seed=11, faults=faults, flush_lines=4000)
    batch(dsns[2], seed=12, faults=faults, flush_lines=4000)
    a, b, c = dump(dsns[0]), dump(dsns[1]), dump(dsns[2])
    assert a["g_ir"] and a["g_party_history"] and a["g_agent_state_history"]
    for table in IDB_TABLES:
        assert a[table] == b[table], f"{table} differs between two runs with the same seed"
    assert a["g_ir"] != c["g_ir"] and a["g_party_history"] != c["g_party_history"]


def test_rows_use_schema_codes_and_active_rows_are_open(idb_dsn: str) -> None:
    s = batch(idb_dsn, n=2500, days=1)
    assert s.interactions == 2500 and s.active_at_end > 0
    checks = {
        "party_type": "SELECT count(*) FROM g_party WHERE party_type NOT IN (1, 2, 3, 4)",
        "role": "SELECT count(*) FROM g_party WHERE role NOT BETWEEN 1 AND 5",
        "end_cause": "SELECT count(*) FROM g_party WHERE end_cause NOT IN ('completed', 'abandoned', "
                     "'abandoned_ringing', 'transferred', 'conferenced', 'redirected', 'cleared')",
        "changetype": "SELECT count(*) FROM g_party_history WHERE changetype NOT BETWEEN 1 AND 6",
        "agent state": "SELECT count(*) FROM g_agent_state_history WHERE state NOT BETWEEN 1 AND 5",
        "call_type": "SELECT count(*) FROM g_call WHERE call_type NOT IN (1, 2, 3, 4)",
        "dn_type": "SELECT count(*) FROM gc_endpoint WHERE dn_type NOT BETWEEN 1 AND 6",
        "group_type": "SELECT count(*) FROM gc_group WHERE group_type NOT IN (1, 2)",
        "media": "SELECT count(*) FROM g_ir WHERE media_type NOT IN ('voice', 'chat', 'email')",
        # state 0 <=> open, state 1 <=> closed, never backwards in time
        "ir open/closed": "SELECT count(*) FROM g_ir WHERE (state = 0) <> (terminated_ts IS NULL) "
                          "OR state NOT IN (0, 1) OR terminated_ts < created_ts",
        "call open/closed": "SELECT count(*) FROM g_call WHERE (state = 0) <> (terminated_ts IS NULL) "
                            "OR terminated_ts < created_ts",
        "party open/closed": "SELECT count(*) FROM g_party WHERE (state = 0) <> (terminated_ts IS NULL) "
                             "OR (state = 0) <> (end_cause IS NULL) OR terminated_ts < created_ts",
        "session open/closed": "SELECT count(*) FROM g_login_session WHERE (state = 0) <> (logout_ts IS NULL)",
        "active party of ended IR": "SELECT count(*) FROM g_party p JOIN g_ir i USING (irid) "
                                    "WHERE p.state = 0 AND i.state = 1",
        "history without party": "SELECT count(*) FROM g_party_history h LEFT JOIN g_party p USING (partyid) "
                                 "WHERE p.partyid IS NULL OR p.callid <> h.callid",
        "party without call": "SELECT count(*) FROM g_party p LEFT JOIN g_call c USING (callid) "
                              "WHERE c.callid IS NULL OR c.irid <> p.irid",
        "dangling parent": "SELECT count(*) FROM g_party p LEFT JOIN g_party x ON x.partyid = p.parent_partyid "
                           "WHERE p.parent_partyid IS NOT NULL AND x.partyid IS NULL",
        "queue/agent endpoints": "SELECT count(*) FROM g_party p LEFT JOIN gc_endpoint e ON e.id = p.endpoint_id "
                                 "WHERE p.party_type IN (1, 2, 4) AND e.id IS NULL",
        "agent party agent": "SELECT count(*) FROM g_party WHERE (party_type = 2) <> (agent_id IS NOT NULL)",
        "released = terminated": "SELECT count(*) FROM g_party p JOIN g_party_history h USING (partyid) "
                                 "WHERE h.changetype = 6 AND h.added_ts <> p.terminated_ts",
        "ACW without agent party": "SELECT count(*) FROM g_agent_state_history s LEFT JOIN g_party p "
                                   "USING (partyid) WHERE (s.state = 4) <> (p.partyid IS NOT NULL) "
                                   "OR (s.state = 4 AND (p.party_type <> 2 OR p.agent_id <> s.agent_id))",
        "reason codes": "SELECT count(*) FROM g_agent_state_history WHERE (state = 2) <> (reason_code IS NOT NULL)",
        "rc rows": "SELECT count(*) FROM g_agent_state_history s LEFT JOIN g_agent_state_rc r "
                   "ON r.lsid = s.lsid AND r.added_ts = s.added_ts AND r.reason_code = s.reason_code "
                   "WHERE s.state = 2 AND r.id IS NULL",
        "state outside session": "SELECT count(*) FROM g_agent_state_history s JOIN g_login_session l USING (lsid) "
                                 "WHERE s.added_ts < l.login_ts OR s.added_ts > coalesce(l.logout_ts, s.added_ts)",
        "gsys": "SELECT (SELECT count(*) FROM g_ir WHERE gsys_seq <> gsys_useq) + "
                "(SELECT count(*) FROM g_party WHERE gsys_seq <> gsys_useq)",
    }
    bad = {name: one(idb_dsn, sql) for name, sql in checks.items()}
    assert bad == dict.fromkeys(checks, 0)
    # every kind of behaviour the issue asks for shows up in a day of traffic
    kinds = dict(q(idb_dsn, """
        SELECT 'media ' || media_type, count(*) FROM g_ir GROUP BY 1
        UNION ALL SELECT 'cause ' || end_cause, count(*) FROM g_party WHERE end_cause IS NOT NULL GROUP BY 1
        UNION ALL SELECT 'changetype ' || changetype, count(*) FROM g_party_history GROUP BY 1
        UNION ALL SELECT 'state ' || state, count(*) FROM g_agent_state_history GROUP BY 1
        UNION ALL SELECT 'role ' || role, count(*) FROM g_party GROUP BY 1
        UNION ALL SELECT 'call_type ' || call_type, count(*) FROM g_call GROUP BY 1
        UNION ALL SELECT 'active ' || media_type, count(*) FROM g_ir WHERE state = 0 GROUP BY 1"""))
    for k in ("media voice", "media chat", "media email", "cause abandoned", "cause abandoned_ringing",
              "cause transferred", "cause conferenced", "cause redirected", "cause cleared", "changetype 4",
              "changetype 5", "state 2", "state 4", "state 5", "role 3", "role 4", "role 5", "call_type 4",
              "active email"):
        assert kinds.get(k, 0) > 0, k
    # waits and abandons look like a contact center
    voice = q(idb_dsn, "SELECT count(*) FILTER (WHERE abandoned)::float / count(*) FROM sim.truth_interaction "
                       "WHERE media_type = 'voice'")[0][0]
    assert 0.0 < voice < 0.15
    email_wait = one(idb_dsn, "SELECT avg(end_ts - start_ts) FROM sim.truth_party WHERE party_type = 1 "
                              "AND media_type = 'email' AND end_ts IS NOT NULL")
    assert email_wait > 1800


def test_ground_truth_matches_the_rows(idb_dsn: str) -> None:
    batch(idb_dsn, n=3000, days=2, seed=5)
    truth = dict(zip(("n", "answered", "abandoned", "ringing", "talk", "hold", "acw", "ended"), q(idb_dsn, """
        SELECT count(*), count(*) FILTER (WHERE answered), count(*) FILTER (WHERE abandoned),
               count(*) FILTER (WHERE abandoned_ringing), sum(talk_seconds), sum(hold_seconds),
               sum(acw_seconds), count(*) FILTER (WHERE ended) FROM sim.truth_interaction""")[0], strict=True))
    assert truth["n"] == 3000 == one(idb_dsn, "SELECT count(*) FROM g_ir")
    assert truth["ended"] == one(idb_dsn, "SELECT count(*) FROM g_ir WHERE state = 1")
    # independent derivations from g_party / g_party_history / g_agent_state_history
    assert truth["answered"] == one(idb_dsn, """
        SELECT count(DISTINCT p.irid) FROM g_party p JOIN g_party_history h USING (partyid)
         WHERE p.party_type = 2 AND p.role IN (2, 4, 5) AND h.changetype = 3""")
    assert truth["abandoned"] == one(idb_dsn, """
        SELECT count(DISTINCT irid) FROM g_party WHERE party_type = 1 AND end_cause = 'abandoned'""")
    assert truth["ringing"] == one(idb_dsn, """
        SELECT count(DISTINCT irid) FROM g_party WHERE party_type = 2 AND end_cause = 'abandoned_ringing'""")
    per_ir = q(idb_dsn, """
        WITH ev AS (
          SELECT p.irid, h.partyid, h.changetype, h.added_ts,
                 lead(h.added_ts) OVER (PARTITION BY h.partyid ORDER BY h.added_ts, h.id) AS next_ts
            FROM g_party p JOIN g_party_history h USING (partyid)
           WHERE p.party_type = 2 AND p.role IN (2, 4, 5)),
        party AS (
          SELECT irid, partyid, max(added_ts) FILTER (WHERE changetype = 6) AS rel,
                 max(added_ts) FILTER (WHERE changetype = 3) AS est,
                 coalesce(sum(next_ts - added_ts) FILTER (WHERE changetype = 4), 0) AS held
            FROM ev GROUP BY 1, 2),
        talk AS (
          SELECT irid, sum(rel - est - held) FILTER (WHERE est IS NOT NULL) AS talk, sum(held) AS hold
            FROM party WHERE rel IS NOT NULL GROUP BY 1),
        st AS (
          SELECT partyid, state,
                 lead(added_ts) OVER (PARTITION BY lsid ORDER BY added_ts, id) - added_ts AS d
            FROM g_agent_state_history),
        acw AS (
          SELECT p.irid, sum(st.d) AS acw FROM st JOIN g_party p USING (partyid)
           WHERE st.state = 4 AND st.d IS NOT NULL GROUP BY 1)
        SELECT i.irid, i.talk_seconds, i.hold_seconds, i.acw_seconds,
               coalesce(t.talk, 0), coalesce(t.hold, 0), coalesce(a.acw, 0)
          FROM sim.truth_interaction i LEFT JOIN talk t USING (irid) LEFT JOIN acw a USING (irid)""")
    mismatches = [r for r in per_ir if (r[1], r[2], r[3]) != (r[4], r[5], r[6])]
    assert not mismatches, mismatches[:5]
    assert truth["talk"] > 0 and truth["hold"] > 0 and truth["acw"] > 0
    # per queue and per agent parties, and the summary function
    per_queue = dict(q(idb_dsn, "SELECT endpoint_id, count(*) FROM g_party WHERE party_type = 1 GROUP BY 1"))
    gt = ground_truth(idb_dsn)
    assert {k: v["entered"] for k, v in gt["per_queue"].items()} == per_queue
    assert gt["totals"]["interactions"] == 3000
    assert gt["totals"]["answered"] == truth["answered"]
    assert sum(v["offered"] for v in gt["per_interval"].values()) == 3000
    assert sum(v["talk_seconds"] for v in gt["per_interval"].values()) == truth["talk"]
    assert all(k % 900 == 0 for k in gt["per_interval"])
    offered_agent = dict(q(idb_dsn, "SELECT agent_id, count(*) FROM g_party p JOIN g_call c USING (callid) "
                                    "WHERE party_type = 2 AND call_type <> 4 GROUP BY 1"))
    assert {k: v["offered"] for k, v in gt["per_agent"].items()} == offered_agent
    states = q(idb_dsn, "SELECT count(*) FROM g_agent_state_history")[0][0]
    assert states == one(idb_dsn, "SELECT count(*) FROM sim.truth_agent_state")
    assert gt["agent_states"]


def test_configuration_is_written_once_and_changes_by_update(idb_dsn: str) -> None:
    first = batch(idb_dsn, n=800, days=1)
    start_agents = one(idb_dsn, "SELECT count(*) FROM gc_agent WHERE created_ts < %s", (MONDAY,))
    assert start_agents >= 40 and one(idb_dsn, "SELECT count(*) FROM gc_tenant") == 1
    # one agent added (created during the span), one deleted by UPDATE: deleted_ts set, new gsys_useq
    assert one(idb_dsn, "SELECT count(*) FROM gc_agent WHERE created_ts BETWEEN %s AND %s",
               (MONDAY, MONDAY + DAY)) == 1
    deleted = q(idb_dsn, "SELECT id, deleted_ts, gsys_seq, gsys_useq FROM gc_agent WHERE deleted_ts IS NOT NULL")
    assert len(deleted) == 1
    aid, deleted_ts, seq, useq = deleted[0]
    assert MONDAY < deleted_ts < MONDAY + DAY and useq > seq
    assert one(idb_dsn, "SELECT count(*) FROM gcx_group_agent WHERE agent_id = %s AND deleted_ts = %s "
                        "AND gsys_useq > gsys_seq", (aid, deleted_ts)) == 1
    assert one(idb_dsn, "SELECT count(*) FROM g_login_session WHERE agent_id = %s "
                        "AND coalesce(logout_ts, %s) > %s", (aid, 2**62, deleted_ts)) == 0
    cfg_tables = ("gc_tenant", "gc_skill", "gc_group", "gc_endpoint", "gcx_group_endpoint", "gc_agent")
    cfg_before = {t: q(idb_dsn, f"SELECT * FROM {t} ORDER BY 1, 2") for t in cfg_tables}
    # a second run on the same IDB reuses the configuration
    second = batch(idb_dsn, n=800, days=1, start=MONDAY + DAY)
    assert second.resumed and second.run_id == first.run_id + 1
    for t, rows in cfg_before.items():  # nothing re-created; only new agents and deletions
        after = {r[:2]: r for r in q(idb_dsn, f"SELECT * FROM {t} ORDER BY 1, 2")}
        for r in rows:
            assert after[r[:2]][-2] == r[-2], (t, r)  # same gsys_seq: the very same row
    assert one(idb_dsn, "SELECT count(*) FROM g_login_session WHERE agent_id = %s AND login_ts > %s",
               (aid, deleted_ts)) == 0


def test_active_interactions_are_ended_by_a_later_run(idb_dsn: str) -> None:
    first = batch(idb_dsn, n=1500, days=1, seed=3)
    open_rows = q(idb_dsn, "SELECT irid, media_type, gsys_useq FROM g_ir WHERE state = 0")
    assert first.active_at_end == len(open_rows) > 0
    assert {m for _, m, _ in open_rows} >= {"email"}
    max_useq = one(idb_dsn, "SELECT max(gsys_useq) FROM g_party")
    second = batch(idb_dsn, n=1500, days=2, seed=3, start=MONDAY + DAY)
    assert second.resumed
    after = dict(q(idb_dsn, "SELECT irid, state FROM g_ir WHERE irid = ANY(%s)", ([r[0] for r in open_rows],)))
    assert sum(1 for v in after.values() if v == 1) > 0.8 * len(open_rows)
    # ended by UPDATE: same row, new gsys_useq
    assert one(idb_dsn, "SELECT count(*) FROM g_ir WHERE irid = ANY(%s) AND state = 1 AND gsys_useq > %s "
                        "AND gsys_seq < %s", ([r[0] for r in open_rows], max_useq, max_useq)) > 0
    truth_n = one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction")
    assert truth_n == one(idb_dsn, "SELECT count(*) FROM g_ir") == 3000
    assert one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction t JOIN g_ir i USING (irid) "
                        "WHERE t.ended <> (i.state = 1)") == 0
    assert q(idb_dsn, "SELECT count(DISTINCT run_id) FROM sim.truth_interaction")[0][0] == 2


def test_faults_are_injected_and_flagged(idb_dsn: str) -> None:
    faults = FaultSpec(late_rows=0.01, out_of_order=0.01, duplicated=0.01, unknown_party=0.01,
                       orphan_party=0.02, malformed=0.02)
    batch(idb_dsn, n=2000, days=1, seed=9, faults=faults, flush_lines=5000)

    def flagged(kind: str) -> set[str]:
        return {r[0] for r in q(idb_dsn, "SELECT row_key FROM sim.truth_fault WHERE kind = %s", (kind,))}

    orphans = {r[0] for r in q(idb_dsn, "SELECT DISTINCT p.irid FROM g_party p LEFT JOIN g_call c USING (callid) "
                                        "WHERE c.callid IS NULL")}
    assert orphans and orphans == {r[0] for r in q(
        idb_dsn, "SELECT irid FROM sim.truth_interaction WHERE fault LIKE '%orphan_party%'")}
    malformed = {r[0] for r in q(idb_dsn, "SELECT partyid FROM g_party WHERE terminated_ts < created_ts")}
    assert malformed and malformed == flagged("malformed") == {r[0] for r in q(
        idb_dsn, "SELECT partyid FROM sim.truth_party WHERE fault = 'malformed'")}
    unknown = {str(r[0]) for r in q(idb_dsn, "SELECT h.id FROM g_party_history h LEFT JOIN g_party p "
                                             "USING (partyid) WHERE p.partyid IS NULL")}
    assert unknown and unknown == flagged("unknown_party")
    dups = flagged("duplicate")
    assert dups and len(dups) == one(idb_dsn, """
        SELECT count(*) FROM (SELECT 1 FROM g_party_history GROUP BY partyid, changetype, added_ts
                               HAVING count(*) > 1) d""")
    late = flagged("late")
    assert late and one(idb_dsn, """
        SELECT count(*) FROM g_party_history h WHERE h.id::text = ANY(%s) AND EXISTS (
          SELECT 1 FROM g_party_history x WHERE x.added_ts > h.added_ts + 60 AND x.gsys_seq < h.gsys_seq)""",
                        (list(late),)) == len(late)
    ooo = flagged("out_of_order")
    assert ooo and one(idb_dsn, """
        SELECT count(*) FROM g_party_history h WHERE h.id::text = ANY(%s) AND EXISTS (
          SELECT 1 FROM g_party_history x WHERE x.added_ts < h.added_ts AND x.gsys_seq > h.gsys_seq)""",
                       (list(ooo),)) == len(ooo)
    # excluded = unusable rows; the summary leaves them out unless asked
    assert one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction WHERE excluded <> "
                        "(fault LIKE '%orphan_party%' OR fault LIKE '%malformed%')") == 0
    n_excluded = one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction WHERE excluded")
    gt, gt_all = ground_truth(idb_dsn), ground_truth(idb_dsn, include_excluded=True)
    assert gt["totals"]["interactions"] == 2000 - n_excluded and gt_all["totals"]["interactions"] == 2000
    assert gt["totals"]["excluded_count"] == n_excluded > 0


def test_fault_spec_parse() -> None:
    assert FaultSpec.parse(None) is None
    assert FaultSpec.parse("late=0.1,dup=0.2,orphan=0.3") == FaultSpec(late_rows=0.1, duplicated=0.2,
                                                                       orphan_party=0.3)
    assert FaultSpec.parse("realistic") == FaultSpec.realistic()
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSpec.parse("typo=0.1")
    with pytest.raises(ValueError, match="probability"):
        FaultSpec.parse("late=2")


# ---------------------------------------------------------------------------------------------- live
def test_live_inserts_active_rows_then_updates_them(idb_dsn: str) -> None:
    cfg = SimConfig(seed=4)
    with LiveSimulator(idb_dsn, rate_per_min=12, config=cfg, clock=lambda: MONDAY + 9 * 3600) as sim:
        t0 = sim.start_ts
        sim.step(t0 + 240)
        first = q(idb_dsn, "SELECT irid, state, gsys_seq, gsys_useq FROM g_ir")
        hwm = one(idb_dsn, "SELECT max(gsys_useq) FROM g_party")
        assert first and any(r[1] == 0 for r in first)
        assert one(idb_dsn, "SELECT count(*) FROM g_party WHERE state = 0 AND terminated_ts IS NULL") > 0
        assert one(idb_dsn, "SELECT count(*) FROM g_login_session WHERE state = 0") > 0
        sim.step(t0 + 1800)
        ended = q(idb_dsn, "SELECT irid, gsys_seq, gsys_useq FROM g_ir WHERE state = 1 AND irid = ANY(%s)",
                  ([r[0] for r in first if r[1] == 0],))
        assert ended and all(seq <= hwm < useq for _, seq, useq in ended)
        assert one(idb_dsn, "SELECT count(*) FROM g_party WHERE gsys_useq > gsys_seq AND state = 1") > 0
        # truth follows the rows written so far
        assert one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction") == one(idb_dsn, "SELECT count(*) FROM g_ir")
        assert one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction t JOIN g_ir i USING (irid) "
                            "WHERE t.ended <> (i.state = 1)") == 0
        assert one(idb_dsn, "SELECT count(*) FROM g_ir WHERE created_ts > %s", (t0 + 1800,)) == 0
        with pytest.raises(SimulatorBusy):
            LiveSimulator(idb_dsn, rate_per_min=1, config=cfg, clock=lambda: t0)


def test_live_restart_continues_without_collisions(idb_dsn: str) -> None:
    cfg = SimConfig(seed=4)
    now = [MONDAY + 10 * 3600]
    sim = LiveSimulator(idb_dsn, rate_per_min=12, config=cfg, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 60
        sim.step()
    sim.close()
    max_hist = one(idb_dsn, "SELECT max(id) FROM g_party_history")
    hwm = one(idb_dsn, "SELECT max(gsys_useq) FROM g_party")
    open_parties = [r[0] for r in q(idb_dsn, "SELECT partyid FROM g_party WHERE state = 0")]
    assert open_parties
    now[0] += 30  # restarted half a minute later
    sim2 = LiveSimulator(idb_dsn, rate_per_min=12, config=cfg, clock=lambda: now[0])
    assert sim2.resumed and sim2.run_id == sim.run_id + 1
    for _ in range(10):
        now[0] += 60
        sim2.step()
    sim2.close()
    assert one(idb_dsn, "SELECT min(id) FROM g_party_history WHERE partyid LIKE 's4r2.%%'") > max_hist
    assert one(idb_dsn, "SELECT count(*) FROM g_ir WHERE irid LIKE 's4r2.%%'") > 0
    # parties left open by the first run were ended by the second (UPDATE)
    assert one(idb_dsn, "SELECT count(*) FROM g_party WHERE partyid = ANY(%s) AND state = 1 AND gsys_useq > %s",
               (open_parties, hwm)) > 0
    # sessions are not logged in twice: one open session per agent at most
    assert one(idb_dsn, "SELECT count(*) FROM (SELECT agent_id FROM g_login_session WHERE state = 0 "
                        "GROUP BY 1 HAVING count(*) > 1) x") == 0
    # a fresh (not resumed) restart still cannot collide
    sim3 = LiveSimulator(idb_dsn, rate_per_min=12, config=cfg, clock=lambda: now[0], resume=False)
    now[0] += 120
    sim3.step()
    sim3.close()
    assert not sim3.resumed
    assert one(idb_dsn, "SELECT count(*) FROM sim.truth_interaction") == one(idb_dsn, "SELECT count(*) FROM g_ir")
    # a crash after rows newer than the last checkpoint: the stale model is not replayed
    sim4 = LiveSimulator(idb_dsn, rate_per_min=12, config=cfg, clock=lambda: now[0], checkpoint_seconds=0)
    assert sim4.resumed
    now[0] += 60
    sim4.step()
    sim4.checkpoint_seconds = 3600
    now[0] += 60
    sim4.step()
    sim4.sess.conn.close()  # killed: no close(), lock released with the connection
    sim5 = LiveSimulator(idb_dsn, rate_per_min=12, config=cfg, clock=lambda: now[0] + 10)
    assert not sim5.resumed
    sim5.step(now[0] + 70)
    sim5.close()
    assert one(idb_dsn, "SELECT count(*) FROM g_ir WHERE irid LIKE 's4r5.%%'") > 0
