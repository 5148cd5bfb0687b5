"""Job_AggregateGIM: keep the ``agt_*`` aggregates current from changed facts, continuously, in
the ``aggregate-schedule`` / ``aggregate-duration`` window (R11).

Incremental, never the whole history
    Facts carry ``update_audit_key`` (the ``ctl_audit_log`` row of the transaction that last
    changed them). Each cycle takes a safe audit-key bound ``M`` (``LOCK TABLE ctl_audit_log IN
    SHARE MODE`` for an instant, as Job_ExportGIM does: every lower key has committed or rolled
    back), turns every fact changed in ``(HWM, M]`` into the sub-hour intervals it counts in (its
    ``[start_ts, end_ts]`` span, plus its interaction's start for IRF rows, which H_ID counts) and
    queues them in ``ctl_aggregate_pending`` together with the advance of the HWM, in one
    transaction. Then pending intervals are processed in batches (one GMT day of sub-hour keys at
    most): in one transaction per batch, for every hierarchy, the SUBHOUR rows of those keys are
    deleted and recomputed from the facts, then HOUR, DAY, MONTH, QUARTER, YEAR rows of the
    periods holding them are deleted and recomputed from the level below, and the pending rows are
    deleted. A stop or crash loses nothing: a batch is all or nothing and its rows stay pending.

Re-aggregation (R19, R20)
    ``insertPendingAgg=<AGR_SET>:<START>:<END>`` is validated (``gim_jobs.aggregation.params``),
    then checked against the database (the days are in ``date_time``; no fact of the range was
    purged) and queued as one pending row; the aggregation deletes and recomputes that range for
    that set from LEVEL upwards (and flavor) in the same transaction. It acts only while aggregation
    runs: with ``run-aggregates = true`` inside the window (the scheduler's aggregation, restarted
    at once if it is not running this second, R11) or when an aggregation run has just yielded to
    this run (see ``yield_check``). Otherwise the run starts aggregation and ignores the parameter,
    saying so in the log.

Manual runs (R16): refused outside the aggregation window(s) and while ``run-aggregates = true``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg

from gim_jobs import schedule
from gim_jobs.aggregation.hierarchies import (
    HIERARCHIES,
    LEVELS,
    NAMES,
    Hierarchy,
    collect_touched,
    create_touched,
    ddl,
    ddl_hash,
    delete_keys,
    delete_touched,
    drop,
    insert_from_facts,
    insert_rollup,
    insert_touched,
    touched_table,
    touched_up,
)
from gim_jobs.aggregation.params import PARAM_NAME, BadRequest, ReaggRequest, parse
from gim_jobs.control import JobContext, JobRefused, JobResult
from gim_jobs.db.connect import connect

POLL_SECONDS = 5.0
# Set by the Airflow operator: True when a manual run of gim_aggregate is queued behind this one
# (max_active_runs = 1); the running aggregation then ends so that run can start.
yield_check: Callable[[], bool] | None = None
YIELD_FRESH_SECONDS = 120
PENDING_ROWS_PER_CYCLE = 20000
# batches of more keys than this roll up whole periods; smaller ones only the groups they changed
TOUCHED_MAX_KEYS = 16
# the hierarchies that count facts by group membership (resource_group_fact_): a membership
# change re-aggregates them (see Aggregator._queue_membership_changes)
GROUP_HIERARCHIES = tuple(n for n in NAMES if any("resource_group_fact_" in s.from_sql for s in HIERARCHIES[n].sources))
FACT_TABLES = ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact",
               "contact_attempt_fact")


def period_key(ts: int, level: str, sub: int) -> int:
    """Start (epoch s, GMT) of the ``level`` period holding ``ts``."""
    if level == "SUBHOUR":
        return ts - ts % sub
    if level == "HOUR":
        return ts - ts % 3600
    if level == "DAY":
        return ts - ts % 86400
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    month = {"MONTH": d.month, "QUARTER": 3 * ((d.month - 1) // 3) + 1, "YEAR": 1}[level]
    return int(dt.datetime(d.year, month, 1, tzinfo=dt.UTC).timestamp())


def period_end(key: int, level: str, sub: int) -> int:
    if level in ("SUBHOUR", "HOUR", "DAY"):
        return key + {"SUBHOUR": sub, "HOUR": 3600, "DAY": 86400}[level]
    d = dt.datetime.fromtimestamp(key, dt.UTC)
    months = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}[level]
    m = d.month - 1 + months
    return int(dt.datetime(d.year + m // 12, m % 12 + 1, 1, tzinfo=dt.UTC).timestamp())


def period_keys(start: int, end: int, level: str, sub: int) -> list[int]:
    """Keys of the ``level`` periods overlapping ``[start, end)``."""
    out, k = [], period_key(start, level, sub)
    while k < end:
        out.append(k)
        k = period_end(k, level, sub)
    return out


def _regclass(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


class Aggregator:
    """The aggregation engine on one Info Mart; the job's loop and the tests and bench drive it."""

    def __init__(self, dsn: str, sub_hour_minutes: int = 15, *, log: Any = None,
                 check_stop: Callable[[], None] | None = None, register: Callable[[Any], Any] | None = None) -> None:
        import logging

        self.dsn = dsn
        self.sub = int(sub_hour_minutes) * 60
        self.log = log or logging.getLogger("gim.aggregate")
        self.check_stop = check_stop or (lambda: None)
        self.conn = connect(dsn, autocommit=True, app="gim-aggregate")
        if register:
            register(self.conn)
        self.present: set[str] = set()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Aggregator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tables
    def _fact_range(self) -> tuple[int, int] | None:
        lo = hi = None
        for t in FACT_TABLES:
            if not _regclass(self.conn, t):
                continue
            a, b = self.conn.execute(
                f"SELECT min(start_ts), max(coalesce(end_ts, start_ts)) FROM {t}"  # noqa: S608 - fixed names
            ).fetchone()
            if a is not None:
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
        return None if lo is None else (int(lo), int(hi) + 1)

    def ensure_tables(self) -> list[str]:
        """Create (or re-create, when their definition changed) the agt_* tables and ag2_* views.
        A hierarchy created while facts exist is queued for a rebuild of the facts' whole span."""
        c = self.conn
        self.present = {t for t in ("contact_attempt_fact",) if _regclass(c, t)}
        created: list[str] = []
        with c.transaction():
            c.execute("SELECT pg_advisory_xact_lock(hashtextextended('gim-aggregate-ddl', 0))")
            hwm, sub = c.execute(
                "SELECT audit_key_hwm, sub_hour_interval FROM ctl_aggregate_hwm WHERE name = 'facts'"
            ).fetchone()
            have = dict(c.execute("SELECT hierarchy, ddl_hash FROM ctl_aggregate_hierarchy").fetchall())
            span = self._fact_range() if hwm else None
            for name in NAMES:
                h = HIERARCHIES[name]
                want = ddl_hash(h)
                if have.get(name) == want and _regclass(c, h.table("YEAR")):
                    continue
                for stmt in [*drop(h), *ddl(h)]:
                    c.execute(stmt)
                c.execute(
                    """INSERT INTO ctl_aggregate_hierarchy (hierarchy, ddl_hash) VALUES (%s, %s)
                       ON CONFLICT (hierarchy) DO UPDATE SET ddl_hash = EXCLUDED.ddl_hash, created = now()""",
                    (name, want),
                )
                created.append(name)
                if span:
                    c.execute(
                        """INSERT INTO ctl_aggregate_pending (hierarchy, start_ts, end_ts, source)
                           VALUES (%s, %s, %s, 'rebuild')""", (name, *span),
                    )
            if sub is not None and sub != self.sub // 60:
                self.log.warning("sub-hour-interval changed from %s to %s min: rebuilding every SUBHOUR table",
                                 sub, self.sub // 60)
                for name in NAMES:
                    c.execute(f"TRUNCATE {HIERARCHIES[name].table('SUBHOUR')}")
                if span:
                    c.execute("INSERT INTO ctl_aggregate_pending (start_ts, end_ts, source) VALUES (%s, %s, 'rebuild')",
                              span)
            if sub != self.sub // 60:
                c.execute("UPDATE ctl_aggregate_hwm SET sub_hour_interval = %s WHERE name = 'facts'", (self.sub // 60,))
        if created:
            self.log.info("created aggregate tables and views of %s", ", ".join(created))
        return created

    # ------------------------------------------------------------------ queueing
    def safe_audit_bound(self) -> int | None:
        """The greatest audit key below which every key has committed (None: writers busy now)."""
        c = self.conn
        try:
            with c.transaction():
                c.execute("SET LOCAL lock_timeout = '3s'")
                c.execute("LOCK TABLE ctl_audit_log IN SHARE MODE")
                return int(c.execute("SELECT coalesce(max(audit_key), 0) FROM ctl_audit_log").fetchone()[0])
        except psycopg.errors.LockNotAvailable:
            return None

    def queue_changes(self) -> int:
        """Turn facts changed since the HWM into pending sub-hour intervals. Returns rows queued."""
        bound = self.safe_audit_bound()
        if bound is None:
            self.log.info("ctl_audit_log busy: changed facts are queued next cycle")
            return 0
        c = self.conn
        with c.transaction():
            hwm = c.execute("SELECT audit_key_hwm FROM ctl_aggregate_hwm WHERE name = 'facts' FOR UPDATE").fetchone()[0]
            if bound <= hwm:
                return 0
            spans = []
            for t in FACT_TABLES:
                if t == "interaction_fact" or _regclass(c, t):
                    spans.append(f"SELECT f.start_ts AS a, coalesce(f.end_ts, f.start_ts) AS b FROM {t} f "
                                 "WHERE f.update_audit_key > %(hwm)s AND f.update_audit_key <= %(bound)s")
            spans.append("SELECT i.start_ts, i.start_ts FROM interaction_resource_fact f "
                         "JOIN interaction_fact i ON i.interaction_id = f.interaction_id "
                         "WHERE f.update_audit_key > %(hwm)s AND f.update_audit_key <= %(bound)s")
            if _regclass(c, "ctl_fact_deleted"):
                # facts the transform deleted: nothing carries their audit key any more
                spans.append("SELECT d.start_ts, d.end_ts FROM ctl_fact_deleted d "
                             "WHERE d.audit_key > %(hwm)s AND d.audit_key <= %(bound)s")
            n = c.execute(
                f"""INSERT INTO ctl_aggregate_pending (start_ts, end_ts, source)
                    SELECT k, k + %(S)s, 'facts'
                      FROM (SELECT DISTINCT generate_series(a - mod(a, %(S)s), b - mod(b, %(S)s), %(S)s) AS k
                              FROM ({' UNION ALL '.join(spans)}) s) x
                     ORDER BY k""",
                {"hwm": hwm, "bound": bound, "S": self.sub},
            ).rowcount
            n += self._queue_membership_changes(hwm, bound)
            c.execute("UPDATE ctl_aggregate_hwm SET audit_key_hwm = %s, updated = now() WHERE name = 'facts'",
                      (bound,))
        return n

    def _queue_membership_changes(self, hwm: int, bound: int) -> int:
        """Queue the intervals a group-membership change (``resource_group_fact_`` changed in
        ``(hwm, bound]``) re-assigns, for the hierarchies that read membership.

        A membership counts facts by the time they happened (membership at the offer / queue
        entry), so what changed is: for a new membership, its whole span ``[start, end)``; for a
        changed one (ended, or re-added with a new start), the time from its new end (or new start)
        on. Clamped to the IRF starts there are: intervals without facts need no work. One pending
        row per cycle ([earliest, latest) of those spans), hierarchy = the membership readers."""
        c = self.conn
        if not GROUP_HIERARCHIES:
            return 0
        span = c.execute(
            """SELECT min(a), max(b) FROM (
                   SELECT CASE WHEN g.create_audit_key = g.update_audit_key THEN g.start_ts
                               ELSE coalesce(g.end_ts, g.start_ts) END AS a,
                          CASE WHEN g.create_audit_key = g.update_audit_key THEN g.end_ts END AS b
                     FROM resource_group_fact_ g
                    WHERE g.update_audit_key > %(hwm)s AND g.update_audit_key <= %(bound)s) x""",
            {"hwm": hwm, "bound": bound}).fetchone()
        if span[0] is None:
            return 0
        # the group hierarchies count IRF rows by their start: clamp to the starts there are (both
        # ends from the start_date_time_key index, never a scan of the facts)
        first, last = c.execute("SELECT min(start_date_time_key), max(start_date_time_key) "
                                "FROM interaction_resource_fact").fetchone()
        if first is None:
            return 0
        lo = max(int(span[0]), int(first))
        hi = min(int(span[1]) if span[1] is not None else int(last) + 900, int(last) + 900)
        lo -= lo % self.sub
        if hi <= lo:
            return 0
        c.execute("""INSERT INTO ctl_aggregate_pending (hierarchy, start_ts, end_ts, source)
                     VALUES (%s, %s, %s, 'groups')""", (",".join(GROUP_HIERARCHIES), lo, hi))
        self.log.info("group membership changed: %s queued for %s .. %s", ", ".join(GROUP_HIERARCHIES),
                      dt.datetime.fromtimestamp(lo, dt.UTC), dt.datetime.fromtimestamp(hi, dt.UTC))
        return 1

    # ------------------------------------------------------------------ processing
    def _batches(self, level: str, rows: list[tuple[int, int, int]]) -> list[tuple[list[int], list[int]]]:
        """(keys of ``level``, pending ids finished by this batch), in time order: at most one GMT
        day's worth of SUBHOUR or HOUR keys per batch (a few scattered keys make one batch); the
        higher levels in one batch."""
        last_key: dict[int, int] = {}
        keys: set[int] = set()
        for rid, start, end in rows:
            ks = period_keys(start, end, level, self.sub)
            keys.update(ks)
            last_key[rid] = ks[-1] if ks else -1
        size = {"SUBHOUR": 86400 // self.sub, "HOUR": 24}.get(level, max(len(keys), 1))
        ordered = sorted(keys)
        out = []
        for i in range(0, len(ordered), size):
            chunk = ordered[i:i + size]
            done = [rid for rid, k in last_key.items() if chunk[0] <= k <= chunk[-1]]
            out.append((chunk, done))
        return out

    def recompute(self, hierarchies: list[Hierarchy], level: str, flavor: str, keys: list[int]) -> int:
        """Delete and recompute ``keys`` of ``level`` (from the facts for SUBHOUR, else from the
        level below), then, level by level up to YEAR, only the (period, dimensions) groups whose
        rows below changed. Runs inside the caller's transaction. Returns rows inserted."""
        c, rows = self.conn, 0
        fl = bool(flavor)
        ks = sorted(set(keys))
        p = {"keys": ks, "S": self.sub, "online": 1 if flavor == "Online" else 0, "lo": ks[0],
             "hi": period_end(ks[-1], level, self.sub)}
        for h in hierarchies:
            for stmt in create_touched(h):
                c.execute(stmt)
            c.execute(f"TRUNCATE {touched_table(h)}")
            c.execute(collect_touched(h, level, flavor=fl), p)
            c.execute(delete_keys(h, level, flavor=fl), p)
            sql = insert_from_facts(h, flavor=fl, present=self.present) if level == "SUBHOUR" else \
                insert_rollup(h, level, flavor=fl)
            if sql is not None:
                rows += c.execute(sql, p).rowcount
                c.execute(collect_touched(h, level, flavor=fl), p)
            for up in LEVELS[LEVELS.index(level) + 1:]:
                if len(ks) > TOUCHED_MAX_KEYS:  # a big batch: whole periods are cheaper than groups
                    uks = sorted({period_key(k, up, self.sub) for k in ks})
                    pu = {**p, "keys": uks, "lo": uks[0], "hi": period_end(uks[-1], up, self.sub)}
                    c.execute(delete_keys(h, up, flavor=fl), pu)
                    rows += c.execute(insert_rollup(h, up, flavor=fl), pu).rowcount
                    continue
                for stmt in touched_up(h, up):
                    c.execute(stmt)
                c.execute(delete_touched(h, up))
                rows += c.execute(insert_touched(h, up)).rowcount
        return rows

    def process_pending(self, deadline: dt.datetime | None = None) -> dict[str, int]:
        c = self.conn
        pend = c.execute(
            "SELECT id, hierarchy, level, flavor, start_ts, end_ts FROM ctl_aggregate_pending ORDER BY id LIMIT %s",
            (PENDING_ROWS_PER_CYCLE,),
        ).fetchall()
        groups: dict[tuple[str, str, str], list[tuple[int, int, int]]] = defaultdict(list)
        for rid, hier, level, flavor, start, end in pend:
            groups[(hier, level, flavor)].append((rid, start, end))
        stats = {"pending_rows": len(pend), "batches": 0, "rows": 0, "intervals": 0}
        for (hier, level, flavor), rows in groups.items():
            names = NAMES if hier in ("*", "") else [n for n in hier.split(",") if n in HIERARCHIES]
            hs = [HIERARCHIES[n] for n in names]
            for keys, done in self._batches(level, rows):
                self.check_stop()
                if deadline is not None and dt.datetime.now(dt.UTC) >= deadline:
                    return stats
                with c.transaction():
                    stats["rows"] += self.recompute(hs, level, flavor, keys)
                    if done:
                        c.execute("DELETE FROM ctl_aggregate_pending WHERE id = ANY(%s)", (done,))
                stats["batches"] += 1
                stats["intervals"] += len(keys)
            leftover = [r[0] for r in rows if not period_keys(r[1], r[2], level, self.sub)]
            if leftover:
                c.execute("DELETE FROM ctl_aggregate_pending WHERE id = ANY(%s)", (leftover,))
        return stats

    def cycle(self, deadline: dt.datetime | None = None) -> dict[str, int]:
        """Queue what changed, then process what is pending (including re-aggregation requests)."""
        queued = self.queue_changes()
        stats = self.process_pending(deadline)
        stats["queued"] = queued
        return stats

    def run_until_idle(self) -> dict[str, int]:
        total: dict[str, int] = defaultdict(int)
        while True:
            st = self.cycle()
            for k, v in st.items():
                total[k] += v
            if not st["queued"] and not st["pending_rows"]:
                return dict(total)


# ---------------------------------------------------------------------- re-aggregation requests
def check_request(conn: psycopg.Connection, req: ReaggRequest) -> None:
    """R19/R20 database checks: the days exist in date_time; no fact of the range was purged."""
    days = (req.end - req.start).days + 1
    have = conn.execute(
        "SELECT count(DISTINCT date_time_day_key) FROM date_time WHERE date_time_key >= %s AND date_time_key < %s",
        (req.start_ts, req.end_ts),
    ).fetchone()[0]
    if have < days:
        raise BadRequest(f"{PARAM_NAME} = {req.text!r}: {days - have} of the {days} day(s) {req.start}..{req.end} "
                         "are not in the date_time calendar")
    if _regclass(conn, "ctl_purge_history"):
        row = conn.execute(
            """SELECT max(cutoff) FROM ctl_purge_history
                WHERE table_name = ANY(%s) AND (rows_deleted > 0 OR partitions_dropped > 0)""",
            (list(FACT_TABLES),),
        ).fetchone()
        if row and row[0] is not None and req.start_ts < row[0].timestamp():
            raise BadRequest(
                f"{PARAM_NAME} = {req.text!r}: facts before {row[0]:%Y-%m-%d %H:%M} UTC were purged "
                "(ctl_purge_history); re-aggregating would leave that range empty (R20), so it is refused"
            )


def submit_request(dsn: str, req: ReaggRequest) -> int:
    """Check ``req`` and queue it (one ctl_aggregate_pending row). Returns the row id."""
    with connect(dsn, autocommit=True, app="gim-aggregate-request") as conn:
        check_request(conn, req)
        hier = "*" if set(req.hierarchies) == set(NAMES) else ",".join(req.hierarchies)
        return conn.execute(
            """INSERT INTO ctl_aggregate_pending (hierarchy, level, flavor, start_ts, end_ts, source, request)
               VALUES (%s, %s, %s, %s, %s, 'insertPendingAgg', %s) RETURNING id""",
            (hier, req.level, req.flavor, req.start_ts, req.end_ts, req.text),
        ).fetchone()[0]


def _recently_yielded(dsn: str) -> bool:
    with connect(dsn, autocommit=True, app="gim-aggregate") as conn:
        row = conn.execute(
            "SELECT yielded_at > now() - make_interval(secs => %s) FROM ctl_aggregate_hwm WHERE name = 'facts'",
            (YIELD_FRESH_SECONDS,),
        ).fetchone()
        return bool(row and row[0])


def _windows_text(s: Any, now: dt.datetime) -> str:
    day = schedule.to_local(now, s.timezone).date()
    wins = schedule.aggregate_windows_on(day, s.aggregate_schedule, s.aggregate_duration, s.timezone)
    return ", ".join(f"{schedule.fmt_local(a, s.timezone)}-{schedule.fmt_local(b, s.timezone, with_date=True)}"
                     for a, b in wins) or "none"


def _maintenance_runs(dsn: str) -> str | None:
    from gim_jobs.control import running_jobs

    for r in running_jobs(dsn):
        if r["job_name"] == "Job_MaintainGIM" and r["run_type"] == "scheduled":
            return str(r.get("run_id") or r["job_id"])
    return None


# ---------------------------------------------------------------------- the job
def run(ctx: JobContext) -> JobResult:
    s = ctx.config.schedule
    try:
        req = parse(ctx.params.get(PARAM_NAME))
    except BadRequest as exc:
        raise JobRefused(f"Job_AggregateGIM refused: {exc} (R19)") from None
    now = dt.datetime.now(dt.UTC)
    win = schedule.aggregate_window_at(now, s.aggregate_schedule, s.aggregate_duration, s.timezone)
    manual = ctx.run_type != "scheduled"
    if req is not None:
        yielded = _recently_yielded(ctx.infomart_dsn)
        if (s.run_aggregates and win is not None) or yielded:
            try:
                rid = submit_request(ctx.infomart_dsn, req)
            except BadRequest as exc:
                raise JobRefused(f"Job_AggregateGIM refused: {exc}") from None
            ctx.log.info("re-aggregation %s queued (ctl_aggregate_pending id %s): the running aggregation deletes "
                         "and recomputes %s..%s for %s from %s%s (R20)", req.text, rid, req.start, req.end,
                         ",".join(req.hierarchies), req.level, f" ({req.flavor})" if req.flavor else "")
            if s.run_aggregates or not manual:
                return JobResult(details={"request_id": rid},
                                 message=f"re-aggregation queued for the running aggregation (id {rid})")
        else:
            ctx.log.warning("aggregation is not running: this run starts it and ignores %s=%s (R20); run it again "
                            "with the parameter once aggregation runs", PARAM_NAME, req.text)
    if manual:
        if s.run_aggregates:
            raise JobRefused(
                "a manual Job_AggregateGIM is refused while run-aggregates = true: the scheduler runs aggregation "
                "in its windows (R16); to stop it for good set run-aggregates = false first (R17)")
        if win is None:
            raise JobRefused(
                f"a manual Job_AggregateGIM is refused outside the aggregation window(s) (R16): aggregate-schedule "
                f"{s.aggregate_schedule.text}, aggregate-duration {s.aggregate_duration_text}, {s.timezone}; "
                f"today's windows: {_windows_text(s, now)}")
    elif win is None:
        return JobResult(message="outside every aggregation window: nothing to do (R11)")
    assert win is not None
    until = win[1]
    ctx.log.info("aggregating continuously until the window ends at %s (%s)",
                 schedule.fmt_local(until, s.timezone, with_date=True), s.timezone)
    total: dict[str, int] = defaultdict(int)
    with Aggregator(ctx.infomart_dsn, ctx.config.gim_etl.sub_hour_interval, log=ctx.log,
                    check_stop=ctx.check_stop, register=ctx.register) as agg:
        agg.ensure_tables()
        paused = False
        while True:
            ctx.check_stop()
            if dt.datetime.now(dt.UTC) >= until:
                break
            if yield_check is not None and yield_check():
                agg.conn.execute("UPDATE ctl_aggregate_hwm SET yielded_at = now() WHERE name = 'facts'")
                ctx.log.info("a manual run of gim_aggregate is queued: ending this run so it can start")
                return JobResult(rows=total["rows"], details=dict(total),
                                 message="yielded to a queued manual run")
            maint = _maintenance_runs(ctx.infomart_dsn) if not manual else None
            if maint:
                if not paused:
                    ctx.log.info("scheduled Job_MaintainGIM runs (%s): aggregation waits (R8)", maint)
                paused = True
                st = {"queued": 0, "pending_rows": 0}
            else:
                if paused:
                    ctx.log.info("maintenance finished: aggregation resumes")
                paused = False
                st = agg.cycle(until)
                for k, v in st.items():
                    total[k] += v
                if st.get("intervals"):
                    ctx.log.info("cycle: %s intervals queued, %s processed in %s batch(es), %s aggregate rows",
                                 st["queued"], st["intervals"], st["batches"], st["rows"])
            if not st["pending_rows"] or paused:
                end = time.monotonic() + POLL_SECONDS
                while time.monotonic() < end and dt.datetime.now(dt.UTC) < until:
                    ctx.check_stop()
                    time.sleep(0.2)
    return JobResult(rows=total["rows"], details=dict(total),
                     message=f"aggregation window ended at {schedule.fmt_local(until, s.timezone, with_date=True)}")
