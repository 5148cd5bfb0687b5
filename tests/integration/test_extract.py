"""Job_ExtractICON against real IDBs: incremental by gsys_useq, several sources, roles, failures.

``Idb`` (hand-written ICON rows) is shared with test_transform.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from gim_jobs.control import JobError, run_job
from gim_jobs.db.connect import DataSource
from gim_jobs.db.migrate import migrate

T0 = 1704103200  # 2024-01-01 10:00:00 UTC
REPO = Path(__file__).resolve().parents[2]


class Idb:
    """Writes ICON-like rows the way ICON does (sequence defaults, triggers on update)."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def x(self, sql: str, params: tuple | None = None) -> None:
        self.conn.execute(sql, params)

    def config(self, t: int = T0 - 86400) -> None:
        self.x("INSERT INTO gc_tenant (id, name, created_ts) VALUES (1, 'Environment', %s)", (t,))
        self.x("""INSERT INTO gc_agent (id, employee_id, user_name, first_name, last_name, created_ts) VALUES
                  (11, 'E11', 'ann', 'Ann', 'Lee', %s), (12, 'E12', 'bob', 'Bob', 'Ray', %s)""", (t, t))
        self.x("""INSERT INTO gc_endpoint (id, dn, dn_type, switch_name, created_ts) VALUES
                  (201, '7001', 2, 'SIP_Switch', %s), (101, '5000', 4, 'SIP_Switch', %s),
                  (401, 'Chat_Inbound', 5, 'InteractionServer', %s),
                  (100011, '20011', 1, 'SIP_Switch', %s)""", (t, t, t, t))
        self.x("""INSERT INTO gc_group (id, name, group_type, created_ts) VALUES (1, 'Sales Team', 1, %s),
                  (9001, 'Voice Queues', 2, %s)""", (t, t))
        self.x("INSERT INTO gcx_group_agent (group_id, agent_id, created_ts) VALUES (1, 11, %s)", (t,))
        self.x("INSERT INTO gcx_group_endpoint (group_id, endpoint_id, created_ts) VALUES (9001, 201, %s)", (t,))

    def session(self, lsid: str, agent: int, login: int, media: str = "voice") -> None:
        self.x("INSERT INTO g_login_session (lsid, agent_id, endpoint_id, media_type, login_ts) VALUES (%s, %s, %s, %s, %s)",
               (lsid, agent, 100000 + agent, media, login))
        self.state(lsid, agent, 1, login, media=media)

    def state(self, lsid: str, agent: int, state: int, t: int, *, reason: str | None = None,
              party: str | None = None, media: str = "voice") -> None:
        self.x("""INSERT INTO g_agent_state_history (id, lsid, agent_id, media_type, state, reason_code, partyid, added_ts)
                  SELECT coalesce(max(id), 0) + 1, %s, %s, %s, %s, %s, %s, %s FROM g_agent_state_history""",
               (lsid, agent, media, state, reason, party, t))

    def logout(self, lsid: str, agent: int, t: int) -> None:
        self.state(lsid, agent, 5, t)
        self.x("UPDATE g_login_session SET state = 1, logout_ts = %s WHERE lsid = %s", (t, lsid))

    def hist(self, partyid: str, callid: str, changetype: int, t: int, media: str = "voice") -> None:
        self.x("""INSERT INTO g_party_history (id, partyid, callid, media_type, changetype, added_ts)
                  SELECT coalesce(max(id), 0) + 1, %s, %s, %s, %s, %s FROM g_party_history""",
               (partyid, callid, media, changetype, t))

    def ir(self, irid: str, t: int, *, media: str = "voice", ended: int | None = None, itype: str = "Inbound",
           root: str | None = None) -> None:
        self.x("""INSERT INTO g_ir (irid, root_irid, media_type, interaction_type, interaction_subtype, source_address,
                                    target_address, state, created_ts, terminated_ts)
                  VALUES (%s, %s, %s, %s, NULL, '+15550001', '8005550100', %s, %s, %s)""",
               (irid, root or irid, media, itype, 0 if ended is None else 1, t, ended))

    def call(self, callid: str, irid: str, t: int, *, media: str = "voice", ended: int | None = None,
             call_type: int = 2) -> None:
        self.x("""INSERT INTO g_call (callid, irid, connid, media_type, call_type, state, created_ts, terminated_ts)
                  VALUES (%s, %s, 'conn-' || %s, %s, %s, %s, %s, %s)""",
               (callid, irid, callid, media, call_type, 0 if ended is None else 1, t, ended))

    def party(self, partyid: str, callid: str, irid: str, ptype: int, t: int, *, agent: int | None = None,
              endpoint: int | None = None, parent: str | None = None, role: int = 2, media: str = "voice",
              ended: int | None = None, cause: str | None = None) -> None:
        self.x("""INSERT INTO g_party (partyid, callid, irid, endpoint_id, agent_id, party_type, role, parent_partyid,
                                       media_type, state, created_ts, terminated_ts, end_cause)
                  VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
               (partyid, callid, irid, endpoint, agent, ptype, role, parent, media, 0 if ended is None else 1, t,
                ended, cause))

    def end_party(self, partyid: str, t: int, cause: str) -> None:
        self.x("UPDATE g_party SET state = 1, terminated_ts = %s, end_cause = %s WHERE partyid = %s",
               (t, cause, partyid))

    def answered_call(self, n: str, t: int, *, agent: int = 11, queue: int = 201, lsid: str | None = "ls11",
                      acw: int | None = 30) -> None:
        """Inbound voice call: queued 20 s, rings 5 s, talks 35 s, held 30 s, talks 55 s, ACW."""
        irid, callid = f"ir{n}", f"c{n}"
        end = t + 145
        self.ir(irid, t, ended=end)
        self.call(callid, irid, t, ended=end)
        self.party(f"p{n}c", callid, irid, 3, t, endpoint=601, role=1, ended=end, cause="completed")
        self.party(f"p{n}q", callid, irid, 1, t, endpoint=queue, parent=f"p{n}c", ended=t + 20, cause="completed")
        self.party(f"p{n}a", callid, irid, 2, t + 20, agent=agent, endpoint=100000 + agent, parent=f"p{n}q",
                   ended=end, cause="completed")
        self.hist(f"p{n}c", callid, 1, t)
        self.hist(f"p{n}q", callid, 1, t)
        self.hist(f"p{n}q", callid, 6, t + 20)
        for ct, dt in ((2, 20), (3, 25), (4, 60), (5, 90), (6, 145)):
            self.hist(f"p{n}a", callid, ct, t + dt)
        self.hist(f"p{n}c", callid, 6, end)
        if lsid:
            self.state(lsid, agent, 3, t + 20)
            if acw:
                self.state(lsid, agent, 4, end, party=f"p{n}a")
                self.state(lsid, agent, 1, end + acw)
            else:
                self.state(lsid, agent, 1, end)

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture
def idb(idb_dsn: str):
    w = Idb(idb_dsn)
    yield w
    w.close()


@pytest.fixture
def cfg(make_config):
    return make_config({"gim-etl": {"extract-data-chunk-size": "100"}})


def extract(infomart_dsn: str, *sources: DataSource, cfg: Path, **params):
    return run_job("extract", infomart_dsn=infomart_dsn, sources=list(sources), config_path=cfg, params=params)


def q(dsn: str, sql: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def one(dsn: str, sql: str, params: tuple | None = None):
    return q(dsn, sql, params)[0][0]


def idb_rows(dsn: str, table: str) -> list[tuple]:
    cols = [r[0] for r in q(dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                  "AND table_schema = 'public' ORDER BY ordinal_position", (table,))]
    return q(dsn, f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1, 2")


def staged_rows(dsn: str, table: str, dsk: int, idb_dsn: str) -> list[tuple]:
    cols = [r[0] for r in q(idb_dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                      "AND table_schema = 'public' ORDER BY ordinal_position", (table,))]
    return q(dsn, f"SELECT {', '.join(cols)} FROM gidb_{table} WHERE data_source_key = %s ORDER BY 1, 2", (dsk,))


def test_extract_copies_every_table_and_records_history(infomart_dsn, idb, cfg):
    idb.config()
    idb.session("ls11", 11, T0 - 100)
    idb.answered_call("1", T0)
    out = extract(infomart_dsn, DataSource("site1", idb.dsn), cfg=cfg)
    assert out.status == "COMPLETED"
    dsk = one(infomart_dsn, "SELECT data_source_key FROM ctl_data_source WHERE name = 'site1'")
    for table in ("gc_agent", "gc_endpoint", "gcx_group_agent", "g_ir", "g_call", "g_party", "g_party_history",
                  "g_login_session", "g_agent_state_history"):
        assert staged_rows(infomart_dsn, table, dsk, idb.dsn) == idb_rows(idb.dsn, table), table
    hist = q(infomart_dsn, "SELECT table_name, role, row_count, job_name, max_ts, max_time IS NOT NULL "
                           "FROM ctl_extract_history WHERE table_name = 'g_party_history'")
    assert hist == [("g_party_history", "ICON_CORE,ICON_MM", 9, "Job_ExtractICON", T0 + 145, True)]
    assert out.rows == sum(r[0] for r in q(infomart_dsn, "SELECT row_count FROM ctl_extract_history"))


def test_second_run_extracts_only_new_and_changed_rows(infomart_dsn, idb, cfg):
    idb.config()
    idb.ir("irA", T0)
    idb.ir("irB", T0 + 10)
    src = DataSource("site1", idb.dsn)
    extract(infomart_dsn, src, cfg=cfg)
    seq_b = one(infomart_dsn, "SELECT stg_seq FROM gidb_g_ir WHERE irid = 'irB'")
    idb.x("UPDATE g_ir SET state = 1, terminated_ts = %s WHERE irid = 'irA'", (T0 + 100,))
    idb.ir("irC", T0 + 20)
    second = extract(infomart_dsn, src, cfg=cfg)
    assert second.rows == 2  # the update of irA and the new irC; nothing else is read again
    assert q(infomart_dsn, "SELECT irid, state, terminated_ts FROM gidb_g_ir ORDER BY irid") == [
        ("irA", 1, T0 + 100), ("irB", 0, None), ("irC", 0, None)]
    assert one(infomart_dsn, "SELECT stg_seq FROM gidb_g_ir WHERE irid = 'irB'") == seq_b
    assert one(infomart_dsn, "SELECT stg_seq FROM gidb_g_ir WHERE irid = 'irA'") > seq_b
    third = extract(infomart_dsn, src, cfg=cfg)
    assert third.rows == 0


def test_chunks_of_extract_data_chunk_size_each_with_history(infomart_dsn, idb, cfg):
    idb.x("""INSERT INTO g_party_history (id, partyid, callid, media_type, changetype, added_ts)
             SELECT g, 'p' || g, 'c', 'voice', 1, %s + g FROM generate_series(1, 350) g""", (T0,))
    extract(infomart_dsn, DataSource("site1", idb.dsn), cfg=cfg)
    chunks = q(infomart_dsn, "SELECT row_count, hwm_from < hwm_to FROM ctl_extract_history "
                             "WHERE table_name = 'g_party_history' ORDER BY id")
    assert [c[0] for c in chunks] == [100, 100, 100, 50]
    assert all(c[1] for c in chunks)
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_party_history") == 350


def test_several_data_sources_have_separate_hwms_and_merge(infomart_dsn, new_database, idb, cfg):
    other = Idb(new_database("idb2"))
    migrate(other.dsn, "idb")
    try:
        idb.ir("same-id", T0)
        for i in range(5):  # the second IDB's sequence runs far ahead of the first's
            other.ir(f"o{i}", T0 + i)
        other.ir("same-id", T0 + 50)
        extract(infomart_dsn, DataSource("a", idb.dsn), DataSource("b", other.dsn), cfg=cfg)
        rows = q(infomart_dsn, """SELECT d.name, g.irid, g.created_ts FROM gidb_g_ir g JOIN ctl_data_source d
                                   USING (data_source_key) WHERE g.irid = 'same-id' ORDER BY 1""")
        assert rows == [("a", "same-id", T0), ("b", "same-id", T0 + 50)]
        hwm = dict(q(infomart_dsn, """SELECT d.name, h.hwm_useq FROM ctl_extract_hwm h JOIN ctl_data_source d
                                       USING (data_source_key) WHERE h.table_name = 'g_ir' AND h.role = 'ICON_CORE'"""))
        assert hwm["a"] < hwm["b"]
        idb.ir("a-late", T0 + 1)
        again = extract(infomart_dsn, DataSource("a", idb.dsn), DataSource("b", other.dsn), cfg=cfg)
        assert again.rows == 1 and again.details["sources"]["b"]["rows"] == 0
    finally:
        other.close()


def test_roles_decide_what_is_extracted(infomart_dsn, new_database, idb, cfg):
    idb.config()
    idb.ir("v1", T0)
    idb.ir("chat1", T0, media="chat")
    extract(infomart_dsn, DataSource("cfg-only", idb.dsn, ("ICON_CFG",)), cfg=cfg)
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_gc_agent") == 2
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_ir") == 0

    im2 = new_database("im2")
    migrate(im2, "infomart")
    extract(im2, DataSource("voice", idb.dsn, ("ICON_CORE",)), cfg=cfg)
    assert q(im2, "SELECT irid FROM gidb_g_ir") == [("v1",)]
    assert one(im2, "SELECT count(*) FROM gidb_gc_agent") == 0
    # ICON_MM added later: its own mark starts at zero, so the chat row below the voice mark is read
    extract(im2, DataSource("voice", idb.dsn, ("ICON_CORE", "ICON_MM")), cfg=cfg)
    assert q(im2, "SELECT irid FROM gidb_g_ir ORDER BY 1") == [("chat1",), ("v1",)]
    assert q(im2, "SELECT roles FROM ctl_data_source") == [("ICON_CORE,ICON_MM",)]


def test_late_row_with_old_time_is_not_lost(infomart_dsn, idb, cfg):
    idb.ir("new", T0 + 3600)
    extract(infomart_dsn, DataSource("site1", idb.dsn), cfg=cfg)
    idb.ir("old", T0 - 7200)  # arrives after the run, with a time far below the max time extracted
    extract(infomart_dsn, DataSource("site1", idb.dsn), cfg=cfg)
    assert q(infomart_dsn, "SELECT irid FROM gidb_g_ir ORDER BY 1") == [("new",), ("old",)]


def test_rows_of_a_late_committing_idb_transaction_are_not_skipped(infomart_dsn, idb, cfg):
    src = DataSource("site1", idb.dsn)
    slow = psycopg.connect(idb.dsn)
    try:
        slow.execute("INSERT INTO g_ir (irid, root_irid, media_type, interaction_type, created_ts) "
                     "VALUES ('slow', 'slow', 'voice', 'Inbound', %s)", (T0,))  # takes the lower gsys_useq
        idb.ir("fast", T0 + 1)  # higher gsys_useq, committed first
        held = extract(infomart_dsn, src, cfg=cfg, idb_txn_wait_seconds=0.3)
        assert held.details["sources"]["site1"]["held_by"], "the open transaction must hold the source"
        assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_ir") == 0
        # the writer commits while the next run waits for it: both rows come in that run
        threading.Timer(0.5, slow.commit).start()
        done = extract(infomart_dsn, src, cfg=cfg, idb_txn_wait_seconds=10)
        assert not done.details["sources"]["site1"]["held_by"]
        assert q(infomart_dsn, "SELECT irid FROM gidb_g_ir ORDER BY 1") == [("fast",), ("slow",)]
    finally:
        slow.close()


def test_source_down_fails_naming_it_and_keeps_the_others(infomart_dsn, idb, cfg):
    idb.ir("ok", T0)
    down = DataSource("site-down", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(JobError) as err:
        extract(infomart_dsn, down, DataSource("site-up", idb.dsn), cfg=cfg)
    assert "site-down" in str(err.value) and "site-up" not in str(err.value)
    assert q(infomart_dsn, "SELECT irid FROM gidb_g_ir") == [("ok",)]
    assert q(infomart_dsn, "SELECT status FROM ctl_etl_history") == [("FAILED",)]


def test_replaced_idb_behind_the_hwm_is_refused(infomart_dsn, new_database, idb, cfg):
    for i in range(3):
        idb.ir(f"i{i}", T0)
    extract(infomart_dsn, DataSource("site1", idb.dsn), cfg=cfg)
    fresh = new_database("fresh")
    migrate(fresh, "idb")
    with pytest.raises(JobError, match="replaced or restored"):
        extract(infomart_dsn, DataSource("site1", fresh), cfg=cfg)


def test_r18_postgres_restart_mid_extract_loses_and_doubles_nothing(tmp_path, make_config):
    """A separate embedded server (never the shared one) is stopped while a chunked extraction runs."""
    from gim_jobs.db import embedded

    pgdata = tmp_path / "pg"
    admin = embedded.server_uri(pgdata, "postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("CREATE DATABASE r_idb")
            c.execute("CREATE DATABASE r_im")
        idb_dsn, im_dsn = (admin.replace("/postgres?", f"/{d}?") for d in ("r_idb", "r_im"))
        migrate(idb_dsn, "idb")
        migrate(im_dsn, "infomart")
        with psycopg.connect(idb_dsn) as c:
            c.execute("""INSERT INTO g_party_history (id, partyid, callid, media_type, changetype, added_ts)
                         SELECT g, 'p' || (g / 5), 'c', 'voice', 1 + g %% 6, %s + g FROM generate_series(1, 2000) g""",
                      (T0,))
        cfg = make_config({"gim-etl": {"extract-data-chunk-size": "100", "job-test-delay-seconds": "0.3"}},
                          name="slow.ini")
        code = ("import sys; from gim_jobs.control import run_job; from gim_jobs.db.connect import DataSource; "
                "run_job('extract', infomart_dsn=sys.argv[1], sources=[DataSource('idb', sys.argv[2])], "
                "config_path=sys.argv[3])")
        proc = subprocess.Popen([sys.executable, "-c", code, im_dsn, idb_dsn, str(cfg)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while one(im_dsn, "SELECT count(*) FROM ctl_extract_history WHERE table_name = 'g_party_history'") < 4:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        embedded.stop_server(pgdata)
        assert proc.wait(30) != 0
        admin = embedded.server_uri(pgdata, "postgres")  # starts the stopped server again
        staged_before = one(im_dsn, "SELECT count(*) FROM gidb_g_party_history")
        assert 400 <= staged_before < 2000
        cfg_fast = make_config({"gim-etl": {"extract-data-chunk-size": "100"}}, name="fast.ini")
        out = run_job("extract", infomart_dsn=im_dsn, sources=[DataSource("idb", idb_dsn)], config_path=cfg_fast)
        assert out.status == "COMPLETED"
        assert staged_rows(im_dsn, "g_party_history", 1, idb_dsn) == idb_rows(idb_dsn, "g_party_history")
        # every row was committed exactly once: the committed chunks' row counts add up to the table
        assert one(im_dsn, "SELECT sum(row_count) FROM ctl_extract_history WHERE table_name = 'g_party_history'") == 2000
    finally:
        if "proc" in locals() and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        embedded.stop_server(pgdata)


def _indexes(dsn: str) -> list[tuple]:
    return q(dsn, """SELECT tablename, indexname, indexdef FROM pg_indexes
                      WHERE schemaname = 'public' AND starts_with(tablename, 'gidb_') ORDER BY 1, 2""")


def _calls(idb: Idb, n: int) -> None:
    idb.config()
    idb.session("ls11", 11, T0 - 60)
    for i in range(n):
        idb.answered_call(str(i), T0 + 200 * i)


def test_bulk_load_without_secondary_indexes_stages_exactly_what_the_normal_path_does(
        infomart_dsn, new_database, idb, cfg):
    """A backlog of >= 2 chunks on an empty staging table is loaded with its secondary indexes
    dropped and rebuilt after: same rows (stg_id, stg_seq included), marks and history as with
    defer_indexes=false, and the same indexes at the end."""
    _calls(idb, 30)  # 270 party-history rows: >= 2 chunks of 100
    plain = new_database("im_plain")
    migrate(plain, "infomart")
    bulk = extract(infomart_dsn, DataSource("idb", idb.dsn), cfg=cfg)
    normal = extract(plain, DataSource("idb", idb.dsn), cfg=cfg, defer_indexes=False)
    assert "gidb_g_party_history_party" in bulk.details["rebuilt_indexes"]
    assert normal.details["rebuilt_indexes"] == []
    assert bulk.rows == normal.rows
    for table in ("g_ir", "g_call", "g_party", "g_party_history", "g_login_session", "g_agent_state_history"):
        assert q(infomart_dsn, f"SELECT * FROM gidb_{table} ORDER BY stg_id") == \
            q(plain, f"SELECT * FROM gidb_{table} ORDER BY stg_id"), table
    control = ("SELECT table_name, role, hwm_from, hwm_to, max_seq, max_ts, row_count FROM ctl_extract_history "
               "ORDER BY id")
    assert q(infomart_dsn, control) == q(plain, control)
    assert q(infomart_dsn, "SELECT table_name, role, hwm_useq, max_ts, row_count FROM ctl_extract_hwm ORDER BY 1, 2") \
        == q(plain, "SELECT table_name, role, hwm_useq, max_ts, row_count FROM ctl_extract_hwm ORDER BY 1, 2")
    assert _indexes(infomart_dsn) == _indexes(plain)
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_extract_deferred_index") == 0
    # an increment smaller than what is staged keeps the indexes
    idb.answered_call("late", T0 + 9000)
    again = extract(infomart_dsn, DataSource("idb", idb.dsn), cfg=cfg)
    assert again.details["rebuilt_indexes"] == [] and again.rows > 0


def test_r18_indexes_a_killed_bulk_load_dropped_are_rebuilt_by_the_rerun(infomart_dsn, idb, make_config):
    """SIGKILL in the middle of a bulk load leaves its deferred indexes recorded; the next run
    rebuilds them before reading, and stages every row exactly once."""
    with psycopg.connect(idb.dsn) as c:
        c.execute("""INSERT INTO g_party_history (id, partyid, callid, media_type, changetype, added_ts)
                     SELECT g, 'p' || (g / 5), 'c', 'voice', 1 + g %% 6, %s + g FROM generate_series(1, 2000) g""",
                  (T0,))
    before = _indexes(infomart_dsn)
    slow = make_config({"gim-etl": {"extract-data-chunk-size": "100", "job-test-delay-seconds": "0.3"}},
                       name="slow.ini")
    code = ("import sys; from gim_jobs.control import run_job; from gim_jobs.db.connect import DataSource; "
            "run_job('extract', infomart_dsn=sys.argv[1], sources=[DataSource('idb', sys.argv[2])], "
            "config_path=sys.argv[3])")
    proc = subprocess.Popen([sys.executable, "-c", code, infomart_dsn, idb.dsn, str(slow)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while one(infomart_dsn, "SELECT count(*) FROM ctl_extract_history WHERE table_name = 'g_party_history'") < 3:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert q(infomart_dsn, "SELECT index_name FROM ctl_extract_deferred_index") == [("gidb_g_party_history_party",)]
    assert _indexes(infomart_dsn) != before
    out = extract(infomart_dsn, DataSource("idb", idb.dsn), cfg=make_config({"gim-etl": {"extract-data-chunk-size": "100"}}))
    assert out.status == "COMPLETED"
    assert "gidb_g_party_history_party" in out.details["rebuilt_indexes"]
    assert _indexes(infomart_dsn) == before
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_extract_deferred_index") == 0
    assert staged_rows(infomart_dsn, "g_party_history", 1, idb.dsn) == idb_rows(idb.dsn, "g_party_history")
    assert one(infomart_dsn, "SELECT sum(row_count) FROM ctl_extract_history WHERE table_name = 'g_party_history'") == 2000
