-- Job_AggregateGIM: its control tables and the period-key function. The agt_* tables and ag2_*
-- views are generated from gim_jobs/aggregation/hierarchies.py and created by the job on its first
-- run (Genesys: "creates them on first run if missing"); ctl_aggregate_hierarchy records what was
-- created so a changed definition is dropped, recreated and rebuilt.

-- Pending aggregation work, one row per pending interval [start_ts, end_ts) (epoch seconds GMT):
--   source 'facts': a sub-hour interval whose facts changed (queued from audit keys), hierarchy '*',
--                   level SUBHOUR, flavor '';
--   source 'insertPendingAgg': a re-aggregation request (R19/R20): hierarchy a comma-separated
--                   list, level the lowest level to recompute, flavor '' / Online / Offline;
--   source 'rebuild': a hierarchy created (or re-created) after facts existed.
-- The job deletes the rows it has processed in the transaction that wrote their aggregates.
CREATE TABLE ctl_aggregate_pending (
    id            bigserial PRIMARY KEY,
    hierarchy     text NOT NULL DEFAULT '*',
    level         text NOT NULL DEFAULT 'SUBHOUR'
                  CHECK (level IN ('SUBHOUR', 'HOUR', 'DAY', 'MONTH', 'QUARTER', 'YEAR')),
    flavor        text NOT NULL DEFAULT '' CHECK (flavor IN ('', 'Online', 'Offline')),
    start_ts      bigint NOT NULL,
    end_ts        bigint NOT NULL CHECK (end_ts > start_ts),
    source        text NOT NULL,
    request       text,
    queued_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ctl_aggregate_pending_start ON ctl_aggregate_pending (start_ts);

-- The audit-key high-water mark: every fact change with update_audit_key <= audit_key_hwm has
-- been turned into pending intervals. sub_hour_interval: the value the SUBHOUR tables were built
-- with (a change rebuilds them). yielded_at: a scheduled/manual aggregation ended early to let a
-- queued manual run of gim_aggregate start (that run then counts aggregation as running, R20).
CREATE TABLE ctl_aggregate_hwm (
    name               text PRIMARY KEY,
    audit_key_hwm      bigint NOT NULL DEFAULT 0,
    sub_hour_interval  integer,
    yielded_at         timestamptz,
    updated            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ctl_aggregate_hwm (name) VALUES ('facts');

-- The hierarchies whose tables exist, with the hash of the DDL they were created from.
CREATE TABLE ctl_aggregate_hierarchy (
    hierarchy   text PRIMARY KEY,
    ddl_hash    text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now()
);

-- The key (epoch second GMT) of the HOUR / DAY / MONTH / QUARTER / YEAR period holding epoch second k.
CREATE FUNCTION gim_agg_period_key(k bigint, lvl text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lvl
        WHEN 'HOUR' THEN k - mod(k, 3600)
        WHEN 'DAY' THEN k - mod(k, 86400)
        ELSE extract(epoch FROM date_trunc(lower(lvl), to_timestamp(k) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::bigint
    END
$$;

-- Interval-based hierarchies look for the facts overlapping an interval: those ending at or after
-- its start (few, for the recent intervals an incremental cycle recomputes) and starting before its end.
CREATE INDEX irf_end_ts ON interaction_resource_fact (end_ts);
CREATE INDEX sm_res_state_fact_end_ts ON sm_res_state_fact (end_ts);
CREATE INDEX sm_res_session_fact_end_ts ON sm_res_session_fact (end_ts);
