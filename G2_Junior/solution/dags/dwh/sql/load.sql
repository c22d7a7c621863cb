-- Loading one source's batch into stg. The DELETE and the COPY run in one
-- transaction, so stg holds either the old batch or the new one, never half.

-- name: clear_source
delete from {stg_table} where src_id = %(src_id)s;

-- name: copy
copy {stg_table} ({columns}) from stdin with (format csv);
