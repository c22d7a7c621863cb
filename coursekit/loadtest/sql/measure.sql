-- What a load test reads from the warehouse and the shops.
-- Names in {braces} are quoted identifiers; values are %(parameters)s.

-- name: rows_written
-- Rows inserted into dds so far, from the statistics counters: no table scan while the test runs.
select coalesce(sum(n_tup_ins), 0)::bigint from pg_stat_user_tables where schemaname = 'dds';

-- name: newest_row
-- The newest row of one shop that dds holds (served by the watermark index).
select max({increment}) from {dds_table} where src_id = %(src_id)s;

-- name: landed
-- Versions that landed in dds per time bucket.
select date_bin(%(bucket)s::interval, load_dttm, %(origin)s) as bucket, count(*)
from {dds_table}
where load_dttm >= %(since)s
group by 1;

-- name: first_versions
-- Each key's arrival: created_at -> the load_dttm of its first version, in seconds.
select min(load_dttm) as arrived, extract(epoch from min(load_dttm) - min({increment}))::float8 as latency
from {dds_table}
where {increment} >= %(start)s and {increment} < %(end)s
group by {key}, src_id

-- name: latency_by_arrival
-- Latency of the keys that arrived in each bucket (all tables together).
select date_bin(%(bucket)s::interval, arrived, %(origin)s) as bucket, count(*),
    percentile_cont(0.5) within group (order by latency),
    percentile_cont(0.95) within group (order by latency),
    max(latency)
from ({first_versions}) as arrivals
group by 1
order by 1;

-- name: latency_of_window
-- Latency of the keys created in one window (all tables together).
select count(*),
    percentile_cont(0.5) within group (order by latency),
    percentile_cont(0.95) within group (order by latency),
    max(latency)
from ({first_versions}) as arrivals;

-- name: landed_in_window
select count(*) from {dds_table} where load_dttm >= %(start)s and load_dttm < %(end)s;

-- name: source_rows
-- Rows a shop created in one window.
select count(*) from {source_table} where {increment} >= %(start)s and {increment} < %(end)s;

-- name: newest_source_row
select max({increment}) from {source_table};

-- name: backlog_rows
-- Rows of one shop newer than the newest row dds holds of it, and the oldest of them (the created_at index).
select count(*), min({increment}) from {source_table} where {increment} > coalesce(%(since)s, '-infinity'::timestamptz);
