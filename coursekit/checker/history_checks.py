"""The history's checks: the warehouse contract's SCD2 rules, new versions for updated keys, and rows the
shops deleted still in dds.

Each check is declared next to it (`registry.py`). An SCD2 rule is one Line of `check_scd2_rules`
naming its rule: the rule's SQL is G0's `dwh/sql/contract.sql` (listed in `dwh/contract.py`'s
SCD2_RULES), which `rules.violations` runs for the checker, the reference's tests and the self-test.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from psycopg2 import sql

from coursekit.checker.context import (
    EXAMPLES,
    FAIL,
    PASS,
    WAIT,
    CheckResult,
    Context,
    _clock,
    _dds,
    _held,
    _keys,
    _present,
    _shape,
)
from coursekit.checker.registry import GRADED_LOADS, SCD2_LOADS, Line, check
from coursekit.checker.stack import SourceTable
from coursekit.reference import rules

HISTORY_MARGIN_SEC = 180  # a change needs a run (every minute) after it, plus slack, to become a version
RULE_PREFIX = "dds.<table>: "  # an SCD2 rule's report name is this and what it expects

SCD2_RULE_LINES = (
    Line(
        "dds.<table>: eff_from_dttm <= eff_to_dttm",
        item="SCD2 history",
        en="a version never ends before it starts",
        ru="версия никогда не кончается раньше, чем начинается",
        hint="a version ends before it starts",
        rule="interval_order",
    ),
    Line(
        "dds.<table>: no gap: next eff_from = previous eff_to + 1 second",
        item="SCD2 history",
        en="there is no moment between two versions of a key in which the key has no version",
        ru="между двумя версиями ключа нет момента, когда у ключа нет ни одной версии",
        hint="there is a moment in which the key has no version: close the old version exactly 1 second before the"
        " new one starts",
        rule="interval_gaps",
    ),
    Line(
        "dds.<table>: no overlap: next eff_from = previous eff_to + 1 second",
        item="SCD2 history",
        en="no moment has two versions of one key",
        ru="ни в какой момент у ключа нет двух версий сразу",
        hint="two versions are valid at the same moment: the old version must end 1 second BEFORE the new one"
        " starts (eff_to_dttm = new eff_from_dttm - interval '1 second')",
        rule="interval_overlaps",
    ),
    Line(
        "dds.<table>: no two consecutive identical versions",
        item="SCD2 history",
        en="a new version opens only when a value changed, NULLs compared as values (`IS DISTINCT FROM`)",
        ru="новая версия открывается, только если значение изменилось; NULL сравниваются как значения"
        " (`IS DISTINCT FROM`)",
        hint="a version was opened without a change: compare the new values with the current version NULL-safely"
        " (IS DISTINCT FROM; in pandas, NaN != NaN and None != NaN), and make a re-run insert nothing",
        rule="repeated_versions",
    ),
    Line(
        "dds.<table>: eff_from_dttm and eff_to_dttm in whole seconds",
        item="SCD2 history",
        en="no fractions of a second in any version",
        ru="ни в одной версии нет долей секунды",
        hint="use date_trunc('second', ...)",
        rule="sub_second",
    ),
    Line(
        "dds.<table>: a key's first version starts at its created_at (to the second)",
        item="SCD2 history",
        en="the first version's `eff_from_dttm` is `date_trunc('second', created_at)`",
        ru="`eff_from_dttm` первой версии равен `date_trunc('second', created_at)`",
        hint="the first version's eff_from_dttm must be date_trunc('second', created_at)",
        rule="first_version_start",
    ),
)


@check(*SCD2_RULE_LINES, order=70, grades=SCD2_LOADS)
def check_scd2_rules(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        found = rules.violations(ctx.dwh, _shape(ctx, table), own_transaction=ctx.own_transaction)
        for line in SCD2_RULE_LINES:
            bad = found.get(line.rule, [])
            shown = _keys(bad)
            if line.rule == "first_version_start" and bad:  # show what was found against what was expected
                shown = ", ".join(
                    f"{r[1]}:{r[0]} starts {r[2]:%H:%M:%S.%f}, created_at {r[3]:%H:%M:%S.%f}" for r in bad[:3]
                )
            elif line.rule in ("interval_gaps", "interval_overlaps") and bad:
                shown = ", ".join(f"{r[1]}:{r[0]} ends {r[3]:%H:%M:%S}, next starts {r[4]:%H:%M:%S}" for r in bad[:3])
            yield line.result(not bad, line.report.removeprefix(RULE_PREFIX), shown or "ok", table=table.name)


HISTORY = Line(
    "dds.<table>: updated keys have more than one version",
    item="SCD2 history",
    en="the shops update rows, so keys get new versions: live, some key has 2 or more versions, decidable once"
    " your oldest version is older than `UPDATE_NOT_OLDER_THAN_SEC` + {history_margin} s = {history}"
    " (WAIT before); with `FAST=1`, every key the shops updated after it was loaded{updated_tables}",
    ru="магазины обновляют строки, поэтому у ключей появляются новые версии: вживую хотя бы у одного ключа 2"
    " версии или больше, это решается, когда самой старой вашей версии больше `UPDATE_NOT_OLDER_THAN_SEC` +"
    " {history_margin} с = {history_ru} (до этого WAIT); с `FAST=1` — у каждого ключа, который магазины"
    " обновили после загрузки{updated_tables_ru}",
    hint="updates overwrite rows instead of opening new versions, or are never re-read (lookback)",
    per="updated_table",
)


@check(HISTORY, order=80, grades=SCD2_LOADS)
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
        if ctx.observed is not None:
            yield _history_per_key(ctx, table)
            continue
        statement = sql.SQL(
            "select (select count(*) from (select 1 from {t} group by {key}, src_id having count(*) > 1) as v),"
            " coalesce(extract(epoch from now() - min(eff_from_dttm))::int, 0) from {t}"
        ).format(key=sql.Identifier(table.key), t=_dds(table))
        keys, age_sec = ctx.query(statement)[0]
        found = f"{keys} keys with history"
        expected = "some keys with 2+ versions (the shops update rows)"
        if keys:
            yield HISTORY.result(PASS, expected, found, table=table.name)
        elif age_sec > window + HISTORY_MARGIN_SEC:
            yield HISTORY.result(FAIL, expected, found, table=table.name)
        else:
            left = window + HISTORY_MARGIN_SEC - age_sec
            yield HISTORY.result(
                WAIT,
                expected,
                f"{found}; oldest version {age_sec} s old",
                f"decidable once your oldest version is {window + HISTORY_MARGIN_SEC} s old (in ~{left // 60 + 1} min):"
                f" the shops update rows up to {window} s after creating them",
                table=table.name,
            )


def _history_per_key(ctx: Context, table: SourceTable) -> CheckResult:
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
        return HISTORY.result(
            WAIT, expected, "no loaded key was updated", "the scenario made no update to see", table=table.name
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
    return HISTORY.result(
        not flat,
        expected,
        f"{len(flat)} of {len(updated)} updated keys have one version, e.g. {', '.join(flat[:EXAMPLES])}"
        if flat
        else f"all {len(updated)} updated keys have history",
        table=table.name,
    )


DELETED = Line(
    "dds.<table>: rows the shops deleted are kept",
    item="history is kept",
    en="rows your DAG loaded stay in `dds` after the shops delete them (`DELETE_OLDER_THAN_SEC` = {delete});"
    " live, this WAITs until rows your DAG loaded are that old: {delete_wait} after the first successful"
    " load run; `FAST=1` checks every loaded key it saw deleted",
    ru="строки, которые загрузил ваш DAG, остаются в `dds` после того, как магазины их удалили"
    " (`DELETE_OLDER_THAN_SEC` = {delete_ru}); вживую это WAIT, пока загруженным строкам не станет столько:"
    " {delete_wait_ru} после первого успешного запуска загрузки; `FAST=1` проверяет каждый загруженный"
    " ключ, удаление которого видел",
    hint="the shops delete old rows (DELETE_OLDER_THAN_SEC); the warehouse keeps them: never delete from dds"
    " what is missing from a source batch",
)
DELETED_EXPECTED = "every loaded row stays in dds after its shop deletes it (retention)"


@check(DELETED, order=160, grades=GRADED_LOADS)
def check_deleted_rows_kept(ctx: Context) -> Iterable[CheckResult]:
    """Rows the shops delete by retention keep their history in dds: the warehouse is the memory."""
    for table in _present(ctx):
        if ctx.observed is not None:
            yield _deleted_per_key(ctx, table)
            continue
        windows = [s.delete_after_sec for s in ctx.stack.shops if s.delete_after_sec]
        if not windows:
            yield DELETED.result(
                PASS, DELETED_EXPECTED, "the shops never delete (DELETE_OLDER_THAN_SEC=0)", table=table.name
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
        yield DELETED.result(
            worst,
            DELETED_EXPECTED,
            "; ".join(text for _, text in verdicts),
            None
            if worst == FAIL
            else "decidable once rows your DAG loaded are older than DELETE_OLDER_THAN_SEC (or run make check FAST=1)",
            table=table.name,
        )


def _deleted_per_key(ctx: Context, table: SourceTable) -> CheckResult:
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
        return DELETED.result(WAIT, DELETED_EXPECTED, "no loaded row was deleted yet", "", table=table.name)
    kept = set(
        ctx.query(
            sql.SQL("select distinct src_id, {key} from {t}").format(key=sql.Identifier(table.key), t=_dds(table))
        )
    )
    gone = [f"{src}:{key}" for src, key in deleted if (src, key) not in kept]
    return DELETED.result(
        not gone,
        DELETED_EXPECTED,
        f"{len(gone)} of {len(deleted)} deleted rows are gone from dds, e.g. {', '.join(gone[:EXAMPLES])}"
        if gone
        else f"all {len(deleted)} deleted rows kept",
        table=table.name,
    )
