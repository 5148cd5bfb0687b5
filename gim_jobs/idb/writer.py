"""From model output to IDB rows: COPY for inserts, UPDATE for rows that were written active.

``collect`` drains the model's buffers into a ``WriteJob`` (one database transaction):

* an entity that ended and was never written goes out as one final row (state 1);
* an entity that was written active earlier (live mode, or a batch run resumed from a saved model)
  gets an UPDATE, which gives it a new gsys_useq;
* ``active="new"`` (live) also writes every entity started since the last job as an active row;
  ``active="all"`` (end of a batch) writes whatever is still in flight;
* insert-only history lines are copied in the order they happened, except the injected faults;
  late rows wait until a later job.

``execute`` runs a job; ``ThreadedWriter`` runs jobs on a background thread so the model keeps
generating while PostgreSQL ingests (two cores: one for Python, one for the server).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import psycopg

from gim_jobs.idb import configdb
from gim_jobs.idb.model import NULL, Model
from gim_jobs.idb.truth import TRUTH_FAULT_COLS, TRUTH_INTERACTION_COLS, TRUTH_PARTY_COLS, TRUTH_STATE_COLS

IR_COLS = ("irid, root_irid, tenant_id, media_type, interaction_type, interaction_subtype, source_address, "
           "target_address, subject, state, created_ts, terminated_ts")
CALL_COLS = "callid, irid, connid, media_type, call_type, state, created_ts, terminated_ts"
PARTY_COLS = ("partyid, callid, irid, endpoint_id, agent_id, party_type, role, parent_partyid, media_type, state, "
              "created_ts, terminated_ts, end_cause")
HIST_COLS = "id, partyid, callid, media_type, changetype, added_ts"
SESSION_COLS = "lsid, agent_id, endpoint_id, media_type, state, login_ts, logout_ts"
STATE_COLS = "id, lsid, agent_id, media_type, state, reason_code, partyid, added_ts"
RC_COLS = "id, lsid, agent_id, media_type, reason_code, reason_text, added_ts"

UPDATE_IR = "UPDATE g_ir SET state = 1, terminated_ts = %s WHERE irid = %s"
UPDATE_CALL = "UPDATE g_call SET state = 1, terminated_ts = %s WHERE callid = %s"
UPDATE_PARTY = "UPDATE g_party SET state = 1, terminated_ts = %s, end_cause = %s WHERE partyid = %s"
UPDATE_SESSION = "UPDATE g_login_session SET state = 1, logout_ts = %s WHERE lsid = %s"
DELETE_TRUTH_IR = "DELETE FROM sim.truth_interaction WHERE irid = ANY(%s)"
DELETE_TRUTH_PARTY = "DELETE FROM sim.truth_party WHERE irid = ANY(%s)"
DELETE_TRUTH_STATE = "DELETE FROM sim.truth_agent_state WHERE id = ANY(%s)"
_TRACKED = ("g_ir", "g_call", "g_party", "g_party_history", "g_login_session", "g_agent_state_history",
            "g_agent_state_rc", "gc_agent", "gcx_group_agent", "gcx_skill_level", "gc_endpoint", "g_ocs_attempt")
# The newest change in the IDB; a saved model is only valid while nothing newer was written.
GSYS_MARK = "SELECT greatest(" + ", ".join(f"(SELECT max(gsys_useq) FROM {t})" for t in _TRACKED) + ")"
SAVE_STATE = ("INSERT INTO sim.state (id, run_id, clock_ts, blob, gsys_mark) VALUES (1, %s, %s, %s, ("
              + GSYS_MARK + ")) ON CONFLICT (id) DO UPDATE SET run_id = EXCLUDED.run_id, "
              "clock_ts = EXCLUDED.clock_ts, blob = EXCLUDED.blob, gsys_mark = EXCLUDED.gsys_mark, saved_at = now()")


@dataclass
class WriteJob:
    deletes: list[tuple[str, list]] = field(default_factory=list)
    copies: list[tuple[str, str, list[str]]] = field(default_factory=list)
    updates: list[tuple[str, list[tuple]]] = field(default_factory=list)
    config_add: list = field(default_factory=list)
    config_del: list = field(default_factory=list)
    skill_ids: dict[str, int] = field(default_factory=dict)
    state: tuple[int, int, bytes] | None = None   # (run_id, clock_ts, pickled model)
    counts: dict[str, int] = field(default_factory=dict)


def collect(model: Model, *, active: str = "none", all_late: bool = False) -> WriteJob:
    """Drain the model's buffers into a job. ``active``: "none" (batch, mid-run), "new" (live step:
    every entity started so far is written active), "all" (end of a batch: everything in flight)."""
    job = WriteJob()
    if active != "none":
        model.snapshot_truth(only_dirty=(active == "new"))

    ir_lines, ir_upd = [], []
    for ir in model.end_ir:
        if ir.persisted:
            ir_upd.append((ir.terminated, ir.irid))
        else:
            ir_lines.append(f"{ir.head}1\t{ir.created}\t{ir.terminated}\n")
            ir.persisted = True
    call_lines, call_upd = [], []
    for c in model.end_call:
        if c.persisted:
            if not c.orphan:
                call_upd.append((c.terminated, c.callid))
        else:
            if not c.orphan:
                call_lines.append(f"{c.head}1\t{c.created}\t{c.terminated}\n")
            c.persisted = True
    party_lines, party_upd = [], []
    for p in model.end_party:
        if p.persisted:
            party_upd.append((p.terminated, p.cause, p.pid))
        else:
            party_lines.append(f"{p.head}1\t{p.created}\t{p.terminated}\t{p.cause}\n")
            p.persisted = True
    sess_lines, sess_upd = [], []
    for s in model.end_sess:
        if s.persisted:
            sess_upd.append((s.logout, s.lsid))
        else:
            sess_lines.append(f"{s.head}1\t{s.login}\t{s.logout}\n")
            s.persisted = True

    if active == "new":
        irs, calls, parties, sessions = model.new_ir, model.new_call, model.new_party, model.new_sess
    elif active == "all":
        irs, calls, parties = [], [], []
        for ir in model.active_irs.values():
            irs.append(ir)
            calls.extend(ir.calls)
            parties.extend(ir.parties)
        sessions = [a.session for a in model.agents.values() if a.session is not None]
    else:
        irs, calls, parties, sessions = [], [], [], []
    for ir in irs:
        if not ir.persisted:
            ir_lines.append(f"{ir.head}0\t{ir.created}\t{NULL}\n")
            ir.persisted = True
    for c in calls:
        if not c.persisted:
            if not c.orphan:
                call_lines.append(f"{c.head}0\t{c.created}\t{NULL}\n")
            c.persisted = True
    for p in parties:
        if not p.persisted:
            party_lines.append(f"{p.head}0\t{p.created}\t{NULL}\t{NULL}\n")
            p.persisted = True
    for s in sessions:
        if not s.persisted:
            sess_lines.append(f"{s.head}0\t{s.login}\t{NULL}\n")
            s.persisted = True

    hist = model.out_hist
    if model.late:
        clock = model.now
        keep, due = [], []
        for item in model.late:
            if all_late or (item[0] <= clock and item[1] < model.flush_no):
                due.append(item[2])
            else:
                keep.append(item)
        model.late = keep
        hist = hist + due

    copies = job.copies
    for table, cols, lines in (
        ("g_ir", IR_COLS, ir_lines),
        ("g_call", CALL_COLS, call_lines),
        ("g_party", PARTY_COLS, party_lines),
        ("g_party_history", HIST_COLS, hist),
        ("g_login_session", SESSION_COLS, sess_lines),
        ("g_agent_state_history", STATE_COLS, model.out_state),
        ("g_agent_state_rc", RC_COLS, model.out_rc),
        ("sim.truth_interaction", TRUTH_INTERACTION_COLS, model.truth_ir),
        ("sim.truth_party", TRUTH_PARTY_COLS, model.truth_party),
        ("sim.truth_agent_state", TRUTH_STATE_COLS, model.truth_state),
        ("sim.truth_fault", TRUTH_FAULT_COLS, model.truth_fault),
    ):
        if lines:
            copies.append((table, cols, lines))
            job.counts[table] = len(lines)
    for sql, rows, table in ((UPDATE_IR, ir_upd, "g_ir"), (UPDATE_CALL, call_upd, "g_call"),
                             (UPDATE_PARTY, party_upd, "g_party"), (UPDATE_SESSION, sess_upd, "g_login_session")):
        if rows:
            job.updates.append((sql, rows))
            job.counts[f"{table} (update)"] = len(rows)
    if model.truth_del_ir:
        job.deletes.append((DELETE_TRUTH_IR, model.truth_del_ir))
        job.deletes.append((DELETE_TRUTH_PARTY, model.truth_del_ir))
    if model.truth_del_state:
        job.deletes.append((DELETE_TRUTH_STATE, model.truth_del_state))
    model.ocs.collect_into(job, active, model.truth)  # outbound attempts (gim_jobs.idb.outbound)
    job.config_add = model.cfg_add
    job.config_del = model.cfg_del
    model.clear_output()
    model.flush_no += 1
    return job


def execute(conn: psycopg.Connection, job: WriteJob) -> None:
    """Run one job in one transaction."""
    with conn.transaction():
        cur = conn.cursor()
        if job.config_add:
            configdb.insert_agents(conn, [(spec, ts) for spec, ts in job.config_add], job.skill_ids)
        for sql, keys in job.deletes:
            cur.execute(sql, (keys,))
        for table, cols, lines in job.copies:
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                step = 20_000
                for i in range(0, len(lines), step):
                    cp.write("".join(lines[i:i + step]))
        for sql, rows in job.updates:
            cur.executemany(sql, rows)
        if job.config_del:
            configdb.delete_agents(conn, job.config_del)
        if job.state is not None:
            cur.execute(SAVE_STATE, job.state)


class ThreadedWriter:
    """Runs jobs in order on a background thread; at most ``depth`` jobs wait (back-pressure)."""

    def __init__(self, conn: psycopg.Connection, depth: int = 2):
        self.conn = conn
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.counts: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name="gim-idb-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.q.get()
            if job is None:
                return
            if self.error is not None:
                continue
            try:
                execute(self.conn, job)
                for k, v in job.counts.items():
                    self.counts[k] = self.counts.get(k, 0) + v
            except BaseException as exc:  # reported by submit/close in the caller's thread
                self.error = exc

    def submit(self, job: WriteJob) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(job)

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
