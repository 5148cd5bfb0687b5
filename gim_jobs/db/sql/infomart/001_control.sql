-- Info Mart control tables shared by every job: data sources, job history, audit log, job registry.
-- Table and column names follow Genesys (lower case); columns Genesys does not document are ours.

-- One row per IDB data source (a Genesys DAP) the extraction has seen; data_source_key is stamped on
-- staged rows, facts and audit rows so several IDBs merge into one Info Mart.
CREATE TABLE ctl_data_source (
    data_source_key  serial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    roles            text NOT NULL,
    created          timestamptz NOT NULL DEFAULT now(),
    updated          timestamptz NOT NULL DEFAULT now()
);

-- One row per job execution (Genesys: CTL_ETL_HISTORY / view ADMIN_ETL_JOB_HISTORY). We insert it
-- when the job starts (status RUNNING) so a running job is visible, and finish it at the end.
-- status: RUNNING, COMPLETED, FAILED, STOPPED (preempted or cancelled), REFUSED (not started: a rule
-- said no; message says which), SKIPPED (a scheduled launch the rules suppressed, e.g. run-scheduler=false)
CREATE TABLE ctl_etl_history (
    id            bigserial PRIMARY KEY,
    job_id        uuid NOT NULL UNIQUE,
    job_name      text NOT NULL,
    job_version   text NOT NULL,
    run_type      text NOT NULL,                 -- scheduled, manual, cli
    dag_id        text,
    run_id        text,
    host          text,
    pid           integer,
    start_time    timestamptz NOT NULL DEFAULT now(),
    end_time      timestamptz,
    status        text NOT NULL,
    row_count     bigint NOT NULL DEFAULT 0,
    message       text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ctl_etl_history_job_start ON ctl_etl_history (job_name, start_time DESC);
CREATE INDEX ctl_etl_history_status ON ctl_etl_history (status) WHERE status = 'RUNNING';

-- One row per committed logical transaction (Genesys CTL_AUDIT_LOG). Facts carry the key of the
-- transaction that created (create_audit_key) and last updated (update_audit_key) them; export and
-- aggregation read changes by audit key.
CREATE TABLE ctl_audit_log (
    audit_key                bigserial PRIMARY KEY,
    job_id                   text NOT NULL,
    created                  timestamptz NOT NULL DEFAULT now(),
    inserted                 timestamptz,
    processing_status_key    integer NOT NULL DEFAULT 0,
    min_start_date_time_key  bigint,
    max_start_date_time_key  bigint,
    max_chunk_ts             bigint,
    data_source_key          integer,
    row_count                bigint NOT NULL DEFAULT 0,
    created_ts               bigint NOT NULL DEFAULT extract(epoch FROM now())::bigint,
    producer_info_key        integer
);

-- The job registry: one row per job name while an instance of it runs. The real guard is a
-- session-level advisory lock held by the running job's connection (released by PostgreSQL if the
-- process dies); this row says who holds it and lets another job ask it to stop (preemption).
CREATE TABLE ctl_job_lease (
    job_name           text PRIMARY KEY,
    job_id             uuid NOT NULL,
    run_type           text NOT NULL,
    dag_id             text,
    run_id             text,
    host               text,
    pid                integer,
    backend_pid        integer NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    heartbeat_at       timestamptz NOT NULL DEFAULT now(),
    stop_requested     boolean NOT NULL DEFAULT false,
    stop_reason        text
);
