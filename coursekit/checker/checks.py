"""The checks behind each grade's Definition of done.

Every check compares the learner's warehouse with the shops' databases and
returns rows for the report: what was expected, what was found, and a hint in
the learner's words. Each row has one of three verdicts:

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
from datetime import datetime, timedelta
from typing import Any

from psycopg2 import sql

from coursekit.checker.stack import GradeStack, Shop, SourceTable
from coursekit.reference import config, contract, rules

PASS, FAIL, WAIT = "PASS", "FAIL", "WAIT"
CANNOT = "CANNOT CHECK"  # the checker cannot tell what to grade (e.g. which DAG is the load): says what it found
OPEN_END = contract.OPEN_END
TECHNICAL = contract.RESERVED
COMMIT_SLACK_SEC = 30  # a row created this long before a run started was committed before it read
HISTORY_MARGIN_SEC = 180  # a change needs a run (every minute) after it, plus slack, to become a version
RECENT_RUNS = 10  # "the recent runs succeeded" looks at this many finished runs
EXAMPLES = 5
# psycopg 3 (PostgresHook in provider 7.x): `with conn:` commits AND closes the connection, and
# `conn.transaction()` inside an implicit transaction is only a savepoint. G0's dwh/ does the first form.
ONE_TRANSACTION_HINT = (
    "do each table's whole merge in one transaction, so that a crash rolls back all of it: one"
    " `with conn.transaction():` block on an autocommit connection (as G0's dwh/merge.py does), or"
    " autocommit off and one conn.commit() at the end; statements committed one by one (autocommit without"
    " a transaction block) stick on their own. Not `with conn:`: in psycopg 3 it commits and closes the connection"
)


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


# Spellings that hold the same values: a learner may pick either.
_SAME_TYPE = {"character varying": "text", "character": "text", "bpchar": "text"}


def _type_family(spelled: str) -> str:
    base = spelled.split("(")[0].strip()
    if base in _SAME_TYPE:
        return _SAME_TYPE[base]
    return spelled  # numeric(10,2) keeps its scale: numeric without one would still hold cents, floats would not


def check_column_types(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        source = dict(ctx.source_types(ctx.stack.shops[0], table.name))
        dds = dict(ctx.dds_types(table.name))
        wrong = [
            f"{column} is {dds[column]}, the source's is {spelled}"
            for column, spelled in source.items()
            if column in dds
            and _type_family(dds[column]) != _type_family(spelled)
            and not (spelled.startswith("numeric") and dds[column] == "numeric")
            and not (column == table.key and dds[column] in ("bigint", "integer"))
        ]
        missing = [c for c in source if c not in dds]
        yield CheckResult(
            "values equal the source",
            f"dds.{table.name}: every source column, with the source's type",
            not wrong and not missing,
            "the source's columns and types (numeric stays numeric, timestamptz stays timestamptz)",
            "; ".join(wrong[:EXAMPLES] + ([f"missing {', '.join(missing)}"] if missing else [])) or "ok",
            "a float cannot hold 12.99 exactly and a timestamp without time zone shifts with the session's zone:"
            " create the dds columns with the source's types"
            if wrong
            else f"load every source column into dds.{table.name}",
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
        rule = "current_version_count" if ctx.scd2 else "duplicate_keys"
        if ctx.scd2:
            name, expected = "exactly one current version per key", f"one row with eff_to_dttm {OPEN_END}"
            hint = (
                "a key has no current version or two of them: close the old version in the same transaction"
                " that opens the new one, and make a re-run of the same batch find nothing new to insert"
            )
        else:
            name, expected = "no duplicate keys", "one row per (key, src_id)"
            hint = (
                "a re-run or an overlapping window loaded rows twice: upsert on (key, src_id)"
                " (insert ... on conflict do update), or replace the batch's keys in one transaction"
            )
        rule_sql = rules.rule_statement(rule, _shape(ctx, table)).rstrip(";")
        bad = ctx.query(sql.SQL("select * from ({}\n) as broken limit 5").format(sql.SQL(rule_sql)))
        yield CheckResult(
            "no duplicates", f"dds.{table.name}: {name}", not bad, expected, _keys(bad) or "ok", hint if bad else ""
        )


def check_against_source(ctx: Context) -> Iterable[CheckResult]:
    """Every source row the last finished run could see is loaded; stable rows carry the source's values."""
    for table in _present(ctx):
        shape = _shape(ctx, table)
        yield _presence(ctx, table)
        yield _values(ctx, table, shape)


def _presence(ctx: Context, table: SourceTable) -> CheckResult:
    name = f"dds.{table.name}: every source row is loaded"
    present_before = ctx.present_before or ctx.stable_before
    missing: dict[str, list[Any]] = {}
    compared = 0
    for shop in ctx.stack.shops:
        keys = {
            row[0]
            for row in ctx.source_query(
                shop,
                sql.SQL("select {key} from {t} where created_at < %s").format(
                    key=sql.Identifier(table.key), t=sql.Identifier(table.name)
                ),
                (present_before[shop.name],),
            )
        }
        compared += len(keys)
        if not keys:
            continue
        loaded = {
            row[0]
            for row in ctx.query(
                sql.SQL("select distinct {key} from {t} where src_id = %s").format(
                    key=sql.Identifier(table.key), t=_dds(table)
                ),
                (shop.src_id,),
            )
        }
        lost = sorted(keys - loaded)
        if lost:
            missing[shop.src_id] = lost
    if not compared:
        first = min(present_before.values())
        return CheckResult(
            "no gaps",
            name,
            WAIT,
            "every source row created before the last finished run started",
            "no source row to compare yet",
            f"rows count once a load run started after they were created ({_clock(first)} so far)",
        )
    lost_total = sum(len(v) for v in missing.values())
    if not lost_total:
        return CheckResult("no gaps", name, PASS, f"all {compared} source rows", "ok")
    examples = [f"{src}:{k}" for src, keys in missing.items() for k in keys[:EXAMPLES]][:EXAMPLES]
    if len(missing) == 1 and len(ctx.stack.shops) > 1:
        (shop_lost,) = missing
        hint = (
            f"only {shop_lost}'s rows are lost: a watermark shared by both shops skips the slower shop's rows;"
            " take max(created_at) per src_id"
        )
    else:
        hint = (
            "rows older than your watermark were skipped: read from max(created_at) of the same shop in dds"
            " (minus the lookback), and make sure a failed run leaves the watermark where it was"
        )
    return CheckResult(
        "no gaps",
        name,
        FAIL,
        f"all {compared} source rows created before the last finished run",
        f"{lost_total} missing, e.g. {', '.join(examples)}",
        hint,
    )


def _values(ctx: Context, table: SourceTable, shape: config.Table) -> CheckResult:
    name = f"dds.{table.name}: current values equal the source"
    compared, different = 0, []
    for shop in ctx.stack.shops:
        result = rules.compare_with_source(
            ctx.shops[shop.name],
            ctx.dwh,
            shape,
            shop.src_id,
            ctx.stable_before[shop.name],
            own_transaction=ctx.own_transaction,
        )
        compared += result.source_rows - len(result.missing)
        different += [(shop.src_id, key, result.details[key]) for key in result.different]
    if not compared:
        first = min(ctx.stable_before.values())
        window = max(s.update_window_sec for s in ctx.stack.shops)
        return CheckResult(
            "values equal the source",
            name,
            WAIT,
            "same values as the source for rows the shops no longer change",
            "no loaded row is old enough to compare yet",
            f"the shops may update a row for {window} s after creating it; rows created before {_clock(first)}"
            " are compared, and there are none yet",
        )
    if not different:
        return CheckResult("values equal the source", name, PASS, f"same values in all {compared} stable rows", "ok")
    examples = [
        f"{src}:{key} {column} source={theirs!r} dds={ours!r}" for src, key, (column, theirs, ours) in different
    ]
    columns = sorted({column for _, _, (column, _, _) in different})
    return CheckResult(
        "values equal the source",
        name,
        FAIL,
        f"same values in all {compared} stable rows",
        f"{len(different)} differ, e.g. " + "; ".join(examples[:EXAMPLES]),
        (
            f"the differing column{'s' if len(columns) > 1 else ''} {', '.join(columns)}: if the dds value is an"
            " older source value, an update was not picked up (re-read a lookback window longer than the shops'"
            " update window); if it is the same value in another form, the load changed its type or time zone"
        ),
    )


def check_ids_monotonic(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        if "created_at" not in ctx.dds_columns(table.name):
            continue
        statement = sql.SQL(
            "select {key}, src_id from (select src_id, {key}, created_at,"
            " lag(created_at) over (partition by src_id order by {key}) as previous from {t} where {current}) as v"
            " where created_at < previous limit 5"
        ).format(key=sql.Identifier(table.key), t=_dds(table), current=_current(ctx))
        bad = ctx.query(statement)
        yield CheckResult(
            "ids increase per shop",
            f"dds.{table.name}: ids grow with created_at within each shop",
            not bad,
            "a later id never has an earlier created_at",
            _keys(bad) or "ok",
            "rows of different shops got mixed: tag every row with its own src_id" if bad else "",
        )


# rule -> (what the report calls it, the hint when it fails)
SCD2_CHECKS = {
    "interval_order": ("eff_from_dttm <= eff_to_dttm", "a version ends before it starts"),
    "interval_gaps": (
        "no gap: next eff_from = previous eff_to + 1 second",
        "there is a moment in which the key has no version: close the old version exactly 1 second before the"
        " new one starts",
    ),
    "interval_overlaps": (
        "no overlap: next eff_from = previous eff_to + 1 second",
        "two versions are valid at the same moment: the old version must end 1 second BEFORE the new one starts"
        " (eff_to_dttm = new eff_from_dttm - interval '1 second')",
    ),
    "repeated_versions": (
        "no two consecutive identical versions",
        "a version was opened without a change: compare the new values with the current version NULL-safely"
        " (IS DISTINCT FROM; in pandas, NaN != NaN and None != NaN), and make a re-run insert nothing",
    ),
    "sub_second": ("eff_from_dttm and eff_to_dttm in whole seconds", "use date_trunc('second', ...)"),
    "first_version_start": (
        "a key's first version starts at its created_at (to the second)",
        "the first version's eff_from_dttm must be date_trunc('second', created_at)",
    ),
}


def check_scd2_rules(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        found = rules.violations(ctx.dwh, _shape(ctx, table), own_transaction=ctx.own_transaction)
        for rule, (expected, hint) in SCD2_CHECKS.items():
            bad = found.get(rule, [])
            shown = _keys(bad)
            if rule == "first_version_start" and bad:  # show what was found against what was expected
                shown = ", ".join(
                    f"{r[1]}:{r[0]} starts {r[2]:%H:%M:%S.%f}, created_at {r[3]:%H:%M:%S.%f}" for r in bad[:3]
                )
            elif rule in ("interval_gaps", "interval_overlaps") and bad:
                shown = ", ".join(f"{r[1]}:{r[0]} ends {r[3]:%H:%M:%S}, next starts {r[4]:%H:%M:%S}" for r in bad[:3])
            yield CheckResult(
                "SCD2 history",
                f"dds.{table.name}: {expected}",
                not bad,
                expected,
                shown or "ok",
                hint if bad else "",
            )


def check_history_kept(ctx: Context) -> Iterable[CheckResult]:
    """Updated keys must get new versions: judged per key where the fast mode saw the update, else overall.

    Live, a change shows up as a second version only after the shop updated a
    row (up to UPDATE_NOT_OLDER_THAN_SEC after creating it) and a later run saw
    it. Until the warehouse's oldest version is that old plus a margin for the
    schedule, no history is no evidence either way: the check WAITs, it never passes.
    """
    window = max(shop.update_window_sec for shop in ctx.stack.shops)
    for table in _present(ctx):
        if not (window > 0 and table.updates):
            continue
        name = f"dds.{table.name}: updated keys have more than one version"
        hint = "updates overwrite rows instead of opening new versions, or are never re-read (lookback)"
        if ctx.observed is not None:
            yield _history_per_key(ctx, table, name, hint)
            continue
        statement = sql.SQL(
            "select (select count(*) from (select 1 from {t} group by {key}, src_id having count(*) > 1) as v),"
            " coalesce(extract(epoch from now() - min(eff_from_dttm))::int, 0) from {t}"
        ).format(key=sql.Identifier(table.key), t=_dds(table))
        keys, age_sec = ctx.query(statement)[0]
        found = f"{keys} keys with history"
        expected = "some keys with 2+ versions (the shops update rows)"
        if keys:
            yield CheckResult("SCD2 history", name, PASS, expected, found)
        elif age_sec > window + HISTORY_MARGIN_SEC:
            yield CheckResult("SCD2 history", name, FAIL, expected, found, hint)
        else:
            left = window + HISTORY_MARGIN_SEC - age_sec
            yield CheckResult(
                "SCD2 history",
                name,
                WAIT,
                expected,
                f"{found}; oldest version {age_sec} s old",
                f"decidable once your oldest version is {window + HISTORY_MARGIN_SEC} s old (in ~{left // 60 + 1} min):"
                f" the shops update rows up to {window} s after creating them",
            )


def _history_per_key(ctx: Context, table: SourceTable, name: str, hint: str) -> CheckResult:
    assert ctx.observed is not None
    seen = ctx.observed.loaded.get(table.name, {})
    shape = _shape(ctx, table)
    columns = list(shape.columns)
    updated: list[tuple[str, Any]] = []
    for shop in ctx.stack.shops:
        before = seen.get(shop.src_id, {})
        if not before:
            continue
        rows = ctx.source_query(
            shop,
            sql.SQL("select {cols} from {t} where {key} = any(%s)").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                t=sql.Identifier(table.name),
                key=sql.Identifier(table.key),
            ),
            (list(before),),
        )
        key_at = columns.index(table.key)
        updated += [
            (shop.src_id, row[key_at])
            for row in rows
            if {c: before[row[key_at]].get(c) for c in columns} != dict(zip(columns, row, strict=True))
        ]
    held = _held(ctx, table)
    updated = [k for k in dict.fromkeys(updated + ctx.observed.touched.get(table.name, [])) if k not in held]
    expected = "a new version for every key the shops updated after it was loaded"
    if not updated:
        return CheckResult(
            "SCD2 history", name, WAIT, expected, "no loaded key was updated", "the scenario made no update to see"
        )
    versions = {
        (src, key): count
        for src, key, count in ctx.query(
            sql.SQL("select src_id, {key}, count(*) from {t} group by 1, 2").format(
                key=sql.Identifier(table.key), t=_dds(table)
            )
        )
    }
    flat = [f"{src}:{key}" for src, key in updated if versions.get((src, key), 0) < 2]
    return CheckResult(
        "SCD2 history",
        name,
        not flat,
        expected,
        f"{len(flat)} of {len(updated)} updated keys have one version, e.g. {', '.join(flat[:EXAMPLES])}"
        if flat
        else f"all {len(updated)} updated keys have history",
        hint,
    )


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


def check_deleted_rows_kept(ctx: Context) -> Iterable[CheckResult]:
    """Rows the shops delete by retention keep their history in dds: the warehouse is the memory."""
    for table in _present(ctx):
        name = f"dds.{table.name}: rows the shops deleted are kept"
        expected = "every loaded row stays in dds after its shop deletes it (retention)"
        hint = (
            "the shops delete old rows (DELETE_OLDER_THAN_SEC); the warehouse keeps them: never delete from dds"
            " what is missing from a source batch"
        )
        if ctx.observed is not None:
            yield _deleted_per_key(ctx, table, name, expected, hint)
            continue
        windows = [s.delete_after_sec for s in ctx.stack.shops if s.delete_after_sec]
        if not windows:
            yield CheckResult(
                "history is kept", name, PASS, expected, "the shops never delete (DELETE_OLDER_THAN_SEC=0)"
            )
            continue
        if "created_at" not in ctx.dds_columns(table.name):
            continue
        verdicts = []
        for shop in ctx.stack.shops:
            if not shop.delete_after_sec or ctx.shop_now is None:
                continue
            cutoff = ctx.shop_now[shop.name] - timedelta(seconds=shop.delete_after_sec)
            # Rows created after the first load and older than the retention were loaded, then deleted.
            if ctx.first_load is None or ctx.first_load > cutoff - timedelta(seconds=120):
                start = (ctx.first_load or ctx.shop_now[shop.name]) + timedelta(seconds=shop.delete_after_sec + 120)
                verdicts.append((WAIT, f"{shop.src_id}: the first loaded rows are deleted around {_clock(start)}"))
                continue
            (kept,) = ctx.query(
                sql.SQL("select count(*) from {t} where src_id = %s and created_at >= %s and created_at < %s").format(
                    t=_dds(table)
                ),
                (shop.src_id, ctx.first_load, cutoff - timedelta(seconds=60)),
            )[0]
            verdicts.append((PASS if kept else FAIL, f"{shop.src_id}: {kept} rows older than the retention"))
        if not verdicts:
            continue
        worst = FAIL if any(v == FAIL for v, _ in verdicts) else WAIT if any(v == WAIT for v, _ in verdicts) else PASS
        yield CheckResult(
            "history is kept",
            name,
            worst,
            expected,
            "; ".join(text for _, text in verdicts),
            hint
            if worst == FAIL
            else "decidable once rows your DAG loaded are older than DELETE_OLDER_THAN_SEC (or run make check FAST=1)",
        )


def _deleted_per_key(ctx: Context, table: SourceTable, name: str, expected: str, hint: str) -> CheckResult:
    assert ctx.observed is not None
    seen = ctx.observed.loaded.get(table.name, {})
    deleted: list[tuple[str, Any]] = []
    for shop in ctx.stack.shops:
        before = list(seen.get(shop.src_id, {}))
        if not before:
            continue
        still = {
            row[0]
            for row in ctx.source_query(
                shop,
                sql.SQL("select {key} from {t} where {key} = any(%s)").format(
                    key=sql.Identifier(table.key), t=sql.Identifier(table.name)
                ),
                (before,),
            )
        }
        deleted += [(shop.src_id, key) for key in before if key not in still]
    held = _held(ctx, table)
    deleted = [k for k in deleted if k not in held]
    if not deleted:
        return CheckResult("history is kept", name, WAIT, expected, "no loaded row was deleted yet", "")
    kept = set(
        ctx.query(
            sql.SQL("select distinct src_id, {key} from {t}").format(key=sql.Identifier(table.key), t=_dds(table))
        )
    )
    gone = [f"{src}:{key}" for src, key in deleted if (src, key) not in kept]
    return CheckResult(
        "history is kept",
        name,
        not gone,
        expected,
        f"{len(gone)} of {len(deleted)} deleted rows are gone from dds, e.g. {', '.join(gone[:EXAMPLES])}"
        if gone
        else f"all {len(deleted)} deleted rows kept",
        hint,
    )


def check_runs_succeeded(ctx: Context) -> Iterable[CheckResult]:
    name = f"the last {RECENT_RUNS} runs of the load DAG succeeded"
    expected = "no failed run (a failed run means rows loaded late, or lost)"
    if ctx.runs is None:
        yield CheckResult(
            "the load runs reliably", name, WAIT, expected, "runs unknown", "the checker could not list runs"
        )
        return
    recent = [r for r in ctx.runs if r.state in ("success", "failed") and not r.planned_failure][:RECENT_RUNS]
    if not recent:
        yield CheckResult("the load runs reliably", name, WAIT, expected, "no finished run yet", "unpause the load DAG")
        return
    failed = [r for r in recent if r.state == "failed"]
    yield CheckResult(
        "the load runs reliably",
        name,
        not failed,
        expected,
        f"{len(failed)} of {len(recent)} failed: "
        + "; ".join(f"{r.run_id} in {', '.join(r.failed_tasks) or 'unknown task'}" for r in failed[:3])
        if failed
        else f"all {len(recent)} succeeded",
        "open the failed task's log in the Airflow UI; a load that fails on some batches often builds SQL from"
        " values (quotes, newlines) instead of passing them as parameters",
    )


def check_runs_never_overlap(ctx: Context) -> Iterable[CheckResult]:
    name = "runs of the load DAG never overlap"
    expected = "max_active_runs=1, and no two runs active at once"
    if ctx.runs is None and ctx.max_active_runs is None:
        yield CheckResult(
            "the load runs reliably", name, WAIT, expected, "runs unknown", "the checker could not list runs"
        )
        return
    overlapping = []
    for dag_id in dict.fromkeys(r.dag_id for r in ctx.runs or []):  # a pipeline: each of its DAGs on its own
        timed = sorted((r for r in ctx.runs or [] if r.start and r.end and r.dag_id == dag_id), key=lambda r: r.start)
        overlapping += [f"{a.run_id} and {b.run_id}" for a, b in zip(timed, timed[1:], strict=False) if b.start < a.end]
    too_many = ctx.max_active_runs is not None and ctx.max_active_runs != 1
    found = [f"max_active_runs={ctx.max_active_runs}"] if too_many else []
    found += [f"overlapping: {', '.join(overlapping[:3])}"] if overlapping else []
    yield CheckResult(
        "the load runs reliably",
        name,
        not found,
        expected,
        "; ".join(found) or "ok",
        "two runs at once read the same watermark and write the same staging tables: set max_active_runs=1",
    )


def check_rerun_changes_nothing(ctx: Context) -> Iterable[CheckResult]:
    name = "re-running a finished run changes nothing"
    expected = "the same rows in dds after the re-run, for every row the shops can no longer change"
    if ctx.rerun is None:
        yield CheckResult(
            "loads are idempotent",
            name,
            WAIT,
            expected,
            "not tried",
            "the checker re-runs your last finished run unless --no-rerun is given; make check FAST=1 always does",
        )
        return
    rerun = ctx.rerun
    if rerun.state != "success":
        yield CheckResult(
            "loads are idempotent",
            name,
            FAIL,
            expected,
            f"the re-run of {rerun.run_id} ended {rerun.state}",
            "a re-run must succeed: create tables with IF NOT EXISTS and replace (not append) a run's staging data",
        )
        return
    changed = {t: keys for t, keys in rerun.changed.items() if keys}
    yield CheckResult(
        "loads are idempotent",
        name,
        not changed,
        expected,
        "; ".join(f"dds.{t}: {len(k)} keys changed, e.g. {', '.join(k[:EXAMPLES])}" for t, k in changed.items())
        or f"re-ran {rerun.run_id}: nothing changed",
        "re-running a run loaded its batch again: replace the run's staging rows instead of appending, and"
        " insert only keys whose values differ from their current version",
    )


def fingerprint(ctx: Context) -> dict[str, dict[tuple, str]]:
    """table -> (src_id, key) -> digest of all its versions, for keys the shops can no longer change."""
    prints: dict[str, dict[tuple, str]] = {}
    for table in _present(ctx):
        shape = _shape(ctx, table)
        columns = list(shape.columns) + (["eff_from_dttm", "eff_to_dttm"] if ctx.scd2 else [])
        row = sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        prints[table.name] = {}
        for shop in ctx.stack.shops:
            keys = [
                r[0]
                for r in ctx.source_query(
                    shop,
                    sql.SQL("select {key} from {t} where created_at < %s").format(
                        key=sql.Identifier(table.key), t=sql.Identifier(table.name)
                    ),
                    (ctx.stable_before[shop.name],),
                )
            ]
            statement = sql.SQL(
                "select {key}, md5(string_agg({row}, '|' order by {row})) from {t}"
                " where src_id = %s and {key} = any(%s) group by 1"
            ).format(key=sql.Identifier(table.key), row=row, t=_dds(table))
            for key, digest in ctx.query(statement, (shop.src_id, keys)):
                prints[table.name][(shop.src_id, key)] = digest
    return prints


def changed_keys(before: dict[str, dict[tuple, str]], after: dict[str, dict[tuple, str]]) -> dict[str, list[str]]:
    return {
        table: [f"{src}:{key}" for (src, key), digest in rows.items() if after.get(table, {}).get((src, key)) != digest]
        for table, rows in before.items()
    }


def _dds(table: SourceTable) -> sql.Identifier:
    return sql.Identifier("dds", table.name)


def _keys(rows: list[tuple]) -> str:
    """Offending (key, src_id, ...) rows as `src_id:key`, distinct, the way the report names rows everywhere."""
    names = list(dict.fromkeys(f"{row[1]}:{row[0]}" for row in rows))
    return ", ".join(names[:EXAMPLES])


Check = Callable[[Context], Iterable[CheckResult]]
RUN_CHECKS: list[Check] = [check_runs_succeeded, check_runs_never_overlap, check_rerun_changes_nothing]
LOAD_CHECKS: list[Check] = [
    check_tables_exist,
    check_column_types,
    check_shops_loaded,
    check_unique_keys,
    check_against_source,
]
G2_CHECKS: list[Check] = [*LOAD_CHECKS, check_ids_monotonic, check_deleted_rows_kept, *RUN_CHECKS]
G3_CHECKS: list[Check] = [
    *LOAD_CHECKS,
    check_ids_monotonic,
    check_scd2_rules,
    check_history_kept,
    check_deleted_rows_kept,
    *RUN_CHECKS,
]
