"""The RAA aggregate hierarchies as data, and the SQL generated from them.

One table, :data:`HIERARCHIES`, says for every hierarchy which fact(s) it reads, its dimension
columns, its measures (SQL expression per fact row, how a level rolls up: ``sum`` or ``max``, and
what it means) and its *interval rule*:

* ``disposition``: a fact row counts once, in the sub-hour interval of one moment of it (the IRF
  start = when it was offered to the agent / entered the queue; the IF start = when the interaction
  entered the contact center);
* ``interval``: a fact row counts in every sub-hour interval its ``[start_ts, end_ts)`` overlaps,
  with the overlapping seconds (``{ov}``) and ``{st}`` = 1 in the interval where it started. Only
  ended rows count (an active state or session has no duration yet; its end changes its audit key
  and re-queues its intervals).

Everything else is generated: the ``agt_<stem>_<level>`` tables (``subhr``, ``hour``, ``day``,
``month``, ``quarter``, ``year``), the ``ag2_<stem>_<level>`` views (plus ``ag2_<stem>_week``
summed from days by ``date_time.date_time_week_key``), the per-batch delete + insert statements
and ``docs/measures.md``.

Levels: SUBHOUR from the facts; HOUR from SUBHOUR; DAY from HOUR; MONTH from DAY; QUARTER from
MONTH; YEAR from QUARTER (``gim_agg_period_key``, GMT like the default ``date_time`` calendar).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

LEVELS = ("SUBHOUR", "HOUR", "DAY", "MONTH", "QUARTER", "YEAR")
SUFFIX = {"SUBHOUR": "subhr", "HOUR": "hour", "DAY": "day", "MONTH": "month", "QUARTER": "quarter",
          "YEAR": "year"}
FLAVORS = ("Online", "Offline")
# interval-based facts are looked for this far back from an interval (an index range on
# start_date_time_key, so the cost of an interval does not grow with the mart); longer facts are
# cut there (documented in docs/measures.md). Agent states are closed by the transform after
# [gim-transformation] max-state-duration (default 14400 s); login sessions are few rows.
LOOKBACK_SECONDS = 86400
SHORT_LOOKBACK_SECONDS = 14400 + 900


@dataclass(frozen=True)
class Measure:
    name: str
    expr: str  # per source row; {ov} and {st} in interval sources
    doc: str
    agg: str = "sum"  # how levels roll up: sum or max


@dataclass(frozen=True)
class Source:
    """One fact query feeding a hierarchy: FROM/WHERE with the fact aliased ``f``."""

    fact: str  # fact table name (docs, queueing)
    from_sql: str
    where: str
    dims: dict[str, str]  # agt column -> expression
    measures: dict[str, str]  # measure name -> expression (others are 0)
    rule: str = "disposition"  # or "interval"
    counts_in: str = ""  # documentation of the interval rule
    key_col: str = "f.start_date_time_key"
    requires: str | None = None  # a table that must exist (campaign facts), else the source is empty
    lookback: int = LOOKBACK_SECONDS


@dataclass(frozen=True)
class Hierarchy:
    name: str  # H_AGENT
    stem: str  # agent -> agt_agent_hour
    doc: str
    dims: tuple[str, ...]
    measures: tuple[Measure, ...]
    sources: tuple[Source, ...]
    dim_doc: dict[str, str] = field(default_factory=dict)

    def table(self, level: str) -> str:
        return f"agt_{self.stem}_{SUFFIX[level]}"

    def view(self, level: str) -> str:
        return f"ag2_{self.stem}_{SUFFIX.get(level, level.lower())}"

    @property
    def requires(self) -> set[str]:
        return {s.requires for s in self.sources if s.requires}


# ------------------------------------------------------------------------------- fact queries
IRF = """interaction_resource_fact f
  JOIN resource_ r ON r.resource_key = f.resource_key
  JOIN technical_descriptor td ON td.technical_descriptor_key = f.technical_descriptor_key"""
AGENT = "r.resource_type_code = 'AGENT'"
QUEUE = "r.resource_type_code = 'QUEUE'"
GROUP_AT_START = """JOIN resource_group_fact_ g ON g.resource_key = f.resource_key
   AND coalesce(g.start_ts, 0) <= f.start_ts AND (g.end_ts IS NULL OR g.end_ts > f.start_ts)"""
ABANDONED_Q = "td.result_reason = 'AbandonedWhileQueued'"
DIVERTED = "td.technical_result = 'Diverted'"


def _b(cond: str) -> str:
    return f"({cond})::int"


def _bucket(col: str, lo: int, hi: int | None) -> str:
    return _b(f"{col} >= {lo}" + (f" AND {col} < {hi}" if hi is not None else ""))


AGENT_MEASURES: tuple[Measure, ...] = (
    Measure("offered", "1", "agent IRF rows: interactions offered (ringing or delivered) to the agent"),
    Measure("accepted", _b("f.talk_count > 0"), "offered interactions the agent answered (talk count > 0)"),
    Measure("not_accepted", _b("f.talk_count = 0 AND f.end_ts IS NOT NULL"),
            "ended offers the agent never answered"),
    Measure("abandoned_invite", _b("td.result_reason = 'AbandonedWhileRinging'"),
            "the customer hung up while the agent's device was ringing"),
    Measure("redirected", _b("td.technical_result = 'Redirected'"), "offers redirected on no answer"),
    Measure("invite_time", "f.ring_duration", "seconds ringing (IRF ring_duration)"),
    Measure("engage", "f.talk_count", "talk segments (IRF talk_count)"),
    Measure("engage_time", "f.talk_duration", "seconds talking / engaged (IRF talk_duration)"),
    Measure("hold", "f.hold_count", "hold segments (IRF hold_count)"),
    Measure("hold_time", "f.hold_duration", "seconds on hold (IRF hold_duration)"),
    Measure("wrap", "f.after_call_work_count", "after-call-work periods started by the release (IRF)"),
    Measure("wrap_time", "f.after_call_work_duration", "seconds of after-call work (IRF after_call_work_duration)"),
    Measure("handle_time", "f.talk_duration + f.hold_duration + f.after_call_work_duration",
            "engage + hold + wrap seconds"),
    Measure("transfer_init_agent", _b("td.technical_result = 'Transferred'"),
            "interactions the agent transferred away"),
    Measure("xfer_received_accepted", _b("td.resource_role = 'ReceivedTransfer' AND f.talk_count > 0"),
            "transfers received and answered"),
    Measure("consult_received", "f.consult_flag", "consultations received"),
    Measure("conference_joined", "f.conference_flag", "conferences joined"),
)

QUEUE_MEASURES: tuple[Measure, ...] = (
    Measure("entered", "1", "queue IRF rows: interactions that entered the queue"),
    Measure("accepted_agent", _b(DIVERTED), "distributed from the queue to an agent (Diverted)"),
    Measure("abandoned", _b(ABANDONED_Q), "customer abandoned while queued"),
    Measure("cleared", _b("td.technical_result = 'Cleared'"), "cleared from the queue"),
    Measure("redirected", _b("td.technical_result = 'Redirected'"), "redirected from the queue"),
    Measure("routed_other",
            _b(f"f.end_ts IS NOT NULL AND NOT ({DIVERTED}) AND NOT ({ABANDONED_Q}) "
               "AND td.technical_result NOT IN ('Cleared', 'Redirected')"),
            "ended in the queue any other way"),
    Measure("mediation_time", "f.mediation_duration", "seconds in the queue (IRF mediation_duration)"),
    Measure("accepted_time", f"CASE WHEN {DIVERTED} THEN f.mediation_duration ELSE 0 END",
            "seconds in queue of interactions distributed to an agent"),
    Measure("accepted_time_max", f"CASE WHEN {DIVERTED} THEN f.mediation_duration ELSE 0 END",
            "longest queue time of a distributed interaction", "max"),
    Measure("abandoned_time", f"CASE WHEN {ABANDONED_Q} THEN f.mediation_duration ELSE 0 END",
            "seconds in queue before abandoning"),
    Measure("abandoned_time_max", f"CASE WHEN {ABANDONED_Q} THEN f.mediation_duration ELSE 0 END",
            "longest queue time before abandoning", "max"),
)

ABN_EDGES = (0, 5, 10, 20, 30, 60, 120)
ACC_EDGES = (0, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)


def _buckets(prefix: str, edges: tuple[int, ...], cond: str, what: str) -> tuple[Measure, ...]:
    out = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        name = f"{prefix}_{lo}_{hi}" if hi is not None else f"{prefix}_{lo}_plus"
        span = f"[{lo}, {hi}) s" if hi is not None else f">= {lo} s"
        out.append(Measure(name, _b(f"({cond}) AND f.mediation_duration >= {lo}"
                                    + (f" AND f.mediation_duration < {hi}" if hi is not None else "")),
                           f"{what} after {span} in queue"))
    return tuple(out)


def _irf_source(where: str, measures: tuple[Measure, ...], dims: dict[str, str], counts_in: str,
                extra_join: str = "") -> Source:
    return Source("interaction_resource_fact", IRF + ("\n  " + extra_join if extra_join else ""), where, dims,
                  {m.name: m.expr for m in measures}, counts_in=counts_in)


_MT_IT = {"media_type_key": "f.media_type_key", "interaction_type_key": "f.interaction_type_key"}
_AGENT_AT = "IRF start: the interval the interaction was offered to the agent"
_QUEUE_AT = "IRF start: the interval the interaction entered the queue"

AGENT_GRP_MEASURES = tuple(m for m in AGENT_MEASURES if m.name in (
    "offered", "accepted", "abandoned_invite", "engage_time", "hold_time", "wrap_time", "handle_time",
    "transfer_init_agent"))
AGENT_QUEUE_MEASURES = tuple(m for m in AGENT_MEASURES if m.name in (
    "offered", "accepted", "not_accepted", "abandoned_invite", "engage_time", "hold_time", "wrap_time",
    "handle_time", "transfer_init_agent"))
QUEUE_ABN_MEASURES = (
    Measure("abandoned", _b(ABANDONED_Q), "customer abandoned while queued"),
    Measure("abandoned_time", f"CASE WHEN {ABANDONED_Q} THEN f.mediation_duration ELSE 0 END",
            "seconds in queue before abandoning"),
    *_buckets("abn", ABN_EDGES, ABANDONED_Q, "abandoned"),
)
QUEUE_ACC_MEASURES = (
    Measure("accepted_agent", _b(DIVERTED), "distributed from the queue to an agent (Diverted)"),
    Measure("accepted_time", f"CASE WHEN {DIVERTED} THEN f.mediation_duration ELSE 0 END",
            "seconds in queue of interactions distributed to an agent"),
    *_buckets("acc", ACC_EDGES, DIVERTED, "distributed to an agent"),
)

ID_LATERAL = """interaction_fact f
  LEFT JOIN LATERAL (
      SELECT bool_or(r.resource_type_code = 'AGENT' AND x.consult_flag = 0 AND x.talk_count > 0) AS accepted,
             bool_or(td.result_reason IN ('AbandonedWhileQueued', 'AbandonedWhileRinging')) AS abandoned,
             bool_or(td.technical_result = 'Transferred') AS transferred,
             count(*) FILTER (WHERE r.resource_type_code = 'AGENT') AS agent_parties,
             coalesce(sum(x.talk_duration) FILTER (WHERE r.resource_type_code = 'AGENT'), 0) AS talk,
             coalesce(sum(x.hold_duration) FILTER (WHERE r.resource_type_code = 'AGENT'), 0) AS hold,
             coalesce(sum(x.after_call_work_duration) FILTER (WHERE r.resource_type_code = 'AGENT'), 0) AS acw,
             coalesce(sum(x.mediation_duration) FILTER (WHERE r.resource_type_code = 'QUEUE'), 0) AS queued
        FROM interaction_resource_fact x
        JOIN resource_ r ON r.resource_key = x.resource_key
        JOIN technical_descriptor td ON td.technical_descriptor_key = x.technical_descriptor_key
       WHERE x.interaction_id = f.interaction_id) s ON true"""
ID_MEASURES = (
    Measure("entered", "1", "interactions (IF rows) that entered the contact center"),
    Measure("ended", _b("f.end_ts IS NOT NULL"), "of those, ended"),
    Measure("accepted", _b("coalesce(s.accepted, false)"), "answered by an agent (not a consultation)"),
    Measure("abandoned", _b("coalesce(s.abandoned, false)"), "abandoned in a queue or while ringing"),
    Measure("transferred", _b("coalesce(s.transferred, false)"), "transferred at least once"),
    Measure("agent_parties", "coalesce(s.agent_parties, 0)", "agent IRF rows of the interactions"),
    Measure("engage_time", "coalesce(s.talk, 0)", "agent talk seconds of the interactions"),
    Measure("hold_time", "coalesce(s.hold, 0)", "agent hold seconds of the interactions"),
    Measure("wrap_time", "coalesce(s.acw, 0)", "after-call-work seconds of the interactions"),
    Measure("queue_time", "coalesce(s.queued, 0)", "seconds the interactions spent in queues"),
    Measure("duration", "CASE WHEN f.end_ts IS NOT NULL THEN f.end_ts - f.start_ts ELSE 0 END",
            "seconds from entering to the end (ended interactions)"),
)

STATE = "sm_res_state_fact f"
SESSION = "sm_res_session_fact f"
_STATES = {1: "ready", 2: "not_ready", 3: "busy", 4: "acw", 5: "logged_on_only"}
SESS_STATE_MEASURES = (
    Measure("logins", "{st}", "login sessions started in the interval (sm_res_session_fact)"),
    Measure("login_time", "{ov}", "seconds logged in within the interval (ended sessions)"),
    *(Measure(f"{n}_time", f"CASE WHEN f.resource_state_key = {k} THEN {{ov}} ELSE 0 END",
              f"seconds in summarized state {n} within the interval (sm_res_state_fact)")
      for k, n in _STATES.items()),
)
STATE_RSN_MEASURES = (
    Measure("state_count", "{st}", "state rows that started in the interval"),
    Measure("state_time", "{ov}", "seconds in the state (and reason) within the interval"),
)
I_AGENT_MEASURES = (
    Measure("started", "{st}", "agent IRF rows that started in the interval"),
    Measure("active_time", "{ov}", "seconds the agent held the interaction (IRF start to end) in the interval"),
    Measure("engage_time_started", "CASE WHEN {st} = 1 THEN f.talk_duration ELSE 0 END",
            "talk seconds of the rows started in the interval"),
)
CAMPAIGN_MEASURES = (
    Measure("attempts", "1", "contact attempts (contact_attempt_fact rows)"),
    Measure("connected", _b("f.call_result_code = 'ANSWER'"), "attempts answered by the contact"),
    Measure("engage_time", "coalesce(f.talk_duration, 0)", "seconds talking on the attempts"),
)
CAF_NOTE = ("outbound dialing attempts (contact_attempt_fact, from the ICON_OCS g_ocs_attempt rows: one row per "
            "attempt, counted from when dialing started, also while still dialing; call_result_code and "
            "talk_duration are set when it ends)")


def _h(name: str, stem: str, doc: str, dims: dict[str, str], measures: tuple[Measure, ...],
       sources: tuple[Source, ...]) -> Hierarchy:
    return Hierarchy(name, stem, doc, tuple(dims), measures, sources, dims)


HIERARCHIES: dict[str, Hierarchy] = {h.name: h for h in (
    _h("H_AGENT", "agent", "agent activity per agent, media and interaction type (disposition)",
       {"resource_key": "agent (resource_)", "media_type_key": "media", "interaction_type_key": "type"},
       AGENT_MEASURES,
       (_irf_source(AGENT, AGENT_MEASURES, {"resource_key": "f.resource_key", **_MT_IT}, _AGENT_AT),)),
    _h("H_AGENT_GRP", "agent_grp", "agent activity per agent group (membership at the offer time)",
       {"group_key": "agent group (group_)", "media_type_key": "media", "interaction_type_key": "type"},
       AGENT_GRP_MEASURES,
       (_irf_source(AGENT, AGENT_GRP_MEASURES, {"group_key": "g.group_key", **_MT_IT}, _AGENT_AT,
                    GROUP_AT_START),)),
    _h("H_AGENT_QUEUE", "agent_queue", "agent activity per agent and the queue the interaction came from",
       {"resource_key": "agent", "queue_resource_key": "queue (-1: none)", "media_type_key": "media",
        "interaction_type_key": "type"},
       AGENT_QUEUE_MEASURES,
       (_irf_source(AGENT, AGENT_QUEUE_MEASURES,
                    {"resource_key": "f.resource_key", "queue_resource_key": "coalesce(f.last_queue_resource_key, -1)",
                     **_MT_IT}, _AGENT_AT),)),
    _h("H_QUEUE", "queue", "queue activity per queue, media and interaction type",
       {"resource_key": "queue (resource_)", "media_type_key": "media", "interaction_type_key": "type"},
       QUEUE_MEASURES,
       (_irf_source(QUEUE, QUEUE_MEASURES, {"resource_key": "f.resource_key", **_MT_IT}, _QUEUE_AT),)),
    _h("H_QUEUE_GRP", "queue_grp", "queue activity per queue group (DN group membership at entry)",
       {"group_key": "queue group (group_)", "media_type_key": "media", "interaction_type_key": "type"},
       QUEUE_MEASURES,
       (_irf_source(QUEUE, QUEUE_MEASURES, {"group_key": "g.group_key", **_MT_IT}, _QUEUE_AT, GROUP_AT_START),)),
    _h("H_QUEUE_ABN", "queue_abn", "abandons in queue by time-to-abandon bucket",
       {"resource_key": "queue", "media_type_key": "media", "interaction_type_key": "type"},
       QUEUE_ABN_MEASURES,
       (_irf_source(QUEUE, QUEUE_ABN_MEASURES, {"resource_key": "f.resource_key", **_MT_IT}, _QUEUE_AT),)),
    _h("H_QUEUE_ACC_AGENT", "queue_acc_agent", "interactions distributed to agents by time-in-queue bucket",
       {"resource_key": "queue", "media_type_key": "media", "interaction_type_key": "type"},
       QUEUE_ACC_MEASURES,
       (_irf_source(QUEUE, QUEUE_ACC_MEASURES, {"resource_key": "f.resource_key", **_MT_IT}, _QUEUE_AT),)),
    _h("H_ID", "id", "interactions as the customer saw them, per media and interaction type",
       {"media_type_key": "media", "interaction_type_key": "type"},
       ID_MEASURES,
       (Source("interaction_fact", ID_LATERAL, "true", dict(_MT_IT), {m.name: m.expr for m in ID_MEASURES},
               counts_in="IF start: the interval the interaction entered the contact center"),)),
    _h("H_I_AGENT", "i_agent", "agent interaction activity spread over the intervals it lasted (interval-based)",
       {"resource_key": "agent", "media_type_key": "media", "interaction_type_key": "type"},
       I_AGENT_MEASURES,
       (Source("interaction_resource_fact", IRF, AGENT, {"resource_key": "f.resource_key", **_MT_IT},
               {m.name: m.expr for m in I_AGENT_MEASURES}, rule="interval", lookback=SHORT_LOOKBACK_SECONDS,
               counts_in="every interval the IRF [start_ts, end_ts) overlaps (ended rows; looked up "
                         f"{SHORT_LOOKBACK_SECONDS // 60} min back)"),)),
    _h("H_I_SESS_STATE", "i_sess_state", "agent login time and summarized state durations per interval",
       {"resource_key": "agent", "media_type_key": "media"},
       SESS_STATE_MEASURES,
       (Source("sm_res_session_fact", SESSION, "true",
               {"resource_key": "f.resource_key", "media_type_key": "f.media_type_key"},
               {"logins": "{st}", "login_time": "{ov}"}, rule="interval",
               counts_in="every interval the session overlaps (ended sessions)"),
        Source("sm_res_state_fact", STATE, "true",
               {"resource_key": "f.resource_key", "media_type_key": "f.media_type_key"},
               {m.name: m.expr for m in SESS_STATE_MEASURES[2:]}, rule="interval",
               lookback=SHORT_LOOKBACK_SECONDS,
               counts_in="every interval the state overlaps (ended states; looked up "
                         f"{SHORT_LOOKBACK_SECONDS // 60} min back)"))),
    _h("H_I_STATE_RSN", "i_state_rsn", "agent state durations by state and reason per interval",
       {"resource_key": "agent", "media_type_key": "media", "resource_state_key": "state",
        "resource_state_reason_key": "reason (-1: none)"},
       STATE_RSN_MEASURES,
       (Source("sm_res_state_fact", STATE, "true",
               {"resource_key": "f.resource_key", "media_type_key": "f.media_type_key",
                "resource_state_key": "f.resource_state_key",
                "resource_state_reason_key": "coalesce(f.resource_state_reason_key, -1)"},
               {m.name: m.expr for m in STATE_RSN_MEASURES}, rule="interval",
               lookback=SHORT_LOOKBACK_SECONDS,
               counts_in="every interval the state overlaps (ended states; looked up "
                         f"{SHORT_LOOKBACK_SECONDS // 60} min back)"),)),
    _h("H_AGENT_CAMPAIGN", "agent_campaign", "outbound attempts per agent and campaign",
       {"resource_key": "agent (-1: no agent took part)", "campaign_key": "campaign", "media_type_key": "media"},
       CAMPAIGN_MEASURES,
       (Source("contact_attempt_fact", "contact_attempt_fact f", "true",
               {"resource_key": "coalesce(f.resource_key, -1)", "campaign_key": "f.campaign_key",
                "media_type_key": "f.media_type_key"},
               {m.name: m.expr for m in CAMPAIGN_MEASURES}, requires="contact_attempt_fact",
               counts_in="attempt start; " + CAF_NOTE),)),
    _h("H_CAMPAIGN", "campaign", "outbound attempts per campaign",
       {"campaign_key": "campaign", "media_type_key": "media"},
       CAMPAIGN_MEASURES,
       (Source("contact_attempt_fact", "contact_attempt_fact f", "true",
               {"campaign_key": "f.campaign_key", "media_type_key": "f.media_type_key"},
               {m.name: m.expr for m in CAMPAIGN_MEASURES}, requires="contact_attempt_fact",
               counts_in="attempt start; " + CAF_NOTE),)),
)}

# the order Genesys lists them (R19)
NAMES = ("H_AGENT", "H_ID", "H_I_STATE_RSN", "H_QUEUE_GRP", "H_QUEUE_ABN", "H_AGENT_GRP", "H_I_AGENT", "H_QUEUE",
         "H_AGENT_CAMPAIGN", "H_AGENT_QUEUE", "H_I_SESS_STATE", "H_QUEUE_ACC_AGENT", "H_CAMPAIGN")
assert set(NAMES) == set(HIERARCHIES)

# the fact tables whose changes queue intervals, with the spans they queue
FACT_SPANS = {
    "interaction_fact": "f.start_ts, f.start_ts",
    "interaction_resource_fact": "f.start_ts, coalesce(f.end_ts, f.start_ts)",
    "sm_res_state_fact": "f.start_ts, coalesce(f.end_ts, f.start_ts)",
    "sm_res_session_fact": "f.start_ts, coalesce(f.end_ts, f.start_ts)",
    "contact_attempt_fact": "f.start_ts, coalesce(f.end_ts, f.start_ts)",
}


# ------------------------------------------------------------------------------- DDL
def ddl(h: Hierarchy) -> list[str]:
    """CREATE statements of one hierarchy's tables and views (no IF NOT EXISTS: see ddl_hash)."""
    dims = ",\n    ".join(f"{d} bigint NOT NULL" for d in h.dims)
    meas = ",\n    ".join(f"{m.name} bigint NOT NULL DEFAULT 0" for m in h.measures)
    out = []
    for lvl in LEVELS:
        t = h.table(lvl)
        out.append(f"CREATE TABLE {t} (\n    date_time_key bigint NOT NULL,\n    {dims},\n    {meas},\n"
                   f"    PRIMARY KEY (date_time_key, {', '.join(h.dims)})\n)")
        out.append(f"CREATE INDEX {t}_media ON {t} (media_type_key, date_time_key)")
        out.append(f"CREATE INDEX {t}_dims ON {t} ({', '.join(h.dims)}, date_time_key)")
        out.append(_view(h, lvl))
    aggs = ", ".join(f"{m.agg}(a.{m.name})::bigint AS {m.name}" for m in h.measures)
    out.append(
        f"CREATE VIEW {h.view('WEEK')} AS\nSELECT w.date_time_week_key AS date_time_key, {', '.join('a.' + d for d in h.dims)}, "
        f"{aggs}\n  FROM {h.table('DAY')} a JOIN date_time w ON w.date_time_key = a.date_time_key\n"
        f" GROUP BY w.date_time_week_key, {', '.join('a.' + d for d in h.dims)}"
    )
    return out


def _view(h: Hierarchy, lvl: str) -> str:
    label = {"SUBHOUR": "label_yyyy_mm_dd_hh24_subhr", "HOUR": "label_yyyy_mm_dd_hh24", "DAY": "label_yyyy_mm_dd",
             "MONTH": "label_yyyy_mm", "QUARTER": "label_yyyy_qq", "YEAR": "label_yyyy"}[lvl]
    return (f"CREATE VIEW {h.view(lvl)} AS\nSELECT a.*, dt.{label} AS period_label, dt.cal_date, mt.media_name, "
            f"mt.is_online\n  FROM {h.table(lvl)} a\n  LEFT JOIN date_time dt ON dt.date_time_key = a.date_time_key\n"
            f"  LEFT JOIN media_type mt ON mt.media_type_key = a.media_type_key")


def drop(h: Hierarchy) -> list[str]:
    return [f"DROP TABLE IF EXISTS {h.table(lvl)} CASCADE" for lvl in LEVELS]


def ddl_hash(h: Hierarchy) -> str:
    return hashlib.sha1("\n".join(ddl(h)).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------- DML
FLAVOR_SQL = "media_type_key IN (SELECT media_type_key FROM media_type WHERE is_online = %(online)s)"


def _source_select(h: Hierarchy, s: Source, flavor: bool) -> str:
    dims = ", ".join(f"({s.dims[d]})::bigint AS {d}" for d in h.dims)
    fl = f"\n   AND f.{FLAVOR_SQL}" if flavor else ""
    if s.rule == "disposition":
        key = f"({s.key_col} - mod({s.key_col}, %(S)s))"
        meas = ", ".join(f"({s.measures.get(m.name, '0')})::bigint AS {m.name}" for m in h.measures)
        return (f"SELECT {key} AS date_time_key, {dims}, {meas}\n  FROM {s.from_sql}\n WHERE ({s.where})\n"
                f"   AND {s.key_col} >= %(lo)s AND {s.key_col} < %(hi)s AND {key} = ANY(%(keys)s){fl}")
    ov = "(least(f.end_ts, g.k + %(S)s) - greatest(f.start_ts, g.k))"
    st = "(f.start_ts >= g.k AND f.start_ts < g.k + %(S)s)::int"
    meas = ", ".join(f"({s.measures.get(m.name, '0').format(ov=ov, st=st)})::bigint AS {m.name}" for m in h.measures)
    return (f"SELECT g.k AS date_time_key, {dims}, {meas}\n  FROM {s.from_sql}\n"
            f"  CROSS JOIN LATERAL generate_series(greatest(f.start_ts - mod(f.start_ts, %(S)s), %(lo)s),\n"
            f"                                     least(greatest(f.start_ts, f.end_ts - 1), %(hi)s - 1), %(S)s) g(k)\n"
            f" WHERE ({s.where}) AND f.end_ts IS NOT NULL\n"
            f"   AND {s.key_col} >= %(lo)s - {int(s.lookback)} AND {s.key_col} < %(hi)s AND f.end_ts >= %(lo)s\n"
            f"   AND g.k = ANY(%(keys)s){fl}")


def insert_from_facts(h: Hierarchy, *, flavor: bool, present: set[str]) -> str | None:
    """INSERT of the SUBHOUR rows for the sub-hour keys ``%(keys)s`` within ``[%(lo)s, %(hi)s)``."""
    parts = [_source_select(h, s, flavor) for s in h.sources if not s.requires or s.requires in present]
    if not parts:
        return None
    cols = ", ".join(["date_time_key", *h.dims, *(m.name for m in h.measures)])
    aggs = ", ".join(f"sum({m.name})" if m.agg == "sum" else f"max({m.name})" for m in h.measures)
    union = "\n UNION ALL\n".join(parts)
    return (f"INSERT INTO {h.table('SUBHOUR')} ({cols})\nSELECT date_time_key, {', '.join(h.dims)}, {aggs}\n"
            f"  FROM (\n{union}\n) s\n GROUP BY date_time_key, {', '.join(h.dims)}")


def insert_rollup(h: Hierarchy, level: str, *, flavor: bool) -> str:
    """INSERT of ``level`` rows for the period keys ``%(keys)s`` from the level below (rows in
    ``[%(lo)s, %(hi)s)``)."""
    below = LEVELS[LEVELS.index(level) - 1]
    cols = ", ".join(["date_time_key", *h.dims, *(m.name for m in h.measures)])
    aggs = ", ".join(f"{m.agg}(a.{m.name})" for m in h.measures)
    pk = f"gim_agg_period_key(a.date_time_key, '{level}')"
    fl = f" AND a.{FLAVOR_SQL}" if flavor else ""
    return (f"INSERT INTO {h.table(level)} ({cols})\nSELECT {pk}, {', '.join('a.' + d for d in h.dims)}, {aggs}\n"
            f"  FROM {h.table(below)} a\n WHERE a.date_time_key >= %(lo)s AND a.date_time_key < %(hi)s"
            f" AND {pk} = ANY(%(keys)s){fl}\n GROUP BY 1, {', '.join('a.' + d for d in h.dims)}")


def delete_keys(h: Hierarchy, level: str, *, flavor: bool) -> str:
    fl = f" AND {FLAVOR_SQL}" if flavor else ""
    return f"DELETE FROM {h.table(level)} WHERE date_time_key = ANY(%(keys)s){fl}"


# The roll-up of an incremental batch recomputes only the (period, dimensions) groups whose rows in
# the level below changed: ``agg_touched`` holds them, level by level (temporary, per transaction).
PERIOD_MAX = {"HOUR": 3600, "DAY": 86400, "MONTH": 31 * 86400, "QUARTER": 92 * 86400, "YEAR": 366 * 86400}


def touched_table(h: Hierarchy) -> str:
    return f"agg_touched_{h.stem}"


def create_touched(h: Hierarchy) -> list[str]:
    cols = ", ".join(f"{d} bigint" for d in h.dims)
    t = touched_table(h)
    return [f"CREATE TEMP TABLE IF NOT EXISTS {t} (date_time_key bigint, {cols}) ON COMMIT DELETE ROWS",
            f"CREATE TEMP TABLE IF NOT EXISTS {t}_up (date_time_key bigint, {cols}) ON COMMIT DELETE ROWS"]


def collect_touched(h: Hierarchy, level: str, *, flavor: bool) -> str:
    """Add the groups of ``level`` rows at ``%(keys)s`` (before the delete and after the insert)."""
    fl = f" AND {FLAVOR_SQL}" if flavor else ""
    return (f"INSERT INTO {touched_table(h)} SELECT date_time_key, {', '.join(h.dims)} FROM {h.table(level)} "
            f"WHERE date_time_key = ANY(%(keys)s){fl}")


def touched_up(h: Hierarchy, level: str) -> list[str]:
    """Map the touched groups of the level below to ``level`` (periods holding them)."""
    t, dims = touched_table(h), ", ".join(h.dims)
    return [f"TRUNCATE {t}_up",
            f"INSERT INTO {t}_up SELECT DISTINCT gim_agg_period_key(date_time_key, '{level}'), {dims} FROM {t}",
            f"TRUNCATE {t}",
            f"INSERT INTO {t} SELECT * FROM {t}_up"]


def delete_touched(h: Hierarchy, level: str) -> str:
    t = touched_table(h)
    on = " AND ".join(f"a.{d} = t.{d}" for d in ("date_time_key", *h.dims))
    return f"DELETE FROM {h.table(level)} a USING {t} t WHERE {on}"


def insert_touched(h: Hierarchy, level: str) -> str:
    below = LEVELS[LEVELS.index(level) - 1]
    t = touched_table(h)
    cols = ", ".join(["date_time_key", *h.dims, *(m.name for m in h.measures)])
    aggs = ", ".join(f"{m.agg}(a.{m.name})" for m in h.measures)
    on = " AND ".join(f"a.{d} = t.{d}" for d in h.dims)
    return (f"INSERT INTO {h.table(level)} ({cols})\nSELECT t.date_time_key, {', '.join('t.' + d for d in h.dims)}, "
            f"{aggs}\n  FROM {t} t JOIN {h.table(below)} a ON {on}\n"
            f"   AND a.date_time_key >= t.date_time_key AND a.date_time_key < t.date_time_key + {PERIOD_MAX[level]}\n"
            f"   AND gim_agg_period_key(a.date_time_key, '{level}') = t.date_time_key\n"
            f" GROUP BY t.date_time_key, {', '.join('t.' + d for d in h.dims)}")


# ------------------------------------------------------------------------------- docs
def measures_markdown() -> str:
    """docs/measures.md: every hierarchy, its tables, dimensions and measures."""
    lines = [
        "# Aggregate measures (generated)",
        "",
        "Generated from `gim_jobs/aggregation/hierarchies.py` by `python -m gim_jobs.aggregation.docs`; "
        "do not edit.",
        "",
        "Every hierarchy has tables `agt_<stem>_subhr|hour|day|month|quarter|year` keyed by "
        "`date_time_key` (epoch second of the period start, GMT like the default `date_time` calendar) "
        "plus its dimensions, and views `ag2_<stem>_<level>` (with the period label, media name and "
        "online flag) and `ag2_<stem>_week` (days summed by `date_time.date_time_week_key`). SUBHOUR "
        "(`[gim-etl] sub-hour-interval`, 15 or 30 min) is computed from the facts; HOUR from SUBHOUR, "
        "DAY from HOUR, MONTH from DAY, QUARTER from MONTH, YEAR from QUARTER. Measures marked max "
        "take the maximum of the level below, all others the sum. Flavors: Online = media types with "
        "`media_type.is_online = 1` (voice, chat), Offline = the others (email, ...).",
        "",
        "Interval rules: *disposition* measures count a fact row once, in the interval of the moment "
        "named; *interval* measures spread an ended fact row over every interval its "
        "`[start_ts, end_ts)` overlaps (seconds inside the interval; counts in the interval where it "
        "started). Interval-based facts are searched a bounded time back from an interval (24 h for login "
        f"sessions, {SHORT_LOOKBACK_SECONDS // 60} min for agent states, which the transform closes after "
        "max-state-duration, and agent IRF rows); a fact lasting longer contributes only its last part.",
        "",
    ]
    for name in NAMES:
        h = HIERARCHIES[name]
        lines += [f"## {h.name} (`agt_{h.stem}_*`)", "", h.doc + ".", ""]
        lines.append("Dimensions: " + ", ".join(f"`{d}` ({h.dim_doc.get(d, d)})" for d in h.dims) + ".")
        lines.append("")
        for s in h.sources:
            lines.append(f"- source `{s.fact}`, rule *{s.rule}*: {s.counts_in}")
        lines += ["", "| measure | from | rolls up | meaning |", "|---|---|---|---|"]
        for m in h.measures:
            facts = ", ".join(f"`{s.fact}`" for s in h.sources if m.name in s.measures)
            lines.append(f"| `{m.name}` | {facts} | {m.agg} | {m.doc} |")
        lines.append("")
    return "\n".join(lines) + "\n"
