"""Outbound dialing (ICON_OCS): campaigns, calling lists and dialing attempts of the simulated center.

The dialer is part of the ``Model`` (``model.ocs``, pickled with it) and runs on its clock and
event heap, with its own random generator: the inbound traffic of a seed is the same with or
without outbound (outbound events only read the model, never change inbound state).

What it writes (codes of gim_jobs/db/sql/idb/002_ocs.sql):

* ``gc_campaign`` / ``gc_calling_list`` from ``SimConfig.campaigns``, idempotently (``ON CONFLICT DO
  NOTHING``) in the first write job of every run, created a day before the first traffic.
* ``g_ocs_attempt``: attempts arrive as a Poisson stream at ``SimConfig.outbound_per_inbound`` times
  the current inbound voice arrival rate (so batch volume follows the batch's interaction count and
  the day profile, live volume the live rate); re-checked every minute while that rate is 0. Each
  attempt picks a campaign (by weight), one of its calling lists and a record of it (``chain_id`` =
  list id * 1 000 000 + record, ``attempt_no`` = attempts on that record so far), and an outcome
  by the campaign's weights. 'ANSWER' connects to a voice agent who is logged in (uniformly among
  them); none logged in: 'DROPPED'. Timing: 'ANSWER' and 'ANSWERING_MACHINE' connect after the
  campaign's ring time, then talk (log-normal) or 3-20 s of machine detection; 'DROPPED' ends 1-3
  s after connecting; 'NO_ANSWER' ends after 25-45 s; 'BUSY' 2-6 s; 'SIT_DETECTED' 2-8 s.
* Written like the inbound entities (``writer.py``): an attempt that ended before it was written
  goes out as one final row (state 1); one written active (live mode, or in flight at the end of a
  batch) is UPDATEd when it ends (new gsys_useq), also by a later, resumed run.

Simplifications (documented, deliberate): the connected agent is chosen when dialing starts and is
not made busy: outbound talk time does not appear in the agent's g_agent_state_history, does not
block inbound calls and creates no g_ir / g_call / g_party rows (a real OCS call also has those);
there are no retries scheduled from a result, no do-not-call lists, time zones or campaign
start/stop; a record is drawn at random, so its chain is whatever attempts hit it.

Ground truth (``sim.truth_attempt``, written in the same transaction as the rows): one row per
attempt, rewritten when it ends: ``connected`` = call_result 'ANSWER', ``talk_seconds`` =
talk_duration (0 until it ends). ``attempt_truth`` summarises it per campaign, agent and interval of
``dialing_ts``.
"""

from __future__ import annotations

import math
import random
from heapq import heapify
from typing import Any

import psycopg

from gim_jobs.idb.config import VOICE, CampaignSpec, SimConfig

NULL = "\\N"
CONFIG_LEAD_S = 86_400
RECHECK_S = 60
CHAIN_BASE = 1_000_000
RESULTS = ("ANSWER", "NO_ANSWER", "BUSY", "ANSWERING_MACHINE", "DROPPED", "SIT_DETECTED")

ATTEMPT_COLS = ("attempt_id, chain_id, attempt_no, record_handle, campaign_id, calling_list_id, agent_id, "
                "media_type, dialing_mode, contact_info, call_result, state, dialing_ts, connected_ts, ended_ts, "
                "talk_duration")
TRUTH_ATTEMPT_COLS = ("attempt_id, run_id, campaign_id, calling_list_id, agent_id, dialing_ts, connected_ts, "
                      "ended_ts, call_result, talk_seconds, ended")
UPDATE_ATTEMPT = ("UPDATE g_ocs_attempt SET state = 1, call_result = %s, agent_id = %s, connected_ts = %s, "
                  "ended_ts = %s, talk_duration = %s WHERE attempt_id = %s")
DELETE_TRUTH_ATTEMPT = "DELETE FROM sim.truth_attempt WHERE attempt_id = ANY(%s)"
INSERT_CAMPAIGN = ("INSERT INTO gc_campaign (id, name, description, created_ts) VALUES (%s, %s, %s, %s) "
                   "ON CONFLICT (id) DO NOTHING")
INSERT_LIST = ("INSERT INTO gc_calling_list (id, campaign_id, name, created_ts) VALUES (%s, %s, %s, %s) "
               "ON CONFLICT (id) DO NOTHING")


def _n(v: Any) -> str:
    return NULL if v is None else str(v)


class Attempt:
    __slots__ = ("aid", "run", "camp", "list_id", "chain", "no", "record", "mode", "contact", "agent", "dialing",
                 "connected", "end", "result", "talk", "ended", "persisted")

    def row(self, final: bool) -> str:
        if not final:
            return (f"{self.aid}\t{self.chain}\t{self.no}\t{self.record}\t{self.camp}\t{self.list_id}\t{NULL}\t"
                    f"{VOICE}\t{self.mode}\t{self.contact}\t{NULL}\t0\t{self.dialing}\t{NULL}\t{NULL}\t{NULL}\n")
        return (f"{self.aid}\t{self.chain}\t{self.no}\t{self.record}\t{self.camp}\t{self.list_id}\t{_n(self.agent)}\t"
                f"{VOICE}\t{self.mode}\t{self.contact}\t{self.result}\t1\t{self.dialing}\t{_n(self.connected)}\t"
                f"{self.end}\t{self.talk}\n")

    def truth(self, final: bool) -> str:
        if not final:
            return (f"{self.aid}\t{self.run}\t{self.camp}\t{self.list_id}\t{NULL}\t{self.dialing}\t{NULL}\t{NULL}\t"
                    f"{NULL}\t0\tf\n")
        return (f"{self.aid}\t{self.run}\t{self.camp}\t{self.list_id}\t{_n(self.agent)}\t{self.dialing}\t"
                f"{_n(self.connected)}\t{self.end}\t{self.result}\t{self.talk}\tt\n")


class Outbound:
    """The dialer's state: attempts in flight and the ones that ended since the last write job."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed * 7_368_787 + 13)
        self.n = 0
        self.chains: dict[tuple[int, int], int] = {}
        self.active: dict[str, Attempt] = {}
        self.created_ts = 0
        self.config_written = False
        acc, self.cum = 0.0, []
        for c in cfg.campaigns:
            acc += c.weight
            self.cum.append(acc)
        self.clear()

    @property
    def enabled(self) -> bool:
        return bool(self.cum) and self.cfg.outbound_per_inbound > 0 and self.cum[-1] > 0

    def clear(self) -> None:
        self.new: list[Attempt] = []
        self.done: list[Attempt] = []

    def begin_run(self, model: Any, start: int, first_run: bool) -> None:
        """Called by ``Model.begin_run``: (re)start dialing at the run's start."""
        self.config_written = False
        if first_run or not self.created_ts:
            self.created_ts = start - CONFIG_LEAD_S
        # like the inbound arrival streams, a run's dialing replaces the previous run's
        model.heap = [e for e in model.heap if e[2] is not _ev_dial]
        heapify(model.heap)
        if self.enabled:
            model._push(max(start, model.now), _ev_dial, self, None)

    # ------------------------------------------------------------------ dialing
    def _campaign(self) -> CampaignSpec:
        u = self.rng.random() * self.cum[-1]
        for c, edge in zip(self.cfg.campaigns, self.cum, strict=True):
            if u < edge:
                return c
        return self.cfg.campaigns[-1]

    def _ri(self, lo: int, hi: int) -> int:
        return lo + int(self.rng.random() * (hi - lo + 1))

    def dial(self, model: Any, t: int) -> Attempt:
        rng = self.rng
        c = self._campaign()
        list_id, _name, size = c.lists[int(rng.random() * len(c.lists))]
        record = 1 + int(rng.random() * size)
        no = self.chains.get((list_id, record), 0) + 1
        self.chains[(list_id, record)] = no
        u = rng.random() * sum(w for _, w in c.outcomes)
        result = c.outcomes[-1][0]
        for r, w in c.outcomes:
            if u < w:
                result = r
                break
            u -= w
        a = Attempt()
        a.aid = f"{model.prefix}o{self.n}"
        self.n += 1
        a.run, a.camp, a.list_id, a.record, a.no = model.run_id, c.campaign_id, list_id, record, no
        a.chain = list_id * CHAIN_BASE + record
        a.mode = c.dialing_mode
        a.contact = f"+1555{list_id:03d}{record:05d}"
        a.dialing, a.agent, a.connected, a.talk = t, None, None, 0
        a.ended = a.persisted = False
        ring = self._ri(*c.ring_s)
        if result == "ANSWER":
            pool = model.pools.get(VOICE)
            free = [ag for ag in pool.roster if ag.session is not None] if pool is not None else []
            if free:
                a.agent = free[int(rng.random() * len(free))].id
                mu = math.log(c.talk_mean_s) - c.talk_sigma ** 2 / 2
                a.talk = max(5, int(rng.lognormvariate(mu, c.talk_sigma)))
                a.connected = t + ring
                a.end = a.connected + a.talk
            else:
                result = "DROPPED"
        if result == "DROPPED":
            a.connected = t + ring
            a.end = a.connected + self._ri(1, 3)
        elif result == "ANSWERING_MACHINE":
            a.connected = t + ring
            a.end = a.connected + self._ri(3, 20)
        elif result == "NO_ANSWER":
            a.end = t + self._ri(25, 45)
        elif result == "BUSY":
            a.end = t + self._ri(2, 6)
        elif result == "SIT_DETECTED":
            a.end = t + self._ri(2, 8)
        a.result = result
        self.active[a.aid] = a
        self.new.append(a)
        model._push(a.end, _ev_attempt_end, a, None)
        return a

    # ------------------------------------------------------------------ writing
    def collect_into(self, job: Any, active: str, truth: bool) -> None:
        """Add this job's outbound rows to a ``writer.WriteJob`` (see ``writer.collect``)."""
        lines, upd, tlines, tdel = [], [], [], []
        for a in self.done:
            if a.persisted:
                upd.append((a.result, a.agent, a.connected, a.end, a.talk, a.aid))
                tdel.append(a.aid)
            else:
                lines.append(a.row(True))
                a.persisted = True
            tlines.append(a.truth(True))
        started = self.new if active == "new" else list(self.active.values()) if active == "all" else []
        for a in started:
            if not a.persisted and not a.ended:
                lines.append(a.row(False))
                tlines.append(a.truth(False))
                a.persisted = True
        if lines:
            job.copies.append(("g_ocs_attempt", ATTEMPT_COLS, lines))
            job.counts["g_ocs_attempt"] = len(lines)
        if upd:
            job.updates.append((UPDATE_ATTEMPT, upd))
            job.counts["g_ocs_attempt (update)"] = len(upd)
        if truth:
            if tdel:
                job.deletes.append((DELETE_TRUTH_ATTEMPT, tdel))
            if tlines:
                job.copies.append(("sim.truth_attempt", TRUTH_ATTEMPT_COLS, tlines))
                job.counts["sim.truth_attempt"] = len(tlines)
        if not self.config_written and self.enabled:
            ts = self.created_ts
            job.updates.append((INSERT_CAMPAIGN, [(c.campaign_id, c.name, f"{c.dialing_mode} campaign", ts)
                                                  for c in self.cfg.campaigns]))
            job.updates.append((INSERT_LIST, [(lid, c.campaign_id, name, ts)
                                              for c in self.cfg.campaigns for lid, name, _ in c.lists]))
            self.config_written = True
        self.clear()


def _ev_dial(model: Any, ocs: Outbound, _arg: Any, t: int) -> None:
    rate = ocs.cfg.outbound_per_inbound * model.rate(VOICE, t)
    if rate <= 0:
        model._push(t + RECHECK_S, _ev_dial, ocs, None)
        return
    ocs.dial(model, t)
    model._push(t + max(1, int(ocs.rng.expovariate(rate) + 0.5)), _ev_dial, ocs, None)


def _ev_attempt_end(model: Any, a: Attempt, _arg: Any, _t: int) -> None:
    a.ended = True
    ocs = model.ocs
    ocs.active.pop(a.aid, None)
    ocs.done.append(a)


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------

_TRUTH_SQL = """
SELECT campaign_id, coalesce(agent_id, -1) AS agent_id, dialing_ts - dialing_ts %% %(iv)s AS interval_start,
       count(*) AS attempts,
       count(*) FILTER (WHERE call_result = 'ANSWER') AS connected,
       coalesce(sum(talk_seconds), 0) AS talk_seconds,
       count(*) FILTER (WHERE NOT ended) AS active
  FROM sim.truth_attempt
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def attempt_truth(dsn: str, *, interval_seconds: int = 900) -> list[dict[str, int]]:
    """What the dialer wrote: per campaign, agent (-1: none) and interval of the dialing start,
    ``attempts``, ``connected`` ('ANSWER'), ``talk_seconds`` and ``active`` (not ended yet)."""
    with psycopg.connect(dsn) as conn:
        if not conn.execute("SELECT to_regclass('sim.truth_attempt') IS NOT NULL").fetchone()[0]:
            return []
        cur = conn.execute(_TRUTH_SQL, {"iv": int(interval_seconds)})
        names = [d.name for d in cur.description]
        return [{k: int(v) for k, v in zip(names, r, strict=True)} for r in cur.fetchall()]
