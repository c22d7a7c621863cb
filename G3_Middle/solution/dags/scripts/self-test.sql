-- Self-test queries for pgAdmin4: open pg-dwh -> dwh -> Query Tool, paste, run one by one.

-- 1. How much is there? Rows per table and shop in the current batch (stg) and history (dds).
select 'stg' as layer, 'customers' as table_name, src_id, count(*) as row_count from stg.customers group by src_id
union all select 'stg', 'products', src_id, count(*) from stg.products group by src_id
union all select 'stg', 'orders', src_id, count(*) from stg.orders group by src_id
union all select 'dds', 'customers', src_id, count(*) from dds.customers group by src_id
union all select 'dds', 'products', src_id, count(*) from dds.products group by src_id
union all select 'dds', 'orders', src_id, count(*) from dds.orders group by src_id
order by layer, table_name, src_id;

-- 2. Keys with history: customers that changed at least once, most versions first.
select customer_id, src_id, count(*) as versions
from dds.customers
group by customer_id, src_id
having count(*) > 1
order by versions desc, customer_id
limit 20;

-- 3. The full history of one key (put an id from query 2 here).
select customer_id, src_id, first_name, last_name, email, phone,
       eff_from_dttm, eff_to_dttm, load_run_id
from dds.customers
where customer_id = 1 and src_id = 'New-York'
order by eff_from_dttm;

-- contract:start: queries from 4 (written by `make sync-grades` from dags/dwh/contract.py)

-- 4. Should return no rows: exactly one current version per key.
select "order_id", src_id, count(*) filter (where eff_to_dttm = '9999-12-31 23:59:59+00') as current_versions
from "dds"."orders"
group by "order_id", src_id
having count(*) filter (where eff_to_dttm = '9999-12-31 23:59:59+00') <> 1;

-- 5. Should return no rows: no gap between consecutive versions.
select "order_id", src_id, eff_from_dttm, eff_to_dttm, next_from
from (
    select "order_id", src_id, eff_from_dttm, eff_to_dttm,
           lead(eff_from_dttm) over (partition by "order_id", src_id order by eff_from_dttm) as next_from
    from "dds"."orders"
) as versions
where next_from > eff_to_dttm + interval '1 second';

-- 6. Should return no rows: no overlap between consecutive versions.
select "order_id", src_id, eff_from_dttm, eff_to_dttm, next_from
from (
    select "order_id", src_id, eff_from_dttm, eff_to_dttm,
           lead(eff_from_dttm) over (partition by "order_id", src_id order by eff_from_dttm) as next_from
    from "dds"."orders"
) as versions
where next_from < eff_to_dttm + interval '1 second';

-- 7. Should return no rows: no two consecutive versions with identical values.
select "order_id", src_id, eff_from_dttm
from (
    select "order_id", src_id, eff_from_dttm, ("customer_id", "product_id", "quantity", "status", "comment", "created_at") as business_values,
           lag(("customer_id", "product_id", "quantity", "status", "comment", "created_at")) over (partition by "order_id", src_id order by eff_from_dttm) as previous_values,
           lag(eff_from_dttm) over (partition by "order_id", src_id order by eff_from_dttm) as previous_from
    from "dds"."orders"
) as versions
where previous_from is not null and business_values is not distinct from previous_values;

-- contract:end

-- 8. Freshness: the newest row of each shop and how far behind it is.
select src_id, max(created_at) as newest_row, now() - max(created_at) as lag
from dds.orders
group by src_id;
