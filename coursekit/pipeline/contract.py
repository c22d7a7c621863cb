"""The warehouse contract, checkable against a live warehouse.

Each rule is a query in `sql/contract.sql` returning the rows that break it.
The tests assert the contract after real DAG runs; the grade checkers run the
same queries against a learner's warehouse, so both speak of the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2 import sql

from coursekit.pipeline.config import Table
from coursekit.pipeline.sqlfiles import compose, ident_list

SCD2_RULES = {
    "current_version_count": "exactly one current version per key",
    "interval_order": "eff_from_dttm <= eff_to_dttm",
    "interval_gaps": "no gap between consecutive versions",
    "interval_overlaps": "no overlap between consecutive versions",
    "repeated_versions": "no two consecutive versions with identical values",
    "sub_second": "interval bounds are whole seconds",
    "first_version_start": "a key's first version starts at its created_at",
}
PLAIN_RULES = {"duplicate_keys": "one row per key"}


@dataclass
class Comparison:
    """Stable source rows vs the warehouse's current rows of one table and shop."""

    source_rows: int = 0
    missing: list[Any] = field(default_factory=list)  # keys in the source, not in dds
    different: list[Any] = field(default_factory=list)  # keys whose current values differ
    # key -> (first differing column, the source's value, the warehouse's value)
    details: dict[Any, tuple[str, Any, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.different


def _parts(name: str, table: Table) -> dict[str, sql.Composable]:
    return {
        "dds_table": sql.Identifier("dds", name),
        "source_table": sql.Identifier(name),
        "key": sql.Identifier(table.key),
        "increment": sql.Identifier(table.increment_column),
        "columns": ident_list(list(table.columns)),
        "value_columns": ident_list(table.value_columns),
        "current_filter": sql.SQL("and eff_to_dttm = '9999-12-31 23:59:59+00'" if table.scd2 else ""),
    }


def violations(
    dwh_conn, name: str, table: Table, limit: int = 20, *, own_transaction: bool = True
) -> dict[str, list[tuple]]:
    """Rule name -> offending rows (at most `limit` each); empty lists mean the rule holds.

    `own_transaction=False` leaves the caller's transaction open, so that a caller
    holding one repeatable-read snapshot (the checker) sees every rule on the same data.
    """
    rules = SCD2_RULES if table.scd2 else PLAIN_RULES
    found: dict[str, list[tuple]] = {}
    with dwh_conn.cursor() as cur:
        for rule in rules:
            cur.execute(compose("contract", rule, **_parts(name, table)))
            found[rule] = cur.fetchmany(limit)
    if own_transaction:
        dwh_conn.rollback()
    return found


def compare_with_source(
    source_conn,
    dwh_conn,
    name: str,
    table: Table,
    src_id: str,
    stable_before: datetime,
    *,
    own_transaction: bool = True,
) -> Comparison:
    """Every stable source row must be the current row of its key in dds, value for value."""
    parts = _parts(name, table)
    key_at = list(table.columns).index(table.key)
    with source_conn.cursor() as cur:
        cur.execute(compose("contract", "source_rows", **parts), {"stable_before": stable_before})
        source = {row[key_at]: row for row in cur.fetchall()}
    source_conn.rollback()
    with dwh_conn.cursor() as cur:
        cur.execute(compose("contract", "current_rows", **parts), {"src_id": src_id})
        current = {row[key_at]: row for row in cur.fetchall()}
    if own_transaction:
        dwh_conn.rollback()
    result = Comparison(source_rows=len(source))
    for key, row in source.items():
        if key not in current:
            result.missing.append(key)
        elif current[key] != row:
            result.different.append(key)
            column, theirs, ours = next(
                (c, a, b) for c, a, b in zip(table.columns, row, current[key], strict=True) if a != b
            )
            result.details[key] = (column, theirs, ours)
    return result
