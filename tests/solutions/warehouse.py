"""What the solutions' tests ask of a warehouse: the contract's rules and the shops' rows, as plain SQL.

Written without the reference's code (as tests/solutions/independent is), so
a mistake in the reference cannot hide the same mistake in a solution.
"""

from __future__ import annotations

from contextlib import closing

from psycopg2 import sql

from dwh.contract import OPEN_END

SHOPS = {"shop-1": "New-York", "shop-2": "Istanbul"}
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


def rows(db, query: sql.Composable, params: tuple = ()) -> list[tuple]:
    """One statement, committed; its rows."""
    with closing(db.connect()) as conn, conn, conn.cursor() as cur:
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
