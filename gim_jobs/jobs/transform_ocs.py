"""Job_TransformGIM, outbound part (ICON_OCS): ``campaign``, ``calling_list`` and ``contact_attempt_fact``.

Run by ``gim_jobs.jobs.transform.run`` after the interaction and session facts, on the same
connection, with its own high-water mark (``ctl_transform_hwm`` row ``ocs_stage_seq``, a ``stg_seq``
value like ``gidb_stage_seq``), so outbound and inbound data never hold each other up.

What changed, chunks
    The upper bound ``B`` is read as the main transform reads it (the extraction's advisory lock held
    for an instant, so every staged row with ``stg_seq <= B`` is committed). The staged OCS rows
    with ``stg_seq`` in ``(hwm, B]`` are cut into chunks of whole ``stg_seq`` values (one extraction
    chunk each) of about ``ocs_chunk_rows`` rows (job param, default 100 000); each chunk is one
    transaction with its ``ctl_audit_log`` row, its ``ctl_transform_history`` row (hwm_name
    ``ocs_stage_seq``, chunk 'outbound') and the advance of the mark to its last ``stg_seq``. A killed
    job resumes at the next chunk; an attempt's fact is recomputed from its one staged row, so a
    rerun produces the same rows (keys come from ``stg_id``).

Facts
    One ``contact_attempt_fact`` row per attempt, upserted ``ON CONFLICT (data_source_key,
    attempt_guid, start_date_time_key)`` and only updated when a value changed: written while the
    attempt is dialing (``call_result_code`` 'UNKNOWN', ``end_ts`` NULL, ``active_flag`` 1) and
    updated (``update_audit_key``) when it ends. ``resource_key`` = the agent's resource_ key, NULL
    without an agent; an agent, campaign or calling list not configured yet gets a placeholder
    dimension row ('unknown ... <id>') that the configuration fills in later (same key).
    Campaigns and calling lists: one row per DBID (the lowest data_source_key wins).

Discards (``stg_transform_discards``, table ``g_ocs_attempt``): no campaign_id
(``missing_campaign``), dialing or end time outside 2000-2100 (``bad_time``), ended before it
started (``end_before_start``), no media type (``missing_media_type``), ended without a known call
result (``unknown_call_result``). A staged row that is now invalid removes its fact.

Not done: attempts left active in the IDB are never closed artificially (there is no
``days-to-keep-active-facts`` handling for them yet).
"""

from __future__ import annotations

import time
from typing import Any

from gim_jobs import __version__
from gim_jobs.jobs.extract import STAGE_LOCK
from gim_jobs.jobs.transform import AGENT_BASE, TS_MAX, TS_MIN, W, _new_media_types, _save_discards, _upsert

HWM_NAME = "ocs_stage_seq"
CHUNK_ROWS = 100_000
ANALYZE_ROWS = 10_000
RESULTS = ("ANSWER", "NO_ANSWER", "BUSY", "ANSWERING_MACHINE", "DROPPED", "SIT_DETECTED")
ACTIVE_RESULT = "UNKNOWN"
STAGED = ("g_ocs_attempt", "gc_campaign", "gc_calling_list")

_RANGE = "x.stg_seq > %(lo)s AND x.stg_seq <= %(hi)s"
_BAD_TIME = f"NOT ({{c}} BETWEEN {TS_MIN} AND {TS_MAX})"
_RESULTS = ", ".join(f"'{r}'" for r in RESULTS)


def _latest_cfg(table: str) -> str:
    """Changed configuration rows, one per DBID (the lowest data_source_key wins)."""
    return (f"SELECT DISTINCT ON (y.id) y.* FROM gidb_{table} y "
            f"WHERE y.id IN (SELECT x.id FROM gidb_{table} x WHERE {_RANGE}) ORDER BY y.id, y.data_source_key")


_CAMPAIGN_COLS = ["campaign_key", "tenant_key", "campaign_name", "campaign_description", "data_source_key",
                  "icon_dbid", "start_ts", "end_ts", "create_audit_key", "update_audit_key"]
_LIST_COLS = ["calling_list_key", "tenant_key", "calling_list_name", "campaign_key", "data_source_key", "icon_dbid",
              "start_ts", "end_ts", "create_audit_key", "update_audit_key"]
_CAF_COLS = [
    "contact_attempt_fact_key", "data_source_key", "tenant_key", "campaign_key", "calling_list_key", "resource_key",
    "media_type_key", "attempt_guid", "chain_id", "attempt_no", "record_handle", "dialing_mode", "call_result_code",
    "start_ts", "connected_ts", "end_ts", "start_date_time_key", "end_date_time_key", "dial_duration",
    "talk_duration", "active_flag", "create_audit_key", "update_audit_key",
]

# The span of a deleted fact is recorded (ctl_fact_deleted) for the aggregation to re-aggregate.
DELETE_BAD = W("""WITH d AS (
        DELETE FROM contact_attempt_fact f USING t_oa a
         WHERE a.bad IS NOT NULL AND f.data_source_key = a.data_source_key AND f.attempt_guid = a.attempt_id
        RETURNING f.start_ts, coalesce(f.end_ts, f.start_ts) AS end_ts)
    INSERT INTO ctl_fact_deleted (audit_key, table_name, start_ts, end_ts)
    SELECT %(audit)s, 'contact_attempt_fact', start_ts, end_ts FROM d""")

CHUNK: list[str] = [
    """CREATE TEMP TABLE t_odisc (dsk int, tbl text, skey text, guid text, code text, reason text, raw jsonb)
       ON COMMIT DROP""",
    # ---- configuration
    f"CREATE TEMP TABLE t_ocamp ON COMMIT DROP AS {_latest_cfg('gc_campaign')}",
    _upsert(
        "campaign", _CAMPAIGN_COLS, "campaign_key",
        """SELECT c.id, c.tenant_id, coalesce(c.name, 'campaign ' || c.id), c.description, c.data_source_key, c.id,
                  c.created_ts, c.deleted_ts, %(audit)s, %(audit)s FROM t_ocamp c""",
    ),
    f"CREATE TEMP TABLE t_olist ON COMMIT DROP AS {_latest_cfg('gc_calling_list')}",
    _upsert(
        "calling_list", _LIST_COLS, "calling_list_key",
        """SELECT l.id, l.tenant_id, coalesce(l.name, 'calling list ' || l.id), l.campaign_id, l.data_source_key, l.id,
                  l.created_ts, l.deleted_ts, %(audit)s, %(audit)s FROM t_olist l""",
    ),
    # ---- attempts
    f"""CREATE TEMP TABLE t_oa ON COMMIT DROP AS
        SELECT x.*,
               CASE WHEN x.campaign_id IS NULL THEN 'missing_campaign'
                    WHEN x.dialing_ts IS NULL OR {_BAD_TIME.format(c='x.dialing_ts')}
                         OR {_BAD_TIME.format(c='x.ended_ts')} THEN 'bad_time'
                    WHEN x.ended_ts < x.dialing_ts THEN 'end_before_start'
                    WHEN coalesce(x.media_type, '') = '' THEN 'missing_media_type'
                    WHEN x.ended_ts IS NOT NULL AND (x.call_result IS NULL OR x.call_result NOT IN ({_RESULTS}))
                         THEN 'unknown_call_result' END AS bad
          FROM gidb_g_ocs_attempt x WHERE {_RANGE}""",
    "ANALYZE t_oa",
    """INSERT INTO t_odisc
       SELECT a.data_source_key, 'g_ocs_attempt', a.attempt_id, a.attempt_id, a.bad,
              CASE a.bad WHEN 'missing_campaign' THEN 'attempt without campaign_id'
                         WHEN 'bad_time' THEN 'dialing_ts ' || coalesce(a.dialing_ts::text, 'NULL') || ' / ended_ts '
                                              || coalesce(a.ended_ts::text, 'NULL') || ' not a time between 2000 and 2100'
                         WHEN 'end_before_start' THEN 'ended_ts ' || a.ended_ts || ' is before dialing_ts ' || a.dialing_ts
                         WHEN 'missing_media_type' THEN 'no media_type'
                         ELSE 'unknown call_result ' || coalesce(a.call_result, 'NULL') || ' of an ended attempt (valid: '
                              || %(results)s || ')' END,
              to_jsonb(a) - 'bad'
         FROM t_oa a WHERE a.bad IS NOT NULL""",
    # a staged row that is now invalid removes its fact
    DELETE_BAD,
    _new_media_types("SELECT media_type AS m FROM t_oa WHERE bad IS NULL"),
    # placeholders for what the configuration has not brought yet
    f"""INSERT INTO resource_ (resource_key, tenant_key, resource_type, resource_type_code, resource_subtype,
                               resource_name, data_source_key, icon_dbid, resource_cfg_type_id, create_audit_key,
                               update_audit_key)
        SELECT DISTINCT {AGENT_BASE} + a.agent_id, NULL::int, 'Agent', 'AGENT', 'Unknown', 'unknown agent ' || a.agent_id,
               NULL::int, a.agent_id, 1, %(audit)s, %(audit)s
          FROM t_oa a WHERE a.bad IS NULL AND a.agent_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM resource_ r WHERE r.resource_key = {AGENT_BASE} + a.agent_id)
        ON CONFLICT DO NOTHING""",
    """INSERT INTO campaign (campaign_key, campaign_name, icon_dbid, create_audit_key, update_audit_key)
       SELECT DISTINCT a.campaign_id, 'unknown campaign ' || a.campaign_id, a.campaign_id, %(audit)s, %(audit)s
         FROM t_oa a WHERE a.bad IS NULL
          AND NOT EXISTS (SELECT 1 FROM campaign c WHERE c.campaign_key = a.campaign_id)
       ON CONFLICT DO NOTHING""",
    """INSERT INTO calling_list (calling_list_key, calling_list_name, campaign_key, icon_dbid, create_audit_key,
                                 update_audit_key)
       SELECT DISTINCT ON (a.calling_list_id) a.calling_list_id, 'unknown calling list ' || a.calling_list_id,
              a.campaign_id, a.calling_list_id, %(audit)s, %(audit)s
         FROM t_oa a WHERE a.bad IS NULL AND a.calling_list_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM calling_list l WHERE l.calling_list_key = a.calling_list_id)
        ORDER BY a.calling_list_id, a.campaign_id
       ON CONFLICT DO NOTHING""",
    _upsert(
        "contact_attempt_fact", _CAF_COLS, "data_source_key, attempt_guid, start_date_time_key",
        f"""SELECT a.stg_id, a.data_source_key, a.tenant_id, a.campaign_id, a.calling_list_id,
                   {AGENT_BASE} + a.agent_id, mt.media_type_key, a.attempt_id, a.chain_id, a.attempt_no,
                   a.record_handle, a.dialing_mode,
                   CASE WHEN a.ended_ts IS NULL THEN '{ACTIVE_RESULT}' ELSE a.call_result END,
                   a.dialing_ts, a.connected_ts, a.ended_ts, a.dialing_ts - mod(a.dialing_ts, 900),
                   a.ended_ts - mod(a.ended_ts, 900), coalesce(a.connected_ts, a.ended_ts) - a.dialing_ts,
                   CASE WHEN a.ended_ts IS NULL THEN 0 ELSE coalesce(a.talk_duration, 0) END,
                   (a.ended_ts IS NULL)::int, %(audit)s, %(audit)s
              FROM t_oa a JOIN media_type mt ON mt.media_name_code = upper(a.media_type)
             WHERE a.bad IS NULL""",
        keep=("contact_attempt_fact_key",),
    ),
    # ---- bookkeeping: discards, calendar days, audit row
    _save_discards("t_odisc"),
    f"""SELECT count(gim_ensure_date_time(d, d + 86399))
          FROM (SELECT DISTINCT ts - mod(ts, 86400) AS d
                  FROM t_oa a CROSS JOIN LATERAL (VALUES (a.dialing_ts), (a.ended_ts)) v(ts)
                 WHERE a.bad IS NULL AND ts BETWEEN {TS_MIN} AND {TS_MAX}) x""",
]

AUDIT_CLOSE = """
UPDATE ctl_audit_log SET inserted = clock_timestamp(), row_count = %(rows)s,
       min_start_date_time_key = s.lo - mod(s.lo, 900), max_start_date_time_key = s.hi - mod(s.hi, 900),
       data_source_key = s.dsk
  FROM (SELECT min(dialing_ts) AS lo, max(dialing_ts) AS hi,
               CASE WHEN count(DISTINCT data_source_key) = 1 THEN min(data_source_key) END AS dsk
          FROM t_oa WHERE bad IS NULL) s
 WHERE audit_key = %(audit)s
"""


def _hwm(conn: Any) -> int:
    row = conn.execute("SELECT hwm_value FROM ctl_transform_hwm WHERE hwm_name = %s", (HWM_NAME,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO ctl_transform_hwm (hwm_name) VALUES (%s) ON CONFLICT DO NOTHING", (HWM_NAME,))
        return 0
    return int(row[0])


def _bound(conn: Any) -> int:
    """A staged-change bound below which every row is committed (see gim_jobs.jobs.transform)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (STAGE_LOCK,))
        last, called = conn.execute("SELECT last_value, is_called FROM gidb_stage_seq").fetchone()
    return int(last) if called else 0


def _chunks(conn: Any, lo: int, hi: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(lo, hi] stg_seq ranges of about chunk_rows staged rows each, whole stg_seq values; [] when
    nothing outbound was staged in (lo, hi]."""
    union = " UNION ALL ".join(f"SELECT x.stg_seq FROM gidb_{t} x WHERE {_RANGE}" for t in STAGED)
    counts = conn.execute(f"SELECT stg_seq, count(*) FROM ({union}) s GROUP BY 1 ORDER BY 1",
                          {"lo": lo, "hi": hi}).fetchall()
    if not counts:
        return []
    out: list[tuple[int, int]] = []
    start, n = lo, 0
    for seq, c in counts:
        n += c
        if n >= chunk_rows:
            out.append((start, int(seq)))
            start, n = int(seq), 0
    if n or not out:
        out.append((start, hi))
    else:
        out[-1] = (out[-1][0], hi)
    return out


def run(r: Any) -> None:
    """Transform the staged OCS rows; ``r`` is the transform's run (its ctx, conn and counters)."""
    ctx, conn = r.ctx, r.conn
    hwm = _hwm(conn)
    bound = _bound(conn)
    if bound <= hwm:
        return
    chunk_rows = int(ctx.params.get("ocs_chunk_rows", CHUNK_ROWS))
    ranges = _chunks(conn, hwm, bound, max(1, chunk_rows))
    if not ranges:
        # nothing outbound staged: move the mark, no audit row (no facts changed)
        conn.execute("UPDATE ctl_transform_hwm SET hwm_value = %s, updated = now() WHERE hwm_name = %s",
                     (bound, HWM_NAME))
        return
    statements = CHUNK
    written = 0
    for lo, hi in ranges:
        started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        with conn.transaction():
            audit = conn.execute("INSERT INTO ctl_audit_log (job_id) VALUES (%s) RETURNING audit_key",
                                 (str(ctx.job_id),)).fetchone()[0]
            p = {"lo": lo, "hi": hi, "audit": audit, "job": str(ctx.job_id), "etl_ts": int(time.time()),
                 "results": ", ".join(RESULTS)}
            rows = 0
            for stmt in statements:
                t = time.perf_counter()
                cur = conn.execute(stmt, p)
                label = "ocs: " + " ".join(stmt.split()[:6])
                r.timings[label] = r.timings.get(label, 0.0) + time.perf_counter() - t
                if isinstance(stmt, W) and cur.rowcount > 0:
                    rows += cur.rowcount
            disc = conn.execute("SELECT count(*) FROM t_odisc").fetchone()[0]
            conn.execute(AUDIT_CLOSE, {**p, "rows": rows})
            conn.execute(
                """INSERT INTO ctl_transform_history (hwm_name, hwm_value, hwm_value2, transform_start_time,
                          transform_end_time, row_count, audit_key, job_id, job_version, chunk)
                   VALUES (%s, %s, NULL, %s, clock_timestamp(), %s, %s, %s, %s, 'outbound')""",
                (HWM_NAME, hi, started, rows, audit, str(ctx.job_id), __version__),
            )
            conn.execute("UPDATE ctl_transform_hwm SET hwm_value = %s, updated = now() WHERE hwm_name = %s",
                         (hi, HWM_NAME))
        r.rows += rows
        written += rows
        r.discards += disc
        r.chunks += 1
        ctx.check_stop()
        ctx.pause()
    r.batches.append({"lo": hwm, "hi": bound, "outbound_chunks": len(ranges), "outbound_rows": written})
    if written >= ANALYZE_ROWS:  # the aggregation reads it right away, before autovacuum would
        conn.execute("ANALYZE contact_attempt_fact")
