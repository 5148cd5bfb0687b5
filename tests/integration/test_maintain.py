"""Job_MaintainGIM on a real PostgreSQL: partitions (R25), purge (R23), calendars (R24), stopping
between batches (R9, R18), manual runs (R15)."""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo

import psycopg
import pytest

from gim_jobs.control import JobRefused, JobStopped, preempt, request_stop, run_job
from gim_jobs.jobs import maintain
from gim_jobs.jobs.maintain import default_partition_rows

DAY = 86400
NO_CAL = {"steps": "partitions,purge"}


def q(dsn: str, sql: str, params: tuple | dict | None = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def one(dsn: str, sql: str, params: tuple | dict | None = None):
    return q(dsn, sql, params)[0][0]


def execute(dsn: str, sql: str, params: tuple | dict | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params)


def maint(dsn: str, cfg, params: dict | None = None, **kw):
    return run_job("maintain", infomart_dsn=dsn, sources=[], config_path=cfg, params=params or dict(NO_CAL), **kw)


def partitions(dsn: str, table: str) -> list[tuple[str, int, int]]:
    return q(dsn, "SELECT partition_name, lo, hi FROM gim_partitions(%s::regclass) WHERE NOT is_default ORDER BY lo",
             (table,))


def align(ts: int, size: int = DAY) -> int:
    return ts - ts % size


def cutoff(now: float, days: int) -> int:
    c = int(now) - days * DAY
    return c - c % 900


# ---------------------------------------------------------------------------------------------
# seeding
# ---------------------------------------------------------------------------------------------

IF_SQL = """
INSERT INTO interaction_fact (interaction_id, data_source_key, media_type_key, interaction_type_key,
       media_server_ixn_guid, media_server_root_ixn_guid, start_ts, end_ts, start_date_time_key, end_date_time_key,
       active_flag, create_audit_key, update_audit_key)
SELECT %(id0)s + i, 1, 1, 1, 'ixn-' || (%(id0)s + i), 'ixn-' || (%(id0)s + i), s, e, s - s %% 900,
       e - e %% 900, (e IS NULL)::int, 1, 1
  FROM generate_series(0, %(n)s - 1) i,
       LATERAL (SELECT %(start)s::bigint + i %% greatest(%(spread)s, 1) AS s) x,
       LATERAL (SELECT CASE WHEN %(active)s THEN NULL ELSE x.s + 60 END AS e) y
"""
IRF_SQL = """
INSERT INTO interaction_resource_fact (interaction_resource_id, interaction_id, data_source_key, media_type_key,
       interaction_type_key, resource_key, technical_descriptor_key, party_guid, media_server_ixn_guid, start_ts,
       end_ts, start_date_time_key, end_date_time_key, active_flag, create_audit_key, update_audit_key)
SELECT %(id0)s + i, %(id0)s + i, 1, 1, 1, 4294967297, 1, 'p-' || (%(id0)s + i), 'ixn-' || (%(id0)s + i), s, e,
       s - s %% 900, e - e %% 900, (e IS NULL)::int, 1, 1
  FROM generate_series(0, %(n)s - 1) i,
       LATERAL (SELECT %(start)s::bigint + i %% greatest(%(spread)s, 1) AS s) x,
       LATERAL (SELECT CASE WHEN %(active)s THEN NULL ELSE x.s + 60 END AS e) y
"""


def seed_facts(dsn: str, table: str, id0: int, start: int, n: int = 1, *, active: bool = False,
               spread: int = 1) -> None:
    execute(dsn, IF_SQL if table == "interaction_fact" else IRF_SQL,
            {"id0": id0, "start": start, "n": n, "active": active, "spread": spread})


# ---------------------------------------------------------------------------------------------
# R25 partitions
# ---------------------------------------------------------------------------------------------


def test_r25_history_tables_partitioned_by_migration_with_a_default_partition(infomart_dsn) -> None:
    kinds = dict(q(infomart_dsn, """SELECT c.relname, c.relkind FROM pg_class c
                                      WHERE c.relname IN ('ctl_audit_log', 'ctl_extract_history', 'ctl_transform_history',
                                                          'ctl_etl_history', 'stg_transform_discards')
                                         OR c.relname = ANY(%s)""", (list(maintain.FACT_TABLES),)))
    assert kinds == {"ctl_audit_log": "p", "ctl_extract_history": "p", "ctl_transform_history": "p",
                     "ctl_etl_history": "r", "stg_transform_discards": "r", **dict.fromkeys(maintain.FACT_TABLES, "p")}
    # every table is partitioned exactly when the registry says so
    assert q(infomart_dsn, """SELECT r.table_name FROM ctl_partitioned_table r JOIN pg_class c ON c.relname = r.table_name
                               WHERE (c.relkind = 'p') <> r.enabled""") == []
    # the primary key carries the partition key; writers without ON CONFLICT are unaffected
    assert one(infomart_dsn, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ctl_audit_log_pkey'") \
        == "PRIMARY KEY (audit_key, created_ts)"
    assert one(infomart_dsn, "INSERT INTO ctl_audit_log (job_id) VALUES ('t') RETURNING audit_key") == 1
    rows = default_partition_rows(infomart_dsn)
    assert (rows["ctl_audit_log"], rows["ctl_extract_history"], rows["ctl_transform_history"]) == (1, 0, 0)
    assert {t: rows[t] for t in maintain.FACT_TABLES} == dict.fromkeys(maintain.FACT_TABLES, 0)


def test_r25_partitions_ahead_default_rows_moved_out_and_idempotent(infomart_dsn, make_config) -> None:
    cfg = make_config({"gim-etl": {"partitioning-ahead-range": "3"}})
    now = int(time.time())
    # rows written before any partition existed: all in the default partition
    for ts in (now, now - 5 * DAY, now + 800 * DAY, now - 700 * DAY):
        execute(infomart_dsn, "INSERT INTO ctl_audit_log (job_id, created_ts) VALUES ('seed', %s)", (ts,))
    assert default_partition_rows(infomart_dsn)["ctl_audit_log"] == 4
    out = maint(infomart_dsn, cfg)
    assert out.status == "COMPLETED"
    los = [p[1] for p in partitions(infomart_dsn, "ctl_audit_log")]
    # today and 3 days ahead, plus the day of the 5-day-old row (within days-to-keep-...-history)
    want = sorted({align(now - 5 * DAY)} | set(range(align(now), now + 3 * DAY, DAY)))
    assert los == want
    assert all(hi - lo == DAY for _, lo, hi in partitions(infomart_dsn, "ctl_audit_log"))
    assert [p[0] for p in partitions(infomart_dsn, "ctl_audit_log")][0] == \
        f"ctl_audit_log_p{dt.datetime.fromtimestamp(want[0], dt.UTC):%Y%m%d}_0000"
    assert out.details["partitions"]["ctl_audit_log"]["rows_moved"] == 2
    # the far-future row waits in the default partition; the 700-day-old one was purged (600 days)
    assert default_partition_rows(infomart_dsn)["ctl_audit_log"] == 1
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_audit_log") == 3
    assert q(infomart_dsn, "SELECT tableoid::regclass::text FROM ctl_audit_log WHERE created_ts = %s", (now,)) == [
        (f"ctl_audit_log_p{dt.datetime.fromtimestamp(align(now), dt.UTC):%Y%m%d}_0000",)]
    # a row for a day without partition never fails: it lands in the default partition
    execute(infomart_dsn, "INSERT INTO ctl_audit_log (job_id, created_ts) VALUES ('late', %s)", (now - 30 * DAY,))
    assert default_partition_rows(infomart_dsn)["ctl_audit_log"] == 2
    # again: nothing new to create; the late row gets its partition
    again = maint(infomart_dsn, cfg)
    assert again.details["partitions"]["ctl_audit_log"] == {"created": [maintain._partition_name(
        "ctl_audit_log", align(now - 30 * DAY))], "rows_moved": 1}
    assert again.details["partitions"]["ctl_extract_history"] == {"created": [], "rows_moved": 0}


def test_r25_interval_size_change_fills_gaps_without_overlap(infomart_dsn, make_config) -> None:
    maint(infomart_dsn, make_config({"gim-etl": {"partitioning-ahead-range": "2"}}), {"steps": "partitions"})
    week = 7 * DAY
    maint(infomart_dsn, make_config({"gim-etl": {"partitioning-ahead-range": "20",
                                                 "partitioning-interval-size-gim": str(week)}}, name="w.ini"),
          {"steps": "partitions"})
    parts = partitions(infomart_dsn, "ctl_transform_history")
    now = int(time.time())
    # contiguous from today (or the week holding it) to at least 20 days ahead; the day partitions
    # made before are kept as they were, week partitions fill around them
    assert parts[0][1] <= align(now) and parts[-1][2] >= now + 20 * DAY
    assert all(a[2] == b[1] for a, b in zip(parts, parts[1:], strict=False))
    assert any(hi - lo == DAY for _, lo, hi in parts) and any(hi - lo <= week and hi % week == 0 for _, lo, hi in parts)


def test_r25_fact_tables_partitioned_by_migration_rows_views_and_status_move_into_partitions(
        infomart_dsn, make_config) -> None:
    """Migration 008 converts the four fact tables (their rows become the default partition); the
    first Job_MaintainGIM run makes day partitions for the rows and moves them out, while export
    views keep reading the partitioned tables and ``gim status`` reports the rows outside."""
    from gim_jobs.status import status

    now = int(time.time())
    seed_facts(infomart_dsn, "interaction_fact", 1, now - 2 * DAY, 50, spread=2 * DAY)
    seed_facts(infomart_dsn, "interaction_fact", 1000, now - 3600, 1, active=True)
    execute(infomart_dsn, "SELECT gim_create_export_views()")
    before = one(infomart_dsn, "SELECT count(*) FROM exp_interaction_fact")
    assert default_partition_rows(infomart_dsn)["interaction_fact"] == 51
    assert default_partition_rows(infomart_dsn, limit=10)["interaction_fact"] == 10
    assert status(infomart_dsn, make_config())["default_partitions"]["interaction_fact"] == 51
    out = maint(infomart_dsn, make_config({"gim-etl": {"partitioning-ahead-range": "1"}}), {"steps": "partitions"})
    assert out.details["partitions"]["interaction_fact"]["rows_moved"] == 51
    assert one(infomart_dsn, "SELECT relkind FROM pg_class WHERE relname = 'interaction_fact'") == "p"
    cons = dict(q(infomart_dsn, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                "WHERE conrelid = 'interaction_fact'::regclass AND contype IN ('p', 'u')"))
    assert cons == {"interaction_fact_pkey": "PRIMARY KEY (interaction_id, start_date_time_key)",
                    "interaction_fact_data_source_key_media_server_ixn_guid_key":
                        "UNIQUE (data_source_key, media_server_ixn_guid, start_date_time_key)"}
    idx = {r[0] for r in q(infomart_dsn, "SELECT indexrelid::regclass::text FROM pg_index "
                                         "WHERE indrelid = 'interaction_fact'::regclass")}
    assert {"interaction_fact_start", "interaction_fact_update_audit", "interaction_fact_active"} <= idx
    # the export view reads the partitioned table, rows and all
    assert one(infomart_dsn, "SELECT count(*) FROM exp_interaction_fact") == before == 51
    assert default_partition_rows(infomart_dsn)["interaction_fact"] == 0
    assert status(infomart_dsn, make_config())["default_partitions"]["interaction_fact"] == 0
    assert len(partitions(infomart_dsn, "interaction_fact")) >= 3


# ---------------------------------------------------------------------------------------------
# R23 purge
# ---------------------------------------------------------------------------------------------


def test_r23_gim_facts_whole_partitions_dropped_default_partition_batched_active_kept(infomart_dsn, make_config) -> None:
    """interaction_fact with day partitions (whole partitions dropped); interaction_resource_fact
    with its rows still in the default partition (batched DELETE to the exact cutoff); the same rows
    in both."""
    now = time.time()
    # 10 ended facts per day, 1 .. 10 days old (one hour short of whole days)
    starts = {k: int(now) - k * DAY - 3600 for k in range(1, 11)}

    def seed(table: str) -> None:
        for k, s in starts.items():
            seed_facts(infomart_dsn, table, k * 100, s, 10)
        # still active: 8 days old (protected: younger than days-to-keep-active-facts) and 40 days old
        seed_facts(infomart_dsn, table, 5000, starts[8], 1, active=True)
        seed_facts(infomart_dsn, table, 6000, int(now) - 40 * DAY, 1, active=True)

    seed("interaction_fact")
    # the partitions the data would have had (made while the default retention was in force); the
    # other fact tables were empty then, so they got partitions from today on only
    maint(infomart_dsn, make_config({"gim-etl": {"partitioning-ahead-range": "1"}}), {"steps": "partitions"})
    assert default_partition_rows(infomart_dsn)["interaction_fact"] == 0
    seed("interaction_resource_fact")
    assert default_partition_rows(infomart_dsn)["interaction_resource_fact"] == 102
    cfg = make_config({"gim-etl": {"days-to-keep-gim-facts": "5", "days-to-keep-cfg-facts": "5",
                                   "days-to-keep-gidb-facts": "5", "days-to-keep-active-facts": "30",
                                   "partitioning-ahead-range": "1"}}, name="purge.ini")
    out = maint(infomart_dsn, cfg, {"steps": "purge", "batch_rows": "7"})
    assert out.status == "COMPLETED"
    cut = cutoff(now, 5)
    hist = dict((r[0], r[1:]) for r in q(infomart_dsn, """
        SELECT table_name, option_name, days_to_keep, rows_deleted, partitions_dropped, completed
          FROM ctl_purge_history WHERE table_name LIKE 'interaction%%'"""))
    for table in ("interaction_fact", "interaction_resource_fact"):
        res = out.details["purge"][table]
        ids = "interaction_id" if table == "interaction_fact" else "interaction_resource_id"
        remaining = {r[0] for r in q(infomart_dsn, f"SELECT {ids} / 100 FROM {table} WHERE {ids} < 5000")}
        # still-active facts: the 8-day-old one is protected, the 40-day-old one is past the limit
        assert q(infomart_dsn, f"SELECT {ids} FROM {table} WHERE end_ts IS NULL") == [(5000,)], table
        if table == "interaction_fact":
            # whole days older than the cutoff dropped (the 40-day-old active fact's day too); the day
            # holding the cutoff kept whole; the protected fact's day purged row by row
            dropped = sorted([maintain._partition_name(table, align(s))
                              for k, s in starts.items() if align(s) + DAY <= cut and k != 8]
                             + [maintain._partition_name(table, align(int(now) - 40 * DAY))])
            assert sorted(res["partitions"]) == dropped, table
            assert res["rows_in_partitions"] == 10 * (len(dropped) - 1) + 1
            assert res["rows"] == 10  # the ended facts of the 8-day-old day
            assert remaining == {k for k, s in starts.items() if align(s) + DAY > cut}
            assert {r[0] for r in q(infomart_dsn, "SELECT partition_name FROM gim_partitions(%s)", (table,))} \
                .isdisjoint(dropped)
            assert hist[table] == ("days-to-keep-gim-facts", 5, 10, len(dropped), True)
        else:
            # in the default partition: exactly the rows older than the cutoff, 7 per transaction
            deleted = 10 * sum(1 for s in starts.values() if s < cut) + 1
            assert remaining == {k for k, s in starts.items() if s >= cut}
            assert (res["rows"], res["partitions"], res["batches"]) == (deleted, [], -(-deleted // 7))
            assert hist[table] == ("days-to-keep-gim-facts", 5, deleted, 0, True)
    # every table considered is in the purge history
    assert one(infomart_dsn, "SELECT count(DISTINCT table_name) FROM ctl_purge_history") == \
        len(maintain.PURGE_SPECS) + 7




def test_r25_partition_bounds_read_in_one_query_equal_gim_partitions(infomart_dsn, make_config) -> None:
    """The purge reads the bounds of every table's partitions in one query and parses them in
    Python (bigint keys and timestamptz keys printed in any session time zone): the same as the
    gim_partitions() SQL function gives."""
    maint(infomart_dsn, make_config({"gim-etl": {"partitioning-ahead-range": "3"}}), {"steps": "partitions"})
    with psycopg.connect(infomart_dsn, autocommit=True) as conn:
        tables = [r["table_name"] for r in maintain.partitioned_tables(conn) if r["partitioned"]]
    assert {"interaction_fact", "ctl_extract_history", "ctl_audit_log"} <= set(tables)
    for tz in ("UTC", "America/St_Johns", "Asia/Kolkata"):
        with psycopg.connect(infomart_dsn, autocommit=True) as conn:
            conn.execute(f"SET TimeZone = '{tz}'")
            got = maintain._partitions_many(conn, tables)
            for table in tables:
                rows = conn.execute("SELECT partition_name, lo, hi, is_default FROM gim_partitions(%s::regclass)",
                                    (table,)).fetchall()
                want = (next((r[0] for r in rows if r[3]), None),
                        sorted(((r[0], r[1], r[2]) for r in rows if not r[3]), key=lambda r: r[1]))
                assert got[table] == want, (tz, table)
                assert len(want[1]) >= 4, table


def test_r23_partition_locked_by_a_reader_waits_for_the_next_run_the_others_are_dropped(
        infomart_dsn, make_config, monkeypatch) -> None:
    """Every eligible partition of every fact table goes in one DROP transaction; when a report holds
    one of them, the others are still dropped (one by one), the locked one is named in the purge
    history and dropped by the next run; nothing waits longer than the lock timeout."""
    now = time.time()
    starts = {k: int(now) - k * DAY - 3600 for k in range(1, 9)}
    for table in ("interaction_fact", "interaction_resource_fact"):
        for k, s in starts.items():
            seed_facts(infomart_dsn, table, k * 100, s, 10)
    maint(infomart_dsn, make_config({"gim-etl": {"partitioning-ahead-range": "1"}}), {"steps": "partitions"})
    cut = cutoff(now, 5)
    old = {t: sorted(maintain._partition_name(t, align(s)) for s in starts.values() if align(s) + DAY <= cut)
           for t in ("interaction_fact", "interaction_resource_fact")}
    assert len(old["interaction_resource_fact"]) == 3
    locked = old["interaction_resource_fact"][0]
    monkeypatch.setattr(maintain, "LOCK_TIMEOUT", "300ms")
    cfg = make_config({"gim-etl": {"days-to-keep-gim-facts": "5", "days-to-keep-cfg-facts": "5",
                                   "days-to-keep-gidb-facts": "5", "partitioning-ahead-range": "1"}}, name="purge.ini")
    with psycopg.connect(infomart_dsn) as reader:
        assert reader.execute(f"SELECT count(*) FROM {locked}").fetchone()[0] == 10  # holds ACCESS SHARE
        t0 = time.monotonic()
        out = maint(infomart_dsn, cfg, {"steps": "purge"})
        assert time.monotonic() - t0 < 10
        assert out.status == "COMPLETED"
        purge = out.details["purge"]
        assert sorted(purge["interaction_fact"]["partitions"]) == old["interaction_fact"]
        assert sorted(purge["interaction_resource_fact"]["partitions"]) == old["interaction_resource_fact"][1:]
        assert purge["interaction_resource_fact"]["rows_in_partitions"] == 20
        msg = one(infomart_dsn, """SELECT message FROM ctl_purge_history
                                    WHERE table_name = 'interaction_resource_fact' ORDER BY finished DESC LIMIT 1""")
        assert locked in msg and "next run" in msg
        reader.rollback()
    out = maint(infomart_dsn, cfg, {"steps": "purge"})
    assert out.details["purge"]["interaction_resource_fact"]["partitions"] == [locked]
    assert out.details["purge"]["interaction_fact"]["partitions"] == []
    for table in old:
        # whole days older than the cutoff are gone; the day holding the cutoff is kept whole
        assert one(infomart_dsn, f"SELECT count(*) FROM {table} WHERE start_ts < %s", (align(cut),)) == 0
        assert one(infomart_dsn, f"SELECT count(*) FROM {table}") == 10 * sum(
            1 for s in starts.values() if align(s) + DAY > cut)


GIDB_IR = """INSERT INTO gidb_g_ir (data_source_key, irid, root_irid, media_type, created_ts, terminated_ts, gsys_useq,
                                    stg_seq) VALUES (1, %s, %s, 'voice', %s, %s, 1, %s)"""
GIDB_CALL = """INSERT INTO gidb_g_call (data_source_key, callid, irid, created_ts, gsys_useq, stg_seq)
               VALUES (1, %s, %s, %s, 1, %s)"""
GIDB_PARTY = """INSERT INTO gidb_g_party (data_source_key, partyid, callid, irid, created_ts, gsys_useq, stg_seq)
                VALUES (1, %s, %s, %s, %s, 1, %s)"""
GIDB_PH = """INSERT INTO gidb_g_party_history (data_source_key, id, partyid, added_ts, gsys_useq, stg_seq)
             VALUES (1, %s, %s, %s, 1, %s)"""


def seed_interaction(dsn: str, irid: str, ts: int, *, stg: int = 10, parties: int = 2, ended: bool = True) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(GIDB_IR, (irid, irid, ts, ts + 100 if ended else None, stg))
        conn.execute(GIDB_IR, (irid + "-c", irid, ts + 5, ts + 90 if ended else None, stg))  # a consult record
        conn.execute(GIDB_CALL, (irid + "-call", irid, ts, stg))
        for p in range(parties):
            pid = f"{irid}-p{p}"
            conn.execute(GIDB_PARTY, (pid, irid + "-call", irid if p == 0 else irid + "-c", ts + p, stg))
            for h in range(3):
                conn.execute(GIDB_PH, (abs(hash((pid, h))) % 10**12, pid, ts + p + h, stg))


def gidb_counts(dsn: str) -> dict[str, int]:
    return {t: one(dsn, f"SELECT count(*) FROM gidb_{t}") for t in
            ("g_ir", "g_call", "g_party", "g_party_history", "g_login_session", "g_agent_state_history",
             "g_agent_state_rc")}


def test_r23_gidb_staging_purged_by_whole_interaction_and_session(infomart_dsn, make_config) -> None:
    cfg = make_config({"gim-etl": {"days-to-keep-gidb-facts": "14", "days-to-keep-active-facts": "30"}})
    now = int(time.time())
    old, recent = now - 20 * DAY, now - 2 * DAY
    execute(infomart_dsn, "UPDATE ctl_transform_hwm SET hwm_value = 100")
    seed_interaction(infomart_dsn, "old-done", old)                      # purged (6 + 2x3 history rows)
    seed_interaction(infomart_dsn, "old-active", old, ended=False)       # its fact is active: kept
    seed_facts(infomart_dsn, "interaction_fact", 1, old, 1, active=True)
    execute(infomart_dsn, "UPDATE interaction_fact SET media_server_ixn_guid = 'old-active' WHERE interaction_id = 1")
    seed_interaction(infomart_dsn, "old-untransformed", old, stg=101)    # not transformed yet: kept
    seed_interaction(infomart_dsn, "recent", recent)                     # kept
    seed_interaction(infomart_dsn, "very-old-active", now - 40 * DAY, ended=False)  # past the active limit: purged
    with psycopg.connect(infomart_dsn) as conn:
        # a party whose interaction record is gone (orphan, old): purged with its history
        conn.execute(GIDB_PARTY, ("orphan-p", "x-call", "gone-ir", old, 10))
        conn.execute(GIDB_PH, (1, "orphan-p", old, 10))
        # a newer history row of a transformed interaction's party (stg_seq above the mark): all kept
        conn.execute(GIDB_PH, (2, "old-untransformed-p0", old, 10))
        for lsid, login, logout in (("s-old", old, old + 3600), ("s-open", old, None), ("s-new", recent, recent + 60)):
            conn.execute("""INSERT INTO gidb_g_login_session (data_source_key, lsid, agent_id, login_ts, logout_ts,
                                   gsys_useq, stg_seq) VALUES (1, %s, 7, %s, %s, 1, 10)""", (lsid, login, logout))
            for i in range(4):
                conn.execute("""INSERT INTO gidb_g_agent_state_history (data_source_key, id, lsid, agent_id, state,
                                       added_ts, gsys_useq, stg_seq) VALUES (1, %s, %s, 7, 1, %s, 1, 10)""",
                             (abs(hash((lsid, i))) % 10**12, lsid, login + i))
        conn.execute("""INSERT INTO gidb_g_agent_state_rc (data_source_key, id, reason_code, added_ts, gsys_useq, stg_seq)
                        VALUES (1, 1, 'lunch', %s, 1, 10), (1, 2, 'break', %s, 1, 10)""", (old, recent))
    before = gidb_counts(infomart_dsn)
    out = maint(infomart_dsn, cfg, {"steps": "purge", "unit_batch": "1"})
    after = gidb_counts(infomart_dsn)
    # two whole interactions (old-done, very-old-active): 2 ir, 1 call, 2 parties, 6 history rows each
    # + the orphan party and its history row; sessions: s-old with its 4 states; rc 'lunch'
    assert {t: before[t] - after[t] for t in before} == {
        "g_ir": 4, "g_call": 2, "g_party": 5, "g_party_history": 13, "g_login_session": 1,
        "g_agent_state_history": 4, "g_agent_state_rc": 1}
    left = {r[0] for r in q(infomart_dsn, "SELECT root_irid FROM gidb_g_ir")}
    assert left == {"old-active", "old-untransformed", "recent"}
    assert {r[0] for r in q(infomart_dsn, "SELECT lsid FROM gidb_g_login_session")} == {"s-open", "s-new"}
    # no staged row lost its parent
    assert one(infomart_dsn, """SELECT count(*) FROM gidb_g_party p WHERE NOT EXISTS
                                  (SELECT 1 FROM gidb_g_ir i WHERE i.irid = p.irid)""") == 0
    assert one(infomart_dsn, """SELECT count(*) FROM gidb_g_party_history h WHERE NOT EXISTS
                                  (SELECT 1 FROM gidb_g_party p WHERE p.partyid = h.partyid)""") == 0
    assert out.details["purge"]["gidb_g_ir"]["batches"] >= 2  # one interaction per transaction


def test_r23_deleted_configuration_and_job_history(infomart_dsn, make_config) -> None:
    cfg = make_config({"gim-etl": {"days-to-keep-gim-facts": "400", "days-to-keep-cfg-facts": "450",
                                   "days-to-keep-discards-and-job-history": "600"}})
    now = int(time.time())
    execute(infomart_dsn, "UPDATE ctl_transform_hwm SET hwm_value = 100")
    with psycopg.connect(infomart_dsn) as conn:
        for i, deleted in enumerate((now - 500 * DAY, now - 300 * DAY, None, now - 500 * DAY)):
            conn.execute("""INSERT INTO gidb_gc_agent (data_source_key, id, deleted_ts, gsys_useq, stg_seq)
                            VALUES (1, %s, %s, 1, %s)""", (i, deleted, 200 if i == 3 else 10))
        for i, end in enumerate((now - 500 * DAY, now - 10 * DAY, None)):
            conn.execute("""INSERT INTO resource_group_fact_ (resource_group_fact_key, resource_key, group_key, end_ts,
                                   active_flag, create_audit_key, update_audit_key) VALUES (%s, %s, 1, %s, %s, 1, 1)""",
                         (i, i, end, int(end is None)))
        for days, status in ((700, "COMPLETED"), (700, "RUNNING"), (10, "FAILED")):
            conn.execute("""INSERT INTO ctl_etl_history (job_id, job_name, job_version, run_type, status, start_time)
                            VALUES (gen_random_uuid(), 'Job_X', '1', 'cli', %s, now() - %s * interval '1 day')""",
                         (status, days))
        for days in (700, 601, 599):
            conn.execute("INSERT INTO ctl_audit_log (job_id, created_ts) VALUES ('x', %s)", (now - days * DAY,))
            conn.execute("""INSERT INTO ctl_extract_history (data_source_key, dap_name, table_name, role, job_id, job_name,
                                   job_version, extract_start_time, extract_end_time, row_count, hwm_from, hwm_to)
                            VALUES (1, 'd', 'g_ir', 'ICON_CORE', 'j', 'J', '1', now(), now() - %s * interval '1 day',
                                    0, 0, 0)""", (days,))
            conn.execute("""INSERT INTO stg_transform_discards (data_source_key, table_name, source_key, code, reason,
                                   job_id, create_audit_key, etl_ts, etl_date_time_key, created_ts)
                            VALUES (1, 'g_ir', %s, 'c', 'r', 'j', 1, 0, 0, %s)""", (str(days), now - days * DAY))
    out = maint(infomart_dsn, cfg)
    assert out.status == "COMPLETED"
    assert sorted(r[0] for r in q(infomart_dsn, "SELECT id FROM gidb_gc_agent")) == [1, 2, 3]  # 3: untransformed
    assert sorted(r[0] for r in q(infomart_dsn, "SELECT resource_group_fact_key FROM resource_group_fact_")) == [1, 2]
    assert sorted(r[0] for r in q(infomart_dsn, "SELECT status FROM ctl_etl_history WHERE job_name = 'Job_X'")) == [
        "FAILED", "RUNNING"]
    now2 = time.time()
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_audit_log WHERE created_ts < %s", (now2 - 600 * DAY,)) == 0
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_audit_log") == 1
    assert one(infomart_dsn, "SELECT count(*) FROM ctl_extract_history") == 1
    assert sorted(r[0] for r in q(infomart_dsn, "SELECT source_key FROM stg_transform_discards")) == ["599"]
    p = out.details["purge"]
    assert (p["gidb_gc_agent"]["rows"], p["resource_group_fact_"]["rows"], p["ctl_etl_history"]["rows"],
            p["ctl_audit_log"]["rows"], p["stg_transform_discards"]["rows"]) == (1, 1, 1, 2, 2)


# ---------------------------------------------------------------------------------------------
# R24 calendars
# ---------------------------------------------------------------------------------------------

NY = {"date-time-ny": {"date-time-tz": "America/New_York", "date-time-table-name": "date_time_ny",
                       "date-time-start-year": "2026", "date-time-max-days-ahead": "30",
                       "date-time-min-days-ahead": "10", "fiscal-year-start": "07-01"},
      "date-time-iso": {"date-time-tz": "Europe/Berlin", "date-time-table-name": "date_time_iso",
                        "date-time-start-year": "2026", "date-time-max-days-ahead": "30",
                        "date-time-min-days-ahead": "10", "first-day-of-week": "2",
                        "minimal-days-in-first-week": "4", "simple-week-numbering": "false"},
      "date-time": {"date-time-start-year": "2026", "date-time-max-days-ahead": "30",
                    "date-time-min-days-ahead": "10"}}


def _contiguous(dsn: str, table: str) -> tuple[int, int, int, int]:
    return q(dsn, f"SELECT count(*), count(DISTINCT date_time_key), (max(date_time_key) - min(date_time_key)) / 900 + 1, "
                  f"count(*) FILTER (WHERE date_time_next_key <> date_time_key + 900) FROM {table}")[0]


def test_r24_default_and_new_york_calendars_dst_weeks_fiscal_idempotent(infomart_dsn, make_config) -> None:
    cfg = make_config(NY)
    out = maint(infomart_dsn, cfg, {"steps": "calendars"})
    assert out.status == "COMPLETED"
    today_ny = dt.datetime.now(zoneinfo.ZoneInfo("America/New_York")).date()
    for table, tz in (("date_time", "GMT"), ("date_time_ny", "America/New_York"), ("date_time_iso", "Europe/Berlin")):
        n, distinct, span, bad_next = _contiguous(infomart_dsn, table)
        assert n == distinct == span and bad_next == 0, table  # no key missing or doubled, DST included
        first, last, zone = q(infomart_dsn, f"SELECT min(cal_date), max(cal_date), min(time_zone) FROM {table}")[0]
        assert first == dt.date(2026, 1, 1) and zone == tz
        assert abs((last - today_ny).days - 30) <= 1
    # DST in New York: 23 hours on 2026-03-08 (no 02:xx), 25 on 2026-11-01 (01:xx twice)
    days = dict((r[0], r[1:]) for r in q(infomart_dsn, """
        SELECT cal_date, count(*), array_agg(DISTINCT cal_hour_num_in_day ORDER BY cal_hour_num_in_day),
               count(*) FILTER (WHERE cal_hour_num_in_day = 1), count(DISTINCT date_time_day_key)
          FROM date_time_ny WHERE cal_date IN ('2026-03-08', '2026-11-01', '2026-03-09') GROUP BY 1"""))
    assert days[dt.date(2026, 3, 8)] == (92, [0, 1, *range(3, 24)], 4, 1)
    assert days[dt.date(2026, 11, 1)] == (100, list(range(24)), 8, 1)
    assert days[dt.date(2026, 3, 9)][0] == 96

    def local(key_utc: str) -> tuple:
        k = int(dt.datetime.fromisoformat(key_utc).replace(tzinfo=dt.UTC).timestamp())
        return q(infomart_dsn, """SELECT cal_date::text, cal_hour_num_in_day, cal_minute_num_in_hour, utc_offset_seconds,
                                         cal_day_name FROM date_time_ny WHERE date_time_key = %s""", (k,))[0]

    assert local("2026-03-08 06:45") == ("2026-03-08", 1, 45, -18000, "Sunday")
    assert local("2026-03-08 07:00") == ("2026-03-08", 3, 0, -14400, "Sunday")
    assert local("2026-11-01 05:30") == ("2026-11-01", 1, 30, -14400, "Sunday")
    assert local("2026-11-01 06:30") == ("2026-11-01", 1, 30, -18000, "Sunday")
    assert local("2026-11-01 04:00") == ("2026-11-01", 0, 0, -14400, "Sunday")
    # GMT default calendar: 96 rows every day, legacy weeks from Sunday (2026-01-01 is a Thursday)
    assert one(infomart_dsn, "SELECT count(*) FROM (SELECT cal_date FROM date_time GROUP BY 1 HAVING count(*) <> 96) x") == 0
    weeks = dict(q(infomart_dsn, "SELECT DISTINCT cal_date, cal_week_num_in_year FROM date_time "
                                 "WHERE cal_date BETWEEN '2026-01-01' AND '2026-01-11'"))
    assert [weeks[dt.date(2026, 1, d)] for d in range(1, 12)] == [1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3]
    # ISO weeks (Monday, 4 days) match Python's isocalendar every day
    iso = q(infomart_dsn, "SELECT DISTINCT cal_date, cal_week_num_in_year, cal_week_year_num, cal_day_num_in_week "
                          "FROM date_time_iso")
    assert iso and all((w, y, dw) == (d.isocalendar()[1], d.isocalendar()[0], d.isocalendar()[2])
                       for d, w, y, dw in iso)
    # fiscal year from 07-01, named by the year it ends in
    fiscal = dict((r[0], r[1:]) for r in q(infomart_dsn, """
        SELECT DISTINCT cal_date, fiscal_year_num, fiscal_quarter_num_in_year, fiscal_month_num_in_year
          FROM date_time_ny WHERE cal_date IN ('2026-06-30', '2026-07-01', '2026-10-15', '2026-01-01')"""))
    assert fiscal == {dt.date(2026, 6, 30): (2026, 4, 12), dt.date(2026, 7, 1): (2027, 1, 1),
                      dt.date(2026, 10, 15): (2027, 2, 4), dt.date(2026, 1, 1): (2026, 3, 7)}
    assert one(infomart_dsn, "SELECT count(*) FROM date_time WHERE fiscal_year_num <> cal_year_num") == 0
    # registered options: the transform's gim_ensure_date_time fills date_time with them
    assert q(infomart_dsn, "SELECT table_name, time_zone, fiscal_year_start_month FROM ctl_calendar ORDER BY 1") == [
        ("date_time", "GMT", 1), ("date_time_iso", "Europe/Berlin", 1), ("date_time_ny", "America/New_York", 7)]
    # idempotent: a second run adds nothing
    again = maint(infomart_dsn, cfg, {"steps": "calendars"})
    assert {t: v["rows_added"] for t, v in again.details["calendars"].items()} == {
        "date_time": 0, "date_time_ny": 0, "date_time_iso": 0}


def test_r24_min_and_max_days_ahead(infomart_dsn, make_config) -> None:
    def last() -> dt.date:
        return one(infomart_dsn, "SELECT max(cal_date) FROM date_time")

    today = dt.datetime.now(dt.UTC).date()
    n = iter(range(100))

    def run(max_ahead: int, min_ahead: int):
        days = {"date-time-start-year": str(today.year), "date-time-max-days-ahead": str(max_ahead),
                "date-time-min-days-ahead": str(min_ahead)}
        cfg = make_config({"date-time": days, "date-time-ny": days}, name=f"c{next(n)}.ini")
        return maint(infomart_dsn, cfg, {"steps": "calendars"})

    run(20, 5)
    assert last() == today + dt.timedelta(days=20)
    # more than min-days-ahead left: not extended, although max-days-ahead grew
    run(40, 10)
    assert last() == today + dt.timedelta(days=20)
    # fewer than min-days-ahead left: extended to max-days-ahead
    run(40, 25)
    assert last() == today + dt.timedelta(days=40)
    # a hole (e.g. rows deleted by hand) inside the span is filled again
    execute(infomart_dsn, "DELETE FROM date_time WHERE cal_date = %s", (today + dt.timedelta(days=3),))
    out = run(40, 10)
    assert out.details["calendars"]["date_time"]["rows_added"] == 96
    assert out.details["calendars"]["date_time_ny"]["rows_added"] == 0
    assert _contiguous(infomart_dsn, "date_time")[0] == _contiguous(infomart_dsn, "date_time")[2]


# ---------------------------------------------------------------------------------------------
# R9 / R18 stopping, R15 manual runs
# ---------------------------------------------------------------------------------------------


def _slow_purge_setup(dsn: str, make_config, delay: str = "0.1"):
    cfg = make_config({"gim-etl": {"days-to-keep-gim-facts": "5", "days-to-keep-cfg-facts": "5",
                                   "days-to-keep-gidb-facts": "5", "job-test-delay-seconds": delay}})
    seed_facts(dsn, "interaction_resource_fact", 1, int(time.time()) - 10 * DAY, 5000, spread=DAY)
    return cfg


def _run_thread(dsn: str, cfg, params: dict, **kw) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["out"] = maint(dsn, cfg, params, **kw)
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    return t, box


def _wait_rows_below(dsn: str, n: int, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while one(dsn, "SELECT count(*) FROM interaction_resource_fact") > n:
        assert time.monotonic() < end, "purge did not progress"
        time.sleep(0.05)


def test_r18_stop_request_mid_purge_leaves_whole_batches_and_next_run_finishes(infomart_dsn, make_config) -> None:
    cfg = _slow_purge_setup(infomart_dsn, make_config)
    t, box = _run_thread(infomart_dsn, cfg, {"steps": "purge", "batch_rows": "250"})
    _wait_rows_below(infomart_dsn, 4000)
    assert request_stop(infomart_dsn, "Job_MaintainGIM", "operator test (R18)")
    t.join(15)
    assert isinstance(box.get("error"), JobStopped), box
    left = one(infomart_dsn, "SELECT count(*) FROM interaction_resource_fact")
    assert 0 < left < 5000 and (5000 - left) % 250 == 0  # whole committed batches only
    status, msg = q(infomart_dsn, "SELECT status, message FROM ctl_etl_history ORDER BY id DESC LIMIT 1")[0]
    assert status == "STOPPED" and "operator test" in msg
    rec = q(infomart_dsn, """SELECT rows_deleted, completed, message FROM ctl_purge_history
                              WHERE table_name = 'interaction_resource_fact'""")
    assert rec == [(5000 - left, False, rec[0][2])] and "stopped" in rec[0][2]
    out = maint(infomart_dsn, make_config({"gim-etl": {"days-to-keep-gim-facts": "5", "days-to-keep-cfg-facts": "5",
                                                       "days-to-keep-gidb-facts": "5"}}, name="fast.ini"),
                {"steps": "purge"})
    assert out.status == "COMPLETED" and out.details["purge"]["interaction_resource_fact"]["rows"] == left
    assert one(infomart_dsn, "SELECT count(*) FROM interaction_resource_fact") == 0


def test_r09_deadline_stops_a_scheduled_run_and_gidb_units_stay_whole(infomart_dsn, make_config) -> None:
    cfg = make_config({"gim-etl": {"days-to-keep-gidb-facts": "14", "job-test-delay-seconds": "0.2"}})
    execute(infomart_dsn, "UPDATE ctl_transform_hwm SET hwm_value = 100")
    for i in range(40):
        seed_interaction(infomart_dsn, f"ixn{i}", int(time.time()) - 20 * DAY - i)
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    with pytest.raises(JobStopped, match=r"deadline .* \(next ETL slot, R9\)"):
        maint(infomart_dsn, cfg, {"steps": "purge", "unit_batch": "2"}, run_type="scheduled", deadline=deadline)
    assert dt.datetime.now(dt.UTC) - deadline < dt.timedelta(seconds=2)
    roots = one(infomart_dsn, "SELECT count(*) FROM gidb_g_ir WHERE irid = root_irid")
    assert 0 < roots < 40
    # each interaction is either all there or all gone
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_ir") == 2 * roots
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_party") == 2 * roots
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_party_history") == 6 * roots
    assert one(infomart_dsn, "SELECT count(*) FROM gidb_g_call") == roots
    out = maint(infomart_dsn, make_config({"gim-etl": {"days-to-keep-gidb-facts": "14"}}, name="b.ini"),
                {"steps": "purge"})
    assert out.status == "COMPLETED" and one(infomart_dsn, "SELECT count(*) FROM gidb_g_ir") == 0


def test_r09_preempt_cancels_a_running_statement_within_seconds(infomart_dsn, make_config) -> None:
    """preempt() (what a due ETL cycle calls) stops maintenance in the middle of a statement: here a
    purge DELETE kept waiting by another session's row lock, so it is surely inside it."""
    cfg = make_config({"gim-etl": {"days-to-keep-gim-facts": "5", "days-to-keep-cfg-facts": "5",
                                   "days-to-keep-gidb-facts": "5"}})
    seed_facts(infomart_dsn, "interaction_resource_fact", 1, int(time.time()) - 10 * DAY, 2000, spread=DAY)
    with psycopg.connect(infomart_dsn) as locker:
        locker.execute("SELECT 1 FROM interaction_resource_fact WHERE interaction_resource_id = 1500 FOR UPDATE")
        t, box = _run_thread(infomart_dsn, cfg, {"steps": "purge", "batch_rows": "100000"}, run_type="scheduled")
        end = time.monotonic() + 15
        while not one(infomart_dsn, """SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                                        AND query LIKE 'DELETE FROM "interaction_resource_fact%%'"""):
            assert time.monotonic() < end, "the purge DELETE did not start"
            time.sleep(0.05)
        t0 = time.monotonic()
        assert preempt(infomart_dsn, "Job_MaintainGIM", "ETL cycle test is due (R9)", timeout=10)
        latency = time.monotonic() - t0
        t.join(10)
        locker.rollback()
    assert isinstance(box.get("error"), JobStopped) and latency < 5, (box, latency)
    assert one(infomart_dsn, "SELECT count(*) FROM interaction_resource_fact") == 2000  # the batch rolled back
    status, msg = q(infomart_dsn, "SELECT status, message FROM ctl_etl_history")[0]
    assert status == "STOPPED" and "ETL cycle test is due (R9)" in msg
    assert q(infomart_dsn, "SELECT completed, rows_deleted FROM ctl_purge_history "
                           "WHERE table_name = 'interaction_resource_fact'") == [(False, 0)]


def test_r15_manual_and_cli_runs_allowed_and_bad_params_refused(infomart_dsn, make_config) -> None:
    cfg = make_config()
    for run_type in ("manual", "cli"):
        assert maint(infomart_dsn, cfg, run_type=run_type).status == "COMPLETED"
    with pytest.raises(JobRefused, match="unknown maintenance step"):
        maint(infomart_dsn, cfg, {"steps": "vacuum"})


# ---------------------------------------------------------------------------------------------
# The transform writing partitioned facts
# ---------------------------------------------------------------------------------------------

FACT_COMPARE = {
    "interaction_fact": ["interaction_id", "create_audit_key", "update_audit_key"],
    "interaction_resource_fact": ["interaction_resource_id", "interaction_id", "create_audit_key", "update_audit_key"],
    "sm_res_state_fact": ["sm_res_state_fact_key", "source_id", "create_audit_key", "update_audit_key"],
    "sm_res_session_fact": ["sm_res_session_fact_key", "create_audit_key", "update_audit_key"],
}


def _facts(dsn: str, table: str) -> list[str]:
    return sorted(r[0] for r in q(dsn, f"SELECT (to_jsonb(t) - %s::text[])::text FROM {table} t",
                                  (FACT_COMPARE[table],)))


def test_r25_transform_writes_the_same_facts_into_day_partitions_and_into_the_default_partition(
        infomart_dsn, idb_dsn, new_database, make_config) -> None:
    """Same IDB into a mart with day partitions for the data (made by Job_MaintainGIM first) and one
    with only the default partitions, twice (new rows, then updates of active ones): the facts are
    identical, nothing duplicated (the upserts' conflict targets carry start_date_time_key), and the
    next Job_MaintainGIM leaves nothing in the default partitions."""
    from gim_jobs.db.connect import DataSource
    from gim_jobs.db.migrate import migrate
    from gim_jobs.idb import SimConfig, simulate_batch

    bare = new_database("bare")
    migrate(bare, "infomart")
    cfg = make_config({"gim-etl": {"partitioning-ahead-range": "1"}})
    now = int(time.time())
    # day partitions for the data's days, made ahead as a running mart has them
    seed_facts(infomart_dsn, "interaction_fact", 10**9, now - 3 * 3600)
    maint(infomart_dsn, cfg, {"steps": "partitions"})
    execute(infomart_dsn, "DELETE FROM interaction_fact WHERE interaction_id = %s", (10**9,))
    assert len(partitions(infomart_dsn, "interaction_fact")) > len(partitions(bare, "interaction_fact")) == 0
    src = [DataSource("main", idb_dsn)]
    sim = SimConfig(seed=11)
    for start in (now - 3 * 3600, now - 3600):
        simulate_batch(idb_dsn, interactions=120, start=start, span_seconds=3600, config=sim, write_truth=False)
        for mart in (infomart_dsn, bare):
            for job in ("extract", "transform"):
                assert run_job(job, infomart_dsn=mart, sources=src, config_path=cfg).status == "COMPLETED"
        for table in FACT_COMPARE:
            got, want = _facts(infomart_dsn, table), _facts(bare, table)
            assert got == want and got, table
    assert one(infomart_dsn, "SELECT count(*) FROM interaction_fact_default") < \
        one(infomart_dsn, "SELECT count(*) FROM interaction_fact")
    assert one(bare, "SELECT count(*) FROM interaction_fact_default") == one(bare, "SELECT count(*) FROM interaction_fact")
    # the next run moves what is left outside into partitions; the facts do not change
    for mart in (infomart_dsn, bare):
        maint(mart, cfg, {"steps": "partitions"})
        assert set(default_partition_rows(mart).values()) == {0}
    for table in FACT_COMPARE:
        assert _facts(infomart_dsn, table) == _facts(bare, table)
    assert one(infomart_dsn, "SELECT count(*) FROM interaction_fact") == \
        one(infomart_dsn, "SELECT count(DISTINCT (data_source_key, media_server_ixn_guid)) FROM interaction_fact")


def test_r06_r14_scheduled_maintenance_only_at_its_slot_and_not_after_the_next_etl_slot(make_config,
                                                                                      monkeypatch) -> None:
    """The launch rule added to the glue: a stale slot (options changed since it was planned) or a
    launch after the next ETL slot fell due is skipped; the slot itself runs."""
    from pathlib import Path

    import pendulum

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "plugins"))
    from gim_operators import scheduled_launch_refusal

    from gim_jobs.config import current_config

    now = pendulum.now("UTC")
    slot = now.subtract(minutes=1).replace(second=0, microsecond=0)
    window = {"etl-start-time": f"{slot.add(minutes=10):%H:%M}", "etl-end-time": f"{slot.subtract(minutes=5):%H:%M}",
              "etl-frequency": "5", "timezone": "GMT", "run-maintain": "true", "run-scheduler": "true"}
    cfg = current_config(make_config({"schedule": {**window, "maintain-start-time": f"{slot:%H:%M}"}}))
    assert scheduled_launch_refusal("maintain", {"logical_date": slot}, cfg) is None
    stale = scheduled_launch_refusal("maintain", {"logical_date": slot.subtract(hours=3)}, cfg)
    assert stale and "not maintain-start-time" in stale and "(R14)" in stale
    late_cfg = current_config(make_config({"schedule": {**window, "etl-start-time": f"{now:%H:%M}",
                                                        "etl-end-time": f"{slot.subtract(minutes=5):%H:%M}",
                                                        "maintain-start-time": f"{slot:%H:%M}"}}, name="late.ini"))
    late = scheduled_launch_refusal("maintain", {"logical_date": slot}, late_cfg)
    assert late and "too late" in late


def test_r23_outbound_staging_purged_once_transformed_active_attempts_kept(infomart_dsn, make_config) -> None:
    """gidb_g_ocs_attempt (days-to-keep-gidb-facts) and deleted outbound configuration
    (days-to-keep-cfg-facts) are purged only below the outbound transform's own high-water mark;
    a still-dialing attempt stays until days-to-keep-active-facts."""
    now = int(time.time())
    old, recent = now - 20 * DAY, now - DAY
    rows = [("a-old", old, old + 60, 5), ("a-active", old, None, 6), ("a-unstaged", old, old + 60, 50),
            ("a-recent", recent, recent + 60, 7)]
    for attempt, dialing, ended, stg in rows:
        execute(infomart_dsn, """INSERT INTO gidb_g_ocs_attempt (data_source_key, attempt_id, campaign_id, dialing_ts,
                                        ended_ts, gsys_useq, stg_seq) VALUES (1, %s, 1, %s, %s, 1, %s)""",
                (attempt, dialing, ended, stg))
    execute(infomart_dsn, """INSERT INTO gidb_gc_campaign (data_source_key, id, created_ts, deleted_ts, gsys_useq, stg_seq)
                             VALUES (1, 1, %s, %s, 1, 5), (1, 2, %s, NULL, 1, 5)""", (old - DAY, old, old))
    execute(infomart_dsn, "UPDATE ctl_transform_hwm SET hwm_value = 10 WHERE hwm_name = 'ocs_stage_seq'")
    cfg = make_config({"gim-etl": {"days-to-keep-gidb-facts": "14", "days-to-keep-cfg-facts": "14",
                                   "days-to-keep-gim-facts": "14", "days-to-keep-active-facts": "30"}})
    out = maint(infomart_dsn, cfg, {"steps": "purge"})
    assert out.details["purge"]["gidb_g_ocs_attempt"]["rows"] == 1
    assert {r[0] for r in q(infomart_dsn, "SELECT attempt_id FROM gidb_g_ocs_attempt")} == \
        {"a-active", "a-unstaged", "a-recent"}
    assert q(infomart_dsn, "SELECT id FROM gidb_gc_campaign") == [(2,)]
