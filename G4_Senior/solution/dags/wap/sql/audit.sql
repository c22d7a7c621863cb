-- Write-Audit-Publish: audit this run's stg batch, hold failing rows, publish the rest.
-- Names in {braces} are quoted identifiers; values are %(parameters)s.
--
-- stg.<t>         the batch (written by load_stg, as in G0)
-- audit.<t>       the audit's verdict on the batch: failing rows with their broken rules,
--                 and which rows came back from quarantine for a second look
-- quarantine.<t>  rows held back, with the source row as jsonb and why; open until a later
--                 run publishes the key (released) or a newer version of it (superseded)
-- dds.<t>         published rows only

-- name: create_schemas
create schema if not exists audit;
create schema if not exists quarantine;
-- One row per run, table and shop: what the audit saw and did.
create table if not exists quarantine.audit_log (
    run_id text not null,
    table_name text not null,
    src_id text not null,
    checked integer not null,          -- rows audited: the fresh batch plus re-audited ones
    re_audited integer not null,       -- of which came back from quarantine
    passed integer not null,
    quarantined integer not null,
    released integer not null default 0,
    superseded integer not null default 0,
    quarantined_share numeric(5, 4) not null,  -- failing share of the fresh rows
    outcome text not null check (outcome in ('audited', 'halted', 'published')),
    audited_at timestamptz not null,
    published_at timestamptz,
    primary key (run_id, table_name, src_id)
);

-- name: create_verdicts
-- Rebuilt by every audit, like stg; unlogged for the same reason.
create unlogged table if not exists {verdict_table} (
    {key} {key_type} not null,
    src_id text not null,
    run_id text not null,
    failed_rules text[] not null,
    restaged boolean not null,
    primary key ({key}, src_id)
);

-- name: create_quarantine
create table if not exists {quarantine_table} (
    {key} {key_type} not null,
    src_id text not null,
    source_row jsonb not null,         -- the row as the shop had it (source columns only)
    failed_rules text[] not null,
    status text not null default 'open' check (status in ('open', 'released', 'superseded')),
    extracted_dttm timestamptz not null,  -- when this version was first seen
    first_run_id text not null,
    last_run_id text not null,
    first_seen timestamptz not null,
    last_seen timestamptz not null,    -- the last run that saw it failing
    closed_run_id text,
    closed_at timestamptz
);
-- At most one open row per key: a key that fails again later opens a new one, and the
-- closed ones stay as history.
create unique index if not exists {open_index} on {quarantine_table} ({key}, src_id) where status = 'open';

-- name: analyze_batch
-- The planner's picture of the batch: load_stg has just replaced it (DELETE, COPY) and
-- autovacuum analyzes a table a minute later at best, so the statistics still describe the
-- previous run's batch, in which this run's id does not occur: "load_run_id = <this run>"
-- is estimated at 1 row. For 1 row a nested loop looks cheapest, and hold_failed then
-- compared every batch row with every failing row: at 4,000 inserts/s per shop, 137,142
-- products x 4,095 failing ones, 22.8 s and 8.8 million buffers (16,644 with fresh
-- statistics; coursekit/bench/audit_bench.py), 90 task-seconds a run in the load test.
-- ANALYZE reads a sample (at most 30,000 rows): 0.1-0.4 s, even for 1.4 million orders.
analyze {stg_table};

-- name: reset_held
-- A repeated audit of the same run starts from the batch as written: held rows back in,
-- other runs' verdicts gone, this run's re-audited rows remembered as such. (One statement
-- per name: psycopg 3 binds parameters on the server, one command at a time.)
update {stg_table} set load_run_id = %(run_id)s where load_run_id = %(held)s;

-- name: reset_verdicts
delete from {verdict_table} where run_id <> %(run_id)s or not restaged;

-- name: reset_rules
update {verdict_table} set failed_rules = array[]::text[];

-- name: restage
-- Open quarantine rows come back into the batch for a second look, if every rule they broke
-- depends on more than the row itself (their customer may have arrived since). A bad value
-- is only fixed by the shop: its fix arrives as a newer version in a fresh batch. The batch
-- keeps its own version of a key: freshly extracted wins.
with restaged as (
    insert into {stg_table} ({columns}, src_id, extracted_dttm, load_run_id)
    select {record_columns}, q.src_id, q.extracted_dttm, %(run_id)s
    from {quarantine_table} as q
    cross join lateral jsonb_populate_record(null::{stg_table}, q.source_row) as r
    where q.status = 'open'
        and q.src_id = any(%(src_ids)s)
        and q.failed_rules <@ %(recheckable)s::text[]
        and not exists (select 1 from {stg_table} as b where b.{key} = q.{key} and b.src_id = q.src_id)
    returning {key}, src_id
)
insert into {verdict_table} ({key}, src_id, run_id, failed_rules, restaged)
select {key}, src_id, %(run_id)s, array[]::text[], true from restaged
on conflict ({key}, src_id) do nothing;

-- name: judge
-- Every rule is one CASE expression naming the rule when the row breaks it; the array
-- without its NULLs lists what a row breaks. Only failing rows are kept.
create temporary table audit_failed on commit drop as
select {key}, src_id, failed_rules
from (
    select b.{key}, b.src_id, array_remove(array[{rules}]::text[], null) as failed_rules
    from (select s.*{ranks} from {stg_table} as s where s.load_run_id = %(run_id)s) as b
) as judged
where cardinality(failed_rules) > 0;

-- name: record_verdicts
insert into {verdict_table} ({key}, src_id, run_id, failed_rules, restaged)
select {key}, src_id, %(run_id)s, failed_rules, false from audit_failed
on conflict ({key}, src_id) do update set failed_rules = excluded.failed_rules, run_id = excluded.run_id;

-- name: hold_failed
-- Failing rows stay in stg under another run id: the merge takes only `run_id`'s rows.
update {stg_table} as b
set load_run_id = %(held)s
from audit_failed as f
where b.{key} = f.{key} and b.src_id = f.src_id and b.load_run_id = %(run_id)s;

-- name: log_audit
-- Counts per shop; 'halted' when too much of the fresh batch fails.
insert into quarantine.audit_log as l (
    run_id, table_name, src_id, checked, re_audited, passed, quarantined, quarantined_share, outcome, audited_at
)
select %(run_id)s, %(table_name)s, s.src_id, c.checked, c.re_audited, c.checked - c.quarantined, c.quarantined,
    round(c.share, 4),
    case when c.fresh >= %(min_rows)s and c.share > %(max_share)s then 'halted' else 'audited' end,
    now()
from unnest(%(src_ids)s::text[]) as s (src_id)
cross join lateral (
    select count(*) as checked,
        count(*) filter (where v.restaged) as re_audited,
        count(*) filter (where cardinality(v.failed_rules) > 0) as quarantined,
        count(*) filter (where v.restaged is not true) as fresh,
        coalesce(
            count(*) filter (where cardinality(v.failed_rules) > 0 and v.restaged is not true)::numeric
            / nullif(count(*) filter (where v.restaged is not true), 0),
            0
        ) as share
    from {stg_table} as b
    left join {verdict_table} as v on v.{key} = b.{key} and v.src_id = b.src_id
    where b.src_id = s.src_id and b.load_run_id in (%(run_id)s, %(held)s)
) as c
on conflict (run_id, table_name, src_id) do update set
    checked = excluded.checked,
    re_audited = excluded.re_audited,
    passed = excluded.passed,
    quarantined = excluded.quarantined,
    released = 0,
    superseded = 0,
    quarantined_share = excluded.quarantined_share,
    outcome = excluded.outcome,
    audited_at = excluded.audited_at,
    published_at = null
returning src_id, checked, re_audited, passed, quarantined, quarantined_share, outcome;

-- name: audit_outcomes
select src_id, outcome from quarantine.audit_log where run_id = %(run_id)s and table_name = %(table_name)s;

-- name: quarantine_failed
-- Failing rows go to the side with their reasons. A key already held gets its newest row.
insert into {quarantine_table} as q (
    {key}, src_id, source_row, failed_rules, status, extracted_dttm,
    first_run_id, last_run_id, first_seen, last_seen
)
select b.{key}, b.src_id, to_jsonb(b) - 'src_id' - 'extracted_dttm' - 'load_run_id', v.failed_rules, 'open',
    b.extracted_dttm, %(run_id)s, %(run_id)s, now(), now()
from {stg_table} as b
join {verdict_table} as v on v.{key} = b.{key} and v.src_id = b.src_id
where b.load_run_id = %(held)s
on conflict ({key}, src_id) where status = 'open' do update set
    extracted_dttm = case
        when q.source_row is distinct from excluded.source_row then excluded.extracted_dttm
        else q.extracted_dttm
    end,
    source_row = excluded.source_row,
    failed_rules = excluded.failed_rules,
    last_run_id = excluded.last_run_id,
    last_seen = excluded.last_seen;

-- name: close_passed
-- A key that passed leaves quarantine: released if the very row it held passes now (its
-- customer arrived), superseded if the shop sent a newer version of it that passes.
update {quarantine_table} as q
set status = case
        when q.source_row = to_jsonb(b) - 'src_id' - 'extracted_dttm' - 'load_run_id' then 'released'
        else 'superseded'
    end,
    closed_run_id = %(run_id)s,
    closed_at = now()
from {stg_table} as b
where q.status = 'open'
    and q.{key} = b.{key}
    and q.src_id = b.src_id
    and b.load_run_id = %(run_id)s
returning q.src_id, q.status;

-- name: log_published
update quarantine.audit_log
set released = %(released)s, superseded = %(superseded)s, outcome = 'published', published_at = now()
where run_id = %(run_id)s and table_name = %(table_name)s and src_id = %(src_id)s;

-- Rules: each is a CASE over the batch row `b` that yields the rule's name when broken.
-- A NULL value breaks only not_null (the others read NULL as "not my business").

-- name: rule_not_null
case when b.{column} is null then {rule} end

-- name: rule_gt
case when not (b.{column} > {bound}) then {rule} end

-- name: rule_gte
case when not (b.{column} >= {bound}) then {rule} end

-- name: rule_lt
case when not (b.{column} < {bound}) then {rule} end

-- name: rule_lte
case when not (b.{column} <= {bound}) then {rule} end

-- name: rule_allowed
case when not (b.{column}::text = any({values})) then {rule} end

-- name: rule_not_in_future
-- Later than the shop's own clock when the batch was read (plus the second it was cut to).
case when b.{column} > b.extracted_dttm + interval '1 second' then {rule} end

-- name: rank_duplicates
-- 1 for the first row (lowest key) of each group of equal values within a shop's batch.
row_number() over (partition by s.src_id, {columns} order by s.{key}) as {rank}

-- name: rule_unique_in_batch
case when b.{rank} > 1 then {rule} end

-- name: rule_reference
-- The referenced row is published (any version), or published by this run's earlier tasks:
-- the DAG publishes dimensions before the facts that point at them.
case when b.{column} is not null and not exists (
    select 1 from {parent_table} as p where p.{parent_key} = b.{column} and p.src_id = b.src_id
) then {rule} end
