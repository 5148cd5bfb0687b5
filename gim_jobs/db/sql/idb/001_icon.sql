-- ICON-like Interaction Database (IDB): the source Job_ExtractICON reads.
--
-- Modelled on Genesys ICON: configuration tables (gc_*, gcx_*) with created_ts / deleted_ts,
-- interaction tables (g_*) written as events happen and updated when they end. Every row carries
--   gsys_seq  : sequence value taken when the row was inserted;
--   gsys_useq : sequence value of the row's last change (= gsys_seq on insert, a new value on
--               every UPDATE, set by trigger). Extraction high-water marks use gsys_useq, never
--               only time, so rows that arrive late (old *_ts, new sequence) are not lost.
-- All *_ts are integer UTC epoch seconds. One sequence per IDB orders every change of every table.
-- gsys_useq defaults to currval() of the value gsys_seq just took: PostgreSQL evaluates column
-- defaults in column order, and gsys_seq precedes gsys_useq in every table.
--
-- Extraction roles: ICON_CFG -> gc_*/gcx_*; ICON_CORE -> g_* rows with media_type = 'voice';
-- ICON_MM -> g_* rows with media_type <> 'voice'; ICON_OCS -> gc_campaign, gc_calling_list and
-- g_ocs_* (outbound). Agent-activity tables (g_login_session, g_agent_state_history,
-- g_agent_state_rc) carry media_type too and split the same way.

CREATE SEQUENCE gsys_seq_gen AS bigint;

CREATE FUNCTION gsys_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.gsys_useq := nextval('gsys_seq_gen');
    RETURN NEW;
END $$;

-- ---------------------------------------------------------------- configuration (ICON_CFG)
CREATE TABLE gc_tenant (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

CREATE TABLE gc_agent (
    id           integer PRIMARY KEY,
    tenant_id    integer NOT NULL DEFAULT 1,
    employee_id  text NOT NULL,
    user_name    text NOT NULL,
    first_name   text,
    last_name    text,
    state        smallint NOT NULL DEFAULT 1,          -- 1 enabled, 2 disabled
    created_ts   bigint NOT NULL,
    deleted_ts   bigint,                               -- set when the agent is deleted in config
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- group_type: 1 agent group, 2 queue (DN) group
CREATE TABLE gc_group (
    id          integer PRIMARY KEY,
    tenant_id   integer NOT NULL DEFAULT 1,
    name        text NOT NULL,
    group_type  smallint NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- dn_type: 1 extension (agent DN), 2 ACD queue, 3 virtual queue, 4 routing point,
--          5 interaction queue (multimedia), 6 external/trunk
CREATE TABLE gc_endpoint (
    id          integer PRIMARY KEY,
    tenant_id   integer NOT NULL DEFAULT 1,
    dn          text NOT NULL,
    dn_type     smallint NOT NULL,
    switch_name text NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

CREATE TABLE gcx_group_agent (
    group_id    integer NOT NULL,
    agent_id    integer NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen'),
    PRIMARY KEY (group_id, agent_id)
);

CREATE TABLE gcx_group_endpoint (
    group_id    integer NOT NULL,
    endpoint_id integer NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen'),
    PRIMARY KEY (group_id, endpoint_id)
);

CREATE TABLE gc_skill (
    id          integer PRIMARY KEY,
    tenant_id   integer NOT NULL DEFAULT 1,
    name        text NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

CREATE TABLE gcx_skill_level (
    agent_id    integer NOT NULL,
    skill_id    integer NOT NULL,
    level       smallint NOT NULL,
    created_ts  bigint NOT NULL,
    deleted_ts  bigint,
    gsys_seq    bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq   bigint NOT NULL DEFAULT currval('gsys_seq_gen'),
    PRIMARY KEY (agent_id, skill_id)
);

-- ---------------------------------------------------------------- interactions (ICON_CORE / ICON_MM)
-- One interaction record (IR) per customer interaction; root_irid = irid for the root.
-- media_type: 'voice', 'chat' (online), 'email' (offline), ...
-- interaction_type: 'Inbound', 'Outbound', 'Internal'. state: 0 active, 1 terminated.
CREATE TABLE g_ir (
    irid                text PRIMARY KEY,
    root_irid           text NOT NULL,
    tenant_id           integer NOT NULL DEFAULT 1,
    media_type          text NOT NULL,
    interaction_type    text NOT NULL,
    interaction_subtype text,
    source_address      text,
    target_address      text,
    subject             text,
    state               smallint NOT NULL DEFAULT 0,
    created_ts          bigint NOT NULL,
    terminated_ts       bigint,
    gsys_seq            bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq           bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- A call (voice) or media-server interaction leg belonging to an IR. Transfers and consultations
-- create further calls of the same IR.
CREATE TABLE g_call (
    callid         text PRIMARY KEY,
    irid           text NOT NULL,
    connid         text NOT NULL,
    media_type     text NOT NULL,
    call_type      smallint NOT NULL,          -- 1 internal, 2 inbound, 3 outbound, 4 consult
    state          smallint NOT NULL DEFAULT 0,
    created_ts     bigint NOT NULL,
    terminated_ts  bigint,
    gsys_seq       bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq      bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- A party: one endpoint's (queue, agent DN, customer) participation in a call.
-- party_type: 1 queue / mediation DN, 2 agent, 3 customer / external, 4 routing point
-- role:       1 originator, 2 receiver, 3 consult receiver, 4 conference member, 5 transfer receiver
-- end_cause (set when the party ends):
--   'completed'          handled and released normally (agent) / distributed (queue)
--   'abandoned'          customer hung up while the party was queued (queue party)
--   'abandoned_ringing'  customer hung up while the agent was ringing (agent party)
--   'transferred'        agent transferred the call away
--   'conferenced'        party joined/left a conference
--   'redirected'         ring no answer, call went back to the queue
--   'cleared'            cleared by routing (virtual queue)
-- parent_partyid: the party this one was created from (e.g. agent party <- queue party).
CREATE TABLE g_party (
    partyid        text PRIMARY KEY,
    callid         text NOT NULL,
    irid           text NOT NULL,
    endpoint_id    integer,
    agent_id       integer,
    party_type     smallint NOT NULL,
    role           smallint NOT NULL,
    parent_partyid text,
    media_type     text NOT NULL,
    state          smallint NOT NULL DEFAULT 0,
    created_ts     bigint NOT NULL,
    terminated_ts  bigint,
    end_cause      text,
    gsys_seq       bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq      bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- Party state changes, insert-only.
-- changetype: 1 queued/entered, 2 ringing, 3 established (answered / accepted), 4 held,
--             5 retrieved, 6 released (party ended)
CREATE TABLE g_party_history (
    id           bigint PRIMARY KEY,
    partyid      text NOT NULL,
    callid       text NOT NULL,
    media_type   text NOT NULL,
    changetype   smallint NOT NULL,
    added_ts     bigint NOT NULL,
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- ---------------------------------------------------------------- agent activity (ICON_CORE / ICON_MM)
CREATE TABLE g_login_session (
    lsid         text PRIMARY KEY,
    agent_id     integer NOT NULL,
    endpoint_id  integer,
    media_type   text NOT NULL,
    state        smallint NOT NULL DEFAULT 0,     -- 0 active, 1 ended
    login_ts     bigint NOT NULL,
    logout_ts    bigint,
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- Agent state changes, insert-only; a state lasts until the agent's next row in the same session.
-- state: 1 Ready, 2 NotReady, 3 Busy, 4 AfterCallWork, 5 LoggedOut (session end)
-- reason_code: the NotReady reason (NULL otherwise). partyid: for AfterCallWork, the agent party
-- whose release started it (how ACW is attributed to an interaction).
CREATE TABLE g_agent_state_history (
    id           bigint PRIMARY KEY,
    lsid         text NOT NULL,
    agent_id     integer NOT NULL,
    media_type   text NOT NULL,
    state        smallint NOT NULL,
    reason_code  text,
    partyid      text,
    added_ts     bigint NOT NULL,
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- Reason-code changes reported by the agent desktop, insert-only.
CREATE TABLE g_agent_state_rc (
    id           bigint PRIMARY KEY,
    lsid         text NOT NULL,
    agent_id     integer NOT NULL,
    media_type   text NOT NULL,
    reason_code  text NOT NULL,
    reason_text  text,
    added_ts     bigint NOT NULL,
    gsys_seq     bigint NOT NULL DEFAULT nextval('gsys_seq_gen'),
    gsys_useq    bigint NOT NULL DEFAULT currval('gsys_seq_gen')
);

-- Updates take a fresh sequence value (ICON's GSYS_USEQ).
CREATE TRIGGER gc_tenant_touch BEFORE UPDATE ON gc_tenant FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gc_agent_touch BEFORE UPDATE ON gc_agent FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gc_group_touch BEFORE UPDATE ON gc_group FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gc_endpoint_touch BEFORE UPDATE ON gc_endpoint FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gcx_group_agent_touch BEFORE UPDATE ON gcx_group_agent FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gcx_group_endpoint_touch BEFORE UPDATE ON gcx_group_endpoint FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gc_skill_touch BEFORE UPDATE ON gc_skill FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER gcx_skill_level_touch BEFORE UPDATE ON gcx_skill_level FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER g_ir_touch BEFORE UPDATE ON g_ir FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER g_call_touch BEFORE UPDATE ON g_call FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER g_party_touch BEFORE UPDATE ON g_party FOR EACH ROW EXECUTE FUNCTION gsys_touch();
CREATE TRIGGER g_login_session_touch BEFORE UPDATE ON g_login_session FOR EACH ROW EXECUTE FUNCTION gsys_touch();

-- Extraction reads "WHERE gsys_useq > hwm ORDER BY gsys_useq": one index per table.
CREATE INDEX gc_tenant_useq ON gc_tenant (gsys_useq);
CREATE INDEX gc_agent_useq ON gc_agent (gsys_useq);
CREATE INDEX gc_group_useq ON gc_group (gsys_useq);
CREATE INDEX gc_endpoint_useq ON gc_endpoint (gsys_useq);
CREATE INDEX gcx_group_agent_useq ON gcx_group_agent (gsys_useq);
CREATE INDEX gcx_group_endpoint_useq ON gcx_group_endpoint (gsys_useq);
CREATE INDEX gc_skill_useq ON gc_skill (gsys_useq);
CREATE INDEX gcx_skill_level_useq ON gcx_skill_level (gsys_useq);
CREATE INDEX g_ir_useq ON g_ir (gsys_useq);
CREATE INDEX g_call_useq ON g_call (gsys_useq);
CREATE INDEX g_party_useq ON g_party (gsys_useq);
CREATE INDEX g_party_history_useq ON g_party_history (gsys_useq);
CREATE INDEX g_login_session_useq ON g_login_session (gsys_useq);
CREATE INDEX g_agent_state_history_useq ON g_agent_state_history (gsys_useq);
CREATE INDEX g_agent_state_rc_useq ON g_agent_state_rc (gsys_useq);
