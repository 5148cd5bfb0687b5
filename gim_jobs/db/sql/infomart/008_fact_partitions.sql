-- Partition the four fact tables by start_date_time_key (R25, R23).
--
-- 006 registered them "off" because Job_TransformGIM upserted them ON CONFLICT on keys without the
-- partition key, and PostgreSQL requires the partition key in every unique index of a partitioned
-- table. The transform now says ON CONFLICT (<natural key>, start_date_time_key); this migration
-- converts the tables in the same release, so that conflict target always has its unique index.
--
-- Why start_date_time_key is a safe part of the key: it is the 15-minute bucket of the fact's start
-- (g_ir / g_party created_ts, login_ts, the state's start), which the IDB never changes for a row; the
-- transform's upsert never updates conflict columns, so no row moves between partitions.
-- The conversion is a metadata operation: each table, rows and all, becomes its default partition;
-- the next Job_MaintainGIM run creates the time partitions and moves the rows out of the default.
UPDATE ctl_partitioned_table SET enabled = true, note = 'facts: days-to-keep-gim-facts'
 WHERE table_name IN ('interaction_fact', 'interaction_resource_fact', 'sm_res_state_fact', 'sm_res_session_fact');

SELECT gim_partition_convert(t)
  FROM unnest(ARRAY['interaction_fact', 'interaction_resource_fact', 'sm_res_state_fact', 'sm_res_session_fact']) t;
