-- The warehouse contract as queries: each returns the rows that break a rule,
-- so an empty result means the rule holds. Used by the tests, the checker and the
-- self-test SQL; {open_end} is contract.OPEN_END.

-- name: current_version_count
-- Exactly one current version per key.
select {key}, src_id, count(*) filter (where eff_to_dttm = {open_end}) as current_versions
from {dds_table}
group by {key}, src_id
having count(*) filter (where eff_to_dttm = {open_end}) <> 1;

-- name: interval_order
-- Every interval starts no later than it ends.
select {key}, src_id, eff_from_dttm, eff_to_dttm
from {dds_table}
where eff_from_dttm > eff_to_dttm;

-- name: interval_gaps
-- Consecutive versions touch: the next starts no later than one second after the
-- previous ends (no gap: a moment in which the key has no version).
select {key}, src_id, eff_from_dttm, eff_to_dttm, next_from
from (
    select {key}, src_id, eff_from_dttm, eff_to_dttm,
           lead(eff_from_dttm) over (partition by {key}, src_id order by eff_from_dttm) as next_from
    from {dds_table}
) as versions
where next_from > eff_to_dttm + interval '1 second';

-- name: interval_overlaps
-- The next version starts no earlier than one second after the previous ends
-- (no overlap: a moment in which the key has two versions).
select {key}, src_id, eff_from_dttm, eff_to_dttm, next_from
from (
    select {key}, src_id, eff_from_dttm, eff_to_dttm,
           lead(eff_from_dttm) over (partition by {key}, src_id order by eff_from_dttm) as next_from
    from {dds_table}
) as versions
where next_from < eff_to_dttm + interval '1 second';

-- name: repeated_versions
-- Two consecutive versions never carry the same business values. NULL-safe twice
-- over: "has a previous version" is asked of eff_from_dttm (never NULL), because a
-- row value with any NULL field is not "is not null"; and composite values compare
-- with NULL fields as equal, so an unchanged NULL is no change.
select {key}, src_id, eff_from_dttm
from (
    select {key}, src_id, eff_from_dttm, ({value_columns}) as business_values,
           lag(({value_columns})) over (partition by {key}, src_id order by eff_from_dttm) as previous_values,
           lag(eff_from_dttm) over (partition by {key}, src_id order by eff_from_dttm) as previous_from
    from {dds_table}
) as versions
where previous_from is not null and business_values is not distinct from previous_values;

-- name: sub_second
-- Interval bounds are whole seconds (UTC).
select {key}, src_id, eff_from_dttm, eff_to_dttm
from {dds_table}
where eff_from_dttm <> date_trunc('second', eff_from_dttm)
   or eff_to_dttm <> date_trunc('second', eff_to_dttm);

-- name: first_version_start
-- A key's first version starts when the shop created the row.
select {key}, src_id, eff_from_dttm, {increment}
from (
    select distinct on ({key}, src_id) {key}, src_id, eff_from_dttm, {increment}
    from {dds_table}
    order by {key}, src_id, eff_from_dttm
) as first_versions
where eff_from_dttm <> date_trunc('second', {increment});

-- name: duplicate_keys
-- Tables without history: one row per key.
select {key}, src_id, count(*) from {dds_table} group by {key}, src_id having count(*) > 1;

-- name: current_rows_scd2
-- The values the warehouse holds now for one shop: its current versions.
select {columns} from {dds_table} where src_id = %(src_id)s and eff_to_dttm = {open_end} order by {key};

-- name: current_rows_plain
-- The values the warehouse holds now for one shop (no history: every row).
select {columns} from {dds_table} where src_id = %(src_id)s order by {key};

-- name: source_rows
-- Source rows the shop can no longer change: created before %(stable_before)s.
select {columns} from {source_table} where {increment} < %(stable_before)s order by {key};
