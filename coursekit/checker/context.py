"""What every check works with: the verdicts, a report row, the runs, and the context of one grading.

A check (see `checks.py` for the list, `registry.py` for how one is declared)
compares the learner's warehouse with the shops' databases and returns rows for
the report: what was expected, what was found, and a hint in the learner's
words. Each row has one of three verdicts:

* PASS: the rule holds on everything there was to compare;
* FAIL: the rule is broken; `found` names up to five offending keys;
* WAIT: the rule cannot be decided yet (nothing to compare, or not enough
  time has passed for the mistake to show); the hint says what it waits for.

A check never passes on nothing: "all 0 rows are loaded" is a WAIT, not a PASS.
The SCD2 rules, the open end and the technical columns are the warehouse
contract of the reference pipeline (`G0_Trainee/airflow_data/dags/dwh/contract.py`
and its `sql/contract.sql`), imported from there: one definition for the
reference, its tests, this checker and the self-test SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2 import sql

from coursekit.checker.stack import GradeStack, Shop, SourceTable
from coursekit.reference import config, contract

PASS, FAIL, WAIT = "PASS", "FAIL", "WAIT"
CANNOT = "CANNOT CHECK"  # the checker cannot tell what to grade (e.g. which DAG is the load): says what it found
OPEN_END = contract.OPEN_END
TECHNICAL = contract.RESERVED
COMMIT_SLACK_SEC = 30  # a row created this long before a run started was committed before it read
EXAMPLES = 5


@dataclass
class CheckResult:
    item: str  # the Definition-of-done line it grades
    name: str
    verdict: bool | str  # PASS / FAIL / WAIT (a bool is PASS or FAIL)
    expected: str
    found: str
    hint: str = ""  # FAIL: how to fix it; WAIT: what it waits for

    def __post_init__(self) -> None:
        if isinstance(self.verdict, bool):
            self.verdict = PASS if self.verdict else FAIL
        if self.verdict == PASS:
            self.hint = ""  # a passing row needs no advice

    @property
    def passed(self) -> bool:
        return self.verdict == PASS


@dataclass
class Run:
    """One finished (or failed) run of the load DAG."""

    run_id: str
    state: str
    start: datetime | None
    end: datetime | None
    failed_tasks: list[str] = field(default_factory=list)
    planned_failure: bool = False  # the fast mode took a source down for this run on purpose
    dag_id: str = ""  # which DAG of the load (a pipeline's DAGs run side by side: only one DAG's runs may not overlap)


@dataclass
class Rerun:
    """What re-running a finished run did to rows the shops can no longer change."""

    run_id: str
    state: str
    changed: dict[str, list[str]]  # table -> example keys whose rows differ after the re-run


@dataclass
class Observed:
    """What the fast mode saw in the shops right after an early run had loaded it.

    table -> src_id -> key -> the source row's values at that moment. Keys whose
    values changed since then were updated after a load (so SCD2 must have a new
    version); keys gone from the source since then were deleted by retention (so
    the warehouse must still have them).
    """

    loaded: dict[str, dict[str, dict[Any, dict[str, Any]]]]
    touched: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)  # table -> (src_id, key) it updated


@dataclass
class Context:
    """What every check may look at: the stack, its connections, the times, and the runs."""

    stack: GradeStack
    dwh: Any
    shops: dict[str, Any]  # shop name -> connection
    stable_before: dict[str, datetime]  # shop -> rows created before this can no longer change
    scd2: bool
    present_before: dict[str, datetime] | None = None  # shop -> rows created before this must be loaded
    shop_now: dict[str, datetime] | None = None  # shop -> its clock when the check started
    runs: list[Run] | None = None  # the load DAG's recent runs, newest first (None: unknown)
    first_load: datetime | None = None  # when the load DAG's first successful run started
    max_active_runs: int | None = None
    rerun: Rerun | None = None
    observed: Observed | None = None
    own_transaction: bool = True  # False: the caller holds one snapshot of the warehouse for all checks

    def dds_columns(self, table: str) -> list[str]:
        return [name for name, _ in self.dds_types(table)]

    def dds_types(self, table: str) -> list[tuple[str, str]]:
        return self._types(self.dwh, "dds", table)

    def source_types(self, shop: Shop, table: str) -> list[tuple[str, str]]:
        return self._types(self.shops[shop.name], "public", table, end=True)

    def source_columns(self, shop: Shop, table: str) -> list[str]:
        return [name for name, _ in self.source_types(shop, table)]

    def _types(self, conn: Any, schema: str, table: str, end: bool = False) -> list[tuple[str, str]]:
        with conn.cursor() as cur:
            cur.execute(
                "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a"
                " join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped"
                " order by a.attnum",
                (schema, table),
            )
            rows = cur.fetchall()
        if end or self.own_transaction:
            conn.rollback()
        return rows

    def query(self, statement: sql.Composable, params: tuple | dict | None = None) -> list[tuple]:
        with self.dwh.cursor() as cur:
            cur.execute(statement, params)
            rows = cur.fetchall()
        if self.own_transaction:
            self.dwh.rollback()
        return rows

    def source_query(self, shop: Shop, statement: sql.Composable, params: tuple | dict | None = None) -> list[tuple]:
        conn = self.shops[shop.name]
        with conn.cursor() as cur:
            cur.execute(statement, params)
            rows = cur.fetchall()
        conn.rollback()
        return rows


def _present(ctx: Context) -> list[SourceTable]:
    return [t for t in ctx.stack.tables if ctx.dds_columns(t.name)]


def _shape(ctx: Context, table: SourceTable) -> config.Table:
    """The table as the contract queries need it: the columns source and dds share."""
    source = ctx.source_columns(ctx.stack.shops[0], table.name)
    dds = set(ctx.dds_columns(table.name))
    columns = {c: "text" for c in source if c in dds and c not in TECHNICAL}
    return config.Table.model_construct(
        name=table.name, key=table.key, increment_column="created_at", scd2=ctx.scd2, columns=columns
    )


def _current(ctx: Context) -> sql.Composable:
    return sql.SQL("eff_to_dttm = {}").format(sql.Literal(OPEN_END)) if ctx.scd2 else sql.SQL("true")


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M:%S} UTC"


def _held(ctx: Context, table: SourceTable) -> set[tuple[str, Any]]:
    """(src_id, key) of rows a Write-Audit-Publish load keeps in quarantine.<table> (G4): not published, rightly."""
    columns = {name for name, _ in ctx._types(ctx.dwh, "quarantine", table.name)}
    if not {table.key, "src_id"} <= columns:
        return set()
    rows = ctx.query(
        sql.SQL("select distinct src_id, {key} from {t}").format(
            key=sql.Identifier(table.key), t=sql.Identifier("quarantine", table.name)
        )
    )
    return {(src, key) for src, key in rows}


def _dds(table: SourceTable) -> sql.Identifier:
    return sql.Identifier("dds", table.name)


def _keys(rows: list[tuple]) -> str:
    """Offending (key, src_id, ...) rows as `src_id:key`, distinct, the way the report names rows everywhere."""
    names = list(dict.fromkeys(f"{row[1]}:{row[0]}" for row in rows))
    return ", ".join(names[:EXAMPLES])


Check = Callable[[Context], Iterable[CheckResult]]
