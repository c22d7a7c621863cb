"""Write-Audit-Publish: audit the staged batch, publish what passes, hold the rest.

The G0 pipeline publishes every extracted row. A senior pipeline does not let a
bad row reach the warehouse's readers: after `load_stg` (write) the batch is
audited against the rules of the table's `audit:` config, and then published in
ONE transaction: failing rows go to `quarantine.<table>` with their reasons,
passing rows are merged into dds by the same `merge_into_dds` as G0 (`dwh/merge.py`), so there is
one merge, not two. A crash anywhere in that transaction leaves both untouched.

How the merge is told to skip failing rows without a second merge: the audit
moves them to another run id in stg (`<run_id>#quarantine`), and the merge only
reads `run_id`'s rows. Each audit also takes open quarantine rows back into the
batch, so an order held because its customer had not arrived yet is published
by the first run that finds the customer (status `released`).

A shop whose fresh batch fails more than `max_quarantine_share` halts the table:
nothing of it is published, the log says why, and the task fails loudly. Many
bad rows at once mean a broken source, not a few typos.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import sql

from dwh.merge import merge_into_dds
from dwh.sqlfiles import compose as compose_statement
from dwh.sqlfiles import ident_list
from wap.config import AuditedTable, WapConfig

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
AUDIT_SQL = Path(__file__).with_name("sql") / "audit.sql"


def compose(file: str, name: str, **parts: sql.Composable) -> sql.Composed:
    """Statement `name` of wap/sql/audit.sql (`file` "audit") or of G0's dwh/sql/<file>.sql."""
    return compose_statement(AUDIT_SQL if file == "audit" else file, name, **parts)


class AuditThresholdExceeded(RuntimeError):
    """Too much of a batch failed the audit: the table was not published."""


@dataclass(frozen=True)
class SourceAudit:
    """One shop's share of an audit, as written to quarantine.audit_log."""

    src_id: str
    checked: int
    re_audited: int
    passed: int
    quarantined: int
    share: Decimal
    outcome: str


# The audit's statements in order (sql/audit.sql); the last one returns the summary per shop.
AUDIT_STEPS = (
    "analyze_batch",
    "reset_held",
    "reset_verdicts",
    "reset_rules",
    "restage",
    "judge",
    "record_verdicts",
    "hold_failed",
    "log_audit",
)


def held_run_id(run_id: str) -> str:
    """The run id failing rows wear in stg while they wait to be quarantined."""
    return f"{run_id}#quarantine"


def _parts(table: AuditedTable) -> dict[str, sql.Composable]:
    name = table.name
    return {
        "stg_table": sql.Identifier("stg", name),
        "verdict_table": sql.Identifier("audit", name),
        "quarantine_table": sql.Identifier("quarantine", name),
        "open_index": sql.Identifier(f"{name}_open_uq"),
        "key": sql.Identifier(table.key),
        # Types come from the config's whitelist (like warehouse.column_defs), never from a user string.
        "key_type": sql.SQL(table.columns[table.key]),
        "columns": ident_list(list(table.columns)),
        "record_columns": ident_list(list(table.columns), "r"),
    }


def ensure_audit_tables(conn: psycopg.Connection, config: WapConfig) -> None:
    """Schemas audit and quarantine, the audit log, and per table its verdict and quarantine tables."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(compose("audit", "create_schemas"))
        for table in config.tables.values():
            parts = _parts(table)
            cur.execute(compose("audit", "create_verdicts", **parts))
            cur.execute(compose("audit", "create_quarantine", **parts))


@dataclass
class Rules:
    """A table's rules as SQL: CASE expressions, window columns for duplicates, and their parameters."""

    expressions: list[sql.Composable]
    ranks: list[sql.Composable]
    params: dict[str, Any]
    recheckable: list[str]  # rule names whose outcome can change without the row changing


def rule_expressions(config: WapConfig, table: AuditedTable) -> Rules:
    """Compose the table's `audit:` rules from the named snippets of sql/audit.sql."""
    audit = table.audit
    rules: list[sql.Composable] = []
    ranks: list[sql.Composable] = []
    params: dict[str, Any] = {}
    recheckable: list[str] = []

    def add(statement: str, rule_name: str, **parts: sql.Composable) -> None:
        placeholder = f"rule_{len(rules)}"
        params[placeholder] = rule_name
        rules.append(compose("audit", statement, rule=sql.Placeholder(placeholder), **parts))
        if statement in ("rule_reference", "rule_not_in_future"):
            recheckable.append(rule_name)

    for column in audit.not_null:
        add("rule_not_null", f"{column} is not null", column=sql.Identifier(column))
    symbols = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    for column, bounds in audit.ranges.items():
        for op, bound in bounds.bounds().items():
            placeholder = f"bound_{len(params)}"
            params[placeholder] = bound
            add(
                f"rule_{op}",
                f"{column} {symbols[op]} {bound}",
                column=sql.Identifier(column),
                bound=sql.Placeholder(placeholder),
            )
    for column, allowed in audit.allowed.items():
        placeholder = f"allowed_{len(params)}"
        params[placeholder] = list(allowed)
        add(
            "rule_allowed",
            f"{column} in allowed values",
            column=sql.Identifier(column),
            values=sql.Placeholder(placeholder),
        )
    for column in audit.not_in_future:
        add("rule_not_in_future", f"{column} not in the future", column=sql.Identifier(column))
    for number, group in enumerate(audit.unique_in_batch):
        rank = sql.Identifier(f"duplicate_rank_{number}")
        ranks.append(
            compose(
                "audit", "rank_duplicates", columns=ident_list(group, "s"), key=sql.Identifier(table.key), rank=rank
            )
        )
        add("rule_unique_in_batch", f"unique in batch ({', '.join(group)})", rank=rank)
    for column, parent in audit.references.items():
        add(
            "rule_reference",
            f"{column} -> {parent}",
            column=sql.Identifier(column),
            parent_table=sql.Identifier("dds", parent),
            parent_key=sql.Identifier(config.tables[parent].key),
        )
    return Rules(rules, ranks, params, recheckable)


def audit_batch(
    dwh_conn: psycopg.Connection,
    config: WapConfig,
    table_name: str,
    run_id: str,
    timings: dict[str, float] | None = None,
) -> list[SourceAudit]:
    """Audit stg.<table_name>'s batch of `run_id` (plus open quarantine rows); hold failing rows.

    Commits the verdicts and the audit log, then raises AuditThresholdExceeded if
    a shop's batch failed too much, so `publish` never runs for it. `timings`, if
    given, receives the seconds each statement took (coursekit/bench/audit_bench.py).
    """
    table = config.tables[table_name]
    parts = _parts(table)
    rules = rule_expressions(config, table)
    audit = table.audit
    src_ids = [source.src_id for source in config.sources]
    params = {
        "run_id": run_id,
        "held": held_run_id(run_id),
        "src_ids": src_ids,
        "table_name": table.name,
        "max_share": audit.max_quarantine_share,
        "min_rows": audit.min_rows_for_share,
        "recheckable": rules.recheckable,
        **rules.params,
    }
    judge_parts = {
        **parts,
        "rules": sql.SQL(",\n        ").join(rules.expressions),
        "ranks": sql.SQL("").join(sql.SQL(", ") + rank for rank in rules.ranks),
    }
    seconds = {} if timings is None else timings
    with dwh_conn.transaction(), dwh_conn.cursor() as cur:
        for step in AUDIT_STEPS:
            started = time.perf_counter()
            statement = compose("audit", step, **judge_parts)
            log.debug("SQL %s: %s", step, statement.as_string(cur))
            cur.execute(statement, params)
            seconds[step] = time.perf_counter() - started
        summary = [SourceAudit(*row) for row in cur.fetchall()]
    log.info("audit of %s, run %s:\n%s", table.name, run_id, format_summary(summary))
    halted = [s for s in summary if s.outcome == "halted"]
    if halted:
        worst = max(halted, key=lambda s: s.share)
        raise AuditThresholdExceeded(
            f"{table.name}: {worst.share:.1%} of {worst.src_id}'s fresh batch failed the audit, more than "
            f"max_quarantine_share {audit.max_quarantine_share:.0%}; nothing of {table.name} was published. "
            f"See quarantine.audit_log and audit.{table.name} (failed_rules) for run {run_id!r}, "
            "fix the source or the rule, then re-run."
        )
    return summary


def publish(
    dwh_conn: psycopg.Connection,
    config: WapConfig,
    table_name: str,
    run_id: str,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """In ONE transaction: quarantine failing rows, close keys that passed, merge the rest into dds.

    `timings`, if given, receives the seconds of each statement (the merge's as `merge_<step>`).
    """
    table = config.tables[table_name]
    parts = _parts(table)
    params = {"run_id": run_id, "held": held_run_id(run_id), "table_name": table.name}
    seconds = {} if timings is None else timings
    merge_seconds: dict[str, float] = {}
    # One transaction around all of it: merge_into_dds's own `with conn.transaction()` nests
    # inside this one (psycopg 3 makes it a savepoint), so the merge commits together with the
    # quarantine, or all of it rolls back.
    with dwh_conn.transaction():
        with dwh_conn.cursor() as cur:
            cur.execute(compose("audit", "audit_outcomes"), params)
            outcomes = dict(cur.fetchall())
            if not outcomes or set(outcomes.values()) - {"audited", "published"}:
                raise AuditThresholdExceeded(
                    f"{table.name}: run {run_id!r} has no passed audit ({outcomes}); audit it first"
                )
            started = time.perf_counter()
            cur.execute(compose("audit", "quarantine_failed", **parts), params)
            seconds["quarantine_failed"] = time.perf_counter() - started
            started = time.perf_counter()
            cur.execute(compose("audit", "close_passed", **parts), params)
            closed = Counter(cur.fetchall())
            seconds["close_passed"] = time.perf_counter() - started
            for src_id in outcomes:
                counts = {"released": closed[(src_id, "released")], "superseded": closed[(src_id, "superseded")]}
                cur.execute(compose("audit", "log_published"), {**params, "src_id": src_id, **counts})
        merged = merge_into_dds(dwh_conn, table, run_id, timings=merge_seconds)
        started = time.perf_counter()
    seconds.update({f"merge_{step}": value for step, value in merge_seconds.items() if step != "commit"})
    seconds["commit"] = time.perf_counter() - started
    released = sum(n for (_, status), n in closed.items() if status == "released")
    superseded = sum(n for (_, status), n in closed.items() if status == "superseded")
    log.info(
        "published %s: %s released from quarantine, %s superseded by newer versions", table.name, released, superseded
    )
    return {**merged, "released": released, "superseded": superseded}


def format_summary(summary: list[SourceAudit]) -> str:
    """A small table for the task log: one line per shop."""
    lines = [f"  {'shop':<12} {'checked':>8} {'re-audit':>8} {'passed':>8} {'held':>8} {'share':>7}  outcome"]
    for s in summary:
        lines.append(
            f"  {s.src_id:<12} {s.checked:>8} {s.re_audited:>8} {s.passed:>8} {s.quarantined:>8} "
            f"{float(s.share):>7.2%}  {s.outcome}"
        )
    return "\n".join(lines)
