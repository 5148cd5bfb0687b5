-- Outbound Contact (ICON_OCS) tables of the IDB, modelled on ICON's OCS data: the campaign and
-- calling-list configuration (GC_CAMPAIGN, GC_CALLING_LIST) and one row per dialing attempt (the
-- GO_CHAIN / GO_CALL information a contact attempt is built from). Conventions as in 001_icon.sql:
-- gsys_seq / gsys_useq (update trigger), integer UTC epoch seconds, created_ts / deleted_ts on
-- configuration rows. Extraction role ICON_OCS reads all three tables.

-- A campaign: a set of calling lists dialed together with one dialing mode.
-- state: 1 enabled, 2 disabled.
CREATE TABLE gc_campaign (
    id           integer PRIMARY KEY,
    tenant_id    integer NOT NULL DEFAULT 1,
    name         text NOT NULL,
    description  text,
    state        smallint NOT NULL DEFAULT 1,
    created_ts   bigint NOT NULL,
    deleted_ts   bigint,
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- A calling list (the contacts to dial) and the campaign it belongs to. In Genesys a list may be
-- shared by campaigns (GCX_CAMPLIST_INFO); here a list belongs to exactly one campaign.
CREATE TABLE gc_calling_list (
    id           integer PRIMARY KEY,
    tenant_id    integer NOT NULL DEFAULT 1,
    campaign_id  integer NOT NULL,
    name         text NOT NULL,
    created_ts   bigint NOT NULL,
    deleted_ts   bigint,
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- One row per dialing attempt, inserted when OCS starts dialing (state 0) and updated once when
-- the attempt ends (state 1, call_result, ended_ts; connected_ts and talk_duration when the
-- contact picked up). chain_id identifies the calling-list record's chain (every attempt on one
-- record), attempt_no counts the attempts on it (GO_CHAIN chain_n).
-- call_result (NULL while dialing): 'ANSWER' (answered by the contact and connected to agent_id),
-- 'NO_ANSWER', 'BUSY', 'ANSWERING_MACHINE', 'DROPPED' (answered, no agent was free: abandoned by
-- the dialer), 'SIT_DETECTED' (special information tone: invalid number and the like).
-- dialing_mode: 'Predictive', 'Progressive', 'Preview'. talk_duration: seconds connected to the agent.
CREATE TABLE g_ocs_attempt (
    attempt_id       text PRIMARY KEY,
    chain_id         bigint NOT NULL,
    attempt_no       smallint NOT NULL,
    record_handle    integer NOT NULL,
    tenant_id        integer NOT NULL DEFAULT 1,
    campaign_id      integer,
    calling_list_id  integer,
    agent_id         integer,
    media_type       text NOT NULL DEFAULT 'voice',
    dialing_mode     text,
    contact_info     text,
    call_result      text,
    state            smallint NOT NULL DEFAULT 0,
    dialing_ts       bigint NOT NULL,
    connected_ts     bigint,
    ended_ts         bigint,
    talk_duration    integer,
    gsys_seq         bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq        bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

CREATE TRIGGER gc_campaign_touch BEFORE UPDATE ON gc_campaign FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gc_calling_list_touch BEFORE UPDATE ON gc_calling_list FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER g_ocs_attempt_touch BEFORE UPDATE ON g_ocs_attempt FOR EACH ROW EXECUTE FUNCTION gsys_touch();

CREATE INDEX gc_campaign_useq ON gc_campaign (gsys_useq);
CREATE INDEX gc_calling_list_useq ON gc_calling_list (gsys_useq);
CREATE INDEX g_ocs_attempt_useq ON g_ocs_attempt (gsys_useq);
