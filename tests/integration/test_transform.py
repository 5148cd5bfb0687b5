"""Job_TransformGIM: facts and dimensions from hand-made ICON rows, accumulating snapshots, discards,
idempotence and crash safety (SIGKILL between committed chunks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from gim_jobs.control import run_job
from gim_jobs.db.connect import DataSource
from gim_jobs.db.migrate import migrate
from tests.integration.test_extract import REPO, T0, Idb, one, q

AGENT, EP, GROUP = 1 << 32, 2 << 32, 3 << 32


@pytest.fixture
def idb(idb_dsn: str):
    w = Idb(idb_dsn)
    w.config()
    yield w
    w.close()


@pytest.fixture
def cfg(make_config):
    return make_config()


def cycle(infomart_dsn: str, idb: Idb, cfg, name: str = "site1"):
    src = [DataSource(name, idb.dsn)]
    run_job("extract", infomart_dsn=infomart_dsn, sources=src, config_path=cfg)
    return run_job("transform", infomart_dsn=infomart_dsn, sources=src, config_path=cfg)


def irf(dsn: str, partyid: str) -> dict:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            """SELECT f.*, td.technical_result, td.result_reason, td.resource_role
                 FROM interaction_resource_fact f JOIN technical_descriptor td USING (technical_descriptor_key)
                WHERE party_guid = %s""", (partyid,))
        row = cur.fetchone()
        assert row is not None, f"no IRF for {partyid}"
        return dict(zip([d.name for d in cur.description], row, strict=True))


def ifact(dsn: str, irid: str) -> dict | None:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT * FROM interaction_fact WHERE media_server_ixn_guid = %s", (irid,))
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description], row, strict=True)) if row else None


def test_facts_and_dimensions_from_one_answered_call(infomart_dsn, idb, cfg):
    idb.session("ls11", 11, T0 - 100)
    idb.answered_call("1", T0)
    out = cycle(infomart_dsn, idb, cfg)
    assert out.status == "COMPLETED" and out.rows > 0

    f = ifact(infomart_dsn, "ir1")
    assert (f["start_ts"], f["end_ts"], f["start_date_time_key"], f["end_date_time_key"], f["active_flag"]) == (
        T0, T0 + 145, T0, T0, 0)
    assert (f["media_type_key"], f["interaction_type_key"], f["status"], f["source_address"]) == (1, 1, 0, "+15550001")
    assert f["create_audit_key"] == f["update_audit_key"] > 0

    a = irf(infomart_dsn, "p1a")
    assert a["interaction_id"] == f["interaction_id"]
    assert (a["resource_key"], a["last_queue_resource_key"]) == (AGENT + 11, EP + 201)
    assert (a["ring_duration"], a["talk_duration"], a["hold_duration"], a["after_call_work_duration"]) == (5, 90, 30, 30)
    assert (a["ring_count"], a["talk_count"], a["hold_count"], a["after_call_work_count"]) == (1, 1, 1, 1)
    assert (a["technical_result"], a["result_reason"], a["resource_role"]) == ("Completed", "AnsweredByAgent", "Received")
    assert (a["start_ts"], a["end_ts"], a["active_flag"], a["consult_flag"], a["transfer_flag"]) == (
        T0 + 20, T0 + 145, 0, 0, 0)
    qp = irf(infomart_dsn, "p1q")
    assert (qp["resource_key"], qp["mediation_duration"], qp["talk_duration"]) == (EP + 201, 20, 0)
    assert (qp["technical_result"], qp["result_reason"]) == ("Diverted", "AnsweredByAgent")
    assert one(infomart_dsn, "SELECT count(*) FROM interaction_resource_fact") == 2  # no IRF for the customer

    assert q(infomart_dsn, """SELECT rs.state_name, f.start_ts - %s, f.end_ts - %s, f.total_duration, f.party_guid,
                                     f.active_flag
                                FROM sm_res_state_fact f JOIN resource_state rs USING (resource_state_key)
                               ORDER BY f.start_ts""", (T0, T0)) == [
        ("Ready", -100, 20, 120, None, 0), ("Busy", 20, 145, 125, None, 0),
        ("AfterCallWork", 145, 175, 30, "p1a", 0), ("Ready", 175, None, None, None, 1)]
    assert q(infomart_dsn, "SELECT resource_key, start_ts, end_ts, active_flag FROM sm_res_session_fact") == [
        (AGENT + 11, T0 - 100, None, 1)]

    assert q(infomart_dsn, """SELECT resource_key, resource_type, resource_type_code, resource_subtype, resource_name,
                                     agent_first_name, agent_last_name, employee_id, switch_name, icon_dbid
                                FROM resource_ WHERE resource_key IN (%s, %s, %s) ORDER BY 1""",
             (AGENT + 11, EP + 101, EP + 201)) == [
        (AGENT + 11, "Agent", "AGENT", "Agent", "ann", "Ann", "Lee", "E11", None, 11),
        (EP + 101, "RoutingPoint", "ROUTINGPOINT", "RoutingPoint", "5000", None, None, None, "SIP_Switch", 101),
        (EP + 201, "Queue", "QUEUE", "ACDQueue", "7001", None, None, None, "SIP_Switch", 201)]
    assert q(infomart_dsn, "SELECT group_key, group_name, group_type FROM group_ ORDER BY 1") == [
        (GROUP + 1, "Sales Team", "Agent"), (GROUP + 9001, "Voice Queues", "Queue")]
    assert q(infomart_dsn, "SELECT resource_key, group_key, active_flag FROM resource_group_fact_ ORDER BY 1") == [
        (AGENT + 11, GROUP + 1, 1), (EP + 201, GROUP + 9001, 1)]
    assert q(infomart_dsn, "SELECT media_name, media_name_code, is_online FROM media_type ORDER BY 1") == [
        ("Chat", "CHAT", 1), ("Email", "EMAIL", 0), ("Voice", "VOICE", 1)]
    day = T0 - T0 % 86400
    assert one(infomart_dsn, "SELECT count(*) FROM date_time WHERE date_time_day_key = %s", (day,)) == 96
    assert q(infomart_dsn, "SELECT label_yyyy_mm_dd_hh24_subhr, cal_hour_num_in_day, date_time_hour_key "
                           "FROM date_time WHERE date_time_key = %s", (T0 + 900,)) == [("2024-01-01 10:15", 10, T0)]

    hist = q(infomart_dsn, "SELECT hwm_name, chunk, audit_key IS NOT NULL, job_version FROM ctl_transform_history "
                           "ORDER BY id")
    # the login (09:58) and the call (10:00) fall in two chunk-size (2 h) windows: two data chunks
    assert [h[1] for h in hist] == ["prepare", "configuration", "data", "data"] and all(h[2] for h in hist)
    assert one(infomart_dsn, """SELECT count(*) FROM ctl_audit_log a JOIN ctl_transform_history h USING (audit_key)
                                 WHERE a.inserted IS NOT NULL""") == 4
    assert q(infomart_dsn, "SELECT hwm_value > 0, pending_bound, hwm_value2 FROM ctl_transform_hwm "
                             "WHERE hwm_name = 'gidb_stage_seq'") == [
        (True, None, None)]


def test_active_interaction_is_updated_when_it_ends(infomart_dsn, idb, cfg):
    idb.session("ls11", 11, T0 - 100)
    idb.ir("ir1", T0)
    idb.call("c1", "ir1", T0)
    idb.party("p1q", "c1", "ir1", 1, T0, endpoint=201, ended=T0 + 20, cause="completed")
    idb.party("p1a", "c1", "ir1", 2, T0 + 20, agent=11, parent="p1q")
    idb.hist("p1q", "c1", 1, T0)
    idb.hist("p1q", "c1", 6, T0 + 20)
    idb.hist("p1a", "c1", 2, T0 + 20)
    idb.hist("p1a", "c1", 3, T0 + 25)
    idb.state("ls11", 11, 3, T0 + 20)
    cycle(infomart_dsn, idb, cfg)
    f1, a1 = ifact(infomart_dsn, "ir1"), irf(infomart_dsn, "p1a")
    assert (f1["end_ts"], f1["end_date_time_key"], f1["active_flag"]) == (None, None, 1)
    assert (a1["end_ts"], a1["active_flag"], a1["ring_duration"], a1["talk_duration"]) == (None, 1, 5, 0)
    assert (a1["technical_result"], a1["result_reason"]) == ("None", "Unspecified")

    # the call ends; after-call work starts (still open)
    idb.end_party("p1a", T0 + 100, "completed")
    idb.hist("p1a", "c1", 6, T0 + 100)
    idb.x("UPDATE g_call SET state = 1, terminated_ts = %s", (T0 + 100,))
    idb.x("UPDATE g_ir SET state = 1, terminated_ts = %s", (T0 + 100,))
    idb.state("ls11", 11, 4, T0 + 100, party="p1a")
    cycle(infomart_dsn, idb, cfg)
    f2, a2 = ifact(infomart_dsn, "ir1"), irf(infomart_dsn, "p1a")
    assert (f2["end_ts"], f2["active_flag"], f2["interaction_id"]) == (T0 + 100, 0, f1["interaction_id"])
    assert f2["update_audit_key"] > f2["create_audit_key"] == f1["create_audit_key"]
    assert (a2["talk_duration"], a2["after_call_work_duration"], a2["active_flag"]) == (75, 0, 1)  # ACW open
    assert (a2["technical_result"], a2["interaction_resource_id"]) == ("Completed", a1["interaction_resource_id"])

    # after-call work ends: only the session changed, the IRF is updated from it
    idb.state("ls11", 11, 1, T0 + 130)
    cycle(infomart_dsn, idb, cfg)
    a3 = irf(infomart_dsn, "p1a")
    assert (a3["after_call_work_duration"], a3["after_call_work_count"], a3["active_flag"]) == (30, 1, 0)
    assert a3["update_audit_key"] > a2["update_audit_key"]
    assert ifact(infomart_dsn, "ir1")["update_audit_key"] == f2["update_audit_key"]  # untouched


def _snapshot(dsn: str) -> dict[str, list[tuple]]:
    tables = ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact",
              "resource_", "group_", "resource_group_fact_", "media_type", "interaction_type", "resource_state_reason",
              "stg_transform_discards", "stg_transform_pending", "ctl_transform_hwm", "date_time")
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3").format(sql.Identifier(t))).fetchall()
                for t in tables}


def test_nothing_staged_is_a_successful_noop(infomart_dsn, idb, cfg):
    idb.answered_call("1", T0, lsid=None)
    cycle(infomart_dsn, idb, cfg)
    before = _snapshot(infomart_dsn)
    n_hist = one(infomart_dsn, "SELECT count(*) FROM ctl_transform_history")
    out = run_job("transform", infomart_dsn=infomart_dsn, sources=[], config_path=cfg)
    assert (out.status, out.rows) == ("COMPLETED", 0)
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_transform_history") == n_hist
    assert _snapshot(infomart_dsn) == before


def test_rerun_on_restaged_identical_rows_changes_nothing(infomart_dsn, idb, cfg):
    idb.session("ls11", 11, T0 - 100)
    idb.answered_call("1", T0)
    cycle(infomart_dsn, idb, cfg)
    before = _snapshot(infomart_dsn)
    # ICON rewrites rows with the same values: new gsys_useq, re-staged, recomputed, nothing differs
    for table in ("g_ir", "g_party", "g_login_session", "gc_agent"):
        idb.x(f"UPDATE {table} SET state = state")
    out = cycle(infomart_dsn, idb, cfg)
    assert out.rows == 0
    after = _snapshot(infomart_dsn)
    assert {k: v for k, v in after.items() if k != "ctl_transform_hwm"} == {
        k: v for k, v in before.items() if k != "ctl_transform_hwm"}


def test_two_data_sources_merge_into_one_mart(infomart_dsn, new_database, idb, cfg):
    other = Idb(new_database("idb2"))
    migrate(other.dsn, "idb")
    try:
        other.config()
        idb.answered_call("1", T0, lsid=None)
        other.answered_call("1", T0 + 60, lsid=None)
        srcs = [DataSource("a", idb.dsn), DataSource("b", other.dsn)]
        run_job("extract", infomart_dsn=infomart_dsn, sources=srcs, config_path=cfg)
        run_job("transform", infomart_dsn=infomart_dsn, sources=srcs, config_path=cfg)
        assert q(infomart_dsn, """SELECT d.name, f.start_ts FROM interaction_fact f JOIN ctl_data_source d
                                   USING (data_source_key) ORDER BY 1""") == [("a", T0), ("b", T0 + 60)]
        assert one(infomart_dsn, "SELECT count(DISTINCT resource_key) FROM interaction_resource_fact "
                                 "WHERE resource_key = %s", (AGENT + 11,)) == 1
        assert one(infomart_dsn, "SELECT count(*) FROM resource_ WHERE icon_dbid = 11") == 1
    finally:
        other.close()


def test_discards_with_reasons_and_late_data_kept_pending(infomart_dsn, idb, cfg):
    idb.session("ls11", 11, T0 - 100)
    idb.answered_call("ok", T0, lsid=None)
    idb.answered_call("dup", T0 + 10, lsid=None)
    idb.hist("pdupa", "cdup", 3, T0 + 35)  # the established row written twice
    # malformed: the agent party ended before it started -> the whole interaction is discarded
    idb.answered_call("bad", T0 + 20, lsid=None)
    idb.x("UPDATE g_party SET terminated_ts = created_ts - 60 WHERE partyid = 'pbada'")
    # unknown code
    idb.answered_call("odd", T0 + 30, lsid=None)
    idb.x("UPDATE g_party SET end_cause = 'exploded' WHERE partyid = 'podda'")
    # party whose call never comes; party whose call comes late; history row of a party that exists nowhere
    idb.ir("irorphan", T0 + 40, ended=T0 + 90)
    idb.party("porphan", "cmissing", "irorphan", 2, T0 + 40, agent=11, ended=T0 + 90, cause="completed")
    idb.ir("irlate", T0 + 50, ended=T0 + 95)
    idb.party("plate", "clate", "irlate", 2, T0 + 50, agent=12, ended=T0 + 95, cause="completed")
    idb.hist("plate", "clate", 3, T0 + 50)
    idb.hist("plate", "clate", 6, T0 + 95)
    idb.hist("nobody", "cx", 2, T0 + 60)
    idb.state("ls11", 11, 9, T0 + 70)
    idb.x("INSERT INTO gc_endpoint (id, dn, dn_type, switch_name, created_ts) VALUES (999, 'x', 8, 'S', %s)", (T0,))
    out = cycle(infomart_dsn, idb, cfg)
    assert out.status == "COMPLETED"

    disc = {(r[0], r[1]): r[2:] for r in q(infomart_dsn, "SELECT table_name, source_key, code, reason, raw->>'partyid' "
                                                          "FROM stg_transform_discards")}
    assert disc[("g_party", "pbada")][0] == "end_before_start"
    assert disc[("g_ir", "irbad")][0] == "interaction_discarded" and "pbada" in disc[("g_ir", "irbad")][1]
    assert disc[("g_party", "podda")][0] == "unknown_end_cause" and "exploded" in disc[("g_party", "podda")][1]
    dup = [k for k, v in disc.items() if v[0] == "duplicate_row"]
    assert len(dup) == 1 and disc[dup[0]][2] == "pdupa"
    assert next(v for k, v in disc.items() if v[0] == "unknown_state")
    assert disc[("gc_endpoint", "999")][0] == "unknown_dn_type"
    assert ifact(infomart_dsn, "irbad") is None and ifact(infomart_dsn, "irodd") is None
    assert irf(infomart_dsn, "pdupa")["talk_duration"] == 90  # the duplicate changes no measure
    # late dependencies wait: no facts for their interactions yet, no discards
    assert sorted(q(infomart_dsn, "SELECT table_name, source_key FROM stg_transform_pending")) == [
        ("g_party", "plate"), ("g_party", "porphan"), ("g_party_history", str(one(
            idb.dsn, "SELECT id FROM g_party_history WHERE partyid = 'nobody'")))]
    assert ifact(infomart_dsn, "irorphan") is None and ifact(infomart_dsn, "irlate") is None

    # the late call arrives (within delayed-data-threshold): its interaction is transformed
    idb.call("clate", "irlate", T0 + 50, ended=T0 + 95)
    cycle(infomart_dsn, idb, cfg)
    assert irf(infomart_dsn, "plate")["talk_duration"] == 45
    assert ("g_party", "plate") not in q(infomart_dsn, "SELECT table_name, source_key FROM stg_transform_pending")

    # data moves on past delayed-data-threshold (900 s): what still waits is discarded
    idb.answered_call("later", T0 + 2000, lsid=None)
    cycle(infomart_dsn, idb, cfg)
    assert q(infomart_dsn, "SELECT table_name FROM stg_transform_pending") == []
    disc = dict(q(infomart_dsn, "SELECT source_key, code FROM stg_transform_discards"))
    assert disc["porphan"] == "missing_dependency" and disc["irorphan"] == "interaction_discarded"
    assert "call cmissing not staged" in one(infomart_dsn, "SELECT reason FROM stg_transform_discards "
                                                           "WHERE source_key = 'porphan'")
    assert one(infomart_dsn, "SELECT count(*) FROM stg_transform_discards WHERE code = 'missing_dependency' "
                             "AND table_name = 'g_party_history'") == 1
    assert ifact(infomart_dsn, "irorphan") is None and ifact(infomart_dsn, "irlater") is not None


def test_purged_staging_rows_do_not_remove_facts(infomart_dsn, idb, cfg):
    idb.session("ls11", 11, T0 - 100)
    idb.answered_call("1", T0)
    cycle(infomart_dsn, idb, cfg)
    before = _snapshot(infomart_dsn)
    # Job_MaintainGIM purged the parties, their history and the session's states; then ICON rewrites
    # the interaction record and the session (same values): both are recomputed from what is left
    for table in ("gidb_g_party", "gidb_g_party_history", "gidb_g_agent_state_history"):
        with psycopg.connect(infomart_dsn) as conn:
            conn.execute(f"DELETE FROM {table}")
    idb.x("UPDATE g_ir SET state = state")
    idb.x("UPDATE g_login_session SET state = state")
    out = cycle(infomart_dsn, idb, cfg)
    assert out.rows == 0
    after = _snapshot(infomart_dsn)
    for table in ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact"):
        assert after[table] == before[table], table


def test_days_to_keep_active_facts_and_max_state_duration_close_old_facts(infomart_dsn, idb, make_config):
    cfg = make_config({"gim-etl": {"days-to-keep-active-facts": "1"}})
    idb.session("ls11", 11, T0 - 100)  # Ready, never changes
    idb.ir("stuck", T0)
    idb.call("cs", "stuck", T0)
    idb.party("ps", "cs", "stuck", 2, T0, agent=12)
    idb.hist("ps", "cs", 3, T0)
    idb.answered_call("2d", T0 + 2 * 86400, lsid=None)  # the data clock is now two days on
    cycle(infomart_dsn, idb, cfg)
    f = ifact(infomart_dsn, "stuck")
    assert (f["status"], f["end_ts"], f["active_flag"]) == (1, T0 + 86400, 0)
    a = irf(infomart_dsn, "ps")
    assert (a["end_ts"], a["active_flag"], a["technical_result"], a["talk_duration"]) == (
        T0 + 86400, 0, "Completed", 86400)
    assert q(infomart_dsn, "SELECT end_ts - start_ts, active_flag FROM sm_res_state_fact") == [(14400, 0)]


NATURAL_KEYS = {
    "resource_state_reason_key": sql.SQL("(SELECT r.reason_code FROM resource_state_reason r "
                                         "WHERE r.resource_state_reason_key = o.resource_state_reason_key)"),
    "media_type_key": sql.SQL("(SELECT m.media_name_code FROM media_type m WHERE m.media_type_key = o.media_type_key)"),
    "interaction_type_key": sql.SQL("(SELECT i.interaction_type_code || '/' || i.interaction_subtype_code "
                                    "FROM interaction_type i WHERE i.interaction_type_key = o.interaction_type_key)"),
}
# the dimension tables themselves: their own surrogate key column is left out of the comparison
NATURAL_KEY_OWNERS = {"resource_state_reason_key": ("resource_state_reason",), "media_type_key": ("media_type",),
                      "interaction_type_key": ("interaction_type",)}


def _compare(dsn_a: str, dsn_b: str, skip: tuple[str, ...] = ()) -> None:
    audit = {"create_audit_key", "update_audit_key", "audit_key", "id", "job_id", "etl_ts", "etl_date_time_key",
             "created_ts", "updated"}
    tables = ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact",
              "resource_", "group_", "resource_group_fact_", "media_type", "interaction_type", "technical_descriptor",
              "resource_state_reason", "date_time", "stg_transform_discards", "stg_transform_pending",
              "ctl_transform_hwm", "stg_transform_work")
    with psycopg.connect(dsn_a) as a, psycopg.connect(dsn_b) as b:
        for t in (t for t in tables if t not in skip):
            cols = [r[0] for r in a.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                            "ORDER BY ordinal_position", (t,)).fetchall() if r[0] not in audit]
            # Keys of small dimensions grown at run time (reason codes, media and interaction types)
            # are numbered in the order the transform first meets a value, which depends on how the
            # data was chunked; compare the natural values they stand for instead.
            exprs = [NATURAL_KEYS.get(c, sql.Identifier("o", c)) if t not in NATURAL_KEY_OWNERS.get(c, ()) else None
                     for c in cols]
            exprs = [e for e in exprs if e is not None]
            listing = sql.SQL(", ").join(exprs)
            query = sql.SQL("SELECT {c} FROM {t} AS o ORDER BY {c}").format(c=listing, t=sql.Identifier(t))
            ra, rb = a.execute(query).fetchall(), b.execute(query).fetchall()
            if ra == rb:
                continue
            sa, sb = {repr(r) for r in ra}, {repr(r) for r in rb}
            only_a, only_b = sorted(sa - sb), sorted(sb - sa)
            assert ra == rb, (f"{t} differs: {len(ra)} vs {len(rb)} rows; columns {cols}\n"
                              f"only in first: {only_a[:5]}\nonly in second: {only_b[:5]}")


def test_r18_sigkill_mid_transform_then_rerun_equals_uninterrupted_run(infomart_dsn, idb_dsn, pg_admin_dsn, make_config):
    from gim_jobs.idb import FaultSpec, simulate_batch

    simulate_batch(idb_dsn, interactions=400, start=T0, span_seconds=4 * 3600, faults=FaultSpec.realistic())
    src = [DataSource("idb", idb_dsn)]
    run_job("extract", infomart_dsn=infomart_dsn, sources=src, config_path=make_config())
    clone = f"gimtest_clone_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(clone), sql.Identifier(psycopg.conninfo.conninfo_to_dict(infomart_dsn)["dbname"])))
    clone_dsn = psycopg.conninfo.make_conninfo(infomart_dsn, dbname=clone)
    try:
        fast = make_config({"gim-transformation": {"chunk-size": "900"}}, name="fast.ini")
        run_job("transform", infomart_dsn=clone_dsn, sources=src, config_path=fast)  # uninterrupted

        slow = make_config({"gim-transformation": {"chunk-size": "900"},
                            "gim-etl": {"job-test-delay-seconds": "0.3"}}, name="slow.ini")
        code = ("import sys; from gim_jobs.control import run_job; "
                "run_job('transform', infomart_dsn=sys.argv[1], sources=[], config_path=sys.argv[2])")
        proc = subprocess.Popen([sys.executable, "-c", code, infomart_dsn, str(slow)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        try:
            while one(infomart_dsn, "SELECT count(*) FROM ctl_transform_history") < 5:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        assert q(infomart_dsn, "SELECT pending_bound IS NOT NULL FROM ctl_transform_hwm "
                                 "WHERE hwm_name = 'gidb_stage_seq'") == [(True,)]
        out = run_job("transform", infomart_dsn=infomart_dsn, sources=src, config_path=fast, wait_seconds=10)
        assert out.status == "COMPLETED" and out.rows > 0
        assert q(infomart_dsn, "SELECT status FROM ctl_etl_history WHERE job_name = 'Job_TransformGIM' "
                               "ORDER BY start_time") == [("FAILED",), ("COMPLETED",)]
        _compare(infomart_dsn, clone_dsn)
        assert one(infomart_dsn, "SELECT count(*) FROM interaction_fact") > 300
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone)))


def test_transform_while_extraction_runs_ends_like_a_clean_cycle(infomart_dsn, idb_dsn, new_database, make_config):
    """Job_TransformGIM may run while Job_ExtractICON is committing chunks: each run takes only what
    was committed; after the extraction, one more transform gives the same tables as a clean cycle."""
    from gim_jobs.idb import simulate_batch

    simulate_batch(idb_dsn, interactions=300, start=T0, span_seconds=3 * 3600)
    src = [DataSource("idb", idb_dsn)]
    clean = new_database("clean")
    migrate(clean, "infomart")
    for job in ("extract", "transform"):
        run_job(job, infomart_dsn=clean, sources=src, config_path=make_config())

    slow = make_config({"gim-etl": {"extract-data-chunk-size": "100", "job-test-delay-seconds": "0.02"}},
                       name="slow.ini")
    code = ("import sys; from gim_jobs.control import run_job; from gim_jobs.db.connect import DataSource; "
            "run_job('extract', infomart_dsn=sys.argv[1], sources=[DataSource('idb', sys.argv[2])], "
            "config_path=sys.argv[3])")
    proc = subprocess.Popen([sys.executable, "-c", code, infomart_dsn, idb_dsn, str(slow)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = 0
    try:
        while proc.poll() is None:
            run_job("transform", infomart_dsn=infomart_dsn, sources=src, config_path=make_config())
            runs += 1
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert runs >= 3
    run_job("transform", infomart_dsn=infomart_dsn, sources=src, config_path=make_config())
    _compare(infomart_dsn, clean, skip=("ctl_transform_hwm",))  # (its value: more extraction chunks)


def test_deleted_facts_leave_their_spans_for_the_aggregation(infomart_dsn, idb, cfg):
    """An interaction transformed in one cycle and found malformed in the next loses its facts; each
    deleted fact's span is recorded in ctl_fact_deleted with that cycle's audit key, so
    Job_AggregateGIM re-aggregates the intervals it counted in (nothing else carries that key)."""
    idb.session("ls11", 11, T0 - 100)
    idb.answered_call("gone", T0, lsid=None)
    idb.answered_call("kept", T0 + 1800, lsid=None)
    cycle(infomart_dsn, idb, cfg)
    was = ifact(infomart_dsn, "irgone")
    parties = q(infomart_dsn, "SELECT start_ts, coalesce(end_ts, start_ts) FROM interaction_resource_fact "
                              "WHERE media_server_ixn_guid = 'irgone' ORDER BY 1, 2")
    assert was is not None and parties
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_fact_deleted") == 0
    idb.x("UPDATE g_party SET terminated_ts = created_ts - 60 WHERE partyid = 'pgonea'")
    cycle(infomart_dsn, idb, cfg)
    assert ifact(infomart_dsn, "irgone") is None and ifact(infomart_dsn, "irkept") is not None
    recorded = q(infomart_dsn, "SELECT table_name, start_ts, end_ts, audit_key FROM ctl_fact_deleted ORDER BY 1, 2, 3")
    assert [r[:3] for r in recorded] == [("interaction_fact", was["start_ts"], was["start_ts"])] + \
        [("interaction_resource_fact", a, b) for a, b in parties]
    last_audit = one(infomart_dsn, "SELECT max(audit_key) FROM ctl_audit_log")
    assert {r[3] for r in recorded} <= set(range(last_audit - 5, last_audit + 1))
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_fact_deleted WHERE audit_key <= %s",
               (was["update_audit_key"],)) == 0
