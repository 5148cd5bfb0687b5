"""The simulator's ground truth: schema ``sim`` in the IDB database (extraction never reads it).

Tables
------
``sim.truth_interaction``: one row per interaction (g_ir row), rewritten while it is in flight.

* ``offered_ts`` = g_ir.created_ts (the customer's arrival); ``queue_endpoint_id`` = endpoint of
  its first queue party (party_type 1: ACD queue, virtual queue or interaction queue; the routing
  point, party_type 4, is not a queue).
* ``answered``: some agent party (party_type 2) on the customer's call (g_call.call_type 2, party
  role 2 receiver, 4 conference member or 5 transfer receiver) has a changetype 3 (established)
  g_party_history row. ``answered_ts`` = the first such row's added_ts; ``first_agent_id`` = that
  party's agent_id.
* ``abandoned``: the customer hung up while queued = a queue party ended with end_cause
  'abandoned' (its changetype 6 row); never answered then.
* ``abandoned_ringing``: an agent party ended with end_cause 'abandoned_ringing' (rows 2 then 6,
  no 3); never answered then.
* ``redirected``: number of agent parties ended 'redirected' (ring no answer, back to the queue).
* ``talk_seconds`` = sum over the agent parties on the customer's call that were established of
  (released − established − held), where released = that party's changetype 6 added_ts (=
  g_party.terminated_ts), established = its changetype 3 added_ts and held = sum of the intervals
  from each changetype 4 to the next changetype 5 or 6 of the same party.
* ``hold_seconds`` = the sum of those held intervals.
* ``consult_seconds`` = sum over consult receivers (role 3 on a call_type 4 call) of
  (released − established); not part of talk.
* ``acw_seconds`` = sum over g_agent_state_history rows with state 4 (AfterCallWork) whose partyid
  is one of the interaction's agent parties, of (added_ts of the agent's next state row in the
  same session − added_ts of the ACW row).
* ``transferred`` / ``consulted`` / ``conferenced``: an agent party ended 'transferred' / a
  call_type 4 call exists / a role 4 party exists.
* ``ended``: g_ir.state = 1 (``ended_ts`` = g_ir.terminated_ts). ``complete``: ended and no ACW
  attributed to it is still running, so the row is final. While not complete the measures count
  only finished segments (a party still talking adds nothing yet).
* ``fault``: comma-separated fault kinds injected into its rows (NULL: clean), details in
  ``sim.truth_fault``. ``excluded``: its rows are unusable ('orphan_party': its g_call rows were
  never written; 'malformed': a party has terminated_ts < created_ts); a transform is expected to
  discard it, so expected measures leave it out. 'late', 'out_of_order', 'duplicate' and
  'unknown_party' leave the measures as stated once the transform handles them (late rows
  arrive, duplicates are dropped, the unknown party's row is discarded).

``sim.truth_party``: one row per queue party (party_type 1) and agent party (party_type 2) with its
true start/established/end times and end_cause (``end_ts`` NULL while active), per-party talk,
hold and ACW as above (consult parties carry their consult time in ``talk_seconds``). Queue
waiting time = end_ts − start_ts. ``fault`` = 'malformed' on the party whose row was damaged.

``sim.truth_agent_state``: one row per g_agent_state_history row (same id) with ``start_ts`` = its
added_ts and ``end_ts`` = the next row's added_ts in that session (NULL while current); LoggedOut
rows have end_ts = start_ts.

Measures are counted in the 15-minute (``interval_seconds``) interval of ``offered_ts`` for
interactions and of ``start_ts`` for parties (the interval the party was offered / entered the
queue).
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA_LOCK = 0x5_1D_5C_4F

SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS sim;
CREATE TABLE IF NOT EXISTS sim.run (
    run_id        serial PRIMARY KEY,
    mode          text NOT NULL,
    seed          bigint NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    start_ts      bigint NOT NULL,
    end_ts        bigint,
    interactions  bigint,
    resumed_from  integer,
    summary       jsonb
);
CREATE TABLE IF NOT EXISTS sim.state (
    id        integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    run_id    integer NOT NULL,
    clock_ts  bigint NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now(),
    gsys_mark bigint,             -- max(gsys_useq) of the IDB when saved: later rows = stale state
    blob      bytea NOT NULL      -- zlib-compressed pickle of the model
);
ALTER TABLE sim.state ADD COLUMN IF NOT EXISTS gsys_mark bigint;
CREATE TABLE IF NOT EXISTS sim.agent (
    agent_id     integer PRIMARY KEY,
    media_type   text NOT NULL,
    skills       text[] NOT NULL,
    endpoint_id  integer NOT NULL,
    created_ts   bigint NOT NULL,
    deleted_ts   bigint
);
CREATE TABLE IF NOT EXISTS sim.truth_interaction (
    irid               text PRIMARY KEY,
    run_id             integer NOT NULL,
    media_type         text NOT NULL,
    interaction_type   text NOT NULL,
    queue_endpoint_id  integer,
    first_agent_id     integer,
    offered_ts         bigint NOT NULL,
    answered           boolean NOT NULL,
    answered_ts        bigint,
    abandoned          boolean NOT NULL,
    abandoned_ringing  boolean NOT NULL,
    redirected         integer NOT NULL,
    transferred        boolean NOT NULL,
    consulted          boolean NOT NULL,
    conferenced        boolean NOT NULL,
    talk_seconds       bigint NOT NULL,
    hold_seconds       bigint NOT NULL,
    acw_seconds        bigint NOT NULL,
    consult_seconds    bigint NOT NULL,
    ended              boolean NOT NULL,
    ended_ts           bigint,
    complete           boolean NOT NULL,
    fault              text,
    excluded           boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS sim.truth_party (
    partyid         text NOT NULL,
    irid            text NOT NULL,
    callid          text NOT NULL,
    call_type       smallint NOT NULL,
    party_type      smallint NOT NULL,
    role            smallint NOT NULL,
    endpoint_id     integer,
    agent_id        integer,
    media_type      text NOT NULL,
    start_ts        bigint NOT NULL,
    established_ts  bigint,
    end_ts          bigint,
    end_cause       text,
    talk_seconds    bigint NOT NULL,
    hold_seconds    bigint NOT NULL,
    acw_seconds     bigint NOT NULL,
    fault           text
);
CREATE INDEX IF NOT EXISTS truth_party_irid ON sim.truth_party (irid);
CREATE TABLE IF NOT EXISTS sim.truth_agent_state (
    id           bigint PRIMARY KEY,
    lsid         text NOT NULL,
    agent_id     integer NOT NULL,
    media_type   text NOT NULL,
    state        smallint NOT NULL,
    reason_code  text,
    partyid      text,
    start_ts     bigint NOT NULL,
    end_ts       bigint
);
CREATE TABLE IF NOT EXISTS sim.truth_fault (
    irid        text NOT NULL,
    kind        text NOT NULL,
    table_name  text NOT NULL,
    row_key     text NOT NULL,
    detail      text
);
-- outbound dialing attempts (g_ocs_attempt), rewritten when they end: see gim_jobs.idb.outbound
CREATE TABLE IF NOT EXISTS sim.truth_attempt (
    attempt_id       text PRIMARY KEY,
    run_id           integer NOT NULL,
    campaign_id      integer NOT NULL,
    calling_list_id  integer NOT NULL,
    agent_id         integer,
    dialing_ts       bigint NOT NULL,
    connected_ts     bigint,
    ended_ts         bigint,
    call_result      text,
    talk_seconds     bigint NOT NULL,
    ended            boolean NOT NULL
);
"""

TRUTH_INTERACTION_COLS = (
    "irid, run_id, media_type, interaction_type, queue_endpoint_id, first_agent_id, offered_ts, answered, "
    "answered_ts, abandoned, abandoned_ringing, redirected, transferred, consulted, conferenced, "
    "talk_seconds, hold_seconds, acw_seconds, consult_seconds, ended, ended_ts, complete, fault, excluded"
)
TRUTH_PARTY_COLS = (
    "partyid, irid, callid, call_type, party_type, role, endpoint_id, agent_id, media_type, start_ts, "
    "established_ts, end_ts, end_cause, talk_seconds, hold_seconds, acw_seconds, fault"
)
TRUTH_STATE_COLS = "id, lsid, agent_id, media_type, state, reason_code, partyid, start_ts, end_ts"
TRUTH_FAULT_COLS = "irid, kind, table_name, row_key, detail"

STATE_NAMES = {1: "Ready", 2: "NotReady", 3: "Busy", 4: "AfterCallWork", 5: "LoggedOut"}


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create schema ``sim`` and its tables if missing (idempotent, safe against a concurrent run)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(SCHEMA_DDL)


_INTERVAL_SQL = """
SELECT offered_ts - offered_ts %% %(iv)s AS interval_start,
       count(*) AS offered,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE abandoned) AS abandoned,
       count(*) FILTER (WHERE abandoned_ringing) AS abandoned_ringing,
       count(*) FILTER (WHERE NOT ended) AS active,
       coalesce(sum(talk_seconds), 0) AS talk_seconds,
       coalesce(sum(hold_seconds), 0) AS hold_seconds,
       coalesce(sum(acw_seconds), 0) AS acw_seconds
  FROM sim.truth_interaction
 WHERE %(all)s OR NOT excluded
 GROUP BY 1 ORDER BY 1
"""

_QUEUE_SQL = """
SELECT p.endpoint_id,
       count(*) AS entered,
       count(*) FILTER (WHERE p.end_cause = 'completed') AS distributed,
       count(*) FILTER (WHERE p.end_cause = 'abandoned') AS abandoned,
       count(*) FILTER (WHERE p.end_cause = 'cleared') AS cleared,
       count(*) FILTER (WHERE p.end_ts IS NULL) AS active,
       coalesce(sum(p.end_ts - p.start_ts) FILTER (WHERE p.end_ts IS NOT NULL), 0) AS wait_seconds
  FROM sim.truth_party p JOIN sim.truth_interaction i USING (irid)
 WHERE p.party_type = 1 AND (%(all)s OR NOT i.excluded)
 GROUP BY 1 ORDER BY 1
"""

_AGENT_SQL = """
SELECT p.agent_id,
       count(*) AS offered,
       count(*) FILTER (WHERE p.established_ts IS NOT NULL) AS answered,
       count(*) FILTER (WHERE p.end_cause = 'abandoned_ringing') AS abandoned_ringing,
       count(*) FILTER (WHERE p.end_cause = 'redirected') AS redirected,
       count(*) FILTER (WHERE p.end_cause = 'transferred') AS transferred,
       coalesce(sum(p.talk_seconds), 0) AS talk_seconds,
       coalesce(sum(p.hold_seconds), 0) AS hold_seconds,
       coalesce(sum(p.acw_seconds), 0) AS acw_seconds
  FROM sim.truth_party p JOIN sim.truth_interaction i USING (irid)
 WHERE p.party_type = 2 AND p.call_type <> 4 AND (%(all)s OR NOT i.excluded)
 GROUP BY 1 ORDER BY 1
"""

_STATE_SQL = """
SELECT agent_id, state, count(*) AS n, coalesce(sum(end_ts - start_ts), 0) AS seconds
  FROM sim.truth_agent_state WHERE end_ts IS NOT NULL
 GROUP BY 1, 2 ORDER BY 1, 2
"""

_TOTALS_SQL = """
SELECT count(*) AS interactions,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE abandoned) AS abandoned,
       count(*) FILTER (WHERE abandoned_ringing) AS abandoned_ringing,
       count(*) FILTER (WHERE ended) AS ended,
       count(*) FILTER (WHERE NOT ended) AS active,
       count(*) FILTER (WHERE transferred) AS transferred,
       count(*) FILTER (WHERE consulted) AS consulted,
       count(*) FILTER (WHERE conferenced) AS conferenced,
       coalesce(sum(talk_seconds), 0) AS talk_seconds,
       coalesce(sum(hold_seconds), 0) AS hold_seconds,
       coalesce(sum(acw_seconds), 0) AS acw_seconds,
       count(*) FILTER (WHERE excluded) AS excluded_count,
       count(*) FILTER (WHERE fault IS NOT NULL) AS faulty
  FROM sim.truth_interaction
 WHERE %(all)s OR NOT excluded
"""


def ground_truth(dsn: str, *, interval_seconds: int = 900, include_excluded: bool = False) -> dict[str, Any]:
    """What the simulator knows it wrote, summarised for comparison with facts and aggregates.

    Returns ``{"totals": {...}, "per_queue": {endpoint_id: {...}}, "per_agent": {agent_id: {...}},
    "per_interval": {interval_start_ts: {...}}, "agent_states": {agent_id: {state_name: seconds}},
    "by_media": {media: {...}}}``. Interactions flagged ``excluded`` (orphan / malformed rows) are
    left out unless ``include_excluded``; ``totals["excluded_count"]`` counts them either way.
    Measures are defined in this module's docstring.
    """
    params = {"iv": int(interval_seconds), "all": bool(include_excluded)}
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('sim.truth_interaction') IS NOT NULL").fetchone()[0]
        if not exists:
            return {"totals": {}, "per_queue": {}, "per_agent": {}, "per_interval": {}, "agent_states": {},
                    "by_media": {}}

        def rows(sql: str) -> list[dict[str, Any]]:
            cur = conn.execute(sql, params)
            names = [d.name for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        totals = rows(_TOTALS_SQL)[0]
        totals["excluded_count"] = conn.execute(
            "SELECT count(*) FROM sim.truth_interaction WHERE excluded").fetchone()[0]
        by_media = {r.pop("media_type"): r for r in rows(
            "SELECT media_type, count(*) AS offered, count(*) FILTER (WHERE answered) AS answered, "
            "count(*) FILTER (WHERE abandoned) AS abandoned, count(*) FILTER (WHERE NOT ended) AS active "
            "FROM sim.truth_interaction WHERE %(all)s OR NOT excluded GROUP BY 1 ORDER BY 1")}
        per_queue = {r.pop("endpoint_id"): r for r in rows(_QUEUE_SQL)}
        per_agent = {r.pop("agent_id"): r for r in rows(_AGENT_SQL)}
        per_interval = {r.pop("interval_start"): r for r in rows(_INTERVAL_SQL)}
        states: dict[int, dict[str, int]] = {}
        for r in rows(_STATE_SQL):
            states.setdefault(r["agent_id"], {})[STATE_NAMES.get(r["state"], str(r["state"]))] = int(r["seconds"])
    return {"totals": {k: int(v) for k, v in totals.items()}, "per_queue": per_queue, "per_agent": per_agent,
            "per_interval": per_interval, "agent_states": states, "by_media": by_media}
