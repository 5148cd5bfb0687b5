"""Job_UpdateStats: keep PostgreSQL's planner statistics current for the tables the ETL changes.

Genesys documents the job's schedule (``update-stats-schedule``, every 10 minutes by default) and that
it runs beside ETL but not beside Job_MaintainGIM; what it runs on PostgreSQL is ours (rules.md):

* ``ANALYZE`` every Info Mart table whose rows changed enough since its last analyze
  (``n_mod_since_analyze`` >= max(ANALYZE_MIN_ROWS, ANALYZE_FRACTION x live rows)), so plans for the
  growing fact tables and staging stay good between autovacuum's own, coarser passes;
* ``VACUUM (ANALYZE)`` where dead rows (from the transform's updates of active facts, and purges)
  reach max(VACUUM_MIN_DEAD, VACUUM_FRACTION x live rows), so updates find free space and
  index-only scans keep working.

One table at a time on an autocommit connection (VACUUM cannot run in a transaction); the job checks
for a stop between tables, and a stop request cancels the running statement: nothing is left half
done, since ANALYZE and VACUUM are atomic per table. While Job_MaintainGIM runs, the job does nothing
(R10).
"""

from __future__ import annotations

import time

from psycopg import sql

from gim_jobs.control import JobContext, JobRefused, JobResult, running_jobs
from gim_jobs.db.connect import connect

ANALYZE_MIN_ROWS = 50
ANALYZE_FRACTION = 0.02
VACUUM_MIN_DEAD = 1000
VACUUM_FRACTION = 0.10

CANDIDATES = """
SELECT s.relname, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze
  FROM pg_stat_user_tables s
 WHERE s.schemaname = 'public'
   AND (s.n_mod_since_analyze >= greatest(%(amin)s, %(afrac)s * s.n_live_tup)
        OR s.n_dead_tup >= greatest(%(vmin)s, %(vfrac)s * s.n_live_tup))
 ORDER BY s.n_mod_since_analyze + s.n_dead_tup DESC, s.relname
"""


def run(ctx: JobContext) -> JobResult:
    maint = [r for r in running_jobs(ctx.infomart_dsn) if r["job_name"] == "Job_MaintainGIM"]
    if maint:
        raise JobRefused(f"Job_MaintainGIM runs ({maint[0]['run_type']} run): Job_UpdateStats is suspended "
                         "until it ends (R10)")
    done: list[dict[str, object]] = []
    with connect(ctx.infomart_dsn, autocommit=True, app="gim-update-stats") as conn:
        ctx.register(conn)
        rows = conn.execute(CANDIDATES, {"amin": ANALYZE_MIN_ROWS, "afrac": ANALYZE_FRACTION,
                                         "vmin": VACUUM_MIN_DEAD, "vfrac": VACUUM_FRACTION}).fetchall()
        for relname, live, dead, mods in rows:
            ctx.check_stop()
            vacuum = dead >= max(VACUUM_MIN_DEAD, VACUUM_FRACTION * live)
            stmt = sql.SQL("VACUUM (ANALYZE) {}" if vacuum else "ANALYZE {}").format(sql.Identifier(relname))
            t0 = time.monotonic()
            conn.execute(stmt)
            done.append({"table": relname, "action": "vacuum analyze" if vacuum else "analyze",
                         "modified": int(mods), "dead": int(dead), "seconds": round(time.monotonic() - t0, 3)})
            ctx.log.info("%s %s (modified %s, dead %s)", done[-1]["action"], relname, mods, dead)
            ctx.pause()
    return JobResult(rows=len(done), details={"tables": done},
                     message=f"{len(done)} table(s) analyzed" if done else "statistics current")
