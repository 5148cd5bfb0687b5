"""Run the simulator against an IDB: batch (a span of traffic at once) or live (as time passes).

Both modes drive the same ``Model`` and ``writer``; they differ only in when rows are written:

* batch (``simulate_batch``): generates the whole span, COPYing large batches on a background
  thread; interactions that finished are written as final rows, those still in flight at the span
  end as active rows (state 0, terminated_ts NULL).
* live (``LiveSimulator`` / ``run_live``): each ``step(now)`` processes the events due up to now and
  writes them at once: a row is INSERTed active when its entity starts and UPDATEd when it ends, so
  extraction sees active rows first, then their updates.

Runs on one IDB chain: at the end of a batch run, and at live checkpoints and close, the model
(agents, calls in flight, pending late rows, random state) is saved in ``sim.state`` in the same
transaction as the rows. The next run resumes it when its configuration equals the saved one, it
starts no earlier than the saved clock and nothing was written after the save; so interactions
active at the end of one run are ended (UPDATE) by a later one, and a live simulator restarted on the
same IDB carries on. Otherwise a new model starts and what the old one left active stays active.
Every run gets a new run id, which is part of every text id it creates (``s<seed>r<run>.i<n>``,
``.c``, ``.p``, ``.l``); integer history ids continue from the table's max(id). Only one simulator
at a time may write to an IDB (advisory lock; ``SimulatorBusy`` otherwise).

A batch run commits one transaction per write batch; its rows are complete (every party, call and
session of a written history row present) only when it returns, so run extraction after it.
"""

from __future__ import annotations

import gc
import json
import logging
import pickle
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import psycopg

from gim_jobs.idb import configdb
from gim_jobs.idb.arrivals import batch_streams, live_streams
from gim_jobs.idb.config import FaultSpec, SimConfig
from gim_jobs.idb.model import Model
from gim_jobs.idb.truth import ensure_schema
from gim_jobs.idb.writer import GSYS_MARK, ThreadedWriter, collect, execute

log = logging.getLogger(__name__)

SIM_LOCK = 0x5_1D_5C_50
CONFIG_LEAD_S = 86_400  # configuration of a fresh IDB is created a day before the first traffic


class SimulatorBusy(RuntimeError):
    """Another simulator is writing to this IDB."""


@dataclass
class SimSummary:
    """What a run did. ``interactions`` = arrivals generated in this run; ``finished`` = interactions
    that ended in this run (including ones carried over from a resumed run); ``active_at_end`` =
    interactions still in flight (written active) when the run stopped."""

    run_id: int
    mode: str
    seed: int
    start_ts: int
    end_ts: int
    interactions: int
    finished: int
    answered: int
    abandoned: int
    abandoned_ringing: int
    active_at_end: int
    agents: int
    resumed: bool
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        return sum(v for k, v in self.rows.items() if not k.endswith("(update)"))

    @property
    def interactions_per_s(self) -> float:
        return self.interactions / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(rows_written=self.rows_written, interactions_per_s=round(self.interactions_per_s, 1),
                 rows_per_s=round(self.rows_per_s, 1))
        return d


def _ts(value: datetime | int | float) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    return int(value)


class _Session:
    """A connection holding the IDB's simulator lock, the run row and the (new or resumed) model."""

    def __init__(self, dsn: str, cfg: SimConfig, faults: FaultSpec, *, mode: str, start: int,
                 streams_for: Callable[[int], list], peak_until: int, resume: bool, write_truth: bool,
                 interactions: int | None, config_interval: int):
        self.conn = psycopg.connect(dsn, autocommit=False, application_name=f"gim-idb-sim-{mode}",
                                    connect_timeout=10)
        try:
            self._open(cfg, faults, mode, start, streams_for, peak_until, resume, write_truth, interactions,
                       config_interval)
        except BaseException:
            self.conn.close()
            raise

    def _open(self, cfg, faults, mode, start, streams_for, peak_until, resume, write_truth, interactions,
              config_interval) -> None:
        conn = self.conn
        ensure_schema(conn)
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (SIM_LOCK,)).fetchone()[0]:
            conn.rollback()
            raise SimulatorBusy("another simulator is writing to this IDB (advisory lock held)")
        conn.commit()
        model, resumed_from = (self._load(cfg, start) if resume else (None, None))
        with conn.transaction():
            self.run_id = conn.execute(
                "INSERT INTO sim.run (mode, seed, start_ts, interactions, resumed_from) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING run_id", (mode, cfg.seed, start, interactions, resumed_from)).fetchone()[0]
            conn.execute("DELETE FROM sim.state")  # claimed: a crash from here on starts the next run afresh
        streams = streams_for(self.run_id)
        with conn.transaction():
            skill_ids = configdb.ensure_base_config(conn, cfg, start - CONFIG_LEAD_S)
            agents = configdb.load_agents(conn)
            first_run = model is None
            if model is None:
                model = Model(cfg, faults, agents, next_agent_id=configdb.next_agent_id(conn))
            else:
                model.set_faults(faults)
                model.next_agent_id = max(model.next_agent_id, configdb.next_agent_id(conn))
            # grow the roster when the offered load needs more agents than configured
            model.streams = streams
            created = start - CONFIG_LEAD_S if not agents else start
            for pool in model.pools.values():
                peak = 0
                for t in range(start, max(peak_until, start + 1), 3600):
                    peak = max(peak, sum(model.skill_needs(pool, t).values()))
                target = configdb.roster_target(cfg, pool.media, peak)
                missing = target - len(pool.roster)
                if missing > 0:
                    specs = configdb.new_agent_specs(cfg, pool.media, len(pool.roster), missing,
                                                     model.next_agent_id)
                    configdb.insert_agents(conn, [(s, created) for s in specs], skill_ids)
                    model.add_agents(specs)
            hid, sid, rcid = conn.execute(
                "SELECT (SELECT coalesce(max(id), 0) + 1 FROM g_party_history), "
                "(SELECT coalesce(max(id), 0) + 1 FROM g_agent_state_history), "
                "(SELECT coalesce(max(id), 0) + 1 FROM g_agent_state_rc)").fetchone()
            model.hid, model.sid, model.rcid = max(model.hid, hid), max(model.sid, sid), max(model.rcid, rcid)
        model.truth = write_truth
        model.begin_run(self.run_id, streams, start, config_interval=config_interval, first_run=first_run)
        self.model = model
        self.skill_ids = skill_ids
        self.resumed = not first_run
        self.start = start

    def _load(self, cfg: SimConfig, start: int) -> tuple[Model | None, int | None]:
        row = self.conn.execute(
            f"SELECT run_id, clock_ts, blob, gsys_mark, ({GSYS_MARK}) FROM sim.state WHERE id = 1").fetchone()
        self.conn.commit()
        if row is None:
            return None, None
        run_id, clock_ts, blob, mark, current = row
        if clock_ts > start:
            log.warning("saved simulator state (run %s) is at %s, after the new start %s: starting afresh",
                        run_id, clock_ts, start)
            return None, None
        if mark is None or (current or 0) > mark:
            log.warning("rows were written after the simulator state of run %s was saved (it stopped without "
                        "closing): starting afresh", run_id)
            return None, None
        try:
            model = pickle.loads(zlib.decompress(blob))
        except Exception as exc:  # an older code version: start afresh
            log.warning("cannot load saved simulator state (run %s): %s; starting afresh", run_id, exc)
            return None, None
        if not isinstance(model, Model) or model.cfg != cfg:
            log.info("saved simulator state (run %s) has another configuration: starting afresh", run_id)
            return None, None
        return model, run_id

    def state_blob(self) -> tuple[int, int, bytes]:
        blob = zlib.compress(pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL), 1)
        return (self.run_id, self.model.now, blob)

    def finish(self, summary: SimSummary) -> None:
        with self.conn.transaction():
            self.conn.execute(
                "UPDATE sim.run SET finished_at = now(), end_ts = %s, interactions = %s, summary = %s "
                "WHERE run_id = %s",
                (summary.end_ts, summary.interactions, json.dumps(summary.as_dict()), self.run_id))

    def close(self) -> None:
        self.conn.close()


def _summary(sess: _Session, mode: str, start: int, end: int, stats0: dict, rows: dict, seconds: float) -> SimSummary:
    m = sess.model
    st = {k: v - stats0.get(k, 0) for k, v in m.stats.items()}
    return SimSummary(
        run_id=sess.run_id, mode=mode, seed=m.cfg.seed, start_ts=start, end_ts=end,
        interactions=st["arrivals"], finished=st["ended"], answered=st["answered"], abandoned=st["abandoned"],
        abandoned_ringing=st["abandoned_ringing"],
        active_at_end=sum(1 for ir in m.active_irs.values() if not ir.ended),
        agents=sum(len(p.roster) for p in m.pools.values()), resumed=sess.resumed, seconds=seconds, rows=rows)


def simulate_batch(dsn: str, *, interactions: int, start: datetime | int, span_seconds: int,
                   config: SimConfig | None = None, faults: FaultSpec | None = None, resume: bool = True,
                   write_truth: bool = True, flush_lines: int = 400_000) -> SimSummary:
    """Generate ``interactions`` arrivals over [start, start + span_seconds) and write them with COPY.

    Finished interactions are written as final rows; those in flight at the span end as active rows
    (a later run on the same IDB, batch or live, resumes them). ``start`` is a UTC datetime (naive =
    UTC) or epoch seconds. ``flush_lines`` bounds memory: a write batch (one transaction) is sent
    whenever about that many lines are buffered. Ground truth goes to schema ``sim`` unless
    ``write_truth`` is false. Deterministic for a seed on a fresh IDB (only gsys_seq / gsys_useq
    depend on the database).
    """
    if interactions < 0 or span_seconds <= 0:
        raise ValueError("interactions must be >= 0 and span_seconds > 0")
    t0 = time.perf_counter()
    cfg = config or SimConfig()
    faults = faults or FaultSpec()
    start_ts = _ts(start)
    end_ts = start_ts + int(span_seconds)
    interval = cfg.config_change_interval_s
    if interval is None:
        interval = max(1, span_seconds // 3)
    sess = _Session(dsn, cfg, faults, mode="batch", start=start_ts,
                    streams_for=lambda run_id: batch_streams(cfg, interactions, start_ts, end_ts),
                    peak_until=end_ts, resume=resume, write_truth=write_truth, interactions=interactions,
                    config_interval=interval)
    # The writer thread waits on the socket every ~128 KB and must then win the GIL back from the
    # CPU-bound model thread; with the default 5 ms switch interval that halves COPY throughput.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, 0.0002))
    # Millions of short-lived objects, no cycles left behind (see Model._complete): collect rarely.
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 50_000), max(thresholds[1], 50), max(thresholds[2], 100))
    try:
        model = sess.model
        stats0 = dict(model.stats)
        writer = ThreadedWriter(sess.conn)
        try:
            def flush() -> None:
                job = collect(model)
                job.skill_ids = sess.skill_ids
                writer.submit(job)

            model.run_until(end_ts, flush, flush_lines)
            job = collect(model, active="all", all_late=True)
            job.skill_ids = sess.skill_ids
            model.streams = []
            job.state = sess.state_blob()
            writer.submit(job)
        finally:
            writer.close()
        summary = _summary(sess, "batch", start_ts, end_ts, stats0, writer.counts, time.perf_counter() - t0)
        sess.finish(summary)
        return summary
    finally:
        sys.setswitchinterval(switch)
        gc.set_threshold(*thresholds)
        sess.close()


class LiveSimulator:
    """Live traffic at ``rate_per_min`` interactions a minute (Poisson), written as it happens.

    Call ``step()`` regularly (``run_live`` does): it processes every event due up to ``now`` (the
    ``clock``, or ``now_ts``) and commits them in one transaction. Every ``checkpoint_seconds`` (wall
    time) and at ``close()`` that transaction also saves the model, so a restarted simulator resumes;
    one that stopped without closing and wrote after its last checkpoint is not resumed (a new model
    starts; what the old one left active stays active). Use as a context manager or call ``close()``.
    """

    def __init__(self, dsn: str, *, rate_per_min: float, config: SimConfig | None = None,
                 faults: FaultSpec | None = None, clock: Callable[[], float] = time.time, resume: bool = True,
                 write_truth: bool = True, start_ts: int | None = None, checkpoint_seconds: float = 30.0):
        if rate_per_min < 0:
            raise ValueError("rate_per_min must be >= 0")
        self.cfg = config or SimConfig()
        self.clock = clock
        start = int(clock()) if start_ts is None else int(start_ts)
        self.start_ts = start
        self._t0 = time.perf_counter()
        cfg = self.cfg
        self.sess = _Session(
            dsn, cfg, faults or FaultSpec(), mode="live", start=start,
            streams_for=lambda run_id: live_streams(cfg, rate_per_min, start, run_id),
            peak_until=start + (7 * 86400 if cfg.live_profile else 1), resume=resume, write_truth=write_truth,
            interactions=None,
            config_interval=3600 if cfg.config_change_interval_s is None else cfg.config_change_interval_s)
        self.model = self.sess.model
        self.model.track_new = True
        self._stats0 = dict(self.model.stats)
        self.rows: dict[str, int] = {}
        self.now = start - 1
        self.closed = False
        self.checkpoint_seconds = checkpoint_seconds
        self._failed = False
        self._last_checkpoint = time.monotonic()

    @property
    def run_id(self) -> int:
        return self.sess.run_id

    @property
    def resumed(self) -> bool:
        return self.sess.resumed

    def step(self, now_ts: float | None = None, *, checkpoint: bool | None = None) -> dict[str, int]:
        """Write everything that happened up to ``now_ts`` (default: the clock); returns row counts.
        ``checkpoint``: save the model with it (default: when ``checkpoint_seconds`` have passed)."""
        now = int(self.clock() if now_ts is None else now_ts)
        if now < self.now:
            now = self.now
        self.model.run_until(now + 1)
        self.now = now
        job = collect(self.model, active="new")
        job.skill_ids = self.sess.skill_ids
        if checkpoint is None:
            checkpoint = time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        if checkpoint:
            job.state = self.sess.state_blob()
            self._last_checkpoint = time.monotonic()
        try:
            execute(self.sess.conn, job)
        except BaseException:
            self._failed = True  # the model is ahead of the database now: never save it
            raise
        for k, v in job.counts.items():
            self.rows[k] = self.rows.get(k, 0) + v
        return job.counts

    def summary(self) -> SimSummary:
        return _summary(self.sess, "live", self.start_ts, self.now + 1, self._stats0, self.rows,
                        time.perf_counter() - self._t0)

    def close(self) -> SimSummary:
        """Save the model (a checkpoint step writing nothing new) and end the run."""
        summary = self.summary()
        if not self.closed:
            self.closed = True
            try:
                if not self._failed:
                    self.step(self.now, checkpoint=True)
                    summary = self.summary()
                self.sess.finish(summary)
            finally:
                self.sess.close()
        return summary

    def __enter__(self) -> LiveSimulator:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing: do not let a second error hide the first
            self.close()
        except Exception:
            log.exception("closing the live simulator after an error")


def run_live(dsn: str, rate_per_min: float, stop: threading.Event, tick_seconds: float = 1.0, *,
             config: SimConfig | None = None, faults: FaultSpec | None = None,
             clock: Callable[[], float] = time.time, resume: bool = True, write_truth: bool = True,
             on_step: Callable[[LiveSimulator, dict[str, int]], None] | None = None) -> SimSummary:
    """Live traffic until ``stop`` is set, one step every ``tick_seconds``; returns the run summary."""
    with LiveSimulator(dsn, rate_per_min=rate_per_min, config=config, faults=faults, clock=clock,
                       resume=resume, write_truth=write_truth) as sim:
        while True:
            counts = sim.step()
            if on_step is not None:
                on_step(sim, counts)
            if stop.wait(tick_seconds):
                sim.step()
                break
        return sim.close()


def cli_simulate(dsn: str, *, interactions: int | None = None, hours: float = 24.0, start: str | None = None,
                 rate_per_min: float | None = None, duration_s: float | None = None, seed: int = 1,
                 agents: int = 40, faults: str | None = None, tick_seconds: float = 1.0, resume: bool = True,
                 migrate_first: bool = True) -> SimSummary:
    """Entry point for ``gim idb simulate``.

    Batch when ``interactions`` is given: that many interactions over ``hours`` ending now (or
    starting at ``start``, ISO 8601, UTC if no offset). Live when ``rate_per_min`` is given: until
    Ctrl-C or ``duration_s``. ``faults``: ``"realistic"`` or e.g. ``"late=0.01,dup=0.005,orphan=0.002"``
    (see ``FaultSpec.parse``). The IDB schema is created first unless ``migrate_first`` is false.
    """
    if (interactions is None) == (rate_per_min is None):
        raise ValueError("give either interactions (batch) or rate_per_min (live)")
    if migrate_first:
        from gim_jobs.db.migrate import migrate

        migrate(dsn, "idb")
    cfg = SimConfig(seed=seed, n_agents=agents)
    fs = FaultSpec.parse(faults)
    if interactions is not None:
        span = max(1, int(hours * 3600))
        if start:
            st = datetime.fromisoformat(start)
            begin = _ts(st)
        else:
            begin = int(time.time()) - span
        return simulate_batch(dsn, interactions=interactions, start=begin, span_seconds=span, config=cfg,
                              faults=fs, resume=resume)
    stop = threading.Event()
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()
    try:
        return run_live(dsn, float(rate_per_min), stop, tick_seconds, config=cfg, faults=fs, resume=resume)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        stop.set()
        raise
