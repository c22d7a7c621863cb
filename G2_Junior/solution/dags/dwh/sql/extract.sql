-- Reading a batch from a source. Names in {braces} are quoted identifiers;
-- values are %(parameters)s sent separately by the driver.

-- name: watermark_scd2
-- The newest row of this source the warehouse already holds. SCD2 tables ask
-- their current versions only, which an index holds apart.
select max({increment}) from {dds_table} where src_id = %(src_id)s and eff_to_dttm = {open_end};

-- name: watermark_plain
-- The same for tables without history: every row is current.
select max({increment}) from {dds_table} where src_id = %(src_id)s;

-- name: source_clock
-- "Now" on the source, to the second, in the same snapshot as the batch below:
-- a change found in this batch is dated with it.
select date_trunc('second', transaction_timestamp());

-- name: batch
-- Everything created after the watermark minus the lookback window: new rows,
-- plus recent rows the shop may have updated since the last run.
select {columns}
from {source_table}
where {increment} > coalesce(%(watermark)s::timestamptz - make_interval(secs => %(lookback_sec)s), '-infinity')
order by {key};
