-- Warehouse tables of one configured source table.
-- Names in {braces} are identifiers, quoted by psycopg.sql before this text reaches
-- the server; {column_defs} is the column list with types checked by the config.

-- name: create_schemas
create schema if not exists stg;
create schema if not exists dds;

-- name: create_stg
-- The current batch, all sources side by side. Unlogged: it is rebuilt every run,
-- so it need not survive a server crash, and writing it skips the WAL. No primary
-- key: the merge reads stg whole, never by key, and COPY paid for the index - each
-- new row was checked against the previous batch's deleted rows of the same key
-- (0.35 s instead of 0.17 s for 100,000 rows). A key twice in one batch cannot
-- slip into dds anyway: dds's own keys would reject the merge, whole.
create unlogged table if not exists {stg_table} (
    {column_defs},
    src_id text not null,
    extracted_dttm timestamptz(0) not null,
    load_run_id text not null
);

-- name: stg_primary_key
-- A warehouse created before stg lost its primary key: the key's name, if it has one.
select conname from pg_constraint where conrelid = %(stg_table)s::regclass and contype = 'p';

-- name: drop_constraint
alter table {stg_table} drop constraint if exists {constraint};

-- name: create_dds_scd2
-- History: one row per version of a key. [eff_from_dttm, eff_to_dttm] are closed
-- intervals to the second; the current version ends at contract.OPEN_END.
create table if not exists {dds_table} (
    {column_defs},
    src_id text not null,
    eff_from_dttm timestamptz(0) not null,
    eff_to_dttm timestamptz(0) not null,
    load_run_id text not null,
    load_dttm timestamptz(0) not null,
    primary key ({key}, src_id, eff_from_dttm),
    check (eff_from_dttm <= eff_to_dttm)
);
-- At most one current version per key, enforced by the database itself; the
-- merge joins on this index.
create unique index if not exists {current_index} on {dds_table} ({key}, src_id)
    where eff_to_dttm = {open_end};
-- The extract's watermark, over current versions only: closing a version then
-- writes no entry here (a third less index work for the merge's UPDATE, 0.07 s of
-- 0.18 s for 20,000 changed keys). The newest current row is never newer than the
-- newest row, so the watermark can only come out earlier: a row is re-read, never
-- skipped. Warehouses built before have an index over all versions, under the old
-- name: dropped, as the new one serves every query the old one did.
create index if not exists {watermark_index} on {dds_table} (src_id, {increment})
    where eff_to_dttm = {open_end};
drop index if exists {old_watermark_index};

-- name: create_dds_plain
-- No history: one row per key, overwritten when the source changes it.
create table if not exists {dds_table} (
    {column_defs},
    src_id text not null,
    load_run_id text not null,
    load_dttm timestamptz(0) not null,
    primary key ({key}, src_id)
);
create index if not exists {watermark_index} on {dds_table} (src_id, {increment});

-- name: existing_columns
select column_name from information_schema.columns where table_schema = %(schema)s and table_name = %(table_name)s;

-- name: add_column
-- A column added to the config later: tables grow, nothing is dropped.
alter table {warehouse_table} add column if not exists {column} {column_type};
