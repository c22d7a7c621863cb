"""Merge: this run's stg batch into dds, set-based, in one transaction per table.

Every batch row is classified against the key's current dds row as new,
changed or unchanged (one index lookup per row, NULL-safe comparison). SCD2
tables close the changed versions and insert new ones; tables without history
overwrite in place. Unchanged keys are not touched, so merging the same batch
twice changes nothing, and a merge killed half-way rolls back whole.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from psycopg import sql

from dwh.config import Table
from dwh.sqlfiles import compose, ident_list

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
CHANGES = ("new", "changed", "unchanged")


def merge_parts(table: Table) -> dict[str, sql.Composable]:
    """The identifiers the merge statements are composed from."""
    values = table.value_columns
    return {
        "stg_table": sql.Identifier("stg", table.name),
        "dds_table": sql.Identifier("dds", table.name),
        "key": sql.Identifier(table.key),
        "increment": sql.Identifier(table.increment_column),
        "columns": ident_list(list(table.columns)),
        "batch_columns": ident_list(list(table.columns), "b"),
        "batch_values": ident_list(values, "b"),
        "current_values": ident_list(values, "c"),
        "value_columns": ident_list(values),
        "merge_values": ident_list(values, "m"),
    }


def merge_into_dds(
    dwh_conn: psycopg.Connection, table: Table, run_id: str, timings: dict[str, float] | None = None
) -> dict[str, int]:
    """Merge stg.<table> rows of `run_id` into dds.<table>; returns counts per change kind.

    `timings`, if given, receives the seconds each statement took, and the commit:
    where a merge's time goes (`make bench` prints it).
    """
    parts = merge_parts(table)
    if table.scd2:
        steps = ["classify_scd2", "close_changed", "insert_versions"]
    else:
        steps = ["classify_plain", "update_changed", "insert_new"]
    params = {"run_id": run_id}
    seconds = {} if timings is None else timings
    with dwh_conn.transaction(), dwh_conn.cursor() as cur:
        for step in [*steps, "summary"]:
            started = time.perf_counter()
            statement = compose("merge", step, **parts)
            log.debug("SQL %s: %s", step, statement.as_string(cur))
            cur.execute(statement, params)
            seconds[step] = time.perf_counter() - started
        counts = {change: 0 for change in CHANGES} | dict(cur.fetchall())
        started = time.perf_counter()
    seconds["commit"] = time.perf_counter() - started
    closed = counts["changed"] if table.scd2 else 0
    log.info(
        "merged stg.%s into dds.%s: %s inserted, %s changed (%s versions closed), %s unchanged",
        table.name,
        table.name,
        counts["new"],
        counts["changed"],
        closed,
        counts["unchanged"],
    )
    return counts
