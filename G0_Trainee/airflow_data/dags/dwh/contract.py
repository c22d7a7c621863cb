"""The warehouse contract: what every load into `dds` must keep true, defined once.

The reference pipeline builds its tables and merges with these names and this
open end; the course's checker and tests ask the same rule queries
(`sql/contract.sql`) of any warehouse, a learner's included; the self-test SQL
in `scripts/` is written from them. Change a rule here and all of them follow.

SCD2 in this warehouse: each version of a key is one row, valid over the closed
interval [eff_from_dttm, eff_to_dttm] in whole seconds. The current version ends
at OPEN_END; the next version starts one second after the previous one ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dwh.config import Table

OPEN_END = "9999-12-31 23:59:59+00"  # eff_to_dttm of a key's current version
# Columns stg adds after the source's columns: which shop, when it was read, by which run.
STG_COLUMNS = ("src_id", "extracted_dttm", "load_run_id")
# Columns dds adds: the shop, the version's validity (SCD2 tables only), the run that wrote it.
SCD2_COLUMNS = ("eff_from_dttm", "eff_to_dttm")
DDS_COLUMNS = ("src_id", *SCD2_COLUMNS, "load_run_id", "load_dttm")
RESERVED = frozenset(STG_COLUMNS + DDS_COLUMNS)  # a source column may not take these names

# Rule name (a statement of sql/contract.sql returning the rows that break it) -> what it says.
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


def rule_statement(rule: str, name: str, table: Table) -> str:
    """The SQL text of one rule for `dds.<name>`, ready for any PostgreSQL driver or pgAdmin."""
    from dwh.sqlfiles import compose

    return compose("contract", rule, **_parts(name, table)).as_string()


def _parts(name: str, table: Table) -> dict[str, Any]:
    from psycopg import sql

    from dwh.sqlfiles import compose, ident_list

    return {
        "dds_table": sql.Identifier("dds", name),
        "source_table": sql.Identifier(name),
        "key": sql.Identifier(table.key),
        "increment": sql.Identifier(table.increment_column),
        "columns": ident_list(list(table.columns)),
        "value_columns": ident_list(table.value_columns),
        "current_filter": compose("contract", "current_filter") if table.scd2 else sql.SQL(""),
    }


def violations(dwh_conn, name: str, table: Table, limit: int = 20, *, own_transaction: bool = True) -> dict[str, list]:
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
            cur.execute(rule_statement(rule, name, table))
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
    from dwh.sqlfiles import compose

    parts = _parts(name, table)
    key_at = list(table.columns).index(table.key)
    with source_conn.cursor() as cur:
        cur.execute(compose("contract", "source_rows", **parts).as_string(), {"stable_before": stable_before})
        source = {row[key_at]: row for row in cur.fetchall()}
    source_conn.rollback()
    with dwh_conn.cursor() as cur:
        cur.execute(compose("contract", "current_rows", **parts).as_string(), {"src_id": src_id})
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
