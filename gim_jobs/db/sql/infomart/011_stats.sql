-- Job_UpdateStats (R10) on partitioned tables: PostgreSQL keeps no change counters for a partitioned
-- parent, so the job remembers, per parent, the summed cumulative change counters of its partitions
-- and how many partitions it had when it last ANALYZEd the parent (gim_jobs.db.stats).
CREATE TABLE ctl_stats_parent (
    table_name  text PRIMARY KEY,
    analyzed_at timestamptz NOT NULL,
    changes     bigint NOT NULL,   -- sum of n_tup_ins + n_tup_upd + n_tup_del over the partitions then
    partitions  integer NOT NULL   -- number of partitions then
);
