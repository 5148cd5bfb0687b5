"""Test job module: one long SQL statement (see sleepy_job.run_sql)."""

from tests.integration.sleepy_job import run_sql as run  # noqa: F401
