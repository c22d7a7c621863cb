"""The warehouse G4's audit meets at a shop rate, generated in SQL (`audit_bench.py` times the audit on it).

Every row is computed from its key, its shop and its version, so the batch in
stg, dds's history and the quarantine's open rows agree without storing any
data, and which keys are bad is known before the audit runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from coursekit.grade import Grade
from coursekit.reference import contract

G4 = Grade.named("G4_Senior")
SOLUTION = G4.path / "solution" / "dags"
if str(SOLUTION) not in sys.path:
    sys.path.append(str(SOLUTION))  # the `wap` package; `dwh` is G0's, of which G4's is a copy

from wap.config import load_config  # noqa: E402

CONFIG = load_config(SOLUTION / "pipeline.yaml")
ORDER = ("customers", "products", "orders")  # the DAG's: dimensions are published before facts
RUN_ID = "audit_bench_run"
PREVIOUS_RUN_ID = "audit_bench_previous_run"
T0 = "2026-06-01 12:00:00+00"  # when this run's batch was read
UPDATE_AFTER_SEC = 30  # a key is updated (if at all) this long after it was created
UPDATED_PERCENT = 60  # the course's shops update 60 % as many rows as they insert
BAD_PRICE_PERCENT = 3  # G4's generator config: products.price invalid_share 0.03
BAD_QUANTITY_PERCENT = 2  # orders.quantity invalid_share 0.02
BAD_STATUS_PERCENT = 1  # orders.status invalid_share 0.01


@dataclass(frozen=True)
class Sizes:
    rate: int
    history: int
    lookback: int
    interval: int

    def per_shop_rate(self, table: str) -> float:
        """Inserts/s of `table` in one shop, split like G4's generator config (as the load test does)."""
        tables = json.loads(G4.generator_config.read_text())["tables"]
        total = sum(t["insert_rows_per_tick"] for t in tables.values())
        return self.rate * tables[table]["insert_rows_per_tick"] / total

    def keys(self, table: str) -> int:
        return max(1, round(self.per_shop_rate(table) * self.history))


# -- the prepared warehouse -----------------------------------------------------------------------
# Every row is computed from its key (k), its shop's index (i) and its version (v):
# the batch, dds's versions and the quarantine's source rows agree without storing
# anything. A hash of the key in 0..99 decides which keys are updated or bad; `at`
# is the key's created_at. (mod(), not %: these strings carry psycopg parameters.)

HASH = "mod(abs(hashint8(k * 7 + i * 1000003 + {salt})), 100)"
BAD_PRODUCT = HASH.format(salt=11) + f" < {BAD_PRICE_PERCENT}"
BAD_PRODUCT_OF = BAD_PRODUCT.replace("hashint8(k ", "hashint8(product_id ")
STATUSES = "array['created', 'paid', 'shipped', 'delivered', 'cancelled']"

ROWS = {
    "customers": {
        "customer_id": "k",
        "first_name": "'F' || mod(k, 997)",
        "last_name": "'L' || mod(k, 991)",
        "email": "'c' || k || '.' || v || '@shop.test'",
        "phone": "case when mod(k, 10) = 0 then null else '+1 555 ' || k end",
        "address": "'Street ' || mod(k, 500) || ', flat ' || v",
        "birth_date": "date '1950-01-01' + mod(k, 15000)::int",
        "created_at": "at",
    },
    "products": {
        "product_id": "k",
        "name": "'P' || mod(k, 15)",
        "category": "'c' || mod(k, 5)",
        "price": f"case when {BAD_PRODUCT} then 0 else 1 + mod(k, 299) + v end",
        "currency": "(array['USD', 'EUR', 'TRY'])[1 + mod(k, 3)]",
        "description": "case when mod(k, 5) = 0 then null else 'about ' || k || ' v' || v end",
        "created_at": "at",
    },
    "orders": {
        "order_id": "k",
        # A customer and a product of the same shop that existed when the order was placed.
        "customer_id": "1 + mod(abs(hashint8(k * 3 + i)), greatest(1, floor("
        "extract(epoch from at - %(start)s) * %(rate_customers)s))::bigint)",
        "product_id": "1 + mod(abs(hashint8(k * 5 + i)), greatest(1, floor("
        "extract(epoch from at - %(start)s) * %(rate_products)s))::bigint)",
        "quantity": f"case when {HASH.format(salt=13)} < {BAD_QUANTITY_PERCENT} then 0 else 1 + mod(k, 12) end",
        "status": f"case when {HASH.format(salt=17)} < {BAD_STATUS_PERCENT} then 'unknown' "
        f"else ({STATUSES})[1 + mod(k + v, 5)] end",
        "comment": "case when mod(k, 2) = 0 then null else 'note ' || k || ' v' || v end",
        "created_at": "at",
    },
}

# Which rules a row breaks (named as wap/audit.py names them), from its source columns.
FAILED_RULES = {
    "customers": "array[]::text[]",
    "products": "array_remove(array[case when price <= 0 then 'price > 0' end], null)",
    "orders": "array_remove(array["
    "case when quantity <= 0 then 'quantity > 0' end, "
    f"case when not (status = any({STATUSES})) then 'status in allowed values' end, "
    f"case when {BAD_PRODUCT_OF} then 'product_id -> products' end], null)",
}

# Every key of every shop created by %(seen)s, one row per version the shop had made by
# then (`newest` marks the last), with the rules its values break.
VERSIONS = """
with keys as (
    select s.src_id, s.i::bigint as i, k,
        %(start)s::timestamptz + make_interval(secs => (k - 1) / %(rate)s) as at,
        {updated} < %(updated_percent)s as updated
    from unnest(%(src_ids)s::text[]) with ordinality as s (src_id, i)
    cross join generate_series(1::bigint, %(keys)s::bigint) as k
), versions as (
    select keys.*, versions.v,
        versions.v = case when updated and at + %(update_after)s <= %(seen)s then 2 else 1 end as newest,
        date_trunc('second', at + %(update_after)s) as updated_at
    from keys
    cross join lateral (
        select 1 union all select 2 where keys.updated and keys.at + %(update_after)s <= %(seen)s
    ) as versions (v)
    where at <= %(seen)s
), source_rows as (
    select {row_columns}, src_id, i, at, newest, v, updated_at from versions
), judged as (
    select source_rows.*, {failed_rules} as failed_rules from source_rows
)
"""

STG = """
insert into stg.{name} ({columns}, src_id, extracted_dttm, load_run_id)
select {columns}, src_id, %(seen)s, %(run_id)s from judged where newest and at >= %(window_start)s
"""
DDS = """
insert into dds.{name} ({columns}, src_id, eff_from_dttm, eff_to_dttm, load_run_id, load_dttm)
select {columns}, src_id,
    case when v = 1 then date_trunc('second', at) else updated_at end,
    case when newest then %(open_end)s::timestamptz else updated_at - interval '1 second' end,
    'prefill', %(seen)s
from judged
where cardinality(failed_rules) = 0
"""
QUARANTINE = """
insert into quarantine.{name} (
    {key}, src_id, source_row, failed_rules, status, extracted_dttm, first_run_id, last_run_id, first_seen, last_seen
)
select j.{key}, j.src_id, to_jsonb(r), j.failed_rules, 'open', %(seen)s, 'prefill', %(previous)s, j.at, %(seen)s
from judged as j
cross join lateral (select {row_of_j}) as r
where j.newest and cardinality(j.failed_rules) > 0
"""
VERDICTS = """
insert into audit.{name} ({key}, src_id, run_id, failed_rules, restaged)
select {key}, src_id, %(previous)s, failed_rules, false
from quarantine.{name}
where extracted_dttm >= %(window_start)s - %(interval)s
"""


def statement(name: str, body: str) -> str:
    """VERSIONS + `body` for table `name` (all names are the benchmark's own constants)."""
    row = ROWS[name]
    return VERSIONS.format(
        updated=HASH.format(salt=5),
        row_columns=", ".join(f"{expr} as {column}" for column, expr in row.items()),
        failed_rules=FAILED_RULES[name],
    ) + body.format(
        name=name,
        columns=", ".join(row),
        key=CONFIG.tables[name].key,
        row_of_j=", ".join(f"j.{column}" for column in row),
    )


def parameters(sizes: Sizes, name: str) -> dict:
    """The values `statement(name, ...)` and its bodies take, but `seen` (when the shop was read)."""
    t0 = datetime.fromisoformat(T0)
    return {
        "src_ids": [source.src_id for source in CONFIG.sources],
        "start": t0 - timedelta(seconds=sizes.history),
        "updated_percent": UPDATED_PERCENT,
        "update_after": timedelta(seconds=UPDATE_AFTER_SEC),
        "rate_customers": sizes.per_shop_rate("customers"),
        "rate_products": sizes.per_shop_rate("products"),
        "rate": sizes.per_shop_rate(name),
        "keys": sizes.keys(name),
        "open_end": contract.OPEN_END,
        "run_id": RUN_ID,
        "previous": PREVIOUS_RUN_ID,
        "window_start": t0 - timedelta(seconds=sizes.lookback),
        "interval": timedelta(seconds=sizes.interval),
    }


def fill(conn: psycopg.Connection, sizes: Sizes) -> dict[str, int]:
    """The state a run meets at `sizes.rate`: stg batch, dds history, quarantine, verdicts."""
    t0 = datetime.fromisoformat(T0)
    previous = t0 - timedelta(seconds=sizes.interval)
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for name in ORDER:
            table_params = parameters(sizes, name)
            # stg: this run's batch, read at t0: every key of the lookback window, newest version.
            cur.execute(statement(name, STG), {**table_params, "seen": t0})
            counts[f"stg_{name}_rows"] = cur.rowcount
            # dds and quarantine as the previous run left them: what the shop had then.
            cur.execute(statement(name, DDS), {**table_params, "seen": previous})
            counts[f"dds_{name}_rows"] = cur.rowcount
            cur.execute(statement(name, QUARANTINE), {**table_params, "seen": previous})
            counts[f"quarantine_{name}_open"] = cur.rowcount
            cur.execute(VERDICTS.format(name=name, key=CONFIG.tables[name].key), table_params)
    return counts


def expected_failures(conn: psycopg.Connection, sizes: Sizes) -> dict[str, int]:
    """Rows of each table's batch that break a rule (computed from the keys, not by the audit)."""
    body = "select count(*) from judged where newest and at >= %(window_start)s and cardinality(failed_rules) > 0"
    seen = datetime.fromisoformat(T0)
    return {
        name: conn.execute(statement(name, body), {**parameters(sizes, name), "seen": seen}).fetchone()[0]
        for name in ORDER
    }
