-- Job_ExtractICON bulk loads: secondary indexes of a gidb_* table dropped for the load and rebuilt
-- after it (issue 3, ETL speed).
--
-- A backlog at least as large as what a staging table already holds (a first load, a catch-up after
-- an outage) is loaded faster without that table's secondary indexes (irid, partyid, session
-- lookups: random inserts into large btrees) and with the indexes rebuilt by one sort afterwards.
-- The primary key and the stg_seq index stay (the first detects an already staged row, the second
-- is the transform's change scan). Each dropped index is recorded here, in the transaction that
-- drops it, and deleted in the transaction that rebuilds it: a run killed in between leaves its
-- rows, and the next run rebuilds those indexes before it reads anything.
CREATE TABLE ctl_extract_deferred_index (
    index_name   text PRIMARY KEY,      -- the index (public schema) as it was named
    table_name   text NOT NULL,         -- its gidb_* table
    definition   text NOT NULL,         -- pg_get_indexdef(): the CREATE INDEX statement to rebuild it
    job_id       text,                  -- the extraction run that deferred it
    deferred_at  timestamptz NOT NULL DEFAULT now()
);
