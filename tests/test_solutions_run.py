"""The grader's fixtures, run for real: an independent correct solution and its wrong variants.

`tests/solutions/independent/load_shops_to_dwh.py` is a second correct G3 solution
(G2 with `KEEP_HISTORY = False`), written without `coursekit`;
`tests/solutions/mutations.py` derives realistic wrong solutions from it. Here,
with real generators, real Airflow (dag.test) and embedded Postgres, the correct
one keeps every warehouse rule through live updates, retention deletes,
re-runs and hostile values, and every wrong one still parses and runs (only the
f-string one crashes, and only on a batch with a quote). That the grader tells
them apart is the grader's own tests' job.
"""

from __future__ import annotations

import time
from contextlib import closing
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg2 import sql
from solutions.mutations import INDEPENDENT, MUTATIONS, apply, g2_correct
from support import dds_snapshot, generator_env, run_generator, start_generator, stop_generator

from coursekit.grade import Grade

G3 = Grade.named("G3_Middle")
SHOPS = {"shop-1": "New-York", "shop-2": "Istanbul"}
DAG_ID = "load_shops_to_dwh"
OPEN_END = "9999-12-31 23:59:59+00"
# Ticks every second, updates up to 8 s back, retention after 24 s: a minute shows all three.
FAST = {"TICK_INTERVAL_SEC": 1, "UPDATE_NOT_OLDER_THAN_SEC": 8, "DELETE_OLDER_THAN_SEC": 24}
TABLES = {  # table -> (key, columns), as the solution declares them
    "customers": (
        "customer_id",
        ["customer_id", "first_name", "last_name", "email", "phone", "address", "birth_date", "created_at"],
    ),
    "products": (
        "product_id",
        ["product_id", "name", "category", "price", "currency", "description", "created_at"],
    ),
    "orders": (
        "order_id",
        ["order_id", "customer_id", "product_id", "quantity", "status", "comment", "created_at"],
    ),
}
HOSTILE = [
    "O'Brien",
    'say "hi"',
    "a;b; drop table customers; --",
    "line\nbreak\r\nwindows",
    "tab\there",
    "emoji 🍍🥭",
    "İstanbul ğüşıöç ĞÜŞİÖÇ",
    "back\\slash \\N",
    "",
]


def install(airflow, tmp_path: Path, source: str, name: str = "dags"):
    """A dags folder holding only `source` as load_shops_to_dwh.py, installed; returns its DagBag."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{DAG_ID}.py").write_text(source, encoding="utf-8")
    bag = airflow.install(folder)
    assert bag.import_errors == {}, bag.import_errors
    return bag


def tick(stack, tmp_path: Path, ticks: int, **overrides: object) -> None:
    """Both shops' real generators run `ticks` ticks (creating their tables on the first) and exit."""
    for shop in SHOPS:
        env = generator_env(G3, shop, stack[shop], **{**FAST, **overrides})
        run_generator(G3.generator_config, env, tmp_path / "logs" / shop, "--max-ticks", str(ticks))


def rows(db, query: sql.Composable, params: tuple = ()) -> list[tuple]:
    with closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def contract_breaks(dwh, history: bool = True) -> dict[str, list[tuple]]:
    """Rule -> offending keys in dds, every value comparison NULL-safe; {} when all rules hold."""
    broken: dict[str, list[tuple]] = {}
    for table, (key, columns) in TABLES.items():
        values = [c for c in columns if c != key]
        parts = {
            "t": sql.Identifier("dds", table),
            "key": sql.Identifier(key),
            "v_values": sql.SQL(", ").join(sql.Identifier("v", c) for c in values),
            "n_values": sql.SQL(", ").join(sql.Identifier("n", c) for c in values),
            "open": sql.Literal(OPEN_END),
        }
        checks = {"one row per key": "select {key}, src_id from {t} group by 1, 2 having count(*) <> 1"}
        if history:
            checks = {
                "one current version per key": "select {key}, src_id from {t} group by 1, 2"
                " having count(*) filter (where eff_to_dttm = {open}) <> 1",
                "eff_from <= eff_to": "select {key}, src_id from {t} where eff_from_dttm > eff_to_dttm",
                "whole seconds": "select {key}, src_id from {t} where eff_from_dttm <> date_trunc('second',"
                " eff_from_dttm) or eff_to_dttm <> date_trunc('second', eff_to_dttm)",
                "contiguous versions": "select {key}, src_id from (select {key}, src_id, eff_from_dttm,"
                " lag(eff_to_dttm) over (partition by {key}, src_id order by eff_from_dttm) as prev_to from {t}) w"
                " where prev_to is not null and eff_from_dttm <> prev_to + interval '1 second'",
                "no consecutive identical versions": "select v.{key}, v.src_id from {t} v join {t} n"
                " on n.{key} = v.{key} and n.src_id = v.src_id"
                " and n.eff_from_dttm = v.eff_to_dttm + interval '1 second'"
                " where ({v_values}) is not distinct from ({n_values})",
                "first version starts at created_at": "select {key}, src_id from {t} group by 1, 2"
                " having min(eff_from_dttm) <> date_trunc('second', min(created_at))",
            }
        for rule, query in checks.items():
            found = rows(dwh, sql.SQL(query).format(**parts))
            if found:
                broken[f"{table}: {rule}"] = found[:5]
    return broken


def source_mismatches(stack, history: bool = True) -> dict[str, list]:
    """Every row the shops hold now (generators stopped) must be the current dds row, value for value."""
    found: dict[str, list] = {}
    for table, (_, columns) in TABLES.items():
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        current = sql.SQL("and eff_to_dttm = {}").format(sql.Literal(OPEN_END)) if history else sql.SQL("")
        for shop, src_id in SHOPS.items():
            source = {
                r[0]: r for r in rows(stack[shop], sql.SQL("select {} from {}").format(names, sql.Identifier(table)))
            }
            dds = rows(
                stack["dwh"],
                sql.SQL("select {} from {} where src_id = %s {}").format(names, sql.Identifier("dds", table), current),
                (src_id,),
            )
            loaded = {r[0]: r for r in dds}
            assert source, f"{table}@{src_id}: the test generated nothing"
            bad = [k for k, r in source.items() if loaded.get(k) != r]
            if bad:
                found[f"{table}@{src_id}"] = [(k, source[k], loaded.get(k)) for k in bad[:3]]
    return found


@pytest.mark.slow
def test_the_independent_solution_keeps_every_rule_through_live_updates_deletes_and_reruns(
    airflow, g0_databases, tmp_path
):
    stack = g0_databases
    bag = install(airflow, tmp_path, INDEPENDENT.read_text(encoding="utf-8"))
    tick(stack, tmp_path, 1)  # the shops' tables exist before the first run
    generators = [
        start_generator(G3.generator_config, generator_env(G3, shop, stack[shop], **FAST), tmp_path / "logs" / shop)
        for shop in SHOPS
    ]
    try:
        for _ in range(4):  # runs interleaved with live ticks: inserts, updates of loaded rows, deletes
            assert airflow.run(bag, DAG_ID).state == "success"
            time.sleep(2)
    finally:
        for process in generators:
            stop_generator(process)
    last = airflow.run(bag, DAG_ID)
    assert last.state == "success"

    dwh = stack["dwh"]
    assert contract_breaks(dwh) == {}
    assert source_mismatches(stack) == {}
    for table, (key, _) in TABLES.items():
        updated = rows(
            dwh,
            sql.SQL("select count(*) from (select 1 from {} group by {}, src_id having count(*) > 1) v").format(
                sql.Identifier("dds", table), sql.Identifier(key)
            ),
        )
        assert updated[0][0] > 0, f"{table}: updates in the shops became new versions"
    (oldest_in_shop,) = rows(stack["shop-1"], sql.SQL("select min(order_id) from orders"))[0]
    assert oldest_in_shop > 1, "retention deleted the oldest source rows"
    kept = rows(
        dwh,
        sql.SQL("select count(*) from dds.orders where src_id = 'New-York' and order_id < %s and eff_to_dttm = %s"),
        (oldest_in_shop, OPEN_END),
    )
    assert kept[0][0] == oldest_in_shop - 1, "rows deleted by retention keep their (current) history in dds"

    before = dds_snapshot(dwh, list(TABLES))
    again = airflow.run(bag, DAG_ID, again=last)
    assert again.state == "success" and again.run_id == last.run_id
    assert dds_snapshot(dwh, list(TABLES)) == before, "re-running the last run changed dds"


def insert_hostile_rows(shop_db) -> None:
    """Per table: one row per hostile string in every text column, one row of NULLs in every nullable column."""
    texts = [(s, s[::-1]) for s in HOSTILE]
    with closing(shop_db.connect()) as conn, conn, conn.cursor() as cur:
        cur.executemany(
            "insert into customers (first_name, last_name, email, phone, address, birth_date, created_at)"
            " values (%s, %s, %s, %s, %s, %s, now() - interval '0.123456 second')",
            [(a, b, a, b, a, date(1900, 1, 1)) for a, b in texts]
            + [(None, None, None, None, None, None)]
            + [("Ayşe", None, None, None, None, date(2008, 2, 29))],
        )
        cur.executemany(
            "insert into products (name, category, price, currency, description, created_at)"
            " values (%s, %s, %s, %s, %s, now() - interval '1.999999 second')",
            [(a, b, Decimal("12345678.91"), "TRY", a) for a, b in texts]
            + [(None, None, None, None, None), ("x", "y", Decimal("0.10"), None, None)],
        )
        cur.executemany(
            "insert into orders (customer_id, product_id, quantity, status, comment, created_at)"
            " values (%s, %s, %s, %s, %s, now())",
            [(1, 1, 2**31 - 1, a, b) for a, b in texts] + [(None, None, None, None, None)],
        )


@pytest.mark.slow
def test_hostile_values_and_nulls_round_trip_exactly_without_churn(airflow, g0_databases, tmp_path):
    stack = g0_databases
    bag = install(airflow, tmp_path, INDEPENDENT.read_text(encoding="utf-8"))
    tick(stack, tmp_path, 1)
    for shop in SHOPS:
        insert_hostile_rows(stack[shop])
    assert airflow.run(bag, DAG_ID).state == "success"
    dwh = stack["dwh"]
    assert source_mismatches(stack) == {}, "every value, hostile or NULL, arrives exactly"
    stored = rows(
        dwh,
        sql.SQL("select first_name from dds.customers where src_id = 'Istanbul' and first_name = any(%s)"),
        (HOSTILE,),
    )
    assert sorted(name for (name,) in stored) == sorted(HOSTILE)
    types = dict(
        rows(
            dwh,
            sql.SQL(
                "select table_name || '.' || column_name, data_type from information_schema.columns"
                " where table_schema = 'dds' and column_name in ('price', 'birth_date', 'created_at')"
            ),
        )
    )
    assert types == {
        "customers.birth_date": "date",
        "customers.created_at": "timestamp with time zone",
        "products.price": "numeric",
        "products.created_at": "timestamp with time zone",
        "orders.created_at": "timestamp with time zone",
    }

    before = dds_snapshot(dwh, list(TABLES))
    assert airflow.run(bag, DAG_ID).state == "success"  # a new run re-reads every row, NULLs included
    assert dds_snapshot(dwh, list(TABLES)) == before, "an unchanged row (NULLs included) got a new version"

    shop1 = stack["shop-1"]
    shop1.query("update customers set phone = 'now set', first_name = null where first_name is null")
    shop1.query("update orders set comment = null, quantity = 1 where comment = %s", (HOSTILE[0][::-1],))
    assert airflow.run(bag, DAG_ID).state == "success"
    assert contract_breaks(dwh) == {}
    assert source_mismatches(stack) == {}
    changed = rows(
        dwh,
        sql.SQL(
            "select 'customers', count(*) from dds.customers where src_id = 'New-York' and phone = 'now set'"
            " union all select 'orders', count(*) from dds.orders where src_id = 'New-York'"
            " and quantity = 1 and comment is null and status = %s"
        ),
        (HOSTILE[0],),
    )
    assert changed == [("customers", 1), ("orders", 1)], "a change to or from NULL opened a new version"


@pytest.mark.slow
def test_with_keep_history_false_it_is_a_correct_g2_load(airflow, g0_databases, tmp_path):
    stack = g0_databases
    bag = install(airflow, tmp_path, g2_correct())
    tick(stack, tmp_path, 2)
    assert airflow.run(bag, DAG_ID).state == "success"
    tick(stack, tmp_path, 2)  # new rows, and updates of rows the first run loaded
    last = airflow.run(bag, DAG_ID)
    assert last.state == "success"
    dwh = stack["dwh"]
    assert contract_breaks(dwh, history=False) == {}
    assert source_mismatches(stack, history=False) == {}
    columns = rows(dwh, sql.SQL("select column_name from information_schema.columns where table_schema = 'dds'"))
    assert not {c for (c,) in columns} & {"eff_from_dttm", "eff_to_dttm"}, "G2 keeps no history"

    before = dds_snapshot(dwh, list(TABLES))
    assert airflow.run(bag, DAG_ID, again=last).state == "success"
    assert dds_snapshot(dwh, list(TABLES)) == before, "re-running the last run changed dds"


@pytest.fixture(scope="module")
def shared_shops(pg_servers, tmp_path_factory):
    """Two shop databases, a few generator ticks in each, shared by the wrong solutions' runs."""
    from conftest import Database

    shops = {shop: Database(pg_servers[f"pg-{shop}"], f"mutations_{shop.replace('-', '_')}") for shop in SHOPS}
    for db in shops.values():
        db.server.create_database(db.name)
    tick(shops, tmp_path_factory.mktemp("mutation-shops"), 2)
    yield shops
    for db in shops.values():
        db.server.drop_database(db.name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_wrong_solution_parses_and_runs(airflow, shared_shops, dwh_db, monkeypatch, tmp_path, name):
    """A wrong solution that crashes at parse time would prove nothing about the grader."""
    from support import airflow_conn

    for shop, conn_id in (("shop-1", "SHOP_1_CONN"), ("shop-2", "SHOP_2_CONN")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", airflow_conn(shared_shops[shop]))
    monkeypatch.setenv("AIRFLOW_CONN_DWH_CONN", airflow_conn(dwh_db))
    bag = install(airflow, tmp_path, apply(name))
    assert airflow.run(bag, DAG_ID).state == "success", f"{name} fails on the generators' data"
    history = not name.startswith("g2_")
    dds_columns = {
        c
        for (c,) in rows(
            dwh_db,
            sql.SQL(
                "select column_name from information_schema.columns"
                " where table_schema = 'dds' and table_name = 'orders'"
            ),
        )
    }
    assert ("eff_to_dttm" in dds_columns) == history
    loaded = dict(rows(dwh_db, sql.SQL("select src_id, count(*) from dds.orders group by 1")))
    assert set(loaded) == ({"New-York"} if name.endswith("one_shop_only") else {"New-York", "Istanbul"})
    if name == "float_and_timezone":
        shifted = rows(
            dwh_db, sql.SQL("select pg_typeof(price)::text, pg_typeof(created_at)::text from dds.products limit 1")
        )
        assert shifted == [("double precision", "timestamp without time zone")]
    if name == "crashes_on_some_batches":
        shop1 = shared_shops["shop-1"]
        shop1.query("insert into customers (first_name, created_at) values ('O''Brien', now())")
        try:
            assert airflow.run(bag, DAG_ID).state == "failed", "a quote in the data breaks the f-string SQL"
        finally:
            shop1.query("delete from customers where first_name = 'O''Brien'")
