-- GIDB staging (Job_ExtractICON writes, Job_TransformGIM reads) and the extraction control tables.
--
-- Every gidb_<t> mirrors IDB table <t> column for column (same names, same types, so binary COPY
-- works) plus:
--   data_source_key  which IDB (ctl_data_source) the row came from; part of the primary key, so
--                    several IDBs merge into one Info Mart without clashing ids;
--   stg_id           stable identity of the staged row, from gidb_row_id_seq when the row is first
--                    staged and never changed. The transform derives fact keys from it, so a rerun
--                    produces the same keys;
--   stg_seq          staged-change sequence: the gidb_stage_seq value of the extraction chunk that
--                    inserted the row or last replaced it with a newer IDB version. The transform's
--                    high-water mark is a stg_seq value: "rows with stg_seq > hwm" are exactly the
--                    rows new or changed since it last ran.
-- data_source_key and stg_seq default to the session settings gim.data_source_key / gim.stg_seq,
-- which the extraction sets per chunk (SET LOCAL), so a chunk can be COPYed straight into its table.
-- Only key columns are NOT NULL: staging keeps what the IDB holds; the transform validates.
-- No foreign keys: staging is written in bulk and checked by the transform (discards).

-- One value per extraction chunk (no cache: the transform reads its last value as a bound).
CREATE SEQUENCE gidb_stage_seq AS bigint;
-- Row identities only need to be unique: cached.
CREATE SEQUENCE gidb_row_id_seq AS bigint CACHE 1000;

-- ---------------------------------------------------------------- configuration (ICON_CFG)
CREATE TABLE gidb_gc_tenant (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    name             text,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_gc_agent (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    tenant_id        integer,
    employee_id      text,
    user_name        text,
    first_name       text,
    last_name        text,
    state            smallint,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_gc_group (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    tenant_id        integer,
    name             text,
    group_type       smallint,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_gc_endpoint (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    tenant_id        integer,
    dn               text,
    dn_type          smallint,
    switch_name      text,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_gcx_group_agent (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    group_id         integer NOT NULL,
    agent_id         integer NOT NULL,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, group_id, agent_id)
);

CREATE TABLE gidb_gcx_group_endpoint (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    group_id         integer NOT NULL,
    endpoint_id      integer NOT NULL,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, group_id, endpoint_id)
);

CREATE TABLE gidb_gc_skill (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               integer NOT NULL,
    tenant_id        integer,
    name             text,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_gcx_skill_level (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    agent_id         integer NOT NULL,
    skill_id         integer NOT NULL,
    level            smallint,
    created_ts       bigint,
    deleted_ts       bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, agent_id, skill_id)
);

-- ---------------------------------------------------------------- interactions (ICON_CORE / ICON_MM)
CREATE TABLE gidb_g_ir (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    irid                 text NOT NULL,
    root_irid            text,
    tenant_id            integer,
    media_type           text,
    interaction_type     text,
    interaction_subtype  text,
    source_address       text,
    target_address       text,
    subject              text,
    state                smallint,
    created_ts           bigint,
    terminated_ts        bigint,
    gsys_seq             bigint,
    gsys_useq            bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, irid)
);

CREATE TABLE gidb_g_call (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    callid           text NOT NULL,
    irid             text,
    connid           text,
    media_type       text,
    call_type        smallint,
    state            smallint,
    created_ts       bigint,
    terminated_ts    bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, callid)
);

CREATE TABLE gidb_g_party (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    partyid          text NOT NULL,
    callid           text,
    irid             text,
    endpoint_id      integer,
    agent_id         integer,
    party_type       smallint,
    role             smallint,
    parent_partyid   text,
    media_type       text,
    state            smallint,
    created_ts       bigint,
    terminated_ts    bigint,
    end_cause        text,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, partyid)
);

CREATE TABLE gidb_g_party_history (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               bigint NOT NULL,
    partyid          text,
    callid           text,
    media_type       text,
    changetype       smallint,
    added_ts         bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

-- ---------------------------------------------------------------- agent activity (ICON_CORE / ICON_MM)
CREATE TABLE gidb_g_login_session (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    lsid             text NOT NULL,
    agent_id         integer,
    endpoint_id      integer,
    media_type       text,
    state            smallint,
    login_ts         bigint,
    logout_ts        bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, lsid)
);

CREATE TABLE gidb_g_agent_state_history (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               bigint NOT NULL,
    lsid             text,
    agent_id         integer,
    media_type       text,
    state            smallint,
    reason_code      text,
    partyid          text,
    added_ts         bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

CREATE TABLE gidb_g_agent_state_rc (
    data_source_key      integer NOT NULL DEFAULT current_setting('gim.data_source_key')::integer,
    id               bigint NOT NULL,
    lsid             text,
    agent_id         integer,
    media_type       text,
    reason_code      text,
    reason_text      text,
    added_ts         bigint,
    gsys_seq         bigint,
    gsys_useq        bigint NOT NULL,
    stg_id               bigint NOT NULL DEFAULT nextval('gidb_row_id_seq'),
    stg_seq              bigint NOT NULL DEFAULT current_setting('gim.stg_seq')::bigint,
    PRIMARY KEY (data_source_key, id)
);

-- "What changed since the transform's high-water mark": one range scan per table.
CREATE INDEX gidb_gc_tenant_stg_seq ON gidb_gc_tenant (stg_seq);
CREATE INDEX gidb_gc_agent_stg_seq ON gidb_gc_agent (stg_seq);
CREATE INDEX gidb_gc_group_stg_seq ON gidb_gc_group (stg_seq);
CREATE INDEX gidb_gc_endpoint_stg_seq ON gidb_gc_endpoint (stg_seq);
CREATE INDEX gidb_gcx_group_agent_stg_seq ON gidb_gcx_group_agent (stg_seq);
CREATE INDEX gidb_gcx_group_endpoint_stg_seq ON gidb_gcx_group_endpoint (stg_seq);
CREATE INDEX gidb_gc_skill_stg_seq ON gidb_gc_skill (stg_seq);
CREATE INDEX gidb_gcx_skill_level_stg_seq ON gidb_gcx_skill_level (stg_seq);
CREATE INDEX gidb_g_ir_stg_seq ON gidb_g_ir (stg_seq);
CREATE INDEX gidb_g_call_stg_seq ON gidb_g_call (stg_seq);
CREATE INDEX gidb_g_party_stg_seq ON gidb_g_party (stg_seq);
CREATE INDEX gidb_g_login_session_stg_seq ON gidb_g_login_session (stg_seq);
-- Insert-only history tables: stg_seq follows the physical order, a BRIN index is enough and almost
-- free to maintain on the biggest tables.
CREATE INDEX gidb_g_party_history_stg_seq ON gidb_g_party_history USING brin (stg_seq) WITH (pages_per_range = 32);
CREATE INDEX gidb_g_agent_state_history_stg_seq ON gidb_g_agent_state_history USING brin (stg_seq)
    WITH (pages_per_range = 32);
CREATE INDEX gidb_g_agent_state_rc_stg_seq ON gidb_g_agent_state_rc USING brin (stg_seq) WITH (pages_per_range = 32);

-- The transform's joins from a changed row to the rest of its interaction / login session, so an
-- incremental cycle costs the same on a big mart as on an empty one.
CREATE INDEX gidb_g_ir_root ON gidb_g_ir (data_source_key, root_irid);
CREATE INDEX gidb_g_party_irid ON gidb_g_party (data_source_key, irid);
CREATE INDEX gidb_g_party_history_party ON gidb_g_party_history (data_source_key, partyid);
CREATE INDEX gidb_g_agent_state_history_session ON gidb_g_agent_state_history (data_source_key, lsid, added_ts);

-- ---------------------------------------------------------------- extraction control
-- The current high-water mark of every (data source, IDB table, extraction role) stream.
-- hwm_useq is a bound of the gsys_useq range already copied: every row of that table and role with
-- gsys_useq <= hwm_useq that was committed when the chunk was read is staged. max_ts is the highest
-- data time (UTC epoch seconds) seen in the stream; the transform uses the highest max_ts of a
-- source's g_* tables as that source's "data clock".
CREATE TABLE ctl_extract_hwm (
    data_source_key      integer NOT NULL,
    table_name       text NOT NULL,
    role             text NOT NULL,
    hwm_useq         bigint NOT NULL DEFAULT 0,
    max_ts           bigint,
    row_count        bigint NOT NULL DEFAULT 0,
    job_id           text,
    updated          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (data_source_key, table_name, role)
);

-- One row per committed extraction chunk (Genesys CTL_EXTRACT_HISTORY / ADMIN_EXTRACT_HISTORY),
-- written in the same transaction as the chunk's rows and its HWM advance.
-- max_time: the highest data time of the chunk as a timestamp (UTC); max_ts: the same as epoch
-- seconds; hwm_from/hwm_to: the gsys_useq range (hwm_from, hwm_to] copied; max_seq: the highest
-- gsys_useq actually read. data_source_type: 1 T-Server (ICON_CORE), 2 Interaction Server
-- (ICON_MM), 3 OCS, 4 Configuration Server (ICON_CFG).
CREATE TABLE ctl_extract_history (
    id                   bigserial PRIMARY KEY,
    data_source_key      integer NOT NULL,
    dap_name             text NOT NULL,
    data_source_type     smallint,
    table_name           text NOT NULL,
    role                 text NOT NULL,
    job_id               text NOT NULL,
    job_name             text NOT NULL,
    job_version          text NOT NULL,
    extract_start_time   timestamptz NOT NULL,
    extract_end_time     timestamptz NOT NULL,
    max_time             timestamp,
    max_ts               bigint,
    row_count            bigint NOT NULL,
    hwm_from             bigint NOT NULL,
    hwm_to               bigint NOT NULL,
    max_seq              bigint
);
CREATE INDEX ctl_extract_history_source ON ctl_extract_history (data_source_key, table_name, extract_end_time DESC);
CREATE INDEX ctl_extract_history_job ON ctl_extract_history (job_id);
