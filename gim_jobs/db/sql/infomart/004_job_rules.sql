-- Preemption support for the job registry (R9, R18).
-- work_pids: backend pids of the job's working connections, so a preempting job or an operator
--            stop can cancel the statement it is running (pg_cancel_backend), not only ask it to
--            stop at its next batch boundary.
-- deadline:  when a scheduled job must have stopped by itself (maintenance: the next ETL slot).
ALTER TABLE ctl_job_lease ADD COLUMN work_pids integer[] NOT NULL DEFAULT '{}';
ALTER TABLE ctl_job_lease ADD COLUMN deadline timestamptz;
