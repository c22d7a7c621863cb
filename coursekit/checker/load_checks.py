"""The load's checks: the tables are there, typed as the source, with rows of both shops, no key twice,
every source row loaded with the source's values, ids in step with created_at.

Each check is declared next to it (`registry.py`): its report rows, its Definition-of-done lines in
English and Russian, where it prints and which grades run it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg2 import sql

from coursekit.checker.context import (
    EXAMPLES,
    FAIL,
    OPEN_END,
    PASS,
    WAIT,
    CheckResult,
    Context,
    _clock,
    _current,
    _dds,
    _keys,
    _present,
    _shape,
)
from coursekit.checker.registry import EVERY_GRADE, GRADED_LOADS, Line, check
from coursekit.checker.stack import SourceTable
from coursekit.reference import config, rules

EXISTS = Line(
    "dds.<table> exists",
    item="all tables are loaded",
    en="the table is in `pg-dwh` with its key ({keys}){technical}",
    ru="таблица есть в `pg-dwh`, в ней есть ключ ({keys}){technical_ru}",
)


@check(EXISTS, order=10, grades=EVERY_GRADE)
def check_tables_exist(ctx: Context) -> Iterable[CheckResult]:
    for table in ctx.stack.tables:
        columns = ctx.dds_columns(table.name)
        needed = {table.key, "src_id"} | ({"eff_from_dttm", "eff_to_dttm"} if ctx.scd2 else set())
        missing = sorted(needed - set(columns))
        yield EXISTS.result(
            bool(columns) and not missing,
            f"dds.{table.name} with {', '.join(sorted(needed))} and the source's columns",
            "no such table" if not columns else (f"missing columns {', '.join(missing)}" if missing else "ok"),
            f"create dds.{table.name} with the source columns plus {', '.join(sorted(needed - {table.key}))}",
            table=table.name,
        )


# Spellings that hold the same values: a learner may pick either.
_SAME_TYPE = {"character varying": "text", "character": "text", "bpchar": "text"}


def _type_family(spelled: str) -> str:
    base = spelled.split("(")[0].strip()
    if base in _SAME_TYPE:
        return _SAME_TYPE[base]
    return spelled  # numeric(10,2) keeps its scale: numeric without one would still hold cents, floats would not


TYPES = Line(
    "dds.<table>: every source column, with the source's type",
    item="values equal the source",
    en="every column of the shop's table is in `dds`, with a type that holds the same values: `numeric(10,2)`"
    " stays `numeric(10,2)` (or plain `numeric`), `timestamptz` stays `timestamptz`; `varchar` and `text`"
    " are interchangeable, and the key may be `integer` or `bigint`",
    ru="каждая колонка таблицы магазина есть в `dds`, и её тип хранит те же значения: `numeric(10,2)` остаётся"
    " `numeric(10,2)` (или просто `numeric`), `timestamptz` остаётся `timestamptz`; `varchar` и `text`"
    " взаимозаменяемы, ключ может быть `integer` или `bigint`",
    hint="a float cannot hold 12.99 exactly and a timestamp without time zone shifts with the session's zone:"
    " create the dds columns with the source's types",
)


@check(TYPES, order=20, grades=GRADED_LOADS)
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
        yield TYPES.result(
            not wrong and not missing,
            "the source's columns and types (numeric stays numeric, timestamptz stays timestamptz)",
            "; ".join(wrong[:EXAMPLES] + ([f"missing {', '.join(missing)}"] if missing else [])) or "ok",
            None if wrong else f"load every source column into dds.{table.name}",
            table=table.name,
        )


SHOPS = Line(
    "dds.<table> has rows of every shop",
    item="rows from both shops",
    en="rows with `src_id` {shops} (each shop's `CITY_NAME`)",
    ru="есть строки с `src_id` {shops_ru} (`CITY_NAME` каждого магазина)",
    hint="src_id must be the shop's CITY_NAME from deploy/env/shop-N.env; is every source in your config?",
)


@check(SHOPS, order=30, grades=EVERY_GRADE)
def check_shops_loaded(ctx: Context) -> Iterable[CheckResult]:
    expected = sorted(shop.src_id for shop in ctx.stack.shops)
    for table in _present(ctx):
        found = [row[0] for row in ctx.query(sql.SQL("select distinct src_id from {} order by 1").format(_dds(table)))]
        yield SHOPS.result(
            set(expected) <= set(found),
            ", ".join(expected),
            ", ".join(map(str, found)) or "no rows",
            table=table.name,
        )


ONE_CURRENT = Line(
    "dds.<table>: exactly one current version per key",
    item="no duplicates",
    en="every key and `src_id` has exactly one version with `eff_to_dttm = '{open_end}'`",
    ru="у каждого ключа и `src_id` ровно одна версия с `eff_to_dttm = '{open_end}'`",
    hint="a key has no current version or two of them: close the old version in the same transaction"
    " that opens the new one, and make a re-run of the same batch find nothing new to insert",
    history=True,
    rule="current_version_count",
)
NO_DUPLICATES = Line(
    "dds.<table>: no duplicate keys",
    item="no duplicates",
    en="one row per key and `src_id`",
    ru="одна строка на ключ и `src_id`",
    hint="a re-run or an overlapping window loaded rows twice: upsert on (key, src_id)"
    " (insert ... on conflict do update), or replace the batch's keys in one transaction",
    history=False,
    rule="duplicate_keys",
)


@check(ONE_CURRENT, NO_DUPLICATES, order=40, grades=GRADED_LOADS)
def check_unique_keys(ctx: Context) -> Iterable[CheckResult]:
    if ctx.scd2:
        line, expected = ONE_CURRENT, f"one row with eff_to_dttm {OPEN_END}"
    else:
        line, expected = NO_DUPLICATES, "one row per (key, src_id)"
    for table in _present(ctx):
        rule_sql = rules.rule_statement(line.rule, _shape(ctx, table)).rstrip(";")
        bad = ctx.query(sql.SQL("select * from ({}\n) as broken limit 5").format(sql.SQL(rule_sql)))
        yield line.result(not bad, expected, _keys(bad) or "ok", table=table.name)


LOADED = Line(
    "dds.<table>: every source row is loaded",
    item="no gaps",
    en="every row a shop created more than {slack} s before the graded run started is in `dds` with that"
    " shop's `src_id` (with `FAST=1`: every row the shops hold at the end)",
    ru="каждая строка, созданная магазином больше чем за {slack} с до начала проверяемого запуска, есть в `dds`"
    " с `src_id` этого магазина (с `FAST=1`: каждая строка, которая есть в магазинах в конце)",
)
VALUES = Line(
    "dds.<table>: current values equal the source",
    item="values equal the source",
    en="for every row created more than {stable} before the graded run started, {current} has the source's value"
    " in every column `dds` shares with the source, NULLs"
    " included (with `FAST=1`: every row, once the shops have stopped)",
    ru="для каждой строки, созданной больше чем за {stable_ru} до начала проверяемого запуска,"
    " {current_ru} совпадает с источником в каждой колонке, которая есть и в `dds`, и в источнике,"
    " включая NULL (с `FAST=1`: каждая строка, после того как магазины остановились)",
)


@check(LOADED, VALUES, order=50, grades=("G0_Trainee", "G2_Junior", "G3_Middle"))
def check_against_source(ctx: Context) -> Iterable[CheckResult]:
    """Every source row the last finished run could see is loaded; stable rows carry the source's values."""
    for table in _present(ctx):
        shape = _shape(ctx, table)
        yield _presence(ctx, table)
        yield _values(ctx, table, shape)


def _missing(ctx: Context, table: SourceTable, present_before: dict) -> tuple[int, dict[str, list[Any]]]:
    """How many source rows were created before each shop's moment, and src_id -> those of them not in dds."""
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
    return compared, missing


def _presence(ctx: Context, table: SourceTable) -> CheckResult:
    present_before = ctx.present_before or ctx.stable_before
    compared, missing = _missing(ctx, table, present_before)
    if not compared:
        first = min(present_before.values())
        return LOADED.result(
            WAIT,
            "every source row created before the last finished run started",
            "no source row to compare yet",
            f"rows count once a load run started after they were created ({_clock(first)} so far)",
            table=table.name,
        )
    lost_total = sum(len(v) for v in missing.values())
    if not lost_total:
        return LOADED.result(PASS, f"all {compared} source rows", "ok", table=table.name)
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
    return LOADED.result(
        FAIL,
        f"all {compared} source rows created before the last finished run",
        f"{lost_total} missing, e.g. {', '.join(examples)}",
        hint,
        table=table.name,
    )


def _values(ctx: Context, table: SourceTable, shape: config.Table) -> CheckResult:
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
        return VALUES.result(
            WAIT,
            "same values as the source for rows the shops no longer change",
            "no loaded row is old enough to compare yet",
            f"the shops may update a row for {window} s after creating it; rows created before {_clock(first)}"
            " are compared, and there are none yet",
            table=table.name,
        )
    if not different:
        return VALUES.result(PASS, f"same values in all {compared} stable rows", "ok", table=table.name)
    examples = [
        f"{src}:{key} {column} source={theirs!r} dds={ours!r}" for src, key, (column, theirs, ours) in different
    ]
    columns = sorted({column for _, _, (column, _, _) in different})
    return VALUES.result(
        FAIL,
        f"same values in all {compared} stable rows",
        f"{len(different)} differ, e.g. " + "; ".join(examples[:EXAMPLES]),
        (
            f"the differing column{'s' if len(columns) > 1 else ''} {', '.join(columns)}: if the dds value is an"
            " older source value, an update was not picked up (re-read a lookback window longer than the shops'"
            " update window); if it is the same value in another form, the load changed its type or time zone"
        ),
        table=table.name,
    )


IDS = Line(
    "dds.<table>: ids grow with created_at within each shop",
    item="ids increase per shop",
    en="among {current_rows} of one shop a later id never has an earlier `created_at` (checked when"
    " `dds.<table>` has `created_at`)",
    ru="среди {current_rows_ru} одного магазина у большего id никогда не бывает более раннего `created_at`"
    " (проверяется, если в `dds.<table>` есть `created_at`)",
    hint="rows of different shops got mixed: tag every row with its own src_id",
)


@check(IDS, order=60, grades=GRADED_LOADS)
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
        yield IDS.result(not bad, "a later id never has an earlier created_at", _keys(bad) or "ok", table=table.name)
