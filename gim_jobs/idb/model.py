"""The contact center as a discrete-event model, shared by batch and live mode.

One ``Model`` owns the clock, the event heap, the agents and the interactions in flight. Handlers
run in time order (ties by scheduling order, so a seed gives the same run every time) and record
what happened as ICON would: entities (``IR``, ``Call``, ``Party``, ``Session``) that start active
and end later, and insert-only history lines (g_party_history, g_agent_state_history,
g_agent_state_rc) in tab-separated COPY text. How and when those reach the database (final rows in
one COPY for batch, INSERT-then-UPDATE for live) is the writer's business (``writer.py``), so the
behaviour is written once.

The model also keeps the ground truth as it goes (per interaction and per queue / agent party) and
emits ``sim.truth_*`` lines: see ``truth.py`` for what every measure means in IDB rows.

What the rows look like (codes of gim_jobs/db/sql/idb/001_icon.sql; "P(x) 1,6" = party x with
g_party_history changetypes 1 then 6):

* Every interaction: one g_ir (interaction_type 'Inbound', subtype 'InboundNew', root_irid = irid),
  one g_call call_type 2 (inbound) and a customer party (party_type 3, role 1; endpoint = trunk 601
  for voice, NULL otherwise) with history 1 at arrival and 6 when the interaction ends; its
  end_cause is always 'completed' (abandons are recorded on the queue / agent party).
* Voice via ACD queue, chat and e-mail via interaction queue: queue party (type 1, role 2, parent =
  customer party) 1 at arrival. Voice via virtual queue: routing point party (type 4, role 2,
  parent = customer) 1, then 6 'completed' after 1-3 s of routing, then the virtual-queue party
  (type 1, parent = routing point party) 1.
* Queue party ends: 'abandoned' (customer hung up; the interaction ends there), 'completed' when
  distributed (at the moment the agent starts ringing) or 'cleared' (virtual queue overflow: a new
  queue party at the overflow queue, parent = the cleared one).
* Agent party (type 2, role 2, parent = the queue party) 2 ringing, then either 3 established, or
  6 'abandoned_ringing' (interaction ends), or 6 'redirected' (ring no answer: the agent goes
  NotReady 'RONA' and a new queue party at the same queue, parent = this agent party, re-queues).
* Talking (voice): optional 4 held / 5 retrieved. Blind transfer: a second agent's party (role 5,
  parent = first agent party) 2 then 3, and the first agent's party 6 'transferred'. Consultation:
  first agent's party 4, a call_type 4 g_call with the consulting agent's party (role 1, 3 at once)
  and the consulted agent's party (role 3, parent = first agent's main party) 2, 3; both 6
  'completed'; then either 5 (retrieve, talk goes on) or a transfer: consulted agent gets a role 5
  party on the customer call (3 at once) and the first agent's party 6 'transferred'. Conference:
  a role 4 party (parent = first agent's party) 2, 3, later 6 'conferenced'; the first agent goes
  on. Release: 6 'completed'; the last agent's release ends the customer party, call and g_ir.
* Agents: g_login_session per shift (endpoint = the agent's extension); state rows 1 Ready at login
  and whenever free, 3 Busy when a party starts ringing, 4 AfterCallWork (partyid = the released
  party) after 'completed' / 'transferred' / 'conferenced' releases (with the media's acw_p),
  2 NotReady with a reason code (+ a g_agent_state_rc row) for breaks and RONA, 5 LoggedOut at
  the session end. Agents on duty follow the hourly staffing; e-mail agents work business hours, so
  e-mails wait overnight and over Sunday (active for hours to days).
* Configuration changes: every ``config_change_interval_s`` an agent is added (gc_agent, its
  extension, team and skill rows inserted) or the last agent of the voice roster is deleted
  (deleted_ts set by UPDATE once it is logged out).
"""

from __future__ import annotations

import math
import random
from collections import deque
from heapq import heappop, heappush

from gim_jobs.idb.config import (
    DN_VIRTUAL_QUEUE,
    EMAIL,
    RONA_REASON,
    ROUTING_POINT_ID,
    TRUNK_DN,
    TRUNK_ID,
    VOICE,
    AgentSpec,
    FaultSpec,
    MediaSpec,
    QueueSpec,
    SimConfig,
)
from gim_jobs.idb.outbound import Outbound

NULL = "\\N"
READY, NOT_READY, BUSY, ACW, LOGGED_OUT = 1, 2, 3, 4, 5
# party_type / role / changetype / call_type codes of 001_icon.sql
PT_QUEUE, PT_AGENT, PT_CUSTOMER, PT_ROUTING_POINT = 1, 2, 3, 4
R_ORIGINATOR, R_RECEIVER, R_CONSULT, R_CONFERENCE, R_TRANSFER = 1, 2, 3, 4, 5
CT_QUEUED, CT_RINGING, CT_ESTABLISHED, CT_HELD, CT_RETRIEVED, CT_RELEASED = 1, 2, 3, 4, 5, 6
CALL_INBOUND, CALL_CONSULT = 2, 4
EXCLUDING_FAULTS = frozenset({"orphan_party", "malformed"})

_XFER, _CONSULT, _CONF = 1, 2, 3
_SUBJECTS = {
    VOICE: NULL,
    "chat": "Web chat",
    EMAIL: ("Order status", "Invoice question", "Change of address", "Complaint", "Return request",
            "Password reset", "Product information", "Cancel subscription"),
}


class IR:
    __slots__ = (
        "irid", "run", "media", "ms", "head", "created", "terminated", "ended", "persisted",
        "cust", "call", "calls", "parties", "queue", "qparty", "qentered", "first_q", "deadline",
        "waiting", "wtok", "nagents", "answered", "answered_ts", "first_agent", "abandoned",
        "abandoned_ringing", "redirected", "transferred", "consulted", "conferenced", "talk", "hold",
        "acw", "consult_s", "open_acw", "faults", "orphan", "malformed_pending", "unknown_pending",
        "truth_written", "dirty",
    )


class Call:
    __slots__ = ("callid", "ir", "head", "call_type", "created", "terminated", "ended", "persisted",
                 "nopen", "orphan")


class Party:
    __slots__ = ("pid", "ir", "call", "head", "hline", "ptype", "role", "ep", "agent", "created",
                 "terminated", "end", "cause", "ended", "persisted", "est", "held_since", "hold", "talk",
                 "acw", "remaining", "bad")


class Session:
    __slots__ = ("lsid", "agent", "head", "login", "logout", "ended", "persisted")


class Agent:
    __slots__ = ("id", "ep", "pool", "skills", "queues", "session", "state", "idle", "idle_tok",
                 "leaving", "on_duty", "login_pending", "delete_pending", "busy", "nr_tok",
                 "st_id", "st_head", "st_written", "acw_party", "acw_start")

    def __init__(self, spec: AgentSpec, pool: Pool):
        self.id = spec.agent_id
        self.ep = spec.endpoint_id
        self.pool = pool
        self.skills = tuple(spec.skills)
        self.queues: list[Queue] = []
        self.session: Session | None = None
        self.state = LOGGED_OUT
        self.idle = False
        self.idle_tok = 0
        self.leaving = False
        self.on_duty = False
        self.login_pending = False
        self.delete_pending = False
        self.busy = False
        self.nr_tok = 0
        self.st_id: int | None = None
        self.st_head = ""
        self.st_written = False
        self.acw_party: Party | None = None
        self.acw_start = 0


class Queue:
    __slots__ = ("spec", "key", "ep", "skill", "pool", "waiting", "overflow")

    def __init__(self, spec: QueueSpec, pool: Pool):
        self.spec = spec
        self.key = spec.key
        self.ep = spec.endpoint_id
        self.skill = spec.skill
        self.pool = pool
        self.waiting: deque = deque()
        self.overflow: Queue | None = None


class Pool:
    """The agents of one media type and the queues they serve."""

    __slots__ = ("media", "ms", "roster", "idle", "queues", "cum_weights", "aht")

    def __init__(self, ms: MediaSpec, cfg: SimConfig):
        self.media = ms.name
        self.ms = ms
        self.roster: list[Agent] = []
        self.idle: dict[str, deque] = {}
        self.queues: list[Queue] = []
        self.cum_weights: list[float] = []
        self.aht = average_handle_time(ms, cfg)


def _ri(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]; random.randint is several times slower in CPython."""
    return lo + int(rng.random() * (hi - lo + 1))


def average_handle_time(ms: MediaSpec, cfg: SimConfig) -> float:
    """Agent seconds one interaction of this media occupies on average (for staffing)."""
    ring = (ms.ring_s[0] + ms.ring_s[1]) / 2
    breaks = sum(r.weight * (r.duration_s[0] + r.duration_s[1]) / 2 for r in cfg.reasons)
    breaks /= max(sum(r.weight for r in cfg.reasons), 1e-9)
    aht = ring + ms.handle_mean_s + ms.acw_p * ms.acw_mean_s + cfg.not_ready_after_call_p * breaks
    if ms.name == VOICE:
        aht += cfg.hold_p * sum(cfg.hold_s) / 2
        aht += (cfg.transfer_p + cfg.consult_p * cfg.consult_transfer_p) * ms.handle_mean_s
        aht += cfg.consult_p * sum(cfg.consult_s) + cfg.conference_p * sum(cfg.conference_s) / 2
    return aht


def local_hour_dow(t: int, offset_hours: int) -> tuple[int, int]:
    lt = t + offset_hours * 3600
    days = lt // 86400
    return (lt % 86400) // 3600, (days + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)


def required_agents(ms: MediaSpec, cfg: SimConfig, rate_at, t: int, aht: float) -> int:
    """Agents to have on duty at ``t`` for a media whose arrival rate (per second) is ``rate_at(t)``.

    Online media: square-root staffing on the current load. Offline media (e-mail): only in staffed
    hours, sized for the day's volume spread over those hours, times ``capacity_factor``.
    """
    if ms.offline:
        hour, dow = local_hour_dow(t, cfg.utc_offset_hours)
        if ms.staffed_hours is not None:
            lo, hi = ms.staffed_hours
            if not (lo <= hour < hi) or dow not in ms.staffed_weekdays:
                return 0
            staffed = hi - lo
        else:
            staffed = 24
        day_rate = sum(rate_at(t + h * 3600) for h in range(-12, 12)) / 24
        load = day_rate * aht * 24 / staffed * ms.capacity_factor
    else:
        load = rate_at(t) * aht
    if load <= 0:
        return 0
    factor = cfg.staffing_factor * ms.staffing_factor
    return max(1, math.ceil(load * factor + cfg.staffing_beta * math.sqrt(load)))


class Model:
    """The simulated center. ``run_until(limit)`` processes every event with time < limit."""

    def __init__(self, cfg: SimConfig, faults: FaultSpec, agents: list[AgentSpec], *, next_agent_id: int):
        self.cfg = cfg
        self.set_faults(faults)
        self.rng = random.Random(cfg.seed)
        self.frng = random.Random(cfg.seed * 1_000_003 + 7)  # faults: on or off, traffic is the same
        self.heap: list = []
        self.seq = 0
        self.now = 0
        self.run_id = 0
        self.prefix = ""
        self.n_ir = self.n_call = self.n_party = self.n_sess = self.n_unknown = 0
        self.hid = self.sid = self.rcid = 1
        self.next_agent_id = next_agent_id
        self.truth = True
        self.track_new = False
        self.flush_no = 0
        self.last_hist_t = -1
        self.streams: list = []
        self.config_kind = "add"
        self.pools: dict[str, Pool] = {}
        self.queues: dict[str, Queue] = {}
        for ms in cfg.media:
            self.pools[ms.name] = Pool(ms, cfg)
        for qs in cfg.queues:
            q = Queue(qs, self.pools[qs.media])
            self.queues[qs.key] = q
            q.pool.queues.append(q)
        for q in self.queues.values():
            if q.spec.overflow_to:
                q.overflow = self.queues[q.spec.overflow_to]
        for pool in self.pools.values():
            acc = 0.0
            for q in pool.queues:
                acc += q.spec.weight
                pool.cum_weights.append(acc)
        self.agents: dict[int, Agent] = {}
        for spec in agents:
            if spec.media in self.pools:  # agents of a media this configuration lacks stay idle
                self._add_agent(spec)
        self.next_agent_id = max([next_agent_id] + [s.agent_id + 1 for s in agents])
        self.active_irs: dict[str, IR] = {}
        self.late: list[tuple[int, int, str]] = []
        self.stats = dict.fromkeys(
            ("arrivals", "ended", "answered", "abandoned", "abandoned_ringing", "completed"), 0)
        self.clear_output()

    # ------------------------------------------------------------------ output buffers
    def clear_output(self) -> None:
        self.out_hist: list[str] = []
        self.out_state: list[str] = []
        self.out_rc: list[str] = []
        self.end_ir: list[IR] = []
        self.end_call: list[Call] = []
        self.end_party: list[Party] = []
        self.end_sess: list[Session] = []
        self.new_ir: list[IR] = []
        self.new_call: list[Call] = []
        self.new_party: list[Party] = []
        self.new_sess: list[Session] = []
        self.truth_ir: list[str] = []
        self.truth_party: list[str] = []
        self.truth_state: list[str] = []
        self.truth_fault: list[str] = []
        self.truth_del_ir: list[str] = []
        self.truth_del_state: list[int] = []
        self.cfg_add: list[tuple[AgentSpec, int]] = []
        self.cfg_del: list[tuple[int, int]] = []

    def pending_lines(self) -> int:
        return len(self.out_hist) + len(self.out_state) + 3 * len(self.end_party) + len(self.truth_state)

    # ------------------------------------------------------------------ setup
    def _add_agent(self, spec: AgentSpec, front: bool = False) -> Agent:
        pool = self.pools[spec.media]
        a = Agent(spec, pool)
        a.queues = [q for q in pool.queues if q.skill in a.skills]
        for s in a.skills:
            pool.idle.setdefault(s, deque())
        if front:
            pool.roster.insert(0, a)
        else:
            pool.roster.append(a)
        self.agents[a.id] = a
        return a

    def add_agents(self, specs: list[AgentSpec]) -> None:
        for spec in specs:
            if spec.agent_id not in self.agents and spec.media in self.pools:
                self._add_agent(spec)
            self.next_agent_id = max(self.next_agent_id, spec.agent_id + 1)

    def begin_run(self, run_id: int, streams: list, start: int, *, config_interval: int,
                  first_run: bool) -> None:
        """Start (or resume) a run at ``start`` with new arrival streams and a new id prefix."""
        self.run_id = run_id
        self.prefix = f"s{self.cfg.seed}r{run_id}."
        self.n_ir = self.n_call = self.n_party = self.n_sess = self.n_unknown = 0
        # arrivals of a previous run (live streams) are replaced by the new streams
        self.heap = [e for e in self.heap if e[2] is not Model._ev_arrival]
        self.heap.sort()
        self.streams = streams
        for st in streams:
            t = st.next()
            if t is not None:
                self._push(t, Model._ev_arrival, st, None)
        if first_run:
            self.now = start
            self._push(start, Model._ev_staff, None, None)
            if config_interval > 0:
                self._push(start + config_interval, Model._ev_config, None, config_interval)
        else:
            # staffing and config changes continue on their own schedule (pickled in the heap)
            if not any(e[2] is Model._ev_staff for e in self.heap):
                self._push(max(start, self.now), Model._ev_staff, None, None)
        if getattr(self, "ocs", None) is None:  # outbound dialer (models saved before it existed lack it)
            self.ocs = Outbound(self.cfg)
        self.ocs.begin_run(self, start, first_run)

    def rate(self, media: str, t: int) -> float:
        return sum(st.rate(t) for st in self.streams if st.media == media)

    def skill_needs(self, pool: Pool, t: int) -> dict[str, int]:
        """Agents each skill of the pool needs on duty at ``t`` (each skill staffed on its own)."""
        total = pool.cum_weights[-1] if pool.cum_weights else 0.0
        shares: dict[str, float] = {}
        for q in pool.queues:
            shares[q.skill] = shares.get(q.skill, 0.0) + (q.spec.weight / total if total else 0.0)
        media = pool.media
        return {
            s: required_agents(pool.ms, self.cfg, lambda x, f=f: self.rate(media, x) * f, t, pool.aht)
            for s, f in shares.items()
        }

    # ------------------------------------------------------------------ engine
    def _push(self, t: int, fn, obj, arg) -> None:
        self.seq += 1
        heappush(self.heap, (t, self.seq, fn, obj, arg))

    def run_until(self, limit: int, flush=None, flush_lines: int = 0) -> None:
        """Process events with time < ``limit``; ``flush()`` is called when buffers are large."""
        heap = self.heap
        n = 0
        while heap and heap[0][0] < limit:
            t, _, fn, obj, arg = heappop(heap)
            self.now = t
            fn(self, obj, arg, t)
            n += 1
            if flush is not None and not (n & 1023) and self.pending_lines() >= flush_lines:
                flush()
        if self.now < limit - 1:
            self.now = limit - 1

    # ------------------------------------------------------------------ rows
    def hist(self, p: Party, ct: int, t: int) -> None:
        hid = self.hid
        self.hid = hid + 1
        line = f"{hid}{p.hline}{ct}\t{t}\n"
        ir = p.ir
        ir.dirty = True
        if self._fault_rows:
            self._hist_faulty(p, ir, line, hid, ct, t)
        else:
            self.out_hist.append(line)
        self.last_hist_t = t

    def set_faults(self, faults: FaultSpec) -> None:
        self.faults = faults
        self._fault_rows = faults.any_row

    def _hist_faulty(self, p: Party, ir: IR, line: str, hid: int, ct: int, t: int) -> None:
        f = self.faults
        r = self.frng.random
        if ir.unknown_pending:
            ir.unknown_pending = False
            self.n_unknown += 1
            uid = self.hid
            self.hid += 1
            self.out_hist.append(f"{uid}\t{self.prefix}x{self.n_unknown}\t{p.call.callid}\t{ir.media}\t{ct}\t{t}\n")
            self._fault(ir, "unknown_party", "g_party_history", uid, "partyid exists nowhere")
        if f.late_rows and r() < f.late_rows:
            due = t + _ri(self.frng, *f.late_delay_s)
            self.late.append((due, self.flush_no, line))
            self._fault(ir, "late", "g_party_history", hid, f"written in a later batch, due {due}")
            return
        if f.out_of_order and r() < f.out_of_order and self.out_hist and self.last_hist_t < t:
            self.out_hist.insert(len(self.out_hist) - 1, line)
            self._fault(ir, "out_of_order", "g_party_history", hid, "written before an earlier row")
        else:
            self.out_hist.append(line)
        if f.duplicated and r() < f.duplicated:
            did = self.hid
            self.hid += 1
            self.out_hist.append(f"{did}{p.hline}{ct}\t{t}\n")
            self._fault(ir, "duplicate", "g_party_history", did, f"duplicate of id {hid}")

    def _fault(self, ir: IR, kind: str, table: str, key, detail: str) -> None:
        if ir.faults is None:
            ir.faults = set()
        ir.faults.add(kind)
        ir.dirty = True
        if self.truth:
            self.truth_fault.append(f"{ir.irid}\t{kind}\t{table}\t{key}\t{detail}\n")

    def _set_state(self, a: Agent, state: int, t: int, reason=None, party: Party | None = None) -> None:
        sess = a.session
        media = a.pool.media
        sid = self.sid
        self.sid = sid + 1
        rc = reason.code if reason is not None else NULL
        pid = party.pid if party is not None else NULL
        line = f"{sid}\t{sess.lsid}\t{a.id}\t{media}\t{state}\t{rc}\t{pid}\t{t}\t"
        self.out_state.append(line[:-1] + "\n")
        if reason is not None:
            rcid = self.rcid
            self.rcid = rcid + 1
            self.out_rc.append(f"{rcid}\t{sess.lsid}\t{a.id}\t{media}\t{rc}\t{reason.text}\t{t}\n")
        if self.truth:
            if a.st_id is not None:
                if a.st_written:
                    self.truth_del_state.append(a.st_id)
                self.truth_state.append(f"{a.st_head}{t}\n")
            a.st_head = line  # the truth row: the same columns, then end_ts
            a.st_written = False
        a.st_id = sid
        a.state = state

    # ------------------------------------------------------------------ entities
    def _new_ir(self, media: str, ms: MediaSpec, q: Queue, t: int) -> IR:
        rng = self.rng
        self.n_ir += 1
        irid = f"{self.prefix}i{self.n_ir}"
        ir = IR()
        ir.irid = irid
        ir.run = self.run_id
        ir.media = media
        ir.ms = ms
        if media == VOICE:
            src = f"+1555{int(rng.random() * 10_000_000):07d}"
            dst = "8005550100" if q.spec.dn_type == DN_VIRTUAL_QUEUE else f"800555{q.spec.dn}"
            subj = NULL
        elif media == EMAIL:
            src = f"customer{int(rng.random() * 1_000_000)}@example.com"
            dst = "support@example.com"
            subj = _SUBJECTS[EMAIL][int(rng.random() * len(_SUBJECTS[EMAIL]))]
        else:
            src = f"visitor{int(rng.random() * 1_000_000)}"
            dst = "www.example.com/chat"
            subj = _SUBJECTS.get(media, NULL)
        ir.head = f"{irid}\t{irid}\t1\t{media}\tInbound\tInboundNew\t{src}\t{dst}\t{subj}\t"
        ir.created = t
        ir.terminated = None
        ir.ended = ir.persisted = False
        ir.calls = []
        ir.parties = []
        ir.queue = q
        ir.qparty = None
        ir.qentered = t
        ir.first_q = q.ep
        ir.deadline = None
        ir.waiting = False
        ir.wtok = 0
        ir.nagents = 0
        ir.answered = ir.abandoned = ir.abandoned_ringing = False
        ir.transferred = ir.consulted = ir.conferenced = False
        ir.answered_ts = ir.first_agent = None
        ir.redirected = ir.talk = ir.hold = ir.acw = ir.consult_s = ir.open_acw = 0
        ir.faults = None
        ir.orphan = ir.malformed_pending = ir.unknown_pending = False
        ir.truth_written = False
        ir.dirty = True
        f = self.faults
        if f.orphan_party or f.malformed or f.unknown_party:
            fr = self.frng.random
            if f.orphan_party and fr() < f.orphan_party:
                ir.orphan = True
            if f.malformed and fr() < f.malformed:
                ir.malformed_pending = True
            if f.unknown_party and fr() < f.unknown_party:
                ir.unknown_pending = True
        self.active_irs[irid] = ir
        if self.track_new:
            self.new_ir.append(ir)
        ir.call = self._new_call(ir, CALL_INBOUND, t)
        if ir.orphan:
            self._fault(ir, "orphan_party", "g_call", ir.call.callid, "g_call never written")
        return ir

    def _new_call(self, ir: IR, call_type: int, t: int) -> Call:
        self.n_call += 1
        callid = f"{self.prefix}c{self.n_call}"
        c = Call()
        c.callid = callid
        c.ir = ir
        c.call_type = call_type
        connid = f"{(self.cfg.seed * 0x9E3779B1 + self.run_id * 0x85EBCA6B + self.n_call) & 0xFFFFFFFFFFFF:012X}"
        c.head = f"{callid}\t{ir.irid}\t{connid}\t{ir.media}\t{call_type}\t"
        c.created = t
        c.terminated = None
        c.ended = c.persisted = False
        c.nopen = 0
        c.orphan = ir.orphan
        ir.calls.append(c)
        if self.track_new:
            self.new_call.append(c)
        return c

    def _party(self, ir: IR, call: Call, ptype: int, role: int, ep, agent: Agent | None,
               parent: Party | None, t: int) -> Party:
        self.n_party += 1
        pid = f"{self.prefix}p{self.n_party}"
        p = Party()
        p.pid = pid
        p.ir = ir
        p.call = call
        p.ptype = ptype
        p.role = role
        p.ep = ep
        p.agent = agent
        p.created = t
        p.terminated = p.end = p.cause = p.est = p.held_since = None
        p.ended = p.persisted = p.bad = False
        p.hold = p.talk = p.acw = p.remaining = 0
        callid = call.callid
        media = ir.media
        p.head = (f"{pid}\t{callid}\t{ir.irid}\t{NULL if ep is None else ep}\t"
                  f"{NULL if agent is None else agent.id}\t{ptype}\t{role}\t"
                  f"{NULL if parent is None else parent.pid}\t{media}\t")
        p.hline = f"\t{pid}\t{callid}\t{media}\t"
        call.nopen += 1
        ir.parties.append(p)
        if self.track_new:
            self.new_party.append(p)
        return p

    def _end_party(self, p: Party, t: int, cause: str) -> None:
        self.hist(p, CT_RELEASED, t)
        p.terminated = p.end = t
        p.cause = cause
        p.ended = True
        ir = p.ir
        if ir.malformed_pending and (p.ptype == PT_AGENT or cause == "abandoned"):
            ir.malformed_pending = False
            p.bad = True
            p.terminated = p.created - _ri(self.frng, 60, 3600)
            self._fault(ir, "malformed", "g_party", p.pid, "terminated_ts < created_ts")
        self.end_party.append(p)
        c = p.call
        c.nopen -= 1
        if c.nopen == 0:
            c.terminated = t
            c.ended = True
            self.end_call.append(c)

    def _end_interaction(self, ir: IR, t: int) -> None:
        if not ir.cust.ended:
            self._end_party(ir.cust, t, "completed")
        ir.terminated = t
        ir.ended = True
        ir.dirty = True
        self.end_ir.append(ir)
        st = self.stats
        st["ended"] += 1
        if ir.answered:
            st["answered"] += 1
        if ir.abandoned:
            st["abandoned"] += 1
        if ir.abandoned_ringing:
            st["abandoned_ringing"] += 1
        if ir.open_acw == 0:
            self._complete(ir)

    def _complete(self, ir: IR) -> None:
        """Interaction ended and every ACW attributed to it is over: its truth is final."""
        del self.active_irs[ir.irid]
        self.stats["completed"] += 1
        if self.truth:
            self._truth_lines(ir, True)
        # Nothing refers to its parties and calls any more but the writer's buffers: break the
        # IR <-> party / call cycles so reference counting frees them (the cyclic GC would cost
        # ~40 % of the run).
        ir.parties = ir.calls = None
        ir.cust = ir.call = ir.qparty = None

    # ------------------------------------------------------------------ truth lines
    def _truth_lines(self, ir: IR, complete: bool) -> None:
        if ir.truth_written:
            self.truth_del_ir.append(ir.irid)
        ir.truth_written = True
        ir.dirty = False
        faults = ir.faults
        fault = ",".join(sorted(faults)) if faults else NULL
        excluded = "t" if faults and not EXCLUDING_FAULTS.isdisjoint(faults) else "f"
        self.truth_ir.append(
            f"{ir.irid}\t{ir.run}\t{ir.media}\tInbound\t{ir.first_q}\t"
            f"{NULL if ir.first_agent is None else ir.first_agent}\t{ir.created}\t"
            f"{'t' if ir.answered else 'f'}\t{NULL if ir.answered_ts is None else ir.answered_ts}\t"
            f"{'t' if ir.abandoned else 'f'}\t{'t' if ir.abandoned_ringing else 'f'}\t{ir.redirected}\t"
            f"{'t' if ir.transferred else 'f'}\t{'t' if ir.consulted else 'f'}\t"
            f"{'t' if ir.conferenced else 'f'}\t{ir.talk}\t{ir.hold}\t{ir.acw}\t{ir.consult_s}\t"
            f"{'t' if ir.ended else 'f'}\t{NULL if ir.terminated is None else ir.terminated}\t"
            f"{'t' if complete else 'f'}\t{fault}\t{excluded}\n")
        out = self.truth_party
        for p in ir.parties:
            if p.ptype == PT_QUEUE or p.ptype == PT_AGENT:
                out.append(
                    f"{p.pid}\t{ir.irid}\t{p.call.callid}\t{p.call.call_type}\t{p.ptype}\t{p.role}\t"
                    f"{p.ep}\t{NULL if p.agent is None else p.agent.id}\t{ir.media}\t{p.created}\t"
                    f"{NULL if p.est is None else p.est}\t{NULL if p.end is None else p.end}\t"
                    f"{NULL if p.cause is None else p.cause}\t{p.talk}\t{p.hold}\t{p.acw}\t"
                    f"{'malformed' if p.bad else NULL}\n")

    def snapshot_truth(self, only_dirty: bool) -> None:
        """Truth lines for what is still in flight (rewritten later when it changes)."""
        if not self.truth:
            return
        for ir in self.active_irs.values():
            if ir.dirty or not only_dirty or not ir.truth_written:
                self._truth_lines(ir, False)
        for a in self.agents.values():
            if a.st_id is not None and not a.st_written and a.session is not None:
                self.truth_state.append(f"{a.st_head}{NULL}\n")
                a.st_written = True

    # ------------------------------------------------------------------ events: arrivals and queues
    def _ev_arrival(self, stream, _arg, t: int) -> None:
        nxt = stream.next()
        if nxt is not None:
            self._push(nxt, Model._ev_arrival, stream, None)
        pool = self.pools[stream.media]
        rng = self.rng
        qs = pool.queues
        if len(qs) == 1:
            q = qs[0]
        else:
            x = rng.random() * pool.cum_weights[-1]
            q = qs[-1]
            for i, w in enumerate(pool.cum_weights):
                if x < w:
                    q = qs[i]
                    break
        ms = pool.ms
        self.stats["arrivals"] += 1
        ir = self._new_ir(pool.media, ms, q, t)
        cust = self._party(ir, ir.call, PT_CUSTOMER, R_ORIGINATOR, TRUNK_ID if pool.media == VOICE else None,
                           None, None, t)
        ir.cust = cust
        self.hist(cust, CT_QUEUED, t)
        if not ms.offline:
            patience = ms.patience_min_s + int(rng.expovariate(1.0 / ms.patience_mean_s))
            ir.deadline = t + patience
        if q.spec.dn_type == DN_VIRTUAL_QUEUE:
            rp = self._party(ir, ir.call, PT_ROUTING_POINT, R_RECEIVER, ROUTING_POINT_ID, None, cust, t)
            self.hist(rp, CT_QUEUED, t)
            delay = _ri(rng, *self.cfg.route_delay_s)
            if ir.deadline is not None and ir.deadline <= t + delay:
                ir.deadline = t + delay + 1
            self._push(t + delay, Model._ev_routed, rp, None)
        else:
            self._enqueue(ir, q, t, cust)

    def _ev_routed(self, rp: Party, _arg, t: int) -> None:
        """The routing strategy on the routing point placed the call in its virtual queue."""
        self._end_party(rp, t, "completed")
        self._enqueue(rp.ir, rp.ir.queue, t, rp)

    def _enqueue(self, ir: IR, q: Queue, t: int, parent: Party) -> None:
        qp = self._party(ir, ir.call, PT_QUEUE, R_RECEIVER, q.ep, None, parent, t)
        self.hist(qp, CT_QUEUED, t)
        ir.qparty = qp
        ir.queue = q
        ir.qentered = t
        a = self._take_idle(q.pool, q.skill)
        if a is not None:
            self._distribute(ir, a, t)
            return
        ir.wtok += 1
        ir.waiting = True
        q.waiting.append((ir.wtok, ir))
        if ir.deadline is not None:
            self._push(max(ir.deadline, t + 1), Model._ev_abandon, ir, ir.wtok)
        if q.overflow is not None:
            self._push(t + q.spec.overflow_after_s, Model._ev_overflow, ir, ir.wtok)

    def _ev_abandon(self, ir: IR, tok: int, t: int) -> None:
        if not ir.waiting or ir.wtok != tok:
            return
        ir.waiting = False
        ir.wtok += 1
        ir.abandoned = True
        self._end_party(ir.qparty, t, "abandoned")
        self._end_interaction(ir, t)

    def _ev_overflow(self, ir: IR, tok: int, t: int) -> None:
        if not ir.waiting or ir.wtok != tok:
            return
        ir.waiting = False
        ir.wtok += 1
        qp = ir.qparty
        self._end_party(qp, t, "cleared")
        self._enqueue(ir, ir.queue.overflow, t, qp)

    def _take_idle(self, pool: Pool, skill: str) -> Agent | None:
        dq = pool.idle.get(skill)
        while dq:
            tok, a = dq.popleft()
            if a.idle and a.idle_tok == tok:
                a.idle = False
                a.idle_tok += 1
                return a
        return None

    def _distribute(self, ir: IR, a: Agent, t: int) -> None:
        """Queue -> agent: the queue party is done ('completed'), the agent party rings."""
        qp = ir.qparty
        self._end_party(qp, t, "completed")
        p = self._party(ir, ir.call, PT_AGENT, R_RECEIVER, a.ep, a, qp, t)
        ir.nagents += 1
        self.hist(p, CT_RINGING, t)
        a.busy = True
        self._set_state(a, BUSY, t)
        ms = ir.ms
        rng = self.rng
        rona = rng.random() < ms.rona_p
        t_out = t + (ms.rona_timeout_s if rona else _ri(rng, *ms.ring_s))
        if ir.deadline is not None and ir.deadline <= t_out:
            if rng.random() < ms.ring_abandon_p:
                self._push(max(ir.deadline, t), Model._ev_ring_abandon, p, None)
                return
            # most callers hear the ringing and hold on a little longer
            ir.deadline = t_out + _ri(rng, ms.patience_min_s, 2 * ms.patience_min_s + 10)
        if rona:
            self._push(t_out, Model._ev_rona, p, None)
        else:
            self._push(t_out, Model._ev_answer, p, None)

    def _ev_ring_abandon(self, p: Party, _arg, t: int) -> None:
        ir = p.ir
        ir.abandoned_ringing = True
        ir.nagents -= 1
        self._end_party(p, t, "abandoned_ringing")
        self._end_interaction(ir, t)
        p.agent.busy = False
        self._agent_ready(p.agent, t)

    def _ev_rona(self, p: Party, _arg, t: int) -> None:
        ir = p.ir
        ir.redirected += 1
        ir.nagents -= 1
        self._end_party(p, t, "redirected")
        a = p.agent
        a.busy = False
        self._not_ready(a, t, RONA_REASON)
        self._enqueue(ir, ir.queue, t, p)

    # ------------------------------------------------------------------ events: talking
    def _handle_time(self, ms: MediaSpec) -> int:
        s = ms.handle_sigma
        mu = math.log(ms.handle_mean_s) - s * s / 2
        return max(5, int(self.rng.lognormvariate(mu, s)))

    def _established(self, p: Party, t: int) -> None:
        self.hist(p, CT_ESTABLISHED, t)
        p.est = t
        ir = p.ir
        if not ir.answered and p.call is ir.call:
            ir.answered = True
            ir.answered_ts = t
            ir.first_agent = p.agent.id

    def _ev_answer(self, p: Party, _arg, t: int) -> None:
        self._established(p, t)
        ir = p.ir
        ms = ir.ms
        cfg = self.cfg
        rng = self.rng
        talk = self._handle_time(ms)
        if ir.media == VOICE:
            r = rng.random()
            action = 0
            if r < cfg.transfer_p:
                action = _XFER
            elif r < cfg.transfer_p + cfg.consult_p:
                action = _CONSULT
            elif r < cfg.transfer_p + cfg.consult_p + cfg.conference_p:
                action = _CONF
            if action:
                x = max(3, int(talk * rng.uniform(0.3, 0.7)))
                p.remaining = max(5, talk - x)
                self._push(t + x, Model._ev_action, p, action)
                return
            if rng.random() < cfg.hold_p:
                h = _ri(rng, *cfg.hold_s)
                self._push(t + max(1, int(talk * rng.uniform(0.2, 0.6))), Model._ev_hold, p, h)
                self._push(t + talk + h, Model._ev_release, p, None)
                return
        self._push(t + talk, Model._ev_release, p, None)

    def _ev_hold(self, p: Party, h: int, t: int) -> None:
        self.hist(p, CT_HELD, t)
        p.held_since = t
        self._push(t + h, Model._ev_retrieve, p, None)

    def _ev_retrieve(self, p: Party, _arg, t: int) -> None:
        self.hist(p, CT_RETRIEVED, t)
        p.hold += t - p.held_since
        p.held_since = None

    def _ev_release(self, p: Party, _arg, t: int) -> None:
        self._release_agent(p, t, "completed", True)

    def _release_agent(self, p: Party, t: int, cause: str, acw: bool) -> None:
        """An agent party on the customer's call ends; ACW may follow; the last one ends the IR."""
        ir = p.ir
        if p.held_since is not None:
            p.hold += t - p.held_since
            p.held_since = None
        if p.est is not None:
            p.talk = t - p.est - p.hold
        ir.talk += p.talk
        ir.hold += p.hold
        ir.nagents -= 1
        self._end_party(p, t, cause)
        a = p.agent
        a.busy = False
        ms = ir.ms
        in_acw = acw and self.rng.random() < ms.acw_p
        if in_acw:
            d = max(1, int(self.rng.expovariate(1.0 / ms.acw_mean_s)))
            self._set_state(a, ACW, t, party=p)
            a.acw_party = p
            a.acw_start = t
            ir.open_acw += 1
            self._push(t + d, Model._ev_acw_end, a, p)
        if ir.nagents == 0:
            self._end_interaction(ir, t)
        if not in_acw:
            self._agent_free(a, t)

    def _ev_acw_end(self, a: Agent, p: Party, t: int) -> None:
        d = t - a.acw_start
        p.acw += d
        ir = p.ir
        ir.acw += d
        ir.open_acw -= 1
        ir.dirty = True
        a.acw_party = None
        self._agent_free(a, t)
        if ir.ended and ir.open_acw == 0:
            self._complete(ir)

    def _ev_action(self, p: Party, action: int, t: int) -> None:
        """Transfer, consultation or conference with a second, idle agent of the same skill."""
        ir = p.ir
        a = p.agent
        b = self._take_idle(ir.queue.pool, ir.queue.skill)
        if b is None:  # nobody free: the agent keeps the customer
            self._push(t + p.remaining, Model._ev_release, p, None)
            return
        cfg = self.cfg
        rng = self.rng
        ring = _ri(rng, *ir.ms.ring_s)
        b.busy = True
        self._set_state(b, BUSY, t)
        if action == _XFER:
            ir.transferred = True
            pb = self._party(ir, ir.call, PT_AGENT, R_TRANSFER, b.ep, b, p, t)
            ir.nagents += 1
            self.hist(pb, CT_RINGING, t)
            self._push(t + ring, Model._ev_answer_plain, pb, None)
            self._release_agent(p, t, "transferred", True)
        elif action == _CONF:
            ir.conferenced = True
            pb = self._party(ir, ir.call, PT_AGENT, R_CONFERENCE, b.ep, b, p, t)
            ir.nagents += 1
            self.hist(pb, CT_RINGING, t)
            stay = _ri(rng, *cfg.conference_s)
            self._push(t + ring, Model._ev_established, pb, None)
            self._push(t + ring + stay, Model._ev_conf_leave, pb, None)
            self._push(t + ring + stay + p.remaining, Model._ev_release, p, None)
        else:
            ir.consulted = True
            self.hist(p, CT_HELD, t)
            p.held_since = t
            c2 = self._new_call(ir, CALL_CONSULT, t)
            pa = self._party(ir, c2, PT_AGENT, R_ORIGINATOR, a.ep, a, p, t)
            self._established(pa, t)
            pb = self._party(ir, c2, PT_AGENT, R_CONSULT, b.ep, b, p, t)
            self.hist(pb, CT_RINGING, t)
            talk = _ri(rng, *cfg.consult_s)
            self._push(t + ring, Model._ev_established, pb, None)
            self._push(t + ring + talk, Model._ev_consult_end, pb, (pa, p))

    def _ev_established(self, p: Party, _arg, t: int) -> None:
        self._established(p, t)

    def _ev_answer_plain(self, p: Party, _arg, t: int) -> None:
        """Answer without further transfers (a transfer receiver)."""
        self._established(p, t)
        self._push(t + self._handle_time(p.ir.ms), Model._ev_release, p, None)

    def _ev_conf_leave(self, p: Party, _arg, t: int) -> None:
        self._release_agent(p, t, "conferenced", True)

    def _ev_consult_end(self, pb: Party, parties: tuple[Party, Party], t: int) -> None:
        pa, p = parties  # consult originator, and the consulting agent's party on the customer call
        ir = pb.ir
        d = t - pb.est
        pb.talk = d
        pa.talk = t - pa.est
        ir.consult_s += d
        self._end_party(pb, t, "completed")
        self._end_party(pa, t, "completed")
        b = pb.agent
        if self.rng.random() < self.cfg.consult_transfer_p:
            ir.transferred = True
            pc = self._party(ir, ir.call, PT_AGENT, R_TRANSFER, b.ep, b, p, t)
            ir.nagents += 1
            self._established(pc, t)
            self._push(t + self._handle_time(ir.ms), Model._ev_release, pc, None)
            self._release_agent(p, t, "transferred", True)
        else:
            self.hist(p, CT_RETRIEVED, t)
            p.hold += t - p.held_since
            p.held_since = None
            self._push(t + p.remaining, Model._ev_release, p, None)
            b.busy = False
            self._agent_ready(b, t)

    # ------------------------------------------------------------------ events: agents
    def _agent_free(self, a: Agent, t: int) -> None:
        """After a call (and its ACW): maybe a break, else ready for the next one."""
        if not a.leaving and not a.delete_pending and self.rng.random() < self.cfg.not_ready_after_call_p:
            reasons = self.cfg.reasons
            x = self.rng.random() * sum(r.weight for r in reasons)
            reason = reasons[-1]
            for r in reasons:
                x -= r.weight
                if x < 0:
                    reason = r
                    break
            self._not_ready(a, t, reason)
            return
        self._agent_ready(a, t)

    def _not_ready(self, a: Agent, t: int, reason) -> None:
        self._set_state(a, NOT_READY, t, reason=reason)
        a.nr_tok += 1
        self._push(t + _ri(self.rng, *reason.duration_s), Model._ev_nr_end, a, a.nr_tok)

    def _ev_nr_end(self, a: Agent, tok: int, t: int) -> None:
        if a.nr_tok == tok and a.state == NOT_READY:
            self._agent_ready(a, t)

    def _agent_ready(self, a: Agent, t: int) -> None:
        if a.leaving or a.delete_pending:
            self._logout(a, t)
            return
        if a.state != READY:
            self._set_state(a, READY, t)
        best = None
        best_ir = None
        for q in a.queues:
            dq = q.waiting
            while dq:
                tok, ir = dq[0]
                if ir.waiting and ir.wtok == tok:
                    if best_ir is None or ir.qentered < best_ir.qentered:
                        best, best_ir = q, ir
                    break
                dq.popleft()
        if best is not None:
            best.waiting.popleft()
            best_ir.waiting = False
            best_ir.wtok += 1
            self._distribute(best_ir, a, t)
            return
        a.idle = True
        a.idle_tok += 1
        idle = a.pool.idle
        for s in a.skills:
            idle[s].append((a.idle_tok, a))

    def _ev_login(self, a: Agent, _arg, t: int) -> None:
        a.login_pending = False
        if a.session is not None or not a.on_duty or a.delete_pending:
            return
        self.n_sess += 1
        s = Session()
        s.lsid = f"{self.prefix}l{self.n_sess}"
        s.agent = a
        s.head = f"{s.lsid}\t{a.id}\t{a.ep}\t{a.pool.media}\t"
        s.login = t
        s.logout = None
        s.ended = s.persisted = False
        a.session = s
        a.state = LOGGED_OUT
        a.st_id = None
        a.leaving = False
        if self.track_new:
            self.new_sess.append(s)
        self._agent_ready(a, t)

    def _logout(self, a: Agent, t: int) -> None:
        if a.idle:
            a.idle = False
            a.idle_tok += 1
        self._set_state(a, LOGGED_OUT, t)
        if self.truth:  # LoggedOut ends the session: a zero-length, final truth interval
            self.truth_state.append(f"{a.st_head}{t}\n")
        a.st_id = None
        s = a.session
        s.logout = t
        s.ended = True
        self.end_sess.append(s)
        a.session = None
        a.leaving = False
        if a.delete_pending:
            self._delete_agent(a, t)

    def _ev_logout_idle(self, a: Agent, tok: int, t: int) -> None:
        if a.idle and a.idle_tok == tok and a.leaving and a.session is not None:
            self._logout(a, t)

    def _ev_staff(self, _obj, _arg, t: int) -> None:
        """Hourly: how many agents each pool needs; the first ones on the roster are on duty."""
        rng = self.rng
        for pool in self.pools.values():
            remaining = self.skill_needs(pool, t)
            for a in pool.roster:
                # on duty while one of its skills still needs people; a multi-skilled agent
                # counts as a fraction of a person for each of its skills
                duty = False
                for s in a.skills:
                    if remaining.get(s, 0.0) > 1e-9:
                        duty = True
                        break
                if duty:
                    share = 1.0 / len(a.skills)
                    for s in a.skills:
                        if s in remaining:
                            remaining[s] -= share
                a.on_duty = duty
                if duty:
                    a.leaving = False
                    if a.session is None and not a.login_pending:
                        a.login_pending = True
                        self._push(t + _ri(rng, 0, 120), Model._ev_login, a, None)
                elif a.session is not None and not a.leaving:
                    a.leaving = True
                    if a.idle:
                        self._push(t + _ri(rng, 0, 300), Model._ev_logout_idle, a, a.idle_tok)
        self._push((t // 3600 + 1) * 3600, Model._ev_staff, None, None)

    # ------------------------------------------------------------------ events: configuration
    def _ev_config(self, _obj, interval: int, t: int) -> None:
        """Alternately add an agent to the voice team and delete one (deleted_ts via UPDATE)."""
        pool = self.pools.get(VOICE) or next(iter(self.pools.values()))
        if self.config_kind == "add":
            aid = self.next_agent_id
            self.next_agent_id += 1
            skills = [q.skill for q in pool.queues]
            rng = self.rng
            first = skills[aid % len(skills)]
            chosen = [first] + [s for s in skills if s != first and rng.random() < 0.35]
            spec = AgentSpec(aid, pool.media, tuple(chosen), agent_endpoint_id(aid), agent_dn(aid))
            self._add_agent(spec, front=True)
            self.cfg_add.append((spec, t))
            self.config_kind = "delete"
        else:
            victim = None
            for a in reversed(pool.roster):
                if not a.delete_pending:
                    victim = a
                    break
            if victim is not None:
                victim.delete_pending = True
                victim.on_duty = False
                pool.roster.remove(victim)
                if victim.session is None:
                    self._delete_agent(victim, t)
                elif victim.idle:
                    self._logout(victim, t)
            self.config_kind = "add"
        self._push(t + interval, Model._ev_config, None, interval)

    def _delete_agent(self, a: Agent, t: int) -> None:
        self.cfg_del.append((a.id, t))
        del self.agents[a.id]


def agent_endpoint_id(agent_id: int) -> int:
    return 100_000 + agent_id


def agent_dn(agent_id: int) -> str:
    return str(20_000 + agent_id)


__all__ = ["Model", "IR", "Call", "Party", "Session", "Agent", "required_agents", "average_handle_time",
           "local_hour_dow", "agent_endpoint_id", "agent_dn", "TRUNK_DN", "EXCLUDING_FAULTS"]
