"""Job_UpdateStats: keep PostgreSQL's planner statistics current for the tables the ETL changes.

Genesys documents the job's schedule (``update-stats-schedule``, every 10 minutes by default) and that
it runs beside ETL but not beside Job_MaintainGIM; what it runs on PostgreSQL is ours (rules.md):

* ``ANALYZE`` every Info Mart table whose rows changed enough since its last analyze
  (``n_mod_since_analyze`` >= max(ANALYZE_MIN_ROWS, ANALYZE_FRACTION x live rows)), so plans for the
  growing fact tables and staging stay good between autovacuum's own, coarser passes;
* ``VACUUM (ANALYZE)`` where dead rows (from the transform's updates of active facts, and purges)
  reach max(VACUUM_MIN_DEAD, VACUUM_FRACTION x live rows), so updates find free space and
  index-only scans keep working;
* ``ANALYZE`` of a partitioned table (the facts, the history control tables) once its partitions
  changed by 10 % since the job last analyzed it: PostgreSQL tracks no changes for the parent
  itself and autovacuum never analyzes it, but the planner needs its whole-table statistics
  (see :mod:`gim_jobs.db.stats`).

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
from gim_jobs.db.stats import analyze_parent, changed_leaves, stale_parents

ANALYZE_MIN_ROWS = 50
ANALYZE_FRACTION = 0.02
VACUUM_MIN_DEAD = 1000
VACUUM_FRACTION = 0.10


def run(ctx: JobContext) -> JobResult:
    maint = [r for r in running_jobs(ctx.infomart_dsn) if r["job_name"] == "Job_MaintainGIM"]
    if maint:
        raise JobRefused(f"Job_MaintainGIM runs ({maint[0]['run_type']} run): Job_UpdateStats is suspended "
                         "until it ends (R10)")
    done: list[dict[str, object]] = []
    with connect(ctx.infomart_dsn, autocommit=True, app="gim-update-stats") as conn:
        ctx.register(conn)
        leaves = changed_leaves(conn, analyze_min=ANALYZE_MIN_ROWS, analyze_fraction=ANALYZE_FRACTION,
                                vacuum_min=VACUUM_MIN_DEAD, vacuum_fraction=VACUUM_FRACTION)
        for leaf in leaves:
            ctx.check_stop()
            vacuum = leaf.dead >= max(VACUUM_MIN_DEAD, VACUUM_FRACTION * leaf.live)
            stmt = sql.SQL("VACUUM (ANALYZE) {}" if vacuum else "ANALYZE {}").format(sql.Identifier(leaf.name))
            t0 = time.monotonic()
            conn.execute(stmt)
            done.append({"table": leaf.name, "action": "vacuum analyze" if vacuum else "analyze",
                         "modified": leaf.modified, "dead": leaf.dead, "seconds": round(time.monotonic() - t0, 3)})
            ctx.log.info("%s %s (modified %s, dead %s)", done[-1]["action"], leaf.name, leaf.modified, leaf.dead)
            ctx.pause()
        # partitioned parents last: their partitions' own statistics are fresh by now, and the
        # parent's whole-table statistics are what the planner uses for joins against it
        for parent in stale_parents(conn):
            ctx.check_stop()
            t0 = time.monotonic()
            analyze_parent(conn, parent)
            done.append({"table": parent.name, "action": "analyze partitioned",
                         "modified": parent.changed_since, "partitions": parent.partitions,
                         "seconds": round(time.monotonic() - t0, 3)})
            ctx.log.info("analyze partitioned %s (%s partitions; partition rows changed since last time: %s)",
                         parent.name, parent.partitions,
                         "never analyzed" if parent.changed_since is None else parent.changed_since)
            ctx.pause()
    return JobResult(rows=len(done), details={"tables": done},
                     message=f"{len(done)} table(s) analyzed" if done else "statistics current")
