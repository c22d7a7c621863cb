-- Self-test queries for pgAdmin4: open pg-dwh -> dwh -> Query Tool, paste, run one by one.
-- G2_Junior: one row per key and shop, no history. Written by `make sync-grades` from G0's self-test.

-- 1. How much is there? Rows per table and shop in dds.
select 'customers' as table_name, src_id, count(*) as row_count from dds.customers group by src_id
union all select 'products', src_id, count(*) from dds.products group by src_id
union all select 'orders', src_id, count(*) from dds.orders group by src_id
order by table_name, src_id;

-- 2. One key's row (put an id from the shop here): the values the shop has now.
select * from dds.customers where customer_id = 1 and src_id = 'New-York';

-- contract:start: queries from 3 (written by `make sync-grades` from dags/dwh/contract.py)

-- 3. Should return no rows: one row per key.
select "order_id", src_id, count(*) from "dds"."orders" group by "order_id", src_id having count(*) > 1;

-- contract:end

-- 4. Freshness: the newest row of each shop and how far behind it is.
select src_id, max(created_at) as newest_row, now() - max(created_at) as lag
from dds.orders
group by src_id;
