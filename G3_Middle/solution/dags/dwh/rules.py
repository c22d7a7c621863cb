"""The warehouse contract's rules, asked as queries of any warehouse.

`contract.py` names the rules; `sql/contract.sql` holds one statement per rule
that returns the rows breaking it, so the same text runs here, in the course's
checker and, pasted, in pgAdmin. These functions take plain connections
(psycopg 3 or psycopg2) and never write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql

from dwh.contract import PLAIN_RULES, SCD2_RULES
from dwh.sqlfiles import compose, ident_list

if TYPE_CHECKING:
    from dwh.config import Table


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


def rule_statement(rule: str, table: Table) -> str:
    """The SQL text of one rule for `dds.<table>`, ready for any PostgreSQL driver or pgAdmin."""
    return compose("contract", rule, **_parts(table)).as_string()


def _parts(table: Table) -> dict[str, Any]:
    return {
        "dds_table": sql.Identifier("dds", table.name),
        "source_table": sql.Identifier(table.name),
        "key": sql.Identifier(table.key),
        "increment": sql.Identifier(table.increment_column),
        "columns": ident_list(list(table.columns)),
        "value_columns": ident_list(table.value_columns),
    }


def violations(dwh_conn, table: Table, limit: int = 20, *, own_transaction: bool = True) -> dict[str, list]:
    """Rule name -> offending rows (at most `limit` each); empty lists mean the rule holds.

    Works on psycopg 3 and psycopg2 connections alike (the statements are plain
    text). `own_transaction=False` leaves the caller's transaction open, so that a
    caller holding one repeatable-read snapshot (the checker) sees every rule on
    the same data.
    """
    rules = SCD2_RULES if table.scd2 else PLAIN_RULES
    found: dict[str, list] = {}
    with dwh_conn.cursor() as cur:
        for rule in rules:
            cur.execute(rule_statement(rule, table))
            found[rule] = cur.fetchmany(limit)
    if own_transaction:
        dwh_conn.rollback()
    return found


def compare_with_source(
    source_conn,
    dwh_conn,
    table: Table,
    src_id: str,
    stable_before: datetime,
    *,
    own_transaction: bool = True,
) -> Comparison:
    """Every stable source row must be the current row of its key in dds, value for value."""
    parts = _parts(table)
    key_at = list(table.columns).index(table.key)
    with source_conn.cursor() as cur:
        cur.execute(compose("contract", "source_rows", **parts).as_string(), {"stable_before": stable_before})
        source = {row[key_at]: row for row in cur.fetchall()}
    source_conn.rollback()
    with dwh_conn.cursor() as cur:
        statement = compose("contract", "current_rows_scd2" if table.scd2 else "current_rows_plain", **parts)
        cur.execute(statement.as_string(), {"src_id": src_id})
        current = {row[key_at]: tuple(row) for row in cur.fetchall()}
    if own_transaction:
        dwh_conn.rollback()
    result = Comparison(source_rows=len(source))
    for key, row in source.items():
        if key not in current:
            result.missing.append(key)
        elif current[key] != tuple(row):
            result.different.append(key)
            column, theirs, ours = next(
                (c, a, b) for c, a, b in zip(table.columns, row, current[key], strict=True) if a != b
            )
            result.details[key] = (column, theirs, ours)
    return result
