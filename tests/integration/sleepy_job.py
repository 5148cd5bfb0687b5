"""A test job for the job runner: sleeps in stoppable steps, recording each finished step.

The runner tests need a job whose duration they control; the real jobs have their own tests.
"""

from __future__ import annotations

import time

from gim_jobs.control import JobContext, JobResult


def run(ctx: JobContext) -> JobResult:
    steps = int(ctx.params.get("steps", 10))
    step_seconds = float(ctx.params.get("step_seconds", 0.2))
    done = 0
    for _ in range(steps):
        ctx.check_stop()
        time.sleep(step_seconds)
        done += 1
    return JobResult(rows=done, details={"steps": done})


def run_sql(ctx: JobContext) -> JobResult:
    """Variant: one long statement on a registered connection (preemption must cancel it)."""
    import psycopg

    with psycopg.connect(ctx.infomart_dsn, autocommit=True) as conn:
        ctx.register(conn)
        conn.execute("SELECT pg_sleep(%s)", (float(ctx.params.get("sleep", 60)),))
    return JobResult(rows=1)
