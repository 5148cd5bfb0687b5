-- Changes that Job_AggregateGIM must re-aggregate but cannot find by update_audit_key on the facts.
--
-- Facts the transform DELETES (an interaction found to be malformed and discarded, parties of an
-- interaction re-derived, agent states and sessions rebuilt) leave nothing behind to carry an audit
-- key, yet the aggregates of the intervals they counted in are now wrong. The transform records the
-- span of every fact it deletes here, in the same transaction, with the audit key of that
-- transaction; the aggregation queues those intervals like changed facts. Rows are purged with the
-- job history (days-to-keep-discards-and-job-history).
CREATE TABLE ctl_fact_deleted (
    audit_key   bigint NOT NULL,
    table_name  text NOT NULL,
    start_ts    bigint NOT NULL,
    end_ts      bigint NOT NULL,
    created_ts  bigint NOT NULL DEFAULT extract(epoch FROM now())::bigint
);
CREATE INDEX ctl_fact_deleted_audit ON ctl_fact_deleted (audit_key);
CREATE INDEX ctl_fact_deleted_created ON ctl_fact_deleted (created_ts);
