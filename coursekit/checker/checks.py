"""The checks behind each grade's Definition of done.

Every check compares the learner's warehouse with the shops' databases and
returns a row for the report: what was expected, what was found, and a hint in
the learner's words. The SCD2 rules are the same queries the reference
pipeline's tests use (`coursekit/pipeline/sql/contract.sql`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from psycopg2 import sql

from coursekit.checker.stack import GradeStack, Shop, SourceTable
from coursekit.pipeline.config import Table
from coursekit.pipeline.contract import compare_with_source, violations

TECHNICAL = {"src_id", "eff_from_dttm", "eff_to_dttm", "load_run_id", "load_dttm", "extracted_dttm"}
STABLE_MARGIN_SEC = 60  # rows this much older than the update window cannot be changing any more
HISTORY_MARGIN_SEC = 180  # a change needs a run (every minute) after it, plus slack, to become a version


@dataclass
class CheckResult:
    item: str  # the Definition-of-done line it grades
    name: str
    passed: bool
    expected: str
    found: str
    hint: str = ""

    def __post_init__(self) -> None:
        if self.passed:
            self.hint = ""  # a passing row needs no advice


@dataclass
class Context:
    """What every check may look at: the stack, its connections, and the snapshot time."""

    stack: GradeStack
    dwh: object
    shops: dict[str, object]  # shop name -> connection
    stable_before: dict[str, datetime]  # shop name -> rows created before this can no longer change
    scd2: bool

    def dds_columns(self, table: str) -> list[str]:
        with self.dwh.cursor() as cur:
            cur.execute(
                "select column_name from information_schema.columns where table_schema = 'dds' and table_name = %s"
                " order by ordinal_position",
                (table,),
            )
            columns = [row[0] for row in cur.fetchall()]
        self.dwh.rollback()
        return columns

    def source_columns(self, shop: Shop, table: str) -> list[str]:
        conn = self.shops[shop.name]
        with conn.cursor() as cur:
            cur.execute(
                "select column_name from information_schema.columns where table_schema = 'public' and table_name = %s"
                " order by ordinal_position",
                (table,),
            )
            columns = [row[0] for row in cur.fetchall()]
        conn.rollback()
        return columns

    def query(self, statement: sql.Composable, params: tuple | dict | None = None) -> list[tuple]:
        with self.dwh.cursor() as cur:
            cur.execute(statement, params)
            rows = cur.fetchall()
        self.dwh.rollback()
        return rows


def _present(ctx: Context) -> list[SourceTable]:
    return [t for t in ctx.stack.tables if ctx.dds_columns(t.name)]


def _shape(ctx: Context, table: SourceTable) -> Table:
    """The table as the contract queries need it: the columns source and dds share."""
    source = ctx.source_columns(ctx.stack.shops[0], table.name)
    dds = set(ctx.dds_columns(table.name))
    columns = {c: "text" for c in source if c in dds and c not in TECHNICAL}
    return Table.model_construct(key=table.key, increment_column="created_at", scd2=ctx.scd2, columns=columns)


def check_tables_exist(ctx: Context) -> Iterable[CheckResult]:
    for table in ctx.stack.tables:
        columns = ctx.dds_columns(table.name)
        needed = {table.key, "src_id"} | ({"eff_from_dttm", "eff_to_dttm"} if ctx.scd2 else set())
        missing = sorted(needed - set(columns))
        yield CheckResult(
            "all tables are loaded",
            f"dds.{table.name} exists",
            bool(columns) and not missing,
            f"dds.{table.name} with {', '.join(sorted(needed))} and the source's columns",
            "no such table" if not columns else (f"missing columns {', '.join(missing)}" if missing else "ok"),
            f"create dds.{table.name} with the source columns plus {', '.join(sorted(needed - {table.key}))}",
        )


def check_shops_loaded(ctx: Context) -> Iterable[CheckResult]:
    expected = sorted(shop.src_id for shop in ctx.stack.shops)
    for table in _present(ctx):
        found = [row[0] for row in ctx.query(sql.SQL("select distinct src_id from {} order by 1").format(_dds(table)))]
        yield CheckResult(
            "rows from both shops",
            f"dds.{table.name} has rows of every shop",
            set(expected) <= set(found),
            ", ".join(expected),
            ", ".join(map(str, found)) or "no rows",
            "src_id must be the shop's CITY_NAME from deploy/env/shop-N.env; is every source in your config?",
        )


def check_unique_keys(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        if ctx.scd2:
            statement = sql.SQL(
                "select {key}, src_id from {t} group by {key}, src_id"
                " having count(*) filter (where eff_to_dttm = '9999-12-31 23:59:59+00') <> 1 limit 5"
            )
            name, expected = "exactly one current version per key", "one row with eff_to_dttm 9999-12-31 23:59:59"
            hint = "close the old version when you insert a new one; never insert a key twice as current"
        else:
            statement = sql.SQL("select {key}, src_id from {t} group by {key}, src_id having count(*) > 1 limit 5")
            name, expected = "no duplicate keys", "one row per (key, src_id)"
            hint = "a re-run or an overlapping window loaded rows twice: upsert, or skip keys already loaded"
        bad = ctx.query(statement.format(key=sql.Identifier(table.key), t=_dds(table)))
        yield CheckResult(
            "no duplicates", f"dds.{table.name}: {name}", not bad, expected, _keys(bad) or "ok", hint if bad else ""
        )


def check_against_source(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        shape = _shape(ctx, table)
        missing_total, different_total, compared = 0, 0, 0
        examples_missing: list[str] = []
        examples_different: list[str] = []
        for shop in ctx.stack.shops:
            result = compare_with_source(
                ctx.shops[shop.name], ctx.dwh, table.name, shape, shop.src_id, ctx.stable_before[shop.name]
            )
            compared += result.source_rows
            missing_total += len(result.missing)
            different_total += len(result.different)
            examples_missing += [f"{shop.src_id}:{k}" for k in result.missing[:3]]
            examples_different += [f"{shop.src_id}:{k}" for k in result.different[:3]]
        yield CheckResult(
            "no gaps",
            f"dds.{table.name}: every stable source row is loaded",
            missing_total == 0,
            f"all {compared} stable source rows",
            f"{missing_total} missing, e.g. {', '.join(examples_missing)}" if missing_total else "ok",
            "rows older than your watermark were skipped, or a run failed half-way" if missing_total else "",
        )
        yield CheckResult(
            "values equal the source",
            f"dds.{table.name}: current values equal the source",
            different_total == 0,
            "same values as the source",
            f"{different_total} differ, e.g. {', '.join(examples_different)}" if different_total else "ok",
            "an update in the source was not picked up: re-read a lookback window" if different_total else "",
        )


def check_ids_monotonic(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        if "created_at" not in ctx.dds_columns(table.name):
            continue
        statement = sql.SQL(
            "select {key}, src_id from (select src_id, {key}, created_at,"
            " lag(created_at) over (partition by src_id order by {key}) as previous from {t} {current}) as v"
            " where created_at < previous limit 5"
        ).format(
            key=sql.Identifier(table.key),
            t=_dds(table),
            current=sql.SQL("where eff_to_dttm = '9999-12-31 23:59:59+00'" if ctx.scd2 else ""),
        )
        bad = ctx.query(statement)
        yield CheckResult(
            "ids increase per shop",
            f"dds.{table.name}: ids grow with created_at within each shop",
            not bad,
            "a later id never has an earlier created_at",
            _keys(bad) or "ok",
            "rows of different shops got mixed: tag every row with its own src_id" if bad else "",
        )


SCD2_CHECKS = {
    "interval_order": ("eff_from_dttm <= eff_to_dttm", "a version ends before it starts"),
    "interval_gaps": ("contiguous versions: next eff_from = previous eff_to + 1 second", "gaps or overlaps"),
    "repeated_versions": ("no two consecutive identical versions", "a version was opened without a change"),
    "sub_second": ("eff_from_dttm and eff_to_dttm in whole seconds", "use date_trunc('second', ...)"),
    "first_version_start": (
        "a key's first version starts at its created_at (to the second)",
        "start the first version at the row's created_at, not at the time it was loaded",
    ),
}


def check_scd2_rules(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        found = violations(ctx.dwh, table.name, _shape(ctx, table))
        for rule, (expected, hint) in SCD2_CHECKS.items():
            bad = found.get(rule, [])
            yield CheckResult(
                "SCD2 history",
                f"dds.{table.name}: {expected}",
                not bad,
                expected,
                _keys(bad) or "ok",
                hint if bad else "",
            )


def check_history_kept(ctx: Context) -> Iterable[CheckResult]:
    """Updated keys must get new versions; decidable only once a change had time to happen and be seen.

    A change shows up as a second version only after the shop updated a row
    (up to UPDATE_NOT_OLDER_THAN_SEC after creating it) and a later run saw it.
    Until the warehouse's oldest version is that old plus a margin for the
    schedule, no history is no evidence of a bug, so the check waits instead of failing.
    """
    window = max(shop.update_window_sec for shop in ctx.stack.shops)
    for table in _present(ctx):
        if not (window > 0 and table.updates):
            continue
        statement = sql.SQL(
            "select (select count(*) from (select 1 from {t} group by {key}, src_id having count(*) > 1) as v),"
            " coalesce(extract(epoch from now() - min(eff_from_dttm))::int, 0) from {t}"
        ).format(key=sql.Identifier(table.key), t=_dds(table))
        keys, age_sec = ctx.query(statement)[0]
        decidable = age_sec > window + HISTORY_MARGIN_SEC
        found = f"{keys} keys with history"
        if not keys and not decidable:
            found += f" (too early to tell: oldest version {age_sec} s old, shops update rows up to {window} s)"
        yield CheckResult(
            "SCD2 history",
            f"dds.{table.name}: updated keys have more than one version",
            keys > 0 or not decidable,
            "some keys with 2+ versions (the shops update rows)",
            found,
            "updates overwrite rows instead of opening new versions, or are never re-read",
        )


def _dds(table: SourceTable) -> sql.Identifier:
    return sql.Identifier("dds", table.name)


def _keys(rows: list[tuple]) -> str:
    """Offending (key, src_id, ...) rows as `src_id:key`, the way the report names rows everywhere."""
    return ", ".join(f"{row[1]}:{row[0]}" for row in rows[:5])


Check = Callable[[Context], Iterable[CheckResult]]
LOAD_CHECKS: list[Check] = [check_tables_exist, check_shops_loaded, check_unique_keys, check_against_source]
G2_CHECKS: list[Check] = [*LOAD_CHECKS, check_ids_monotonic]
G3_CHECKS: list[Check] = [*G2_CHECKS, check_scd2_rules, check_history_kept]
