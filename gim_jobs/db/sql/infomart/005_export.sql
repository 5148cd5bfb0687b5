-- Job_ExportGIM (R22): its control table, the rule that says which relations it exports, and the
-- frozen export views (use-export-views).

-- One row per export folder written (or adopted) into an output directory. Written AFTER the
-- folder has been renamed into place, so at the start of a run the newest row of a directory and
-- the newest complete folder in it must agree (gim_jobs/jobs/export.py reconciles them).
--   audit_key_from / audit_key_hwm: the folder holds the rows whose update_audit_key lies in
--       (audit_key_from, audit_key_hwm]; audit_key_from = -1 for the first folder of a stream;
--   max_data_ts: the data time (epoch seconds, GMT) in the folder name: the greatest start/end
--       time of every fact exported to this directory so far;
--   min_chunk_ts / max_chunk_ts: the fact start times this folder covers (NULL: no fact rows);
--   start_ts: the stream's start-date (the value in force when the directory was empty), or NULL;
--   table_rows: {"<table>": rows, ...}; adopted: the folder was found complete without its row
--   (a run killed between rename and insert) and verified by its .sha1;
--   removed: when retention (days-to-keep-output-files) deleted the folder.
-- A folder name may repeat when an emptied directory starts a new stream; the newest row (id) counts.
CREATE TABLE ctl_export_history (
    id                bigserial PRIMARY KEY,
    output_directory  text NOT NULL,
    folder            text NOT NULL,
    audit_key_from    bigint NOT NULL,
    audit_key_hwm     bigint NOT NULL,
    max_data_ts       bigint NOT NULL,
    min_chunk_ts      bigint,
    max_chunk_ts      bigint,
    start_ts          bigint,
    row_count         bigint NOT NULL,
    table_rows        jsonb NOT NULL DEFAULT '{}'::jsonb,
    zip_bytes         bigint NOT NULL,
    sha1              text NOT NULL,
    encoding          text NOT NULL,
    export_views      boolean NOT NULL,
    job_id            text,
    adopted           boolean NOT NULL DEFAULT false,
    created           timestamptz NOT NULL DEFAULT now(),
    removed           timestamptz
);
CREATE INDEX ctl_export_history_dir ON ctl_export_history (output_directory, id DESC);

-- What kind of export relation p_rel is, from its columns (NULL: not exported):
--   'fact'      create_audit_key + update_audit_key + start_ts and a name ending in _fact: exported
--               by audit key, chunked and filtered (start-date) by start_ts;
--   'dimension' create_audit_key + update_audit_key otherwise (dimensions, configuration facts such
--               as resource_group_fact_): exported by audit key, never filtered by data time;
--   'calendar'  date_time_key + cal_date without audit keys (date_time and the custom calendars):
--               the 15-minute rows that the exported facts' start..end times span.
CREATE FUNCTION gim_export_kind(p_rel regclass) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
               WHEN bool_or(a.attname = 'create_audit_key') AND bool_or(a.attname = 'update_audit_key') THEN
                   CASE WHEN bool_or(a.attname = 'start_ts') AND c.relname LIKE '%\_fact' THEN 'fact'
                        ELSE 'dimension' END
               WHEN bool_or(a.attname = 'date_time_key') AND bool_or(a.attname = 'cal_date') THEN 'calendar'
           END
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.oid = p_rel
     GROUP BY c.relname
$$;

-- The relations Job_ExportGIM reads, discovered from the catalog so a schema change needs no code
-- change: tables in schema public (p_views = false) or the export views exp_<table> (p_views =
-- true), of a kind above, never gidb_* staging, agt_* / ag2_* aggregates, ctl_* control or stg_*
-- transformation tables. columns in table order; key_columns: the base table's primary key (the
-- CSV row order), when the relation has all of its columns; text_columns: the string-typed ones
-- (exported as nullif(c, '') so NULL and '' are the same empty field).
CREATE FUNCTION gim_export_relations(p_views boolean DEFAULT false)
RETURNS TABLE (table_name text, relation text, kind text, columns text[], key_columns text[],
               text_columns text[])
LANGUAGE sql STABLE AS $$
    WITH rels AS (
        SELECT c.oid, c.relname::text AS relation,
               CASE WHEN p_views THEN substr(c.relname, 5) ELSE c.relname::text END AS table_name
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public'
           AND CASE WHEN p_views THEN c.relkind = 'v' AND c.relname LIKE 'exp\_%'
                    ELSE c.relkind IN ('r', 'p') AND NOT c.relispartition END
    ), typed AS (
        SELECT r.*, gim_export_kind(r.oid) AS kind,
               (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
               (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                  JOIN pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped AND t.typcategory = 'S')
                   AS text_columns,
               (SELECT array_agg(a.attname::text ORDER BY k.ord)
                  FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = to_regclass(format('public.%I', r.table_name)) AND i.indisprimary) AS pk
          FROM rels r
         WHERE r.table_name !~ '^(gidb|agt|ag2|ctl|stg|exp)_'
    )
    SELECT table_name, relation, kind, columns, CASE WHEN pk <@ columns THEN pk END,
           coalesce(text_columns, '{}')
      FROM typed
     WHERE kind IS NOT NULL
     ORDER BY table_name
$$;

-- use-export-views: create exp_<table> for every exported table that has none, listing its
-- columns explicitly, so columns added to the table later do not change what is exported (and a
-- table added later is not exported through views until this is run again). p_replace = true
-- re-freezes every view at the current schema. Returns the number of views created.
-- Frozen has a price: a later migration that drops or retypes a column of an exported table must
-- DROP VIEW exp_<table> first (PostgreSQL refuses otherwise) and call this function afterwards.
CREATE FUNCTION gim_create_export_views(p_replace boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r  record;
    n  integer := 0;
    v  text;
BEGIN
    FOR r IN SELECT * FROM gim_export_relations(false) LOOP
        v := 'exp_' || r.table_name;
        IF to_regclass(format('public.%I', v)) IS NOT NULL THEN
            IF NOT p_replace THEN
                CONTINUE;
            END IF;
            EXECUTE format('DROP VIEW public.%I', v);
        END IF;
        EXECUTE format('CREATE VIEW public.%I AS SELECT %s FROM public.%I', v,
                       (SELECT string_agg(quote_ident(c), ', ') FROM unnest(r.columns) AS c), r.table_name);
        EXECUTE format('COMMENT ON VIEW public.%I IS %L', v,
                       format('Job_ExportGIM export view of %s, columns frozen %s', r.table_name,
                              to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

SELECT gim_create_export_views();
