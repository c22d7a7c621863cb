"""What the paused shops hold, and the updates the scenario makes in them as a shop would."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

from psycopg2 import sql

from coursekit.checker.checks import Observed
from coursekit.checker.fast.run import FastRun
from coursekit.checker.stack import GradeStack, SourceTable
from coursekit.generator.db import identity_high_water
from coursekit.grade import SHOP_DATABASE


def shops_now(fast: FastRun) -> datetime:
    """pg-shop-1's clock (the shops are paused: every row created before it is in the shops)."""
    with closing(fast.servers.connect("pg-shop-1")) as conn, conn.cursor() as cur:
        cur.execute("select now()")
        return cur.fetchone()[0]


def observe(fast: FastRun, stack: GradeStack, before: datetime) -> Observed:
    """Every source row created before `before`, as the shops hold it now (the shops are paused)."""
    loaded: dict[str, dict[str, dict[Any, dict[str, Any]]]] = {}
    for table in stack.tables:
        loaded[table.name] = {}
        for shop in stack.shops:
            with closing(fast.servers.connect(SHOP_DATABASE[shop.name])) as conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL("select * from {} where created_at < %s").format(sql.Identifier(table.name)), (before,)
                )
                columns = [d.name for d in cur.description]
                key_at = columns.index(table.key)
                loaded[table.name][shop.src_id] = {row[key_at]: dict(zip(columns, row, strict=True)) for row in cur}
    return Observed(loaded)


def touch_rows(
    fast: FastRun, stack: GradeStack, observed: Observed, paused_at: datetime, value: str = "changed ✓ it's new"
) -> int:
    """Update loaded rows as a shop would: one value changes, another becomes NULL (or stops being NULL).

    Only rows the shops could still update when they paused are touched (created
    within the update window, less 5 s, before `paused_at`), so the change is
    one the learner's lookback must catch. The shops stay paused until the run
    that loads these changes has run, so no later tick can delete those rows
    first; measuring from the pause, not from now, keeps this true however long
    the paused run of a dozen DAG folders side by side takes. The random updates
    of the generators happen too; these make sure at least a few loaded keys
    change. The run that loads them is the one killed in its merge: it has
    versions to close, so a merge that commits its statements one by one leaves
    keys without (or with two) current versions, which `kill.half_written` sees.
    Returns how many rows were touched.
    """
    touched = 0
    config = json.loads(fast.servers.config_path.read_text(encoding="utf-8"))
    for table in stack.tables:
        column = _nullable_text(config["tables"][table.name]["columns"])
        if column is None or not table.updates:  # G2's shops never update a row: neither do we
            continue
        for shop in stack.shops:
            with closing(fast.servers.connect(SHOP_DATABASE[shop.name])) as conn, conn, conn.cursor() as cur:
                since = paused_at - timedelta(seconds=fast.settings.update_window - 5)
                keys = _keys_since(cur, table, list(observed.loaded[table.name][shop.src_id]), since)
                observed.touched.setdefault(table.name, []).extend((shop.src_id, key) for key in keys)
                touched += len(keys)
                for key, new in zip(keys, [value, None], strict=False):
                    cur.execute(
                        sql.SQL(
                            "update {t} set {c} = case when {c} is null then 'was NULL' else %s end where {key} = %s"
                        ).format(t=sql.Identifier(table.name), c=sql.Identifier(column), key=sql.Identifier(table.key)),
                        (new, key),
                    )
    return touched


def add_late_parent_rows(shop_conn: Any, config: dict, count: int) -> int:
    """Rows in a paused shop that reference the next `count` parents it will create, as its late rows do.

    The shops are paused, so the next run loads these rows before their parents exist and a
    Write-Audit-Publish load holds them. The generator creates the parents in its first tick after
    the restart, and a later run that re-audits the quarantine can release the rows: a chance
    the random late rows of the ticks give only now and then. Each row copies a valid row of the
    shop (no NULL, no deliberately invalid value, its other parents present) with created_at now.
    `config` is the shop's generator config; returns how many rows were added (and committed).
    """
    added = 0
    with shop_conn, shop_conn.cursor() as cur:
        for table, spec in config["tables"].items():
            columns: dict[str, dict] = spec["columns"]
            late = next((c for c, entry in columns.items() if entry.get("late_share")), None)
            if late is None:
                continue
            parent = columns[late]["references"]
            next_id = identity_high_water(cur, parent, config["tables"][parent]["id_column"]) + 1
            valid, params = [], []
            for column, entry in columns.items():
                valid.append(sql.SQL("{} is not null").format(sql.Identifier(column)))
                if entry.get("invalid_values"):
                    valid.append(sql.SQL("not {} = any(%s)").format(sql.Identifier(column)))
                    params.append(entry["invalid_values"])
                if entry.get("references") and column != late:
                    other = entry["references"]
                    valid.append(
                        sql.SQL("{} in (select {} from {})").format(
                            sql.Identifier(column),
                            sql.Identifier(config["tables"][other]["id_column"]),
                            sql.Identifier(other),
                        )
                    )
            copied = [c for c in columns if c != late]
            cur.execute(
                sql.SQL(
                    "insert into {t} ({copied}, {late}, created_at)"
                    " select {copied}, %s + n, now() from (select * from {t} where {valid} limit 1) one,"
                    " generate_series(0, %s - 1) n"
                ).format(
                    t=sql.Identifier(table),
                    copied=sql.SQL(", ").join(map(sql.Identifier, copied)),
                    late=sql.Identifier(late),
                    valid=sql.SQL(" and ").join(valid),
                ),
                (next_id, *params, count),  # in the order of the placeholders
            )
            added += cur.rowcount
    return added


def _nullable_text(columns: dict[str, dict]) -> str | None:
    """A text column the shops leave empty at times (and that holds no deliberately invalid values)."""
    return next(
        (
            c
            for c, e in columns.items()
            if e["type"] == "text" and e.get("null_share", 0) > 0 and not e.get("invalid_values")
        ),
        None,
    )


def _keys_since(cur: Any, table: SourceTable, keys: list, since: datetime) -> list:
    """The two newest of `keys` created after `since`."""
    cur.execute(
        sql.SQL("select {key} from {t} where {key} = any(%s) and created_at > %s order by {key} desc limit 2").format(
            key=sql.Identifier(table.key), t=sql.Identifier(table.name)
        ),
        (keys, since),
    )
    return [row[0] for row in cur.fetchall()]
