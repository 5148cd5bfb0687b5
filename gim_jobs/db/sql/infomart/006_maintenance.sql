-- Job_MaintainGIM (R23 purge, R24 calendars, R25 partitions): its control tables and SQL functions,
-- and the conversion of the history control tables to partitioned tables.
--
-- Partitioning (R25). A partitioned table here is PARTITION BY RANGE on one time column (epoch
-- seconds, or a timestamptz), with
--   * partitions named <table>_pYYYYMMDD_HH24MI (UTC lower bound) of partitioning-interval-size-gim
--     seconds, created by Job_MaintainGIM partitioning-ahead-range days ahead of now;
--   * a DEFAULT partition <table>_default that catches every row outside the partitions (so an ETL
--     cycle never fails for want of a partition); Job_MaintainGIM moves its rows out into new
--     partitions when their range is within retention (create the partition as a plain table, move
--     the rows, ATTACH, in one transaction).
-- PostgreSQL wants the partition key in every primary key / unique constraint, so converting a table
-- appends the key column to them (PRIMARY KEY (audit_key) becomes PRIMARY KEY (audit_key,
-- created_ts)). A writer that says INSERT ... ON CONFLICT (<old unique columns>) fails on such a table,
-- so a table is converted only when its writers do not depend on the old unique key:
--   converted now:     ctl_audit_log (created_ts), ctl_extract_history (extract_end_time),
--                      ctl_transform_history (transform_end_time): insert-only history (plus an
--                      UPDATE by audit_key), never ON CONFLICT;
--   registered, off:   interaction_fact, interaction_resource_fact, sm_res_state_fact,
--                      sm_res_session_fact (start_date_time_key): Job_TransformGIM upserts them ON
--                      CONFLICT on keys without start_date_time_key; enable them (enabled = true)
--                      once its conflict targets include start_date_time_key, and the next
--                      Job_MaintainGIM converts them;
--   not partitioned:   ctl_etl_history (one row per job run, updated by job_id by the job runner:
--                      small, and the table the scheduling rules read), stg_transform_discards (upserted
--                      on its natural key), gidb_* staging (COPY + upsert on the IDB key, NULL-able
--                      times), configuration facts and dimensions. These are purged by batched DELETE.
-- The conversion is cheap (the old table becomes the default partition: a rename, a metadata ATTACH
-- and the new unique indexes); partitions for the rows already there are made by the first
-- Job_MaintainGIM run (init-db runs migrations only and does not know the partitioning options).

-- ---------------------------------------------------------------- registry of partitioned tables
CREATE TABLE ctl_partitioned_table (
    table_name   text PRIMARY KEY,
    key_column   text NOT NULL,
    key_type     text NOT NULL CHECK (key_type IN ('epoch', 'timestamptz')),
    enabled      boolean NOT NULL,                 -- converted (or to be converted) to a partitioned table
    converted    timestamptz,                      -- when gim_partition_convert made it partitioned
    note         text
);
INSERT INTO ctl_partitioned_table (table_name, key_column, key_type, enabled, note) VALUES
    ('ctl_audit_log', 'created_ts', 'epoch', true, 'job history: days-to-keep-discards-and-job-history'),
    ('ctl_extract_history', 'extract_end_time', 'timestamptz', true,
     'job history: days-to-keep-discards-and-job-history'),
    ('ctl_transform_history', 'transform_end_time', 'timestamptz', true,
     'job history: days-to-keep-discards-and-job-history'),
    ('interaction_fact', 'start_date_time_key', 'epoch', false,
     'needs Job_TransformGIM ON CONFLICT (..., start_date_time_key)'),
    ('interaction_resource_fact', 'start_date_time_key', 'epoch', false,
     'needs Job_TransformGIM ON CONFLICT (..., start_date_time_key)'),
    ('sm_res_state_fact', 'start_date_time_key', 'epoch', false,
     'needs Job_TransformGIM ON CONFLICT (..., start_date_time_key)'),
    ('sm_res_session_fact', 'start_date_time_key', 'epoch', false,
     'needs Job_TransformGIM ON CONFLICT (..., start_date_time_key)');

-- The partitions of p_table with their bounds as epoch seconds (lo inclusive, hi exclusive); the
-- default partition has is_default = true and NULL bounds.
CREATE FUNCTION gim_partitions(p_table regclass)
RETURNS TABLE (partition_name text, lo bigint, hi bigint, is_default boolean)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text,
           CASE WHEN b.m IS NULL THEN NULL
                WHEN t.typname = 'timestamptz' THEN extract(epoch FROM b.m[1]::timestamptz)::bigint
                ELSE b.m[1]::bigint END,
           CASE WHEN b.m IS NULL THEN NULL
                WHEN t.typname = 'timestamptz' THEN extract(epoch FROM b.m[2]::timestamptz)::bigint
                ELSE b.m[2]::bigint END,
           pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_partitioned_table pt ON pt.partrelid = i.inhparent
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
      JOIN pg_type t ON t.oid = a.atttypid
      CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                              $r$FROM \('?([^')]*)'?\) TO \('?([^')]*)'?\)$r$) AS m) b
     WHERE i.inhparent = p_table
$$;

-- Convert plain table p_table (registered in ctl_partitioned_table) into a table partitioned by range
-- on its key column, in the current transaction. The old table, rows and all, becomes the default
-- partition <p_table>_default (no rows are copied); its primary key and unique constraints move to
-- the partitioned table with the key column appended; its other indexes are recreated on the
-- partitioned table under their names (PostgreSQL adopts the old ones for the default partition
-- instead of building them); sequences owned by its columns are handed over; views reading it are
-- re-pointed (CREATE OR REPLACE VIEW with their text). Returns false when it was partitioned already.
CREATE FUNCTION gim_partition_convert(p_table text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    reg       ctl_partitioned_table%ROWTYPE;
    old       regclass;
    dflt      text := p_table || '_default';
    tmp       text := p_table || '_gim_new';
    key_att   smallint;
    r         record;
    view_oids oid[] := '{}';
    view_defs text[] := '{}';
    idx_defs  text[] := '{}';
    con_names text[] := '{}';
    con_defs  text[] := '{}';
    seq       text;
    i         integer;
BEGIN
    SELECT * INTO reg FROM ctl_partitioned_table WHERE table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gim_partition_convert: % is not registered in ctl_partitioned_table', p_table;
    END IF;
    old := to_regclass(format('public.%I', p_table));
    IF old IS NULL THEN
        RAISE EXCEPTION 'gim_partition_convert: no table public.%', p_table;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = old) = 'p' THEN
        RETURN false;
    END IF;
    EXECUTE format('LOCK TABLE public.%I IN ACCESS EXCLUSIVE MODE', p_table);
    SELECT attnum INTO key_att FROM pg_attribute WHERE attrelid = old AND attname = reg.key_column AND NOT attisdropped;
    IF key_att IS NULL THEN
        RAISE EXCEPTION 'gim_partition_convert: % has no column %', p_table, reg.key_column;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
                WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = old AND v.oid <> old AND v.relkind = 'm') THEN
        RAISE EXCEPTION 'gim_partition_convert: a materialized view reads %; drop it first', p_table;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = old OR (conrelid = old AND contype IN ('f', 'x'))) THEN
        RAISE EXCEPTION 'gim_partition_convert: % has foreign key or exclusion constraints', p_table;
    END IF;
    -- views first: their text names the table as it is called now
    FOR r IN SELECT DISTINCT v.oid, pg_get_viewdef(v.oid) AS def
               FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
              WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = old AND v.oid <> old AND v.relkind = 'v'
    LOOP
        view_oids := view_oids || r.oid;
        view_defs := view_defs || rtrim(r.def, E'; \n');
    END LOOP;
    -- the partitioned table, same columns, defaults, NOT NULL and CHECK constraints
    EXECUTE format('CREATE TABLE public.%I (LIKE public.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED) PARTITION BY RANGE (%I)',
                   tmp, p_table, reg.key_column);
    -- primary key / unique constraints: dropped from the old table, added to the new with the key
    FOR r IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def, key_att = ANY (c.conkey) AS has_key
               FROM pg_constraint c WHERE c.conrelid = old AND c.contype IN ('p', 'u') ORDER BY c.contype, c.conname
    LOOP
        IF r.def !~ '^(PRIMARY KEY|UNIQUE) \([^()]*\)$' THEN
            RAISE EXCEPTION 'gim_partition_convert: cannot carry constraint % (%) over', r.conname, r.def;
        END IF;
        con_names := con_names || r.conname::text;
        con_defs := con_defs || CASE WHEN r.has_key THEN r.def
                                     ELSE regexp_replace(r.def, '\)$', ', ' || quote_ident(reg.key_column) || ')') END;
        EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', p_table, r.conname);
    END LOOP;
    -- other indexes: recreated on the new table under their names (the old ones renamed, then adopted)
    FOR r IN SELECT i.indexrelid, c.relname, pg_get_indexdef(i.indexrelid) AS def, i.indisunique
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = old ORDER BY c.relname
    LOOP
        IF r.indisunique THEN
            RAISE EXCEPTION 'gim_partition_convert: unique index % is not a constraint; cannot carry it over', r.relname;
        END IF;
        idx_defs := idx_defs || r.def;
        EXECUTE format('ALTER INDEX public.%I RENAME TO %I', r.relname, left(r.relname, 56) || '_dflt');
    END LOOP;
    -- sequences owned by the old columns (bigserial) now belong to the partitioned table
    FOR r IN SELECT a.attname FROM pg_attribute a WHERE a.attrelid = old AND a.attnum > 0 AND NOT a.attisdropped LOOP
        seq := pg_get_serial_sequence(format('public.%I', p_table), r.attname);
        IF seq IS NOT NULL THEN
            EXECUTE format('ALTER SEQUENCE %s OWNED BY public.%I.%I', seq, tmp, r.attname);
        END IF;
    END LOOP;
    EXECUTE format('ALTER TABLE public.%I RENAME TO %I', p_table, dflt);
    EXECUTE format('ALTER TABLE public.%I RENAME TO %I', tmp, p_table);
    EXECUTE format('ALTER TABLE public.%I ATTACH PARTITION public.%I DEFAULT', p_table, dflt);
    FOR i IN 1 .. coalesce(array_length(con_names, 1), 0) LOOP
        EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I %s', p_table, con_names[i], con_defs[i]);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(idx_defs, 1), 0) LOOP
        EXECUTE idx_defs[i];
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(view_oids, 1), 0) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', view_oids[i]::regclass, view_defs[i]);
    END LOOP;
    UPDATE ctl_partitioned_table SET converted = now(), enabled = true WHERE table_name = p_table;
    RETURN true;
END $$;

SELECT gim_partition_convert(table_name) FROM ctl_partitioned_table WHERE enabled ORDER BY table_name;

-- ---------------------------------------------------------------- purge (R23)
-- One row per table Job_MaintainGIM considered in a run. cutoff: rows older than this (by the
-- table's time column) were eligible; rows_deleted by batched DELETE; partitions_dropped whole
-- partitions (their names in dropped_partitions, rows_in_partitions their rows: the planner's count
-- when the partition has statistics, else counted); completed false when
-- the run stopped (R9/R18) before this table was done: what is recorded was committed, the next run
-- does the rest.
CREATE TABLE ctl_purge_history (
    id                   bigserial PRIMARY KEY,
    job_id               text NOT NULL,
    table_name           text NOT NULL,
    option_name          text NOT NULL,
    days_to_keep         integer NOT NULL,
    cutoff               timestamptz NOT NULL,
    rows_deleted         bigint NOT NULL DEFAULT 0,
    partitions_dropped   integer NOT NULL DEFAULT 0,
    rows_in_partitions   bigint NOT NULL DEFAULT 0,
    dropped_partitions   text[] NOT NULL DEFAULT '{}',
    batches              integer NOT NULL DEFAULT 0,
    completed            boolean NOT NULL,
    message              text,
    started              timestamptz NOT NULL,
    finished             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ctl_purge_history_finished ON ctl_purge_history (finished);

-- The purge reads these time columns of tables that are not partitioned.
CREATE INDEX ctl_etl_history_start ON ctl_etl_history (start_time);
CREATE INDEX stg_transform_discards_created ON stg_transform_discards (created_ts);

-- ---------------------------------------------------------------- calendars (R24)
-- The options each calendar table was filled with (the default [date-time] calendar is date_time).
-- Job_MaintainGIM writes it from the configuration on every run; gim_ensure_date_time (called by
-- Job_TransformGIM for the days of the facts it writes) fills date_time with the options found here.
CREATE TABLE ctl_calendar (
    table_name                  text PRIMARY KEY,
    section                     text NOT NULL,
    time_zone                   text NOT NULL,
    first_day_of_week           integer NOT NULL,
    minimal_days_in_first_week  integer NOT NULL,
    simple_week_numbering       boolean NOT NULL,
    fiscal_year_start_month     integer NOT NULL,
    fiscal_year_start_day       integer NOT NULL,
    start_year                  integer NOT NULL,
    max_days_ahead              integer NOT NULL,
    min_days_ahead              integer NOT NULL,
    updated                     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ctl_calendar VALUES ('date_time', 'date-time', 'GMT', 1, 1, true, 1, 1, 2012, 366, 183, now());

-- Fiscal attributes (fiscal-year-start): the fiscal year is named by the calendar year it ends in
-- (fiscal-year-start 07-01: 2025-07-01 .. 2026-06-30 is fiscal year 2026; with 01-01 it is the
-- calendar year); fiscal months and quarters count from the fiscal year's first day.
ALTER TABLE date_time ADD COLUMN fiscal_year_num integer;
ALTER TABLE date_time ADD COLUMN fiscal_quarter_num_in_year integer;
ALTER TABLE date_time ADD COLUMN fiscal_month_num_in_year integer;
UPDATE date_time SET fiscal_year_num = cal_year_num, fiscal_quarter_num_in_year = cal_quarter_num_in_year,
                     fiscal_month_num_in_year = cal_month_num_in_year;
ALTER TABLE date_time ALTER COLUMN fiscal_year_num SET NOT NULL;
ALTER TABLE date_time ALTER COLUMN fiscal_quarter_num_in_year SET NOT NULL;
ALTER TABLE date_time ALTER COLUMN fiscal_month_num_in_year SET NOT NULL;

-- First day of the fiscal year holding local date p_day.
CREATE FUNCTION gim_fiscal_year_start(p_day date, p_month integer, p_dom integer)
RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_day >= make_date(extract(year FROM p_day)::int, p_month, p_dom)
                THEN make_date(extract(year FROM p_day)::int, p_month, p_dom)
                ELSE make_date(extract(year FROM p_day)::int - 1, p_month, p_dom) END
$$;

-- gim_fill_calendar of migration 003, with an explicit column list and the fiscal columns
-- (p_fiscal_month / p_fiscal_day: fiscal-year-start). Set-based: one INSERT ... SELECT over
-- generate_series of the UTC 15-minute keys, local attributes from AT TIME ZONE p_tz, so DST days
-- have 92 or 100 rows and no key is missing or doubled. Existing rows are kept (ON CONFLICT DO
-- NOTHING); a range already complete returns 0 at the cost of one index count.
DROP FUNCTION gim_fill_calendar(text, text, bigint, bigint, integer, integer, boolean);
CREATE FUNCTION gim_fill_calendar(
    p_table text, p_tz text, p_from bigint, p_to bigint,
    p_first_dow integer DEFAULT 1, p_min_days integer DEFAULT 1, p_simple_weeks boolean DEFAULT true,
    p_fiscal_month integer DEFAULT 1, p_fiscal_day integer DEFAULT 1
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
        INSERT INTO %I (date_time_key, date_time_30min_key, date_time_hour_key, date_time_day_key,
                        date_time_week_key, date_time_month_key, date_time_quarter_key, date_time_year_key,
                        date_time_next_key, cal_date, cal_year_num, cal_quarter_num_in_year,
                        cal_month_num_in_year, cal_week_num_in_year, cal_week_year_num, cal_day_num_in_week,
                        cal_day_num_in_month, cal_day_num_in_year, cal_hour_num_in_day, cal_minute_num_in_hour,
                        cal_day_name, cal_month_name, label_yyyy, label_yyyy_qq, label_yyyy_mm, label_yyyy_ww,
                        label_yyyy_mm_dd, label_yyyy_mm_dd_hh24, label_hh24, label_yyyy_mm_dd_hh24_30min,
                        label_yyyy_mm_dd_hh24_subhr, utc_offset_seconds, time_zone, fiscal_year_num,
                        fiscal_quarter_num_in_year, fiscal_month_num_in_year)
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
               $3,
               extract(year FROM fy.s + interval '1 year' - interval '1 day')::int,
               fy.m / 3 + 1,
               fy.m + 1
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
               ) wk,
               LATERAL (
                   SELECT f.s, (extract(year FROM age(lt::date, f.s))::int * 12
                                + extract(month FROM age(lt::date, f.s))::int) AS m
                     FROM (SELECT gim_fiscal_year_start(lt::date, $7, $8) AS s) f
               ) fy
        ON CONFLICT (date_time_key) DO NOTHING
    $q$, p_table) USING lo, hi, p_tz, p_first_dow, p_min_days, p_simple_weeks, p_fiscal_month, p_fiscal_day;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END $$;

-- The default calendar, with the options Job_MaintainGIM registered for it ([date-time]: GMT, weeks
-- from Sunday, legacy numbering unless configured otherwise).
CREATE OR REPLACE FUNCTION gim_ensure_date_time(p_from bigint, p_to bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT gim_fill_calendar('date_time', coalesce(c.time_zone, 'GMT'), p_from, p_to,
                             coalesce(c.first_day_of_week, 1), coalesce(c.minimal_days_in_first_week, 1),
                             coalesce(c.simple_week_numbering, true), coalesce(c.fiscal_year_start_month, 1),
                             coalesce(c.fiscal_year_start_day, 1))
      FROM (SELECT 1) one LEFT JOIN ctl_calendar c ON c.table_name = 'date_time'
$$;
