-- The dimensional model Job_TransformGIM fills from gidb_* staging, and its control tables.
--
-- Conventions (Genesys): every *_ts is integer UTC epoch seconds; every *_date_time_key is the epoch
-- second of the start of the 15-minute interval holding that time (joins date_time and any custom
-- calendar). Facts and dimensions carry create_audit_key (the ctl_audit_log row of the transaction
-- that inserted them) and update_audit_key (of the last one that changed them; equal to
-- create_audit_key on insert, so "changed since audit key X" is update_audit_key > X).
--
-- Keys are deterministic, so a rerun after a crash yields the same rows as an uninterrupted run:
--   * fact keys are the stg_id of the staged row they come from (interaction_id = stg_id of the
--     root gidb_g_ir row, interaction_resource_id = stg_id of the gidb_g_party row, ...); a fact
--     keeps its key for life (upserts match on the natural key, e.g. (data_source_key, guid));
--   * configuration dimensions use (kind << 32) | Genesys DBID: kind 1 agent, 2 endpoint (DN:
--     queue, routing point, ...), 3 group. Configuration DBIDs are global to a Genesys site
--     (ICON_CFG is extracted from one data source), so an agent is one resource_ row whichever
--     IDB its interactions come from;
--   * small code dimensions (media_type, interaction_type, technical_descriptor,
--     resource_state_reason) are seeded below; codes first seen at run time are added with the
--     next keys in code order.

-- ---------------------------------------------------------------- calendar
-- Default calendar (GMT, legacy week numbers); custom calendars are tables LIKE this one filled by
-- gim_fill_calendar in their own time zone.
CREATE TABLE date_time (
    date_time_key                  bigint PRIMARY KEY,
    date_time_30min_key            bigint NOT NULL,
    date_time_hour_key             bigint NOT NULL,
    date_time_day_key              bigint NOT NULL,
    date_time_week_key             bigint NOT NULL,
    date_time_month_key            bigint NOT NULL,
    date_time_quarter_key          bigint NOT NULL,
    date_time_year_key             bigint NOT NULL,
    date_time_next_key             bigint NOT NULL,
    cal_date                       date NOT NULL,
    cal_year_num                   integer NOT NULL,
    cal_quarter_num_in_year        integer NOT NULL,
    cal_month_num_in_year          integer NOT NULL,
    cal_week_num_in_year           integer NOT NULL,
    cal_week_year_num              integer NOT NULL,
    cal_day_num_in_week            integer NOT NULL,
    cal_day_num_in_month           integer NOT NULL,
    cal_day_num_in_year            integer NOT NULL,
    cal_hour_num_in_day            integer NOT NULL,
    cal_minute_num_in_hour         integer NOT NULL,
    cal_day_name                   text NOT NULL,
    cal_month_name                 text NOT NULL,
    label_yyyy                     text NOT NULL,
    label_yyyy_qq                  text NOT NULL,
    label_yyyy_mm                  text NOT NULL,
    label_yyyy_ww                  text NOT NULL,
    label_yyyy_mm_dd               text NOT NULL,
    label_yyyy_mm_dd_hh24          text NOT NULL,
    label_hh24                     text NOT NULL,
    label_yyyy_mm_dd_hh24_30min    text NOT NULL,
    label_yyyy_mm_dd_hh24_subhr    text NOT NULL,
    utc_offset_seconds             integer NOT NULL,
    time_zone                      text NOT NULL
);
CREATE INDEX date_time_day ON date_time (date_time_day_key);
CREATE INDEX date_time_cal_date ON date_time (cal_date);

-- The first day of week 1 of year p_year: the first week (starting on p_first_dow, 1 = Sunday ..
-- 7 = Saturday) that holds at least p_min_days days of the year.
CREATE FUNCTION gim_week_one_start(p_year integer, p_first_dow integer, p_min_days integer)
RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT make_date(p_year, 1, 1) - d + CASE WHEN 7 - d >= p_min_days THEN 0 ELSE 7 END
      FROM (SELECT (extract(dow FROM make_date(p_year, 1, 1))::int + 1 - p_first_dow + 7) % 7 AS d) x
$$;

-- Fill calendar table p_table with every 15-minute row of the local days (in p_tz) that hold any
-- instant of [p_from, p_to] (UTC epoch seconds). Existing rows are kept. Weeks start on
-- p_first_dow (1 = Sunday .. 7 = Saturday); p_simple_weeks = true numbers them legacy style (week
-- 1 holds January 1st, weeks never cross a year); false uses p_min_days like java.util.Calendar
-- (Monday + 4 = ISO 8601), where late December may be week 1 of the next week-year.
-- date_time_week_key is the epoch second of the (local) start of the row's week; with legacy
-- numbering a week is cut at January 1st, so week 1 starts then.
-- Returns the number of rows added. Job_MaintainGIM calls it for its days ahead and for custom
-- calendars (CREATE TABLE <name> (LIKE date_time INCLUDING ALL) first).
CREATE FUNCTION gim_fill_calendar(
    p_table text, p_tz text, p_from bigint, p_to bigint,
    p_first_dow integer DEFAULT 1, p_min_days integer DEFAULT 1, p_simple_weeks boolean DEFAULT true
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    d_from  date := (to_timestamp(p_from) AT TIME ZONE p_tz)::date;
    d_to    date := (to_timestamp(greatest(p_from, p_to)) AT TIME ZONE p_tz)::date;
    lo      bigint := extract(epoch FROM (d_from::timestamp AT TIME ZONE p_tz))::bigint;
    hi      bigint := extract(epoch FROM ((d_to + 1)::timestamp AT TIME ZONE p_tz))::bigint;
    have    bigint;
    added   bigint;
BEGIN
    IF p_to - p_from > 86400::bigint * 3700 THEN
        RAISE EXCEPTION 'gim_fill_calendar: span of % days is too long (at most 3700)', (p_to - p_from) / 86400;
    END IF;
    EXECUTE format('SELECT count(*) FROM %I WHERE date_time_key >= $1 AND date_time_key < $2', p_table)
        INTO have USING lo, hi;
    IF have = (hi - lo) / 900 THEN
        RETURN 0;
    END IF;
    EXECUTE format($q$
        INSERT INTO %I
        SELECT k,
               k - (extract(minute FROM lt)::int %% 30) * 60,
               k - extract(minute FROM lt)::int * 60,
               extract(epoch FROM (lt::date::timestamp AT TIME ZONE $3))::bigint,
               extract(epoch FROM ((CASE WHEN $6 THEN greatest(lt::date - dw + 1, date_trunc('year', lt)::date)
                                         ELSE lt::date - dw + 1 END)::timestamp AT TIME ZONE $3))::bigint,
               extract(epoch FROM (date_trunc('month', lt) AT TIME ZONE $3))::bigint,
               extract(epoch FROM (date_trunc('quarter', lt) AT TIME ZONE $3))::bigint,
               extract(epoch FROM (date_trunc('year', lt) AT TIME ZONE $3))::bigint,
               k + 900,
               lt::date,
               extract(year FROM lt)::int,
               extract(quarter FROM lt)::int,
               extract(month FROM lt)::int,
               wk.week_num,
               wk.week_year,
               dw,
               extract(day FROM lt)::int,
               extract(doy FROM lt)::int,
               extract(hour FROM lt)::int,
               extract(minute FROM lt)::int,
               trim(to_char(lt, 'Day')),
               trim(to_char(lt, 'Month')),
               to_char(lt, 'YYYY'),
               to_char(lt, 'YYYY') || '-Q' || extract(quarter FROM lt)::int,
               to_char(lt, 'YYYY-MM'),
               wk.week_year || '-W' || lpad(wk.week_num::text, 2, '0'),
               to_char(lt, 'YYYY-MM-DD'),
               to_char(lt, 'YYYY-MM-DD HH24'),
               to_char(lt, 'HH24'),
               to_char(lt, 'YYYY-MM-DD HH24:') || lpad(((extract(minute FROM lt)::int / 30) * 30)::text, 2, '0'),
               to_char(lt, 'YYYY-MM-DD HH24:MI'),
               extract(epoch FROM (lt - (to_timestamp(k) AT TIME ZONE 'UTC')))::int,
               $3
          FROM generate_series($1, $2 - 900, 900) AS k,
               LATERAL (SELECT to_timestamp(k) AT TIME ZONE $3 AS lt) l,
               LATERAL (SELECT (extract(dow FROM lt)::int + 1 - $4 + 7) %% 7 + 1 AS dw) d,
               LATERAL (
                   SELECT CASE WHEN $6 THEN (extract(doy FROM lt)::int - 1
                                            + (extract(dow FROM date_trunc('year', lt))::int + 1 - $4 + 7) %% 7) / 7 + 1
                               ELSE ((lt::date - w1.s) / 7) + 1 END AS week_num,
                          CASE WHEN $6 THEN extract(year FROM lt)::int ELSE w1.y END AS week_year
                     FROM (SELECT CASE WHEN lt::date >= gim_week_one_start(extract(year FROM lt)::int + 1, $4, $5)
                                       THEN extract(year FROM lt)::int + 1
                                       WHEN lt::date >= gim_week_one_start(extract(year FROM lt)::int, $4, $5)
                                       THEN extract(year FROM lt)::int
                                       ELSE extract(year FROM lt)::int - 1 END AS y) yy,
                          LATERAL (SELECT yy.y, gim_week_one_start(yy.y, $4, $5) AS s) w1
               ) wk
        ON CONFLICT (date_time_key) DO NOTHING
    $q$, p_table) USING lo, hi, p_tz, p_first_dow, p_min_days, p_simple_weeks;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END $$;

-- The default calendar: GMT, weeks from Sunday, legacy numbering.
CREATE FUNCTION gim_ensure_date_time(p_from bigint, p_to bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT gim_fill_calendar('date_time', 'GMT', p_from, p_to, 1, 1, true)
$$;

-- ---------------------------------------------------------------- code dimensions
CREATE TABLE media_type (
    media_type_key    integer PRIMARY KEY,
    media_name        text NOT NULL,
    media_name_code   text NOT NULL UNIQUE,
    is_online         smallint NOT NULL,          -- 1 online (voice, chat), 0 offline (email, new types)
    create_audit_key  bigint NOT NULL DEFAULT 0,
    update_audit_key  bigint NOT NULL DEFAULT 0
);
INSERT INTO media_type (media_type_key, media_name, media_name_code, is_online) VALUES
    (1, 'Voice', 'VOICE', 1),
    (2, 'Chat', 'CHAT', 1),
    (3, 'Email', 'EMAIL', 0);

CREATE TABLE interaction_type (
    interaction_type_key      integer PRIMARY KEY,
    interaction_type          text NOT NULL,
    interaction_type_code     text NOT NULL,
    interaction_subtype       text NOT NULL,
    interaction_subtype_code  text NOT NULL,
    create_audit_key          bigint NOT NULL DEFAULT 0,
    update_audit_key          bigint NOT NULL DEFAULT 0,
    UNIQUE (interaction_type_code, interaction_subtype_code)
);
-- A missing IDB subtype becomes <Type>New (ours).
INSERT INTO interaction_type VALUES
    (1, 'Inbound', 'INBOUND', 'InboundNew', 'INBOUND_NEW'),
    (2, 'Outbound', 'OUTBOUND', 'OutboundNew', 'OUTBOUND_NEW'),
    (3, 'Internal', 'INTERNAL', 'InternalNew', 'INTERNAL_NEW');

CREATE TABLE technical_descriptor (
    technical_descriptor_key  integer PRIMARY KEY,
    technical_result          text NOT NULL,
    technical_result_code     text NOT NULL,
    result_reason             text NOT NULL,
    result_reason_code        text NOT NULL,
    resource_role             text NOT NULL,
    resource_role_code        text NOT NULL,
    role_reason               text NOT NULL,
    role_reason_code          text NOT NULL,
    create_audit_key          bigint NOT NULL DEFAULT 0,
    update_audit_key          bigint NOT NULL DEFAULT 0,
    UNIQUE (technical_result_code, result_reason_code, resource_role_code, role_reason_code)
);
-- Every combination the transform produces (gim_jobs/jobs/transform.py maps IDB end causes and
-- roles to them): results x roles, keys in this fixed order.
INSERT INTO technical_descriptor (technical_descriptor_key, technical_result, technical_result_code,
                                  result_reason, result_reason_code, resource_role, resource_role_code,
                                  role_reason, role_reason_code)
SELECT row_number() OVER (ORDER BY r.ord, o.ord), r.res, upper(regexp_replace(r.res, '([a-z])([A-Z])', '\1_\2', 'g')),
       r.reason, upper(regexp_replace(r.reason, '([a-z])([A-Z])', '\1_\2', 'g')),
       o.role, upper(regexp_replace(o.role, '([a-z])([A-Z])', '\1_\2', 'g')),
       o.role_reason, upper(regexp_replace(o.role_reason, '([a-z])([A-Z])', '\1_\2', 'g'))
  FROM (VALUES (1, 'None', 'Unspecified'),                 -- still active
               (2, 'Completed', 'AnsweredByAgent'),        -- agent handled and released
               (3, 'Diverted', 'AnsweredByAgent'),         -- queue: distributed to an agent
               (4, 'CustomerAbandoned', 'AbandonedWhileQueued'),
               (5, 'CustomerAbandoned', 'AbandonedWhileRinging'),
               (6, 'Transferred', 'Unspecified'),
               (7, 'Conferenced', 'Unspecified'),
               (8, 'Redirected', 'RouteOnNoAnswer'),
               (9, 'Cleared', 'Unspecified'),
               (10, 'Completed', 'Unspecified'),           -- artificially terminated (days-to-keep-active-facts)
               (11, 'Routed', 'Unspecified')               -- routing point: routed on
       ) r(ord, res, reason),
       (VALUES (1, 'Initiated', 'Unspecified'),
               (2, 'Received', 'Unspecified'),
               (3, 'ReceivedConsult', 'Unspecified'),
               (4, 'InConference', 'ConferenceJoined'),
               (5, 'ReceivedTransfer', 'Unspecified')
       ) o(ord, role, role_reason);

CREATE TABLE resource_state (
    resource_state_key  integer PRIMARY KEY,
    state_name          text NOT NULL,
    state_name_code     text NOT NULL UNIQUE,
    create_audit_key    bigint NOT NULL DEFAULT 0,
    update_audit_key    bigint NOT NULL DEFAULT 0
);
-- Keys 1-4 are the IDB g_agent_state_history.state codes.
INSERT INTO resource_state (resource_state_key, state_name, state_name_code) VALUES
    (1, 'Ready', 'READY'),
    (2, 'NotReady', 'NOT_READY'),
    (3, 'Busy', 'BUSY'),
    (4, 'AfterCallWork', 'AFTER_CALL_WORK'),
    (5, 'LoggedOnOnly', 'LOGGED_ON_ONLY');

-- NotReady reason codes as the desktop reported them (g_agent_state_history.reason_code); added
-- automatically the first time a code is seen. reason_text from g_agent_state_rc when known.
CREATE TABLE resource_state_reason (
    resource_state_reason_key  integer PRIMARY KEY,
    reason_code                text NOT NULL UNIQUE,
    reason_text                text,
    create_audit_key           bigint NOT NULL DEFAULT 0,
    update_audit_key           bigint NOT NULL DEFAULT 0
);

-- The transform joins these small tables in every chunk: give the planner their real size now.
ANALYZE media_type, interaction_type, technical_descriptor, resource_state, resource_state_reason;

-- ---------------------------------------------------------------- configuration dimensions
-- resource_type / _code / resource_subtype by source: gc_agent -> Agent/AGENT/Agent;
-- gc_endpoint.dn_type 1 DN/DN/Extension, 2 Queue/QUEUE/ACDQueue, 3 Queue/QUEUE/VirtualQueue,
-- 4 RoutingPoint/ROUTINGPOINT/RoutingPoint, 5 Queue/QUEUE/InteractionQueue, 6 DN/DN/External.
-- A resource referenced by an interaction before its configuration is extracted gets a
-- placeholder row (resource_name 'unknown <kind> <id>', start_ts NULL) that the configuration
-- fills in later; the key is the same.
CREATE TABLE resource_ (
    resource_key          bigint PRIMARY KEY,
    tenant_key            integer,
    resource_type         text NOT NULL,
    resource_type_code    text NOT NULL,
    resource_subtype      text NOT NULL,
    resource_name         text NOT NULL,
    agent_first_name      text,
    agent_last_name       text,
    employee_id           text,
    switch_name           text,
    data_source_key       integer,
    icon_dbid             integer NOT NULL,
    resource_cfg_type_id  smallint NOT NULL,        -- 1 agent, 2 endpoint (DN)
    start_ts              bigint,
    end_ts                bigint,                   -- deleted in configuration
    create_audit_key      bigint NOT NULL,
    update_audit_key      bigint NOT NULL,
    UNIQUE (resource_cfg_type_id, icon_dbid)
);
CREATE INDEX resource_update_audit ON resource_ (update_audit_key);

CREATE TABLE group_ (
    group_key          bigint PRIMARY KEY,
    tenant_key         integer,
    group_name         text NOT NULL,
    group_type         text NOT NULL,             -- Agent / Queue
    group_type_code    text NOT NULL,             -- AGENT / QUEUE
    data_source_key    integer,
    icon_dbid          integer NOT NULL UNIQUE,
    start_ts           bigint,
    end_ts             bigint,
    create_audit_key   bigint NOT NULL,
    update_audit_key   bigint NOT NULL
);

-- Membership of an agent (gcx_group_agent) or a DN (gcx_group_endpoint) in a group, with the
-- configuration times; end_ts set when the membership was deleted.
CREATE TABLE resource_group_fact_ (
    resource_group_fact_key  bigint PRIMARY KEY,
    resource_key             bigint NOT NULL,
    group_key                bigint NOT NULL,
    data_source_key          integer,
    start_ts                 bigint,
    end_ts                   bigint,
    start_date_time_key      bigint,
    end_date_time_key        bigint,
    active_flag              smallint NOT NULL,
    create_audit_key         bigint NOT NULL,
    update_audit_key         bigint NOT NULL,
    UNIQUE (group_key, resource_key)
);
CREATE INDEX resource_group_fact_resource ON resource_group_fact_ (resource_key);

-- ---------------------------------------------------------------- facts
-- One row per root interaction record (accumulating snapshot). status: 0 normal, 1 artificially
-- terminated after days-to-keep-active-facts (end_ts = start_ts + that many days).
CREATE TABLE interaction_fact (
    interaction_id              bigint PRIMARY KEY,
    data_source_key             integer NOT NULL,
    tenant_key                  integer,
    media_type_key              integer NOT NULL,
    interaction_type_key        integer NOT NULL,
    media_server_ixn_guid       text NOT NULL,
    media_server_root_ixn_guid  text NOT NULL,
    source_address              text,
    target_address              text,
    subject                     text,
    status                      smallint NOT NULL DEFAULT 0,
    start_ts                    bigint NOT NULL,
    end_ts                      bigint,
    start_date_time_key         bigint NOT NULL,
    end_date_time_key           bigint,
    active_flag                 smallint NOT NULL,
    create_audit_key            bigint NOT NULL,
    update_audit_key            bigint NOT NULL,
    UNIQUE (data_source_key, media_server_ixn_guid)
);
CREATE INDEX interaction_fact_start ON interaction_fact (start_date_time_key);
CREATE INDEX interaction_fact_update_audit ON interaction_fact (update_audit_key);
CREATE INDEX interaction_fact_active ON interaction_fact (data_source_key, start_ts) WHERE active_flag = 1;

-- One row per agent party and per mediation party (queue, routing point) of an interaction.
-- Durations in seconds, from g_party_history: ring = ringing until answered or released;
-- talk = established/retrieved until held or released; hold = held until retrieved or released;
-- mediation = queued until distributed, abandoned or cleared (mediation rows only);
-- after_call_work = the agent's AfterCallWork states started by this party's release.
-- technical_descriptor_key: result (Completed, Diverted, CustomerAbandoned/AbandonedWhileQueued,
-- CustomerAbandoned/AbandonedWhileRinging, Transferred, Conferenced, Redirected, Cleared, ...)
-- and role (Initiated, Received, ReceivedConsult, InConference, ReceivedTransfer).
-- last_queue_resource_key: for an agent row, the queue the interaction came from.
CREATE TABLE interaction_resource_fact (
    interaction_resource_id     bigint PRIMARY KEY,
    interaction_id              bigint NOT NULL,
    data_source_key             integer NOT NULL,
    tenant_key                  integer,
    media_type_key              integer NOT NULL,
    interaction_type_key        integer NOT NULL,
    resource_key                bigint NOT NULL,
    last_queue_resource_key     bigint,
    technical_descriptor_key    integer NOT NULL,
    party_guid                  text NOT NULL,
    media_server_ixn_guid       text NOT NULL,
    start_ts                    bigint NOT NULL,
    end_ts                      bigint,
    start_date_time_key         bigint NOT NULL,
    end_date_time_key           bigint,
    ring_duration               integer NOT NULL DEFAULT 0,
    talk_duration               integer NOT NULL DEFAULT 0,
    hold_duration               integer NOT NULL DEFAULT 0,
    after_call_work_duration    integer NOT NULL DEFAULT 0,
    mediation_duration          integer NOT NULL DEFAULT 0,
    ring_count                  integer NOT NULL DEFAULT 0,
    talk_count                  integer NOT NULL DEFAULT 0,
    hold_count                  integer NOT NULL DEFAULT 0,
    after_call_work_count       integer NOT NULL DEFAULT 0,
    consult_flag                smallint NOT NULL DEFAULT 0,
    conference_flag             smallint NOT NULL DEFAULT 0,
    transfer_flag               smallint NOT NULL DEFAULT 0,
    active_flag                 smallint NOT NULL,
    create_audit_key            bigint NOT NULL,
    update_audit_key            bigint NOT NULL,
    UNIQUE (data_source_key, party_guid)
);
CREATE INDEX irf_interaction ON interaction_resource_fact (interaction_id);
CREATE INDEX irf_start ON interaction_resource_fact (start_date_time_key);
CREATE INDEX irf_resource ON interaction_resource_fact (resource_key, start_date_time_key);
CREATE INDEX irf_update_audit ON interaction_resource_fact (update_audit_key);

-- Summarized agent state per media type (accumulating snapshot): one row per state change in
-- g_agent_state_history (key: that row's stg_id), lasting until the session's next change or
-- logout, at most max-state-duration seconds; end_ts NULL while the state is current. A session
-- whose first state change comes after its login starts with a LoggedOnOnly row (key: the
-- session's stg_id, source_id NULL). resource_state_reason_key: the NotReady reason, else NULL.
-- party_guid (ours): for AfterCallWork, the agent party whose release started it; the IRF's
-- after_call_work_* measures are the sums of these rows.
CREATE TABLE sm_res_state_fact (
    sm_res_state_fact_key       bigint PRIMARY KEY,
    data_source_key             integer NOT NULL,
    tenant_key                  integer,
    resource_key                bigint NOT NULL,
    media_type_key              integer NOT NULL,
    resource_state_key          integer NOT NULL,
    resource_state_reason_key   integer,
    login_session_guid          text NOT NULL,
    source_id                   bigint,
    party_guid                  text,
    start_ts                    bigint NOT NULL,
    end_ts                      bigint,
    start_date_time_key         bigint NOT NULL,
    end_date_time_key           bigint,
    total_duration              integer,
    active_flag                 smallint NOT NULL,
    create_audit_key            bigint NOT NULL,
    update_audit_key            bigint NOT NULL
);
CREATE INDEX sm_res_state_fact_session ON sm_res_state_fact (data_source_key, login_session_guid, start_ts);
CREATE INDEX sm_res_state_fact_resource ON sm_res_state_fact (resource_key, start_date_time_key);
CREATE INDEX sm_res_state_fact_party ON sm_res_state_fact (data_source_key, party_guid) WHERE party_guid IS NOT NULL;
CREATE INDEX sm_res_state_fact_start ON sm_res_state_fact (start_date_time_key);
CREATE INDEX sm_res_state_fact_update_audit ON sm_res_state_fact (update_audit_key);
CREATE INDEX sm_res_state_fact_open ON sm_res_state_fact (data_source_key, start_ts) WHERE end_ts IS NULL;

-- One row per agent login session per media type.
CREATE TABLE sm_res_session_fact (
    sm_res_session_fact_key     bigint PRIMARY KEY,
    data_source_key             integer NOT NULL,
    tenant_key                  integer,
    resource_key                bigint NOT NULL,
    media_type_key              integer NOT NULL,
    login_session_guid          text NOT NULL,
    start_ts                    bigint NOT NULL,
    end_ts                      bigint,
    start_date_time_key         bigint NOT NULL,
    end_date_time_key           bigint,
    total_duration              integer,
    active_flag                 smallint NOT NULL,
    create_audit_key            bigint NOT NULL,
    update_audit_key            bigint NOT NULL,
    UNIQUE (data_source_key, login_session_guid)
);
CREATE INDEX sm_res_session_fact_start ON sm_res_session_fact (start_date_time_key);
CREATE INDEX sm_res_session_fact_update_audit ON sm_res_session_fact (update_audit_key);

-- ---------------------------------------------------------------- transform control
-- One row per committed transform transaction (Genesys CTL_TRANSFORM_HISTORY). hwm_name
-- 'gidb_stage_seq'; hwm_value: the staged-change bound of the batch; hwm_value2: the chunk
-- (window number = data time / chunk-size; -1 configuration, -2 batch preparation) committed.
CREATE TABLE ctl_transform_history (
    id                    bigserial PRIMARY KEY,
    hwm_name              text NOT NULL,
    hwm_value             numeric(19) NOT NULL,
    hwm_value2            numeric(19),
    transform_start_time  timestamptz NOT NULL,
    transform_end_time    timestamptz NOT NULL,
    row_count             bigint NOT NULL,
    audit_key             bigint,
    job_id                text NOT NULL,
    job_version           text NOT NULL,
    chunk                 text
);
CREATE INDEX ctl_transform_history_end ON ctl_transform_history (transform_end_time DESC);

-- The transform's high-water mark. hwm_value: every staged row with stg_seq <= hwm_value is
-- transformed. While a batch is under way, pending_bound is its upper stg_seq bound, hwm_value2
-- the last chunk window committed, batch its frozen parameters (data clock per source); a killed
-- job resumes the batch at the next window.
CREATE TABLE ctl_transform_hwm (
    hwm_name       text PRIMARY KEY,
    hwm_value      bigint NOT NULL DEFAULT 0,
    hwm_value2     bigint,
    pending_bound  bigint,
    batch          jsonb,
    updated        timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ctl_transform_hwm (hwm_name) VALUES ('gidb_stage_seq');

-- The work list of the batch under way: kind 1 interaction (key = root irid), kind 2 login session
-- (key = lsid), kind 3 configuration; win = chunk window; since (sessions): recompute the states
-- from the one before this time (0 = the whole session).
CREATE TABLE stg_transform_work (
    win              bigint NOT NULL,
    kind             smallint NOT NULL,
    data_source_key  integer NOT NULL,
    key              text NOT NULL,
    since            bigint,
    PRIMARY KEY (win, kind, data_source_key, key)
);

-- Staged rows waiting for the rows they depend on (a party whose interaction record or call has
-- not been extracted yet, a history row for a party or session not staged yet). first_seen_ts is
-- the source's data clock when the row was first found waiting; once the data clock has moved
-- delayed-data-threshold seconds past it, the row is discarded.
CREATE TABLE stg_transform_pending (
    data_source_key  integer NOT NULL,
    table_name       text NOT NULL,
    source_key       text NOT NULL,
    reason           text NOT NULL,
    first_seen_ts    bigint NOT NULL,
    PRIMARY KEY (data_source_key, table_name, source_key)
);

-- Staged rows the transform could not use (Genesys STG_TRANSFORM_DISCARDS): table_name the gidb
-- table, source_key its key, guid the interaction (irid) or session it belonged to, code a short
-- machine reason, reason the explanation, raw the staged row as JSON.
CREATE TABLE stg_transform_discards (
    id                 bigserial PRIMARY KEY,
    data_source_key    integer NOT NULL,
    table_name         text NOT NULL,
    source_key         text NOT NULL,
    interaction_id     bigint,
    guid               text,
    code               text NOT NULL,
    reason             text NOT NULL,
    raw                jsonb,
    job_id             text NOT NULL,
    create_audit_key   bigint NOT NULL,
    etl_ts             bigint NOT NULL,
    etl_date_time_key  bigint NOT NULL,
    created_ts         bigint NOT NULL,
    UNIQUE (data_source_key, table_name, source_key)
);
CREATE INDEX stg_transform_discards_audit ON stg_transform_discards (create_audit_key);
