-- Outbound Contact (ICON_OCS): GIDB staging of the IDB's OCS tables (gim_jobs/db/sql/idb/002_ocs.sql),
-- the campaign and calling_list dimensions and contact_attempt_fact, written by
-- gim_jobs/jobs/transform_ocs.py and read by the H_CAMPAIGN / H_AGENT_CAMPAIGN aggregates.

-- ---------------------------------------------------------------- staging (as in 002_staging.sql)
CREATE TABLE gidb_gc_campaign (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    tenant_id        integer,
    name             text,
    description      text,
    state            smallint,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_gc_calling_list (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    tenant_id        integer,
    campaign_id      integer,
    name             text,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_g_ocs_attempt (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    attempt_id       text NOT NULL,
    chain_id         bigint,
    attempt_no       smallint,
    record_handle    integer,
    tenant_id        integer,
    campaign_id      integer,
    calling_list_id  integer,
    agent_id         integer,
    media_type       text,
    dialing_mode     text,
    contact_info     text,
    call_result      text,
    state            smallint,
    dialing_ts       bigint,
    connected_ts     bigint,
    ended_ts         bigint,
    talk_duration    integer,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, attempt_id)
);

CREATE INDEX gidb_gc_campaign_stg_seq ON gidb_gc_campaign (stg_seq);
CREATE INDEX gidb_gc_calling_list_stg_seq ON gidb_gc_calling_list (stg_seq);
CREATE INDEX gidb_g_ocs_attempt_stg_seq ON gidb_g_ocs_attempt (stg_seq);

-- ---------------------------------------------------------------- dimensions
-- One row per OCS campaign / calling list; the key is the IDB's DBID (when several IDBs carry the
-- same object, the lowest data_source_key wins, as for resource_). A campaign or list referenced by
-- an attempt before its configuration is extracted gets a placeholder ('unknown campaign <id>',
-- start_ts NULL) that the configuration fills in later; the key is the same.
CREATE TABLE campaign (
    campaign_key          bigint PRIMARY KEY,
    tenant_key            integer,
    campaign_name         text NOT NULL,
    campaign_description  text,
    data_source_key       integer,
    icon_dbid             integer NOT NULL UNIQUE,
    start_ts              bigint,
    end_ts                bigint,                   -- deleted in configuration
    create_audit_key      bigint NOT NULL,
    update_audit_key      bigint NOT NULL
);
CREATE INDEX campaign_update_audit ON campaign (update_audit_key);

CREATE TABLE calling_list (
    calling_list_key   bigint PRIMARY KEY,
    tenant_key         integer,
    calling_list_name  text NOT NULL,
    campaign_key       bigint,
    data_source_key    integer,
    icon_dbid          integer NOT NULL UNIQUE,
    start_ts           bigint,
    end_ts             bigint,
    create_audit_key   bigint NOT NULL,
    update_audit_key   bigint NOT NULL
);
CREATE INDEX calling_list_update_audit ON calling_list (update_audit_key);

-- ---------------------------------------------------------------- fact
-- One row per outbound dialing attempt (g_ocs_attempt; accumulating snapshot: written with end_ts
-- NULL, call_result_code 'UNKNOWN' and active_flag 1 while dialing, updated when it ends).
-- contact_attempt_fact_key: the staged row's stg_id. resource_key: the agent the contact was
-- connected to (resource_ key of the agent), NULL when no agent took part (the aggregates count
-- those as -1). call_result_code: ANSWER, NO_ANSWER, BUSY, ANSWERING_MACHINE, DROPPED,
-- SIT_DETECTED, UNKNOWN (still dialing). talk_duration: seconds connected to the agent.
CREATE TABLE contact_attempt_fact (
    contact_attempt_fact_key  bigint PRIMARY KEY,
    data_source_key           integer NOT NULL,
    tenant_key                integer,
    campaign_key              bigint NOT NULL,
    calling_list_key          bigint,
    resource_key              bigint,
    media_type_key            integer NOT NULL,
    attempt_guid              text NOT NULL,
    chain_id                  bigint,
    attempt_no                integer,
    record_handle             integer,
    dialing_mode              text,
    call_result_code          text NOT NULL,
    start_ts                  bigint NOT NULL,
    connected_ts              bigint,
    end_ts                    bigint,
    start_date_time_key       bigint NOT NULL,
    end_date_time_key         bigint,
    dial_duration             integer,
    talk_duration             integer NOT NULL DEFAULT 0,
    active_flag               smallint NOT NULL,
    create_audit_key          bigint NOT NULL,
    update_audit_key          bigint NOT NULL,
    UNIQUE (data_source_key, attempt_guid)
);
CREATE INDEX contact_attempt_fact_start ON contact_attempt_fact (start_date_time_key);
CREATE INDEX contact_attempt_fact_update_audit ON contact_attempt_fact (update_audit_key);
CREATE INDEX contact_attempt_fact_campaign ON contact_attempt_fact (campaign_key, start_date_time_key);
CREATE INDEX contact_attempt_fact_resource ON contact_attempt_fact (resource_key, start_date_time_key)
    WHERE resource_key IS NOT NULL;
CREATE INDEX contact_attempt_fact_active ON contact_attempt_fact (data_source_key, start_ts) WHERE active_flag = 1;

-- The OCS transform's own high-water mark (a stg_seq value, like 'gidb_stage_seq').
INSERT INTO ctl_transform_hwm (hwm_name) VALUES ('ocs_stage_seq');

-- Partitioned by start_date_time_key like the other facts (R25, R23; see 008_fact_partitions.sql):
-- the transform upserts ON CONFLICT (data_source_key, attempt_guid, start_date_time_key), the
-- unique key the conversion makes; an attempt's dialing_ts never changes in the IDB.
INSERT INTO ctl_partitioned_table (table_name, key_column, key_type, enabled, note)
VALUES ('contact_attempt_fact', 'start_date_time_key', 'epoch', true, 'facts: days-to-keep-gim-facts');
SELECT gim_partition_convert('contact_attempt_fact');

-- Export views (use-export-views) for the new tables; existing views are left as they are.
SELECT gim_create_export_views();
