"""Job_TransformGIM: turn staged ``gidb_*`` rows into the facts and dimensions of the Info Mart.

Everything is set-based SQL (INSERT ... SELECT, ON CONFLICT, UPDATE ... FROM) over temporary
tables; Python only sequences the statements and transactions.

What changed
    Extraction stamps every staged row it inserts or replaces with ``stg_seq``, one value of a
    sequence per extraction chunk.
    The transform's high-water mark (``ctl_transform_hwm.hwm_value``) is a ``stg_seq`` value: rows
    above it are new or changed. A run reads the upper bound ``B`` of a batch while holding, for an
    instant, the advisory lock every extraction chunk holds while it writes, so every row with
    ``stg_seq <= B`` is committed (extraction may run at the same time: rows it adds later go to
    the next batch). The source's *data clock* (the latest data time extracted, from
    ``ctl_extract_hwm.max_ts``) is frozen with the bound.

Batch, work list, chunks
    1. *Prepare* (one transaction): changed rows are resolved to the units that must be
       recomputed: root interactions (from ``g_ir``, ``g_call``, ``g_party``, ``g_party_history``),
       login sessions (from ``g_login_session``, ``g_agent_state_history``), and the configuration.
       They go to ``stg_transform_work`` with a *window* = data time // ``[gim-transformation]
       chunk-size`` (the root interaction's start, the session's login; -1 for configuration).
       Still-active interactions older than ``days-to-keep-active-facts`` and agent states open
       longer than ``max-state-duration`` (by the data clock) are added too, to be closed.
    2. *Chunks*, one per window in ascending order, each one transaction with its
       ``ctl_audit_log`` row, its ``ctl_transform_history`` row and the advance of ``hwm_value2``
       (the last window committed). Each unit is recomputed from *all* its staged rows, not only
       the changed ones, and upserted: the facts are accumulating snapshots, written with
       ``end_ts`` NULL while active and updated (``update_audit_key``) when they end. Rows whose
       values did not change are not touched.
    3. The last chunk also sets ``hwm_value = B`` and clears the work list.

    Interactions are short and recomputed whole. A login session lasts all day, so it is recomputed
    only from the state before its earliest changed row (``stg_transform_work.since``): the cost of
    a cycle depends on what changed, not on how much the mart holds. Every join from a changed row
    to the rest of its unit goes through an index; the per-chunk temporary tables are analyzed
    (small sample) and, where probed by key, indexed, so a misestimate cannot turn a join
    quadratic; the session costs random I/O as on SSD (``random_page_cost = 1.1``), since chunks
    probe recently written, cached rows; and tables the run changed by 10 % or more are ANALYZEd at
    its end (a freshly loaded mart would otherwise be planned on stale statistics).

    A killed job resumes its batch at the next window (the work list and the frozen data clock are
    stored). Because fact keys come from the staged rows (``stg_id``) and new code-dimension keys
    are assigned in code order, a rerun after SIGKILL produces the same tables as an uninterrupted
    run, audit keys aside. A run with nothing staged does nothing and succeeds.

Late and bad data
    A row whose parent is not staged yet (a party whose interaction record or call has not been
    extracted, a party-history row whose party has not, an agent-state row whose login session has
    not) is kept in ``stg_transform_pending`` and retried by every batch; when it resolves, its
    interaction or session is recomputed. If the source's data clock moves
    ``delayed-data-threshold`` seconds past the moment the row was first found waiting, it goes to
    ``stg_transform_discards`` (code ``missing_dependency``). The data clock rather than the wall
    clock is used so that reruns are deterministic and a replay of old data behaves as it did live.
    While a party of an interaction waits, the interaction is left as it is (not written, or not
    updated). Malformed rows go to discards at once with a code and a reason: unknown codes (party
    type, role, end cause, party-history change type, agent state, DN type, group type, interaction
    type), end before start, times outside 2000-2100, missing agent/DN/media. The unit of discard is
    the interaction (Genesys: "for a discarded interaction no dimensional rows are written"): a bad
    interaction record or party, or a party whose call never came, removes the whole interaction
    (no IF, no IRF; its root record is listed as ``interaction_discarded`` with the reason). A bad
    or duplicate party-history row (same party, change type and time) is listed and left out of the
    measures; a bad agent-state row likewise. A discarded row stays listed even if a later version
    of it is transformed.

Purged staging
    Job_MaintainGIM purges staging rows older than ``days-to-keep-gidb-facts``. Recomputing a unit
    whose rows were partly purged never deletes facts whose source rows are simply gone: only a
    staged row that is now invalid removes its fact. (Maintenance should still purge an
    interaction's rows together, and only once its facts are no longer active.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gim_jobs import __version__
from gim_jobs.control import JobContext, JobResult
from gim_jobs.db.connect import connect
from gim_jobs.jobs.extract import STAGE_LOCK

HWM_NAME = "gidb_stage_seq"
AGENT_BASE = 1 << 32
ENDPOINT_BASE = 2 << 32
GROUP_BASE = 3 << 32
TS_MIN, TS_MAX = 946684800, 4102444800  # 2000-01-01 .. 2100-01-01: outside is "bad_time"
NO_CHUNKING = 1 << 62
WIN_PREPARE, WIN_CONFIG = -2, -1
SINCE_LAST = 1 << 62  # a session's "since": only its last state may change
END_CAUSES = ("completed", "abandoned", "abandoned_ringing", "transferred", "conferenced", "redirected", "cleared")


class W(str):
    """A statement that writes facts or dimensions: its row count is the job's row count."""

    __slots__ = ()


def _upsert(table: str, cols: list[str], conflict: str, select: str, keep: tuple[str, ...] = (),
            key_order: bool = False) -> W:
    """INSERT ... SELECT ... ON CONFLICT DO UPDATE that only touches rows whose values changed.

    ``cols`` ends with create_audit_key, update_audit_key; ``keep`` are columns never updated (keys).
    ``key_order`` sorts the rows by the first column (the fact key, which leads the primary key) before
    writing: fact keys come from staging row ids, which grow with time, so the primary-key inserts
    of a chunk land on the index's right edge in order instead of all over it (a quarter less time
    when inserting 200k state facts in a test).
    """
    skip = set(keep) | {c.strip() for c in conflict.split(",")} | {"create_audit_key", "update_audit_key"}
    cmp = [c for c in cols if c not in skip]
    sets = ", ".join(f"{c} = excluded.{c}" for c in [*cmp, "update_audit_key"])
    old = ", ".join(f"t.{c}" for c in cmp)
    new = ", ".join(f"excluded.{c}" for c in cmp)
    return W(
        f"INSERT INTO {table} AS t ({', '.join(cols)}) {select}{' ORDER BY 1' if key_order else ''} "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
    )


def _new_media_types(media: str) -> str:
    """INSERT the media types first seen in ``media`` (a query with one column ``m``, the media type
    as staged) into ``media_type``, offline until an operator says otherwise; keys continue from
    the highest."""
    return f"""INSERT INTO media_type (media_type_key, media_name, media_name_code, is_online, create_audit_key,
                               update_audit_key)
       SELECT (SELECT coalesce(max(media_type_key), 0) FROM media_type) + row_number() OVER (ORDER BY code),
              initcap(name), code, 0, %(audit)s, %(audit)s
         FROM (SELECT upper(m) AS code, min(lower(m)) AS name FROM ({media}) a GROUP BY 1) n
        WHERE NOT EXISTS (SELECT 1 FROM media_type t WHERE t.media_name_code = n.code)"""


def _save_discards(source: str) -> str:
    """Upsert the rows of the temporary discard table ``source`` (dsk, tbl, skey, guid, code, reason,
    raw) into ``stg_transform_discards``: one row per source row, changed only when its verdict did."""
    return f"""INSERT INTO stg_transform_discards AS d (data_source_key, table_name, source_key, guid, code, reason, raw,
                                                job_id, create_audit_key, etl_ts, etl_date_time_key, created_ts)
        SELECT DISTINCT ON (dsk, tbl, skey) dsk, tbl, skey, guid, code, reason, raw, %(job)s, %(audit)s, %(etl_ts)s,
               %(etl_ts)s - mod(%(etl_ts)s, 900), %(etl_ts)s
          FROM {source} ORDER BY dsk, tbl, skey, code
        ON CONFLICT (data_source_key, table_name, source_key) DO UPDATE
           SET guid = excluded.guid, code = excluded.code, reason = excluded.reason, raw = excluded.raw,
               job_id = excluded.job_id, create_audit_key = excluded.create_audit_key, etl_ts = excluded.etl_ts,
               etl_date_time_key = excluded.etl_date_time_key
         WHERE (d.guid, d.code, d.reason, d.raw) IS DISTINCT FROM (excluded.guid, excluded.code, excluded.reason,
                                                                    excluded.raw)"""


def _recorded(table: str, delete: str, interaction_start: str | None = None) -> str:
    """``delete`` (a ``DELETE FROM <table> f ...``) that also records the span of every fact it
    deletes in ``ctl_fact_deleted`` with this transaction's audit key: a deleted fact leaves no row
    whose audit key would tell Job_AggregateGIM which intervals to re-aggregate. For IRF rows
    ``interaction_start`` (an expression over the DELETE's other tables) adds the interaction's start,
    the interval H_ID counts them in."""
    extra = f", {interaction_start} AS ixn_start" if interaction_start else ""
    # the spans the aggregation queues for a changed fact (hierarchies.FACT_SPANS): an interaction
    # counts at its start only
    end = "start_ts" if table == "interaction_fact" else "coalesce(end_ts, start_ts)"
    spans = f"SELECT start_ts, {end} FROM d"
    if interaction_start:
        spans += " UNION SELECT ixn_start, ixn_start FROM d"
    return (f"WITH d AS ({delete} RETURNING f.start_ts, f.end_ts{extra}) "
            f"INSERT INTO ctl_fact_deleted (audit_key, table_name, start_ts, end_ts) "
            f"SELECT %(audit)s, '{table}', s.* FROM ({spans}) s")


def _win(expr: str) -> str:
    return f"(coalesce({expr}, 0) / %(chunk)s)"


def _probe(table: str, cond: str) -> str:
    """The rows of a staging or fact table that match ``cond`` (over the columns of the outer row),
    looked up through an index once per outer row: ``OFFSET 0`` keeps the planner from flattening
    the subquery into a hash join. A window's driving set (its roots, their parties) is a small part
    of the table, but in a busy window the planner estimates one scan of the whole table cheaper
    than that many index probes (and the facts written by the earlier windows of a bulk load are not
    analyzed yet): every window then reads the whole table, so a day's load costs (windows x table
    size), the superlinear part of a bulk transform (issue 3)."""
    return f"(SELECT * FROM {table} x WHERE {cond} OFFSET 0)"


def _days(times: str) -> str:
    """INSERT into ``t_days`` the times of ``times`` (a query of (ts, is_start) rows), keeping of each
    (day, is_start) only its earliest and latest time inside 2000-2100: all that FINISH (the days
    the calendar must hold) and AUDIT_CLOSE (the earliest and latest start) read, so a bulk window
    writes a few rows instead of two per fact."""
    return (f"INSERT INTO t_days SELECT unnest(ARRAY[min(ts), max(ts)]), is_start FROM ({times}) d (ts, is_start) "
            "WHERE ts BETWEEN %(ts_min)s AND %(ts_max)s GROUP BY ts - mod(ts, 86400), is_start")


# ---------------------------------------------------------------------------------------------
# Every transaction
# ---------------------------------------------------------------------------------------------

SETUP = [
    # temp tables are analyzed for join sizes only: a small sample is enough
    "SET LOCAL default_statistics_target = 10",
    """CREATE TEMP TABLE t_clock ON COMMIT DROP AS
       SELECT key::int AS dsk, value::bigint AS data_now FROM jsonb_each_text(%(clock)s::jsonb)""",
    "ANALYZE t_clock",
    """CREATE TEMP TABLE t_disc (dsk int, tbl text, skey text, guid text, code text, reason text, raw jsonb)
       ON COMMIT DROP""",
    "CREATE TEMP TABLE t_days (ts bigint, is_start boolean) ON COMMIT DROP",
]

FINISH = [
    _save_discards("t_disc"),
    """SELECT count(gim_ensure_date_time(d, d + 86399))
         FROM (SELECT DISTINCT ts - mod(ts, 86400) AS d FROM t_days
                WHERE ts BETWEEN %(ts_min)s AND %(ts_max)s) x""",
]

AUDIT_CLOSE = """
UPDATE ctl_audit_log SET inserted = clock_timestamp(), row_count = %(rows)s, max_chunk_ts = %(max_chunk_ts)s,
       min_start_date_time_key = s.lo - mod(s.lo, 900), max_start_date_time_key = s.hi - mod(s.hi, 900),
       data_source_key = s.dsk
  FROM (SELECT min(ts) FILTER (WHERE is_start) AS lo, max(ts) FILTER (WHERE is_start) AS hi,
               (SELECT CASE WHEN count(*) = 1 THEN min(dsk) END FROM t_clock) AS dsk
          FROM t_days WHERE ts BETWEEN %(ts_min)s AND %(ts_max)s) s
 WHERE audit_key = %(audit)s
"""

# ---------------------------------------------------------------------------------------------
# Prepare: resolve changed rows to work units
# ---------------------------------------------------------------------------------------------

_RANGE = "x.stg_seq > %(lo)s AND x.stg_seq <= %(hi)s"
_NOT_RANGE = "NOT (x.stg_seq > %(lo)s AND x.stg_seq <= %(hi)s)"

PREPARE = [
    "CREATE TEMP TABLE t_oldpend ON COMMIT DROP AS SELECT * FROM stg_transform_pending",
    # the changed rows of the two big history tables first, on their own (their stg_seq indexes are
    # BRIN: no row estimate beyond the last ANALYZE), so the joins below are planned on real counts
    f"""CREATE TEMP TABLE t_chist ON COMMIT DROP AS
        SELECT x.data_source_key, x.id, x.partyid FROM gidb_g_party_history x WHERE {_RANGE}""",
    "ANALYZE t_chist",
    f"""CREATE TEMP TABLE t_cstate ON COMMIT DROP AS
        SELECT x.data_source_key, x.id, x.lsid, x.added_ts FROM gidb_g_agent_state_history x WHERE {_RANGE}""",
    "ANALYZE t_cstate",
    "DELETE FROM stg_transform_pending",
    # ---- interaction side: every changed (or still pending) row, with the irid it belongs to
    f"""CREATE TEMP TABLE t_cand ON COMMIT DROP AS
        SELECT 'g_ir'::text AS tbl, x.data_source_key AS dsk, x.irid AS skey, x.irid, NULL::text AS callid,
               NULL::text AS missing0
          FROM gidb_g_ir x WHERE {_RANGE}
        UNION ALL
        SELECT 'g_ir', x.data_source_key, x.irid, x.irid, NULL, NULL
          FROM t_oldpend o JOIN gidb_g_ir x ON x.data_source_key = o.data_source_key AND x.irid = o.source_key
         WHERE o.table_name = 'g_ir' AND {_NOT_RANGE}
        UNION ALL
        SELECT 'g_call', x.data_source_key, x.callid, x.irid, NULL, NULL
          FROM gidb_g_call x WHERE {_RANGE}
        UNION ALL
        SELECT 'g_call', x.data_source_key, x.callid, x.irid, NULL, NULL
          FROM t_oldpend o JOIN gidb_g_call x ON x.data_source_key = o.data_source_key AND x.callid = o.source_key
         WHERE o.table_name = 'g_call' AND {_NOT_RANGE}
        UNION ALL
        SELECT 'g_party', x.data_source_key, x.partyid, x.irid, x.callid, NULL
          FROM gidb_g_party x WHERE {_RANGE}
        UNION ALL
        SELECT 'g_party', x.data_source_key, x.partyid, x.irid, x.callid, NULL
          FROM t_oldpend o JOIN gidb_g_party x ON x.data_source_key = o.data_source_key AND x.partyid = o.source_key
         WHERE o.table_name = 'g_party' AND {_NOT_RANGE}
        UNION ALL
        -- history rows whose party changed too are covered by the party
        SELECT 'g_party_history', x.data_source_key, x.id::text, p.irid, NULL,
               CASE WHEN p.partyid IS NULL THEN 'party ' || coalesce(x.partyid, 'NULL') || ' not staged' END
          FROM t_chist x
          LEFT JOIN gidb_g_party p ON p.data_source_key = x.data_source_key AND p.partyid = x.partyid
         WHERE p.partyid IS NULL OR p.stg_seq <= %(lo)s OR p.stg_seq > %(hi)s
        UNION ALL
        SELECT 'g_party_history', x.data_source_key, x.id::text, p.irid, NULL,
               CASE WHEN p.partyid IS NULL THEN 'party ' || coalesce(x.partyid, 'NULL') || ' not staged' END
          FROM (SELECT data_source_key, source_key::bigint AS id FROM t_oldpend
                 WHERE table_name = 'g_party_history') o
          JOIN gidb_g_party_history x ON x.data_source_key = o.data_source_key AND x.id = o.id
          LEFT JOIN gidb_g_party p ON p.data_source_key = x.data_source_key AND p.partyid = x.partyid
         WHERE {_NOT_RANGE}""",
    "ANALYZE t_cand",
    """CREATE TEMP TABLE t_res ON COMMIT DROP AS
       SELECT c.tbl, c.dsk, c.skey, ir.root_irid AS root, r.created_ts AS root_ts,
              coalesce(c.missing0,
                       CASE WHEN ir.irid IS NULL
                                 THEN 'interaction record ' || coalesce(c.irid, 'NULL') || ' not staged'
                            WHEN c.tbl = 'g_party' AND cl.callid IS NULL
                                 THEN 'call ' || coalesce(c.callid, 'NULL') || ' not staged'
                            WHEN r.irid IS NULL
                                 THEN 'root interaction record ' || coalesce(ir.root_irid, 'NULL') || ' not staged'
                       END) AS missing
         FROM t_cand c
         LEFT JOIN gidb_g_ir ir ON ir.data_source_key = c.dsk AND ir.irid = c.irid
         LEFT JOIN gidb_g_call cl ON c.tbl = 'g_party' AND cl.data_source_key = c.dsk AND cl.callid = c.callid
         LEFT JOIN gidb_g_ir r ON r.data_source_key = ir.data_source_key AND r.irid = ir.root_irid""",
    # (analyzed so the work list below is deduplicated by hashing, not by sorting every changed row:
    # a bulk load's t_res holds several rows per interaction)
    "ANALYZE t_res",
    f"""INSERT INTO stg_transform_work (win, kind, data_source_key, key)
        SELECT DISTINCT {_win('root_ts')}, 1, dsk, root FROM t_res WHERE missing IS NULL ORDER BY 1, 3, 4
        ON CONFLICT DO NOTHING""",
    # still active after days-to-keep-active-facts (data clock): recompute to close them
    f"""INSERT INTO stg_transform_work (win, kind, data_source_key, key)
        SELECT DISTINCT {_win('f.start_ts')}, 1, f.data_source_key, f.media_server_ixn_guid
          FROM interaction_fact f JOIN t_clock c ON c.dsk = f.data_source_key
         WHERE f.active_flag = 1 AND f.start_ts < c.data_now - %(keep)s
        ON CONFLICT DO NOTHING""",
    # ---- session side. A session is recomputed from ``since``: the earliest changed state row (its
    # predecessor's end changes too); 0 = the whole session (new); SINCE_LAST = only its last state
    # (the session row alone changed, e.g. logout).
    f"""CREATE TEMP TABLE t_sres ON COMMIT DROP AS
        SELECT 'g_login_session'::text AS tbl, x.data_source_key AS dsk, x.lsid AS skey, x.lsid,
               x.login_ts, NULL::text AS missing, CASE WHEN sf.login_session_guid IS NULL THEN 0
                                                      ELSE {SINCE_LAST} END AS since
          FROM gidb_g_login_session x
          LEFT JOIN sm_res_session_fact sf ON sf.data_source_key = x.data_source_key AND sf.login_session_guid = x.lsid
         WHERE {_RANGE}
        UNION ALL
        -- (rows of a session that is new in this batch are covered by it: since 0)
        SELECT 'g_agent_state_history', x.data_source_key, x.id::text, s.lsid, s.login_ts,
               CASE WHEN s.lsid IS NULL THEN 'login session ' || coalesce(x.lsid, 'NULL') || ' not staged' END,
               x.added_ts
          FROM t_cstate x
          LEFT JOIN gidb_g_login_session s ON s.data_source_key = x.data_source_key AND s.lsid = x.lsid
          LEFT JOIN sm_res_session_fact sf ON sf.data_source_key = x.data_source_key AND sf.login_session_guid = x.lsid
         WHERE s.lsid IS NULL OR s.stg_seq <= %(lo)s OR s.stg_seq > %(hi)s OR sf.login_session_guid IS NOT NULL
        UNION ALL
        SELECT 'g_agent_state_history', x.data_source_key, x.id::text, s.lsid, s.login_ts,
               CASE WHEN s.lsid IS NULL THEN 'login session ' || coalesce(x.lsid, 'NULL') || ' not staged' END,
               x.added_ts
          FROM (SELECT data_source_key, source_key::bigint AS id FROM t_oldpend
                 WHERE table_name = 'g_agent_state_history') o
          JOIN gidb_g_agent_state_history x ON x.data_source_key = o.data_source_key AND x.id = o.id
          LEFT JOIN gidb_g_login_session s ON s.data_source_key = x.data_source_key AND s.lsid = x.lsid
         WHERE {_NOT_RANGE}""",
    f"""INSERT INTO stg_transform_work AS w (win, kind, data_source_key, key, since)
        SELECT {_win('min(login_ts)')}, 2, dsk, lsid, min(since) FROM t_sres WHERE missing IS NULL
         GROUP BY dsk, lsid
        ON CONFLICT (win, kind, data_source_key, key) DO UPDATE SET since = least(w.since, excluded.since)""",
    # agent states open longer than max-state-duration: recompute their sessions from there to close them
    f"""INSERT INTO stg_transform_work AS w (win, kind, data_source_key, key, since)
        SELECT {_win('min(ss.start_ts)')}, 2, f.data_source_key, f.login_session_guid, min(f.start_ts)
          FROM sm_res_state_fact f JOIN t_clock c ON c.dsk = f.data_source_key
          JOIN sm_res_session_fact ss ON ss.data_source_key = f.data_source_key
                                     AND ss.login_session_guid = f.login_session_guid
         WHERE f.end_ts IS NULL AND f.start_ts < c.data_now - %(max_state)s
         GROUP BY 3, 4
        ON CONFLICT (win, kind, data_source_key, key) DO UPDATE SET since = least(w.since, excluded.since)""",
    # ---- configuration: one unit when anything changed
    f"""INSERT INTO stg_transform_work (win, kind, data_source_key, key)
        SELECT {WIN_CONFIG}, 3, 0, 'cfg'
         WHERE EXISTS (SELECT 1 FROM gidb_gc_agent x WHERE {_RANGE})
            OR EXISTS (SELECT 1 FROM gidb_gc_endpoint x WHERE {_RANGE})
            OR EXISTS (SELECT 1 FROM gidb_gc_group x WHERE {_RANGE})
            OR EXISTS (SELECT 1 FROM gidb_gcx_group_agent x WHERE {_RANGE})
            OR EXISTS (SELECT 1 FROM gidb_gcx_group_endpoint x WHERE {_RANGE})
            OR EXISTS (SELECT 1 FROM gidb_g_agent_state_rc x WHERE {_RANGE})
        ON CONFLICT DO NOTHING""",
    # ---- rows still waiting: keep pending, or discard after delayed-data-threshold of data time
    """CREATE TEMP TABLE t_wait ON COMMIT DROP AS
       SELECT w.*, o.first_seen_ts,
              coalesce(o.first_seen_ts IS NOT NULL AND c.data_now - o.first_seen_ts >= %(threshold)s, false)
                  AS expired,
              coalesce(o.first_seen_ts, c.data_now, 0) AS first_seen
         FROM (SELECT tbl, dsk, skey, missing, root, root_ts FROM t_res WHERE missing IS NOT NULL
               UNION ALL
               SELECT tbl, dsk, skey, missing, NULL, NULL FROM t_sres WHERE missing IS NOT NULL) w
         LEFT JOIN t_oldpend o ON o.data_source_key = w.dsk AND o.table_name = w.tbl AND o.source_key = w.skey
         LEFT JOIN t_clock c ON c.dsk = w.dsk""",
    """INSERT INTO stg_transform_pending (data_source_key, table_name, source_key, reason, first_seen_ts)
       SELECT DISTINCT ON (dsk, tbl, skey) dsk, tbl, skey, missing, first_seen FROM t_wait WHERE NOT expired
        ORDER BY dsk, tbl, skey""",
    # an interaction whose row waited too long is discarded as a whole: recompute it
    f"""INSERT INTO stg_transform_work (win, kind, data_source_key, key)
        SELECT DISTINCT {_win('root_ts')}, 1, dsk, root FROM t_wait WHERE expired AND root_ts IS NOT NULL
        ON CONFLICT DO NOTHING""",
    """INSERT INTO t_disc (dsk, tbl, skey, guid, code, reason, raw)
       SELECT w.dsk, w.tbl, w.skey,
              CASE w.tbl WHEN 'g_ir' THEN w.skey
                         WHEN 'g_call' THEN (SELECT x.irid FROM gidb_g_call x
                                              WHERE x.data_source_key = w.dsk AND x.callid = w.skey)
                         WHEN 'g_party' THEN (SELECT x.irid FROM gidb_g_party x
                                               WHERE x.data_source_key = w.dsk AND x.partyid = w.skey)
                         WHEN 'g_agent_state_history' THEN (SELECT x.lsid FROM gidb_g_agent_state_history x
                                                             WHERE x.data_source_key = w.dsk
                                                               AND x.id = w.skey::bigint) END,
              'missing_dependency',
              w.missing || ' after ' || %(threshold)s || ' s of data time (delayed-data-threshold)',
              CASE w.tbl
                   WHEN 'g_ir' THEN (SELECT to_jsonb(x) FROM gidb_g_ir x
                                      WHERE x.data_source_key = w.dsk AND x.irid = w.skey)
                   WHEN 'g_call' THEN (SELECT to_jsonb(x) FROM gidb_g_call x
                                        WHERE x.data_source_key = w.dsk AND x.callid = w.skey)
                   WHEN 'g_party' THEN (SELECT to_jsonb(x) FROM gidb_g_party x
                                         WHERE x.data_source_key = w.dsk AND x.partyid = w.skey)
                   WHEN 'g_party_history' THEN (SELECT to_jsonb(x) FROM gidb_g_party_history x
                                                 WHERE x.data_source_key = w.dsk AND x.id = w.skey::bigint)
                   WHEN 'g_agent_state_history' THEN (SELECT to_jsonb(x) FROM gidb_g_agent_state_history x
                                                       WHERE x.data_source_key = w.dsk AND x.id = w.skey::bigint)
              END
         FROM t_wait w WHERE w.expired""",
    "ANALYZE stg_transform_work",
]

# ---------------------------------------------------------------------------------------------
# Configuration chunk: resource_, group_, resource_group_fact_, resource_state_reason texts
# ---------------------------------------------------------------------------------------------

_RES_COLS = [
    "resource_key", "tenant_key", "resource_type", "resource_type_code", "resource_subtype", "resource_name",
    "agent_first_name", "agent_last_name", "employee_id", "switch_name", "data_source_key", "icon_dbid",
    "resource_cfg_type_id", "start_ts", "end_ts", "create_audit_key", "update_audit_key",
]
_DN_TYPES = """(VALUES (1, 'DN', 'DN', 'Extension'), (2, 'Queue', 'QUEUE', 'ACDQueue'),
                       (3, 'Queue', 'QUEUE', 'VirtualQueue'), (4, 'RoutingPoint', 'ROUTINGPOINT', 'RoutingPoint'),
                       (5, 'Queue', 'QUEUE', 'InteractionQueue'), (6, 'DN', 'DN', 'External'))
                AS m(dn_type, rtype, rcode, rsub)"""
_RGF_COLS = [
    "resource_group_fact_key", "resource_key", "group_key", "data_source_key", "start_ts", "end_ts",
    "start_date_time_key", "end_date_time_key", "active_flag", "create_audit_key", "update_audit_key",
]


def _latest_cfg(table: str, key: str) -> str:
    """Changed configuration rows, one per DBID (the lowest data_source_key wins when several IDBs
    carry the same object: ICON_CFG belongs on one data source)."""
    return (
        f"SELECT DISTINCT ON ({key}) y.* FROM gidb_{table} y "
        f"WHERE ({key}) IN (SELECT {key} FROM gidb_{table} x WHERE {_RANGE}) "
        f"ORDER BY {key}, y.data_source_key"
    )


CONFIG = [
    f"CREATE TEMP TABLE t_cag ON COMMIT DROP AS {_latest_cfg('gc_agent', 'id')}",
    _upsert(
        "resource_", _RES_COLS, "resource_key",
        f"""SELECT {AGENT_BASE} + a.id, a.tenant_id, 'Agent', 'AGENT', 'Agent',
                   coalesce(a.user_name, a.employee_id, 'agent ' || a.id), a.first_name, a.last_name, a.employee_id,
                   NULL, a.data_source_key, a.id, 1, a.created_ts, a.deleted_ts, %(audit)s, %(audit)s
              FROM t_cag a""",
    ),
    f"CREATE TEMP TABLE t_cep ON COMMIT DROP AS {_latest_cfg('gc_endpoint', 'id')}",
    _upsert(
        "resource_", _RES_COLS, "resource_key",
        f"""SELECT {ENDPOINT_BASE} + e.id, e.tenant_id, m.rtype, m.rcode, m.rsub, coalesce(e.dn, 'DN ' || e.id),
                   NULL, NULL, NULL, e.switch_name, e.data_source_key, e.id, 2, e.created_ts, e.deleted_ts,
                   %(audit)s, %(audit)s
              FROM t_cep e JOIN {_DN_TYPES} ON m.dn_type = e.dn_type""",
    ),
    """INSERT INTO t_disc SELECT e.data_source_key, 'gc_endpoint', e.id::text, NULL, 'unknown_dn_type',
              'unknown dn_type ' || coalesce(e.dn_type::text, 'NULL') || ' (valid: 1-6)', to_jsonb(e)
         FROM t_cep e WHERE e.dn_type IS NULL OR e.dn_type NOT BETWEEN 1 AND 6""",
    f"CREATE TEMP TABLE t_cgr ON COMMIT DROP AS {_latest_cfg('gc_group', 'id')}",
    _upsert(
        "group_",
        ["group_key", "tenant_key", "group_name", "group_type", "group_type_code", "data_source_key", "icon_dbid",
         "start_ts", "end_ts", "create_audit_key", "update_audit_key"],
        "group_key",
        f"""SELECT {GROUP_BASE} + g.id, g.tenant_id, coalesce(g.name, 'group ' || g.id),
                   CASE g.group_type WHEN 1 THEN 'Agent' ELSE 'Queue' END,
                   CASE g.group_type WHEN 1 THEN 'AGENT' ELSE 'QUEUE' END,
                   g.data_source_key, g.id, g.created_ts, g.deleted_ts, %(audit)s, %(audit)s
              FROM t_cgr g WHERE g.group_type IN (1, 2)""",
    ),
    """INSERT INTO t_disc SELECT g.data_source_key, 'gc_group', g.id::text, NULL, 'unknown_group_type',
              'unknown group_type ' || coalesce(g.group_type::text, 'NULL') || ' (valid: 1 agent, 2 queue)', to_jsonb(g)
         FROM t_cgr g WHERE g.group_type IS NULL OR g.group_type NOT IN (1, 2)""",
    f"""CREATE TEMP TABLE t_cm ON COMMIT DROP AS
        SELECT m.stg_id, {AGENT_BASE} + m.agent_id AS resource_key, m.group_id, m.data_source_key, m.created_ts,
               m.deleted_ts
          FROM ({_latest_cfg('gcx_group_agent', 'group_id, agent_id')}) m
        UNION ALL
        SELECT m.stg_id, {ENDPOINT_BASE} + m.endpoint_id, m.group_id, m.data_source_key, m.created_ts, m.deleted_ts
          FROM ({_latest_cfg('gcx_group_endpoint', 'group_id, endpoint_id')}) m""",
    _upsert(
        "resource_group_fact_", _RGF_COLS, "group_key, resource_key",
        f"""SELECT m.stg_id, m.resource_key, {GROUP_BASE} + m.group_id, m.data_source_key, m.created_ts, m.deleted_ts,
                   m.created_ts - mod(m.created_ts, 900), m.deleted_ts - mod(m.deleted_ts, 900),
                   (m.deleted_ts IS NULL)::int, %(audit)s, %(audit)s
              FROM t_cm m""",
        keep=("resource_group_fact_key",),
    ),
    _days("SELECT created_ts, false FROM t_cm UNION ALL SELECT deleted_ts, false FROM t_cm"),
    # reason texts reported by desktops
    f"""CREATE TEMP TABLE t_rc ON COMMIT DROP AS
        SELECT DISTINCT ON (x.reason_code) x.reason_code, x.reason_text
          FROM gidb_g_agent_state_rc x WHERE {_RANGE} AND x.reason_code IS NOT NULL
         ORDER BY x.reason_code, x.added_ts DESC, x.id DESC""",
    W("""INSERT INTO resource_state_reason (resource_state_reason_key, reason_code, reason_text, create_audit_key,
                                          update_audit_key)
       SELECT (SELECT coalesce(max(resource_state_reason_key), 0) FROM resource_state_reason)
              + row_number() OVER (ORDER BY r.reason_code), r.reason_code, r.reason_text, %(audit)s, %(audit)s
         FROM t_rc r WHERE NOT EXISTS (SELECT 1 FROM resource_state_reason s WHERE s.reason_code = r.reason_code)"""),
    W("""UPDATE resource_state_reason s SET reason_text = r.reason_text, update_audit_key = %(audit)s
         FROM t_rc r WHERE s.reason_code = r.reason_code AND s.reason_text IS DISTINCT FROM r.reason_text"""),
]

# ---------------------------------------------------------------------------------------------
# Interaction chunk: interaction_fact, interaction_resource_fact
# ---------------------------------------------------------------------------------------------

_BAD_TIME = f"NOT ({{c}} BETWEEN {TS_MIN} AND {TS_MAX})"
_END_CAUSES = ", ".join(f"'{c}'" for c in END_CAUSES)
_TYPE_SUB = "coalesce(nullif({s}, ''), initcap(lower({t})) || 'New')"
_SNAKE = "upper(regexp_replace({x}, '([a-z0-9])([A-Z])', '\\1_\\2', 'g'))"

_IF_COLS = [
    "interaction_id", "data_source_key", "tenant_key", "media_type_key", "interaction_type_key",
    "media_server_ixn_guid", "media_server_root_ixn_guid", "source_address", "target_address", "subject", "status",
    "start_ts", "end_ts", "start_date_time_key", "end_date_time_key", "active_flag", "create_audit_key",
    "update_audit_key",
]
_IRF_COLS = [
    "interaction_resource_id", "interaction_id", "data_source_key", "tenant_key", "media_type_key",
    "interaction_type_key", "resource_key", "last_queue_resource_key", "technical_descriptor_key", "party_guid",
    "media_server_ixn_guid", "start_ts", "end_ts", "start_date_time_key", "end_date_time_key", "ring_duration",
    "talk_duration", "hold_duration", "after_call_work_duration", "mediation_duration", "ring_count", "talk_count",
    "hold_count", "after_call_work_count", "consult_flag", "conference_flag", "transfer_flag", "active_flag",
    "create_audit_key", "update_audit_key",
]

INTERACTIONS = [
    """CREATE TEMP TABLE t_root ON COMMIT DROP AS
       SELECT w.data_source_key AS dsk, w.key AS root FROM stg_transform_work w WHERE w.win = %(win)s AND w.kind = 1""",
    "ANALYZE t_root",
    f"""CREATE TEMP TABLE t_ir ON COMMIT DROP AS
        SELECT ir.*, ir.irid = ir.root_irid AS is_root, upper(ir.media_type) AS media_code,
               upper(ir.interaction_type) AS type_code,
               {_SNAKE.format(x=_TYPE_SUB.format(s='ir.interaction_subtype', t='ir.interaction_type'))} AS subtype_code,
               CASE WHEN ir.created_ts IS NULL OR {_BAD_TIME.format(c='ir.created_ts')} THEN 'bad_time'
                    WHEN ir.terminated_ts < ir.created_ts THEN 'end_before_start'
                    WHEN coalesce(ir.media_type, '') = '' THEN 'missing_media_type'
                    WHEN ir.interaction_type IS NULL
                      OR lower(ir.interaction_type) NOT IN ('inbound', 'outbound', 'internal')
                         THEN 'unknown_interaction_type' END AS bad
          FROM t_root r
         CROSS JOIN LATERAL {_probe('gidb_g_ir', 'x.data_source_key = r.dsk AND x.root_irid = r.root')} ir""",
    "CREATE INDEX ON t_ir (data_source_key, irid)",
    "ANALYZE t_ir",
    # every party of those interactions, checked
    f"""CREATE TEMP TABLE t_p ON COMMIT DROP AS
        SELECT p.*, ir.root_irid, c.call_type,
               CASE WHEN p.party_type IS NULL OR p.party_type NOT BETWEEN 1 AND 4 THEN 'unknown_party_type'
                    WHEN p.role IS NULL OR p.role NOT BETWEEN 1 AND 5 THEN 'unknown_role'
                    WHEN p.end_cause IS NOT NULL AND p.end_cause NOT IN ({_END_CAUSES}) THEN 'unknown_end_cause'
                    WHEN p.created_ts IS NULL OR {_BAD_TIME.format(c='p.created_ts')} THEN 'bad_time'
                    WHEN p.terminated_ts < p.created_ts THEN 'end_before_start'
                    WHEN coalesce(p.media_type, '') = '' THEN 'missing_media_type'
                    WHEN p.party_type = 2 AND p.agent_id IS NULL THEN 'missing_agent'
                    WHEN p.party_type IN (1, 4) AND p.endpoint_id IS NULL THEN 'missing_endpoint' END AS bad,
               c.callid IS NOT NULL AS has_call,
               c.callid IS NULL AND EXISTS (SELECT 1 FROM stg_transform_pending w
                                             WHERE w.data_source_key = p.data_source_key AND w.table_name = 'g_party'
                                               AND w.source_key = p.partyid) AS waiting
          FROM t_ir ir
         CROSS JOIN LATERAL {_probe('gidb_g_party', 'x.data_source_key = ir.data_source_key AND x.irid = ir.irid')} p
          LEFT JOIN LATERAL {_probe('gidb_g_call', 'x.data_source_key = p.data_source_key AND x.callid = p.callid')} c
               ON true""",
    "ANALYZE t_p",
    # what to do with each interaction: ok, wait (a party's call is late), discard, or gone
    """CREATE TEMP TABLE t_rs ON COMMIT DROP AS
       SELECT r.dsk, r.root,
              CASE WHEN NOT coalesce(i.has_root, false) THEN 'gone'
                   WHEN i.bad_irs IS NOT NULL OR p.bad_parties IS NOT NULL THEN 'discard'
                   WHEN coalesce(p.waiting, false) THEN 'wait'
                   ELSE 'ok' END AS status,
              concat_ws('; ', i.bad_irs, p.bad_parties) AS why,
              i.root_bad
         FROM t_root r
         LEFT JOIN (SELECT data_source_key, root_irid, bool_or(is_root) AS has_root,
                           max(bad) FILTER (WHERE is_root) AS root_bad,
                           string_agg('interaction record ' || irid || ' ' || bad, '; ' ORDER BY irid)
                               FILTER (WHERE bad IS NOT NULL) AS bad_irs
                      FROM t_ir GROUP BY 1, 2) i ON i.data_source_key = r.dsk AND i.root_irid = r.root
         LEFT JOIN (SELECT data_source_key, root_irid,
                           string_agg('party ' || partyid || ' ' || coalesce(bad, 'missing_dependency'), '; '
                                      ORDER BY partyid)
                               FILTER (WHERE bad IS NOT NULL OR NOT (has_call OR waiting)) AS bad_parties,
                           bool_or(waiting) AS waiting
                      FROM t_p GROUP BY 1, 2) p ON p.data_source_key = r.dsk AND p.root_irid = r.root""",
    "CREATE INDEX ON t_rs (dsk, root)",
    "ANALYZE t_rs",
    """INSERT INTO t_disc
       SELECT ir.data_source_key, 'g_ir', ir.irid, ir.root_irid, ir.bad,
              CASE ir.bad WHEN 'bad_time' THEN 'created_ts ' || coalesce(ir.created_ts::text, 'NULL')
                                               || ' is not a time between 2000 and 2100'
                          WHEN 'end_before_start' THEN 'terminated_ts ' || ir.terminated_ts
                                               || ' is before created_ts ' || ir.created_ts
                          WHEN 'missing_media_type' THEN 'no media_type'
                          ELSE 'unknown interaction_type ' || coalesce(ir.interaction_type, 'NULL')
                               || ' (valid: Inbound, Outbound, Internal)' END
              || '; the interaction is not transformed',
              to_jsonb(ir) - 'is_root' - 'bad' - 'media_code' - 'type_code' - 'subtype_code'
         FROM t_ir ir WHERE ir.bad IS NOT NULL""",
    f"""INSERT INTO t_disc
        SELECT p.data_source_key, 'g_party', p.partyid, p.irid, p.bad,
               CASE p.bad WHEN 'unknown_party_type' THEN 'unknown party_type ' || coalesce(p.party_type::text, 'NULL')
                                                         || ' (valid: 1-4)'
                          WHEN 'unknown_role' THEN 'unknown role ' || coalesce(p.role::text, 'NULL') || ' (valid: 1-5)'
                          WHEN 'unknown_end_cause' THEN 'unknown end_cause ' || p.end_cause
                                                        || ' (valid: {", ".join(END_CAUSES)})'
                          WHEN 'bad_time' THEN 'created_ts ' || coalesce(p.created_ts::text, 'NULL')
                                               || ' is not a time between 2000 and 2100'
                          WHEN 'end_before_start' THEN 'terminated_ts ' || p.terminated_ts || ' is before created_ts '
                                                       || p.created_ts
                          WHEN 'missing_media_type' THEN 'no media_type'
                          WHEN 'missing_agent' THEN 'agent party without agent_id'
                          ELSE 'queue or routing-point party without endpoint_id' END
               || '; interaction ' || p.root_irid || ' is not transformed',
               to_jsonb(p) - 'root_irid' - 'call_type' - 'bad' - 'has_call' - 'waiting'
          FROM t_p p WHERE p.bad IS NOT NULL""",
    # the root record of an interaction discarded because of another row
    """INSERT INTO t_disc
       SELECT ir.data_source_key, 'g_ir', ir.irid, ir.irid, 'interaction_discarded',
              'the interaction is not transformed: ' || s.why,
              to_jsonb(ir) - 'is_root' - 'bad' - 'media_code' - 'type_code' - 'subtype_code'
         FROM t_rs s JOIN t_ir ir ON ir.data_source_key = s.dsk AND ir.irid = s.root
        WHERE s.status = 'discard' AND s.root_bad IS NULL""",
    # code dimensions first seen here
    _new_media_types("""SELECT ir.media_type AS m FROM t_ir ir JOIN t_rs s ON s.dsk = ir.data_source_key
                                                                    AND s.root = ir.root_irid
                          WHERE s.status = 'ok'
                         UNION SELECT p.media_type FROM t_p p JOIN t_rs s ON s.dsk = p.data_source_key
                                                                         AND s.root = p.root_irid
                          WHERE s.status = 'ok'"""),
    f"""INSERT INTO interaction_type (interaction_type_key, interaction_type, interaction_type_code,
                                      interaction_subtype, interaction_subtype_code, create_audit_key,
                                      update_audit_key)
        SELECT (SELECT coalesce(max(interaction_type_key), 0) FROM interaction_type)
               + row_number() OVER (ORDER BY tcode, scode), initcap(tcode), tcode, sub, scode, %(audit)s, %(audit)s
          FROM (SELECT upper(interaction_type) AS tcode, {_SNAKE.format(x='sub')} AS scode, min(sub) AS sub
                  -- (the few distinct type pairs first: the regular expression then runs per pair, not per row)
                  FROM (SELECT interaction_type,
                               {_TYPE_SUB.format(s='interaction_subtype', t='interaction_type')} AS sub
                          FROM (SELECT DISTINCT ir.interaction_type, ir.interaction_subtype
                                  FROM t_ir ir JOIN t_rs s ON s.dsk = ir.data_source_key AND s.root = ir.irid
                                 WHERE s.status = 'ok') d) a
                 GROUP BY 1, 2) n
         WHERE NOT EXISTS (SELECT 1 FROM interaction_type t
                            WHERE t.interaction_type_code = n.tcode AND t.interaction_subtype_code = n.scode)""",
    # interaction_fact rows
    f"""CREATE TEMP TABLE t_if ON COMMIT DROP AS
        SELECT coalesce(f.interaction_id, ir.stg_id) AS interaction_id, ir.data_source_key AS dsk, ir.tenant_id,
               mt.media_type_key, it.interaction_type_key, ir.irid, ir.root_irid, ir.source_address,
               ir.target_address, ir.subject, ir.created_ts AS start_ts,
               CASE WHEN ir.terminated_ts IS NOT NULL THEN ir.terminated_ts
                    WHEN c.data_now - ir.created_ts > %(keep)s THEN ir.created_ts + %(keep)s END AS end_ts,
               CASE WHEN ir.terminated_ts IS NULL AND c.data_now - ir.created_ts > %(keep)s THEN 1 ELSE 0 END
                   AS status
          FROM t_rs s
          JOIN t_ir ir ON ir.data_source_key = s.dsk AND ir.irid = s.root
          LEFT JOIN t_clock c ON c.dsk = ir.data_source_key
          -- (probed: the facts of the earlier windows of a bulk load are not analyzed yet)
          LEFT JOIN LATERAL {_probe('interaction_fact',
                                    'x.data_source_key = ir.data_source_key AND x.media_server_ixn_guid = ir.irid')} f
               ON true
          JOIN media_type mt ON mt.media_name_code = ir.media_code
          JOIN interaction_type it ON it.interaction_type_code = ir.type_code AND it.interaction_subtype_code = ir.subtype_code
         WHERE s.status = 'ok'""",
    "CREATE INDEX ON t_if (dsk, irid)",
    "ANALYZE t_if",
    # discarded interactions: remove their facts. (A root record no longer staged, 'gone', changes
    # nothing: staging may have been purged.)
    """CREATE TEMP TABLE t_gone ON COMMIT DROP AS
       SELECT f.interaction_id FROM t_rs s
         JOIN interaction_fact f ON f.data_source_key = s.dsk AND f.media_server_ixn_guid = s.root
        WHERE s.status = 'discard'""",
    # (every fact deleted leaves its span in ctl_fact_deleted: the aggregation re-aggregates it)
    W(_recorded("interaction_resource_fact",
                "DELETE FROM interaction_resource_fact f USING t_gone g WHERE f.interaction_id = g.interaction_id")),
    W(_recorded("interaction_fact",
                "DELETE FROM interaction_fact f USING t_gone g WHERE f.interaction_id = g.interaction_id")),
    _upsert(
        "interaction_fact", _IF_COLS, "data_source_key, media_server_ixn_guid, start_date_time_key",
        """SELECT interaction_id, dsk, tenant_id, media_type_key, interaction_type_key, irid, root_irid,
                  source_address, target_address, subject, status, start_ts, end_ts, start_ts - mod(start_ts, 900),
                  end_ts - mod(end_ts, 900), (end_ts IS NULL)::int, %(audit)s, %(audit)s
             FROM t_if""",
        keep=("interaction_id",), key_order=True,
    ),
    _days("SELECT start_ts, true FROM t_if UNION ALL SELECT end_ts, false FROM t_if"),
    # the agent / mediation parties of the interactions written
    # (the technical descriptor is worked out here, on an analyzed table, so later joins are planned
    # on real row counts)
    """CREATE TEMP TABLE t_q ON COMMIT DROP AS
       SELECT p.*, i.interaction_id, i.interaction_type_key, i.status AS if_status, i.tenant_id AS if_tenant,
              e.end_ts, i.end_ts AS if_end,
              CASE WHEN e.end_ts IS NULL THEN 'None'
                   WHEN p.end_cause IS NULL THEN 'Completed'
                   WHEN p.end_cause = 'completed' THEN CASE p.party_type WHEN 2 THEN 'Completed'
                                                                          WHEN 1 THEN 'Diverted'
                                                                          ELSE 'Routed' END
                   WHEN p.end_cause IN ('abandoned', 'abandoned_ringing') THEN 'CustomerAbandoned'
                   WHEN p.end_cause = 'transferred' THEN 'Transferred'
                   WHEN p.end_cause = 'conferenced' THEN 'Conferenced'
                   WHEN p.end_cause = 'redirected' THEN 'Redirected'
                   ELSE 'Cleared' END AS td_result,
              CASE WHEN e.end_ts IS NULL OR p.end_cause IS NULL THEN 'Unspecified'
                   WHEN p.end_cause = 'completed' AND p.party_type IN (1, 2) THEN 'AnsweredByAgent'
                   WHEN p.end_cause = 'abandoned' THEN 'AbandonedWhileQueued'
                   WHEN p.end_cause = 'abandoned_ringing' THEN 'AbandonedWhileRinging'
                   WHEN p.end_cause = 'redirected' THEN 'RouteOnNoAnswer'
                   ELSE 'Unspecified' END AS td_reason,
              CASE p.role WHEN 1 THEN 'Initiated' WHEN 2 THEN 'Received' WHEN 3 THEN 'ReceivedConsult'
                          WHEN 4 THEN 'InConference' ELSE 'ReceivedTransfer' END AS td_role
         FROM t_p p JOIN t_if i ON i.dsk = p.data_source_key AND i.irid = p.root_irid
        CROSS JOIN LATERAL (SELECT coalesce(p.terminated_ts, CASE WHEN i.status = 1 THEN i.end_ts END) AS end_ts) e
        WHERE p.party_type IN (1, 2, 4)""",
    "ANALYZE t_q",
    # party history: one row per event (duplicates dropped), measures of every party
    # (the parties are sorted and probed in that order, so the duplicate check below only sorts each
    # party's few rows: an incremental sort, not one of every history row of the window)
    f"""CREATE TEMP TABLE t_h ON COMMIT DROP AS
       SELECT h.*, p.p_end, p.p_art_end, row_number() OVER w AS dup_n, first_value(h.id) OVER w AS first_id
         FROM (SELECT p.data_source_key, p.partyid, p.terminated_ts AS p_end,
                      CASE WHEN i.status = 1 THEN i.end_ts END AS p_art_end
                 FROM t_p p JOIN t_if i ON i.dsk = p.data_source_key AND i.irid = p.root_irid
                ORDER BY 1, 2) p
        CROSS JOIN LATERAL {_probe('gidb_g_party_history',
                                   'x.data_source_key = p.data_source_key AND x.partyid = p.partyid')} h
       WINDOW w AS (PARTITION BY p.data_source_key, p.partyid, h.changetype, h.added_ts ORDER BY h.id)""",
    """INSERT INTO t_disc
       SELECT h.data_source_key, 'g_party_history', h.id::text, NULL,
              CASE WHEN h.changetype IS NULL OR h.changetype NOT BETWEEN 1 AND 6 THEN 'unknown_changetype'
                   ELSE 'duplicate_row' END,
              CASE WHEN h.changetype IS NULL OR h.changetype NOT BETWEEN 1 AND 6
                   THEN 'unknown changetype ' || coalesce(h.changetype::text, 'NULL') || ' (valid: 1-6)'
                   ELSE 'same party, changetype and added_ts as row ' || h.first_id END
              || '; left out of the measures',
              to_jsonb(h) - 'p_end' - 'p_art_end' - 'dup_n' - 'first_id'
         FROM t_h h WHERE h.changetype IS NULL OR h.changetype NOT BETWEEN 1 AND 6 OR h.dup_n > 1""",
    """CREATE TEMP TABLE t_m ON COMMIT DROP AS
       SELECT dsk, partyid,
              coalesce(sum(dur) FILTER (WHERE changetype = 2), 0) AS ring,
              count(*) FILTER (WHERE changetype = 2) AS ring_n,
              coalesce(sum(dur) FILTER (WHERE changetype IN (3, 5)), 0) AS talk,
              count(*) FILTER (WHERE changetype = 3) AS talk_n,
              coalesce(sum(dur) FILTER (WHERE changetype = 4), 0) AS hold,
              count(*) FILTER (WHERE changetype = 4) AS hold_n
         FROM (SELECT h.data_source_key AS dsk, h.partyid, h.changetype,
                      coalesce(lead(h.added_ts) OVER w, h.p_end, h.p_art_end) - h.added_ts AS dur
                 FROM t_h h WHERE h.changetype BETWEEN 1 AND 6 AND h.dup_n = 1
               WINDOW w AS (PARTITION BY h.data_source_key, h.partyid ORDER BY h.added_ts, h.id)) x
        GROUP BY 1, 2""",
    # after-call work: the AfterCallWork state facts this party's release started
    f"""CREATE TEMP TABLE t_acw ON COMMIT DROP AS
       SELECT s.data_source_key AS dsk, s.party_guid AS partyid, count(*) AS n,
              coalesce(sum(s.total_duration), 0) AS d, bool_or(s.end_ts IS NULL) AS open
         FROM t_q p
        CROSS JOIN LATERAL {_probe('sm_res_state_fact', 'x.data_source_key = p.data_source_key AND x.party_guid = p.partyid'
                                   ' AND x.party_guid IS NOT NULL AND x.resource_state_key = 4')} s
        WHERE p.party_type = 2
        GROUP BY 1, 2""",
    # resources referenced before their configuration was extracted: placeholders
    f"""INSERT INTO resource_ ({', '.join(_RES_COLS)})
        SELECT DISTINCT ON (k) k, NULL::int, rtype, upper(rtype), 'Unknown', 'unknown ' || lower(rtype) || ' ' || dbid,
               NULL, NULL, NULL, NULL, NULL::int, dbid, cfg, NULL::bigint, NULL::bigint, %(audit)s, %(audit)s
          FROM (SELECT CASE p.party_type WHEN 2 THEN {AGENT_BASE} + p.agent_id
                                         ELSE {ENDPOINT_BASE} + p.endpoint_id END AS k,
                       CASE p.party_type WHEN 2 THEN 'Agent' WHEN 1 THEN 'Queue' ELSE 'RoutingPoint' END AS rtype,
                       CASE p.party_type WHEN 2 THEN p.agent_id ELSE p.endpoint_id END AS dbid,
                       CASE p.party_type WHEN 2 THEN 1 ELSE 2 END AS cfg
                  FROM t_q p) x
         WHERE NOT EXISTS (SELECT 1 FROM resource_ r WHERE r.resource_key = x.k)
         ORDER BY k
        ON CONFLICT DO NOTHING""",
    # (t_m and t_acw have no index: they hold one row per party of the window, and hashing them costs
    # less than a probe per party of t_q, at any window size)
    f"""CREATE TEMP TABLE t_irf ON COMMIT DROP AS
        SELECT p.stg_id, p.interaction_id, p.data_source_key, p.if_tenant AS tenant_id, mt.media_type_key,
               p.interaction_type_key,
               CASE p.party_type WHEN 2 THEN {AGENT_BASE} + p.agent_id ELSE {ENDPOINT_BASE} + p.endpoint_id END
                   AS resource_key,
               CASE WHEN p.party_type = 2 AND pp.party_type = 1 AND pp.endpoint_id IS NOT NULL
                    THEN {ENDPOINT_BASE} + pp.endpoint_id END AS last_queue_resource_key,
               td.technical_descriptor_key, p.partyid, p.irid, p.created_ts AS start_ts, p.end_ts,
               CASE WHEN p.party_type = 2 THEN coalesce(m.ring, 0) ELSE 0 END AS ring,
               CASE WHEN p.party_type = 2 THEN coalesce(m.talk, 0) ELSE 0 END AS talk,
               CASE WHEN p.party_type = 2 THEN coalesce(m.hold, 0) ELSE 0 END AS hold,
               coalesce(a.d, 0) AS acw,
               CASE WHEN p.party_type IN (1, 4) THEN coalesce(p.end_ts - p.created_ts, 0) ELSE 0 END AS mediation,
               CASE WHEN p.party_type = 2 THEN coalesce(m.ring_n, 0) ELSE 0 END AS ring_n,
               CASE WHEN p.party_type = 2 THEN coalesce(m.talk_n, 0) ELSE 0 END AS talk_n,
               CASE WHEN p.party_type = 2 THEN coalesce(m.hold_n, 0) ELSE 0 END AS hold_n,
               coalesce(a.n, 0) AS acw_n,
               (p.role = 3 OR p.call_type = 4)::int AS consult_flag,
               (p.role = 4 OR coalesce(p.end_cause = 'conferenced', false))::int AS conference_flag,
               (p.role = 5)::int AS transfer_flag,
               CASE WHEN p.end_ts IS NULL THEN 1 WHEN coalesce(a.open, false) AND p.if_status = 0 THEN 1 ELSE 0 END
                   AS active_flag
          FROM t_q p
          JOIN technical_descriptor td ON td.technical_result = p.td_result AND td.result_reason = p.td_reason
                                      AND td.resource_role = p.td_role
          JOIN media_type mt ON mt.media_name_code = upper(p.media_type)
          LEFT JOIN t_m m ON m.dsk = p.data_source_key AND m.partyid = p.partyid
          LEFT JOIN t_acw a ON a.dsk = p.data_source_key AND a.partyid = p.partyid
          LEFT JOIN gidb_g_party pp ON pp.data_source_key = p.data_source_key AND pp.partyid = p.parent_partyid""",
    "ANALYZE t_irf",
    # staged parties that no longer make an IRF (e.g. moved to another interaction): remove their
    # IRFs; an IRF whose party is no longer staged (purged) is kept as it is
    W(_recorded("interaction_resource_fact", """DELETE FROM interaction_resource_fact f USING t_p p, t_if i
        WHERE i.dsk = p.data_source_key AND i.irid = p.root_irid
          AND f.data_source_key = p.data_source_key AND f.party_guid = p.partyid
          AND NOT EXISTS (SELECT 1 FROM t_irf x WHERE x.data_source_key = f.data_source_key
                                                  AND x.partyid = f.party_guid)""", interaction_start="i.start_ts")),
    _upsert(
        "interaction_resource_fact", _IRF_COLS, "data_source_key, party_guid, start_date_time_key",
        """SELECT stg_id, interaction_id, data_source_key, tenant_id, media_type_key, interaction_type_key,
                  resource_key, last_queue_resource_key, technical_descriptor_key, partyid, irid, start_ts, end_ts,
                  start_ts - mod(start_ts, 900), end_ts - mod(end_ts, 900), ring, talk, hold, acw, mediation,
                  ring_n, talk_n, hold_n, acw_n, consult_flag, conference_flag, transfer_flag, active_flag,
                  %(audit)s, %(audit)s
             FROM t_irf""",
        keep=("interaction_resource_id",), key_order=True,
    ),
    _days("SELECT start_ts, true FROM t_irf UNION ALL SELECT end_ts, false FROM t_irf"),
]

# ---------------------------------------------------------------------------------------------
# Session chunk: sm_res_session_fact, sm_res_state_fact, and the IRFs' after-call work
# ---------------------------------------------------------------------------------------------

_SESSION_COLS = [
    "sm_res_session_fact_key", "data_source_key", "tenant_key", "resource_key", "media_type_key",
    "login_session_guid", "start_ts", "end_ts", "start_date_time_key", "end_date_time_key", "total_duration",
    "active_flag", "create_audit_key", "update_audit_key",
]
_STATE_COLS = [
    "sm_res_state_fact_key", "data_source_key", "tenant_key", "resource_key", "media_type_key",
    "resource_state_key", "resource_state_reason_key", "login_session_guid", "source_id", "party_guid", "start_ts",
    "end_ts", "start_date_time_key", "end_date_time_key", "total_duration", "active_flag", "create_audit_key",
    "update_audit_key",
]
_CLOSE = """CASE WHEN {raw} IS NOT NULL THEN least(greatest({raw}, {start}), {start} + %(max_state)s)
                 WHEN c.data_now - {start} > %(max_state)s THEN {start} + %(max_state)s END"""

SESSIONS = [
    f"""CREATE TEMP TABLE t_s ON COMMIT DROP AS
        SELECT s.*,
               CASE WHEN s.agent_id IS NULL THEN 'missing_agent'
                    WHEN s.login_ts IS NULL OR {_BAD_TIME.format(c='s.login_ts')} THEN 'bad_time'
                    WHEN s.logout_ts < s.login_ts THEN 'end_before_start'
                    WHEN coalesce(s.media_type, '') = '' THEN 'missing_media_type' END AS bad
          FROM stg_transform_work w
          JOIN gidb_g_login_session s ON s.data_source_key = w.data_source_key AND s.lsid = w.key
         WHERE w.win = %(win)s AND w.kind = 2""",
    # where to start: the last state before ``since`` (its end may change); none = the whole session
    "ALTER TABLE t_s ADD COLUMN from_ts bigint",
    """UPDATE t_s s SET from_ts = coalesce(
           (SELECT max(a.added_ts) FROM gidb_g_agent_state_history a
             WHERE a.data_source_key = s.data_source_key AND a.lsid = s.lsid AND a.added_ts < w.since
               AND a.state BETWEEN 1 AND 5), 0)
         FROM stg_transform_work w
        WHERE w.win = %(win)s AND w.kind = 2 AND w.data_source_key = s.data_source_key AND w.key = s.lsid""",
    "ANALYZE t_s",
    """INSERT INTO t_disc
       SELECT s.data_source_key, 'g_login_session', s.lsid, s.lsid, s.bad,
              CASE s.bad WHEN 'missing_agent' THEN 'login session without agent_id'
                         WHEN 'bad_time' THEN 'login_ts ' || coalesce(s.login_ts::text, 'NULL')
                                              || ' is not a time between 2000 and 2100'
                         WHEN 'end_before_start' THEN 'logout_ts ' || s.logout_ts || ' is before login_ts ' || s.login_ts
                         ELSE 'no media_type' END || '; its states are not transformed',
              to_jsonb(s) - 'bad'
         FROM t_s s WHERE s.bad IS NOT NULL""",
    """CREATE TEMP TABLE t_a ON COMMIT DROP AS
       SELECT a.*, s.logout_ts, s.login_ts, s.stg_id AS session_stg_id,
              (a.state IS NULL OR a.state NOT BETWEEN 1 AND 5) AS bad
         FROM t_s s JOIN gidb_g_agent_state_history a ON a.data_source_key = s.data_source_key AND a.lsid = s.lsid
                                                     AND a.added_ts >= s.from_ts
        WHERE s.bad IS NULL""",
    "ANALYZE t_a",
    # sessions whose state rows were partly purged from staging: their LoggedOnOnly row is left alone
    f"""CREATE TEMP TABLE t_sp ON COMMIT DROP AS
       SELECT DISTINCT f.data_source_key, f.login_session_guid AS lsid
         FROM t_s s
        CROSS JOIN LATERAL {_probe('sm_res_state_fact', 'x.data_source_key = s.data_source_key'
                                   ' AND x.login_session_guid = s.lsid AND x.source_id IS NOT NULL')} f
        WHERE s.from_ts = 0
          AND NOT EXISTS (SELECT 1 FROM t_a a WHERE a.data_source_key = f.data_source_key AND a.id = f.source_id)""",
    """INSERT INTO t_disc
       SELECT a.data_source_key, 'g_agent_state_history', a.id::text, a.lsid, 'unknown_state',
              'unknown agent state ' || coalesce(a.state::text, 'NULL') || ' (valid: 1-5)',
              to_jsonb(a) - 'logout_ts' - 'login_ts' - 'session_stg_id' - 'bad'
         FROM t_a a WHERE a.bad""",
    _new_media_types("SELECT media_type AS m FROM t_s WHERE bad IS NULL"),
    """INSERT INTO resource_state_reason (resource_state_reason_key, reason_code, create_audit_key, update_audit_key)
       SELECT (SELECT coalesce(max(resource_state_reason_key), 0) FROM resource_state_reason)
              + row_number() OVER (ORDER BY code), code, %(audit)s, %(audit)s
         FROM (SELECT DISTINCT reason_code AS code FROM t_a
                WHERE NOT bad AND state = 2 AND reason_code IS NOT NULL) n
        WHERE NOT EXISTS (SELECT 1 FROM resource_state_reason r WHERE r.reason_code = n.code)""",
    f"""INSERT INTO resource_ ({', '.join(_RES_COLS)})
        SELECT DISTINCT {AGENT_BASE} + s.agent_id, NULL::int, 'Agent', 'AGENT', 'Unknown', 'unknown agent ' || s.agent_id,
               NULL, NULL, NULL, NULL, NULL::int, s.agent_id, 1, NULL::bigint, NULL::bigint, %(audit)s, %(audit)s
          FROM t_s s WHERE s.bad IS NULL
           AND NOT EXISTS (SELECT 1 FROM resource_ r WHERE r.resource_key = {AGENT_BASE} + s.agent_id)
        ON CONFLICT DO NOTHING""",
    f"""CREATE TEMP TABLE t_sf ON COMMIT DROP AS
        SELECT x.stg_id AS k, x.data_source_key, x.agent_id, x.media_type, x.state, x.reason_code, x.lsid,
               x.id AS source_id, CASE WHEN x.state = 4 THEN x.partyid END AS party_guid, x.added_ts AS start_ts,
               {_CLOSE.format(raw='x.raw_end', start='x.added_ts')} AS end_ts
          FROM (SELECT a.*, coalesce(lead(a.added_ts) OVER w, a.logout_ts) AS raw_end
                  FROM t_a a WHERE NOT a.bad
                WINDOW w AS (PARTITION BY a.data_source_key, a.lsid ORDER BY a.added_ts, a.id)) x
          LEFT JOIN t_clock c ON c.dsk = x.data_source_key
         WHERE x.state BETWEEN 1 AND 4
        UNION ALL
        -- logged in, no state yet: LoggedOnOnly until the first state change (or logout)
        SELECT s.stg_id, s.data_source_key, s.agent_id, s.media_type, 5, NULL, s.lsid, NULL, NULL, s.login_ts,
               {_CLOSE.format(raw='f.first_ts', start='s.login_ts')}
          FROM t_s s
          LEFT JOIN (SELECT a.data_source_key, a.lsid, min(a.added_ts) AS first_state FROM t_a a WHERE NOT a.bad
                      GROUP BY 1, 2) fs ON fs.data_source_key = s.data_source_key AND fs.lsid = s.lsid
          CROSS JOIN LATERAL (SELECT coalesce(fs.first_state, s.logout_ts) AS first_ts) f
          LEFT JOIN t_clock c ON c.dsk = s.data_source_key
         WHERE s.bad IS NULL AND s.from_ts = 0 AND (f.first_ts IS NULL OR f.first_ts > s.login_ts)
           AND NOT EXISTS (SELECT 1 FROM t_sp WHERE t_sp.data_source_key = s.data_source_key AND t_sp.lsid = s.lsid)""",
    "ANALYZE t_sf",
    # state facts of these sessions that no longer exist (discarded rows or sessions)
    "CREATE TEMP TABLE t_sfgone (data_source_key int, party_guid text) ON COMMIT DROP",
    # (the existing state facts of these sessions from ``from_ts`` are listed first, through the
    # session index: in one DELETE the planner anti-joined the whole fact table with t_sf before
    # joining t_s, a full scan of sm_res_state_fact per chunk that grew with the mart)
    f"""CREATE TEMP TABLE t_sfold ON COMMIT DROP AS
       SELECT f.sm_res_state_fact_key AS k, f.start_date_time_key AS sdtk, f.data_source_key, f.source_id,
              s.lsid, s.from_ts, s.bad
         FROM t_s s
        -- (start_ts >= ...: = "f.start_ts >= s.from_ts OR s.bad IS NOT NULL", written so the index
        -- bounds start_ts too)
        CROSS JOIN LATERAL {_probe('sm_res_state_fact',
                                   'x.data_source_key = s.data_source_key AND x.login_session_guid = s.lsid'
                                   ' AND x.start_ts >= CASE WHEN s.bad IS NOT NULL'
                                   ' THEN (-9223372036854775807)::bigint ELSE s.from_ts END')} f""",
    "ANALYZE t_sfold",
    W("""WITH d AS (
           DELETE FROM sm_res_state_fact f USING t_sfold o
            WHERE f.sm_res_state_fact_key = o.k AND f.start_date_time_key = o.sdtk
              AND NOT EXISTS (SELECT 1 FROM t_sf x WHERE x.k = o.k)
              AND (o.bad IS NOT NULL
                   OR (o.source_id IS NULL AND o.from_ts = 0 AND NOT EXISTS (SELECT 1 FROM t_sp WHERE t_sp.data_source_key = o.data_source_key
                                                                               AND t_sp.lsid = o.lsid))
                   OR EXISTS (SELECT 1 FROM t_a a WHERE a.data_source_key = o.data_source_key AND a.id = o.source_id))
           RETURNING f.data_source_key, f.party_guid, f.start_ts, f.end_ts),
       recorded AS (INSERT INTO ctl_fact_deleted (audit_key, table_name, start_ts, end_ts)
                    SELECT %(audit)s, 'sm_res_state_fact', start_ts, coalesce(end_ts, start_ts) FROM d)
       INSERT INTO t_sfgone SELECT data_source_key, party_guid FROM d WHERE party_guid IS NOT NULL"""),
    "ANALYZE t_sfgone",
    W(_recorded("sm_res_session_fact", """DELETE FROM sm_res_session_fact f USING t_s s
        WHERE f.data_source_key = s.data_source_key AND f.login_session_guid = s.lsid AND s.bad IS NOT NULL""")),
    _upsert(
        "sm_res_state_fact", _STATE_COLS, "sm_res_state_fact_key, start_date_time_key",
        f"""SELECT x.k, x.data_source_key, r.tenant_key, {AGENT_BASE} + x.agent_id, mt.media_type_key, x.state,
                   rr.resource_state_reason_key, x.lsid, x.source_id, x.party_guid, x.start_ts, x.end_ts,
                   x.start_ts - mod(x.start_ts, 900), x.end_ts - mod(x.end_ts, 900), x.end_ts - x.start_ts,
                   (x.end_ts IS NULL)::int, %(audit)s, %(audit)s
              FROM t_sf x
              JOIN media_type mt ON mt.media_name_code = upper(x.media_type)
              LEFT JOIN resource_ r ON r.resource_key = {AGENT_BASE} + x.agent_id
              LEFT JOIN resource_state_reason rr ON x.state = 2 AND rr.reason_code = x.reason_code""",
        key_order=True,
    ),
    _upsert(
        "sm_res_session_fact", _SESSION_COLS, "data_source_key, login_session_guid, start_date_time_key",
        f"""SELECT s.stg_id, s.data_source_key, r.tenant_key, {AGENT_BASE} + s.agent_id, mt.media_type_key, s.lsid,
                   s.login_ts, s.logout_ts, s.login_ts - mod(s.login_ts, 900), s.logout_ts - mod(s.logout_ts, 900),
                   s.logout_ts - s.login_ts, (s.logout_ts IS NULL)::int, %(audit)s, %(audit)s
              FROM t_s s
              JOIN media_type mt ON mt.media_name_code = upper(s.media_type)
              LEFT JOIN resource_ r ON r.resource_key = {AGENT_BASE} + s.agent_id
             WHERE s.bad IS NULL""",
        keep=("sm_res_session_fact_key",), key_order=True,
    ),
    _days("""SELECT start_ts, true FROM t_sf UNION ALL SELECT end_ts, false FROM t_sf
             UNION ALL SELECT login_ts, true FROM t_s WHERE bad IS NULL
             UNION ALL SELECT logout_ts, false FROM t_s WHERE bad IS NULL"""),
    # the after-call work of IRFs whose AfterCallWork states are in these sessions
    W("""UPDATE interaction_resource_fact f
          SET after_call_work_duration = a.d, after_call_work_count = a.n,
              active_flag = CASE WHEN f.end_ts IS NULL THEN 1 WHEN a.open AND i.status = 0 THEN 1 ELSE 0 END,
              update_audit_key = %(audit)s
         FROM (SELECT p.data_source_key AS dsk, p.party_guid, count(s.*) AS n,
                      coalesce(sum(s.total_duration), 0) AS d, coalesce(bool_or(s.end_ts IS NULL), false) AS open
                 FROM (SELECT data_source_key, party_guid FROM t_sf WHERE party_guid IS NOT NULL
                       UNION SELECT data_source_key, party_guid FROM t_sfgone) p
                 LEFT JOIN sm_res_state_fact s ON s.data_source_key = p.data_source_key AND s.party_guid IS NOT NULL
                                              AND s.party_guid = p.party_guid AND s.resource_state_key = 4
                GROUP BY 1, 2) a,
              interaction_fact i
        WHERE f.data_source_key = a.dsk AND f.party_guid = a.party_guid AND i.interaction_id = f.interaction_id
          AND (f.after_call_work_duration, f.after_call_work_count, f.active_flag)
              IS DISTINCT FROM (a.d, a.n, CASE WHEN f.end_ts IS NULL THEN 1 WHEN a.open AND i.status = 0 THEN 1
                                               ELSE 0 END)"""),
]


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


@dataclass
class _State:
    hwm_value: int
    hwm_value2: int | None
    pending_bound: int | None
    batch: dict[str, Any] | None


@dataclass
class _Run:
    ctx: JobContext
    conn: psycopg.Connection
    rows: int = 0
    chunks: int = 0
    discards: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def params(self, batch: dict[str, Any], **extra: Any) -> dict[str, Any]:
        cfg = self.ctx.config
        chunk = int(cfg.gim_transformation.chunk_size) or NO_CHUNKING
        return {
            "lo": batch["lo"],
            "hi": batch["hi"],
            "clock": json.dumps(batch["clock"]),
            "chunk": chunk,
            "keep": int(cfg.gim_etl.days_to_keep_active_facts) * 86400,
            "max_state": int(cfg.gim_transformation.max_state_duration),
            "threshold": int(cfg.gim_etl.delayed_data_threshold),
            "job": str(self.ctx.job_id),
            "etl_ts": int(time.time()),
            "ts_min": TS_MIN,
            "ts_max": TS_MAX,
            **extra,
        }

    def state(self) -> _State:
        row = self.conn.execute(
            "SELECT hwm_value, hwm_value2, pending_bound, batch FROM ctl_transform_hwm WHERE hwm_name = %s",
            (HWM_NAME,),
        ).fetchone()
        if row is None:
            self.conn.execute("INSERT INTO ctl_transform_hwm (hwm_name) VALUES (%s) ON CONFLICT DO NOTHING",
                              (HWM_NAME,))
            return _State(0, None, None, None)
        return _State(int(row[0]), row[1], row[2], row[3])

    def take_bound(self) -> tuple[int, dict[str, int]]:
        """A staged-change bound below which everything is committed, and the data clock with it."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (STAGE_LOCK,))
            last, called = self.conn.execute("SELECT last_value, is_called FROM gidb_stage_seq").fetchone()
            clock = self.conn.execute(
                """SELECT data_source_key, max(max_ts) FROM ctl_extract_hwm
                    WHERE starts_with(table_name, 'g_') AND max_ts IS NOT NULL GROUP BY 1"""
            ).fetchall()
        return (int(last) if called else 0), {str(k): int(v) for k, v in clock}

    def _transaction(self, batch: dict[str, Any], win: int, chunk_name: str, statements: list[str],
                     hwm_update: tuple[str, dict[str, Any]]) -> int:
        started = self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        with self.conn.transaction():
            audit = self.conn.execute(
                "INSERT INTO ctl_audit_log (job_id) VALUES (%s) RETURNING audit_key", (str(self.ctx.job_id),)
            ).fetchone()[0]
            p = self.params(batch, win=win, audit=audit)
            for stmt in SETUP:
                self.conn.execute(stmt, p)
            rows = 0
            for stmt in statements:
                t = time.perf_counter()
                cur = self.conn.execute(stmt, p)
                label = " ".join(stmt.split()[:6])
                self.timings[label] = self.timings.get(label, 0.0) + time.perf_counter() - t
                if isinstance(stmt, W) and cur.rowcount > 0:
                    rows += cur.rowcount
            disc = self.conn.execute("SELECT count(*) FROM t_disc").fetchone()[0]
            for stmt in FINISH:
                self.conn.execute(stmt, p)
            max_chunk = (win + 1) * p["chunk"] if win >= 0 and p["chunk"] != NO_CHUNKING else None
            self.conn.execute(AUDIT_CLOSE, {**p, "rows": rows, "max_chunk_ts": max_chunk})
            self.conn.execute(
                """INSERT INTO ctl_transform_history (hwm_name, hwm_value, hwm_value2, transform_start_time,
                          transform_end_time, row_count, audit_key, job_id, job_version, chunk)
                   VALUES (%s, %s, %s, %s, clock_timestamp(), %s, %s, %s, %s, %s)""",
                (HWM_NAME, batch["hi"], win, started, rows, audit, str(self.ctx.job_id), __version__, chunk_name),
            )
            sql_text, args = hwm_update
            self.conn.execute(sql_text, {**args, "name": HWM_NAME})
        self.rows += rows
        self.discards += disc
        self.chunks += 1
        return rows

    def prepare(self, st: _State) -> dict[str, Any] | None:
        bound, clock = self.take_bound()
        if bound <= st.hwm_value:
            return None
        batch = {"lo": st.hwm_value, "hi": bound, "clock": clock}
        self._transaction(
            batch, WIN_PREPARE, "prepare", PREPARE,
            ("""UPDATE ctl_transform_hwm SET pending_bound = %(hi)s, hwm_value2 = %(w)s, batch = %(batch)s,
                       updated = now() WHERE hwm_name = %(name)s""",
             {"hi": bound, "w": WIN_PREPARE, "batch": Jsonb(batch)}),
        )
        return batch

    def run_batch(self, batch: dict[str, Any], done: int) -> None:
        kinds = {
            int(w): set(k) for (w, k) in self.conn.execute(
                "SELECT win, array_agg(DISTINCT kind) FROM stg_transform_work WHERE win > %s GROUP BY win ORDER BY win",
                (done,),
            ).fetchall()
        }
        windows = sorted(kinds)
        finish = (
            """UPDATE ctl_transform_hwm SET hwm_value = %(hi)s, hwm_value2 = NULL, pending_bound = NULL,
                      batch = NULL, updated = now() WHERE hwm_name = %(name)s;""",
            {"hi": batch["hi"]},
        )
        if not windows:
            with self.conn.transaction():
                self.conn.execute("DELETE FROM stg_transform_work")
                self.conn.execute(finish[0], {**finish[1], "name": HWM_NAME})
            return
        for i, win in enumerate(windows):
            last = i == len(windows) - 1
            # a window's interaction (kind 1) or session (kind 2) statements only when it has such units:
            # over an empty t_root or t_s they write nothing, and a cycle on a busy mart has many
            # windows holding a few sessions only (~35 statements each saved)
            statements = CONFIG if win == WIN_CONFIG else (
                (INTERACTIONS if 1 in kinds[win] else []) + (SESSIONS if 2 in kinds[win] else []))
            upd = finish if last else (
                "UPDATE ctl_transform_hwm SET hwm_value2 = %(w)s, updated = now() WHERE hwm_name = %(name)s",
                {"w": win},
            )
            if last:
                statements = [*statements, "DELETE FROM stg_transform_work"]
            self._transaction(batch, win, "configuration" if win == WIN_CONFIG else "data", statements, upd)
            self.ctx.check_stop()
            self.ctx.pause()
        self.batches.append({"lo": batch["lo"], "hi": batch["hi"], "windows": len(windows)})


ANALYZED_TABLES = ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact",
                   "resource_", "resource_group_fact_", "stg_transform_pending")


def analyze_changed(conn: psycopg.Connection) -> list[str]:
    """ANALYZE the tables the transform changed by 10 % or more since their last ANALYZE: the next
    cycle (and aggregation) query them before autovacuum would, and plans made on stale
    statistics of a freshly loaded table can be far off."""
    # a partitioned fact table stands for its partitions (PostgreSQL counts changes per partition;
    # the parents' whole-table statistics are Job_UpdateStats' work, see gim_jobs.db.stats)
    rows = conn.execute(
        """SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
            WHERE s.schemaname = 'public' AND c.relkind = 'r'
              AND s.relid IN (SELECT l.relid FROM unnest(%s::text[]) n(name)
                                     CROSS JOIN LATERAL pg_partition_tree(to_regclass(n.name)) l WHERE l.isleaf)
              AND s.n_mod_since_analyze > 1000 + 0.1 * greatest(c.reltuples, 0)""",
        (list(ANALYZED_TABLES),),
    ).fetchall()
    for (name,) in rows:
        conn.execute(f'ANALYZE "{name}"')
    return [r[0] for r in rows]


def run(ctx: JobContext) -> JobResult:
    """Transform what was staged since the last run; see the module docstring."""
    with connect(ctx.infomart_dsn, autocommit=True, app="gim-transform") as conn:
        # A commit lost in a server crash loses its chunk and its HWM advance together: rerun redoes it.
        conn.execute("SET synchronous_commit = off")
        # Incremental chunks are index probes into recently written (cached) rows: cost them as on SSD,
        # or the planner prefers scanning whole staging / fact tables, which grow with the mart.
        conn.execute("SET random_page_cost = 1.1")
        # A chunk runs ~60 short statements: JIT compiling them costs more than it saves (PostgreSQL
        # compiles any plan over jit_above_cost, and a bulk window's plans all are).
        conn.execute("SET jit = off")
        # The window-function sorts and hashes of a bulk window (tens of thousands of parties and
        # their history) spill to disk at the 4 MB default.
        conn.execute("SET work_mem = '64MB'")
        # The per-chunk temporary tables of a bulk window hold tens of MB: with the 8 MB default they
        # are written out and read back (must be set before the session's first temporary table).
        conn.execute("SET temp_buffers = '256MB'")
        r = _Run(ctx, conn)
        st = r.state()
        if st.pending_bound is not None and st.batch:
            ctx.log.info("resuming the batch up to stg_seq %s after window %s", st.pending_bound, st.hwm_value2)
            r.run_batch(st.batch, int(st.hwm_value2 if st.hwm_value2 is not None else WIN_PREPARE))
            st = r.state()
        batch = r.prepare(st)
        if batch is not None:
            r.run_batch(batch, WIN_PREPARE)
        from gim_jobs.jobs import transform_ocs  # imports this module: not at the top

        transform_ocs.run(r)  # outbound (ICON_OCS) facts, own high-water mark
        if r.chunks:
            analyze_changed(conn)
    if not r.chunks:
        return JobResult(rows=0, message="nothing staged since the last run", details={"batches": []})
    return JobResult(
        rows=r.rows,
        message=f"{r.rows} fact/dimension rows written in {r.chunks} transactions; {r.discards} rows discarded",
        details={"batches": r.batches, "transactions": r.chunks, "discards": r.discards,
                 "slowest_statements": {k: round(v, 3) for k, v in sorted(r.timings.items(), key=lambda kv: -kv[1])[:int(ctx.params.get("timings", 8))]}},
    )
