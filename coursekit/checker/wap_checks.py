"""G4's Definition of done: Write-Audit-Publish, checked on a running stack.

G3's checks still apply to what is published (SCD2 history from both shops),
except "every stable source row is loaded": in G4 a bad row must NOT be loaded.
So "nothing lost" becomes "published or quarantined": every stable source row
is in dds, or its key waits in `quarantine.<table>` with the reason. On top:
bad values never reach dds, every published order's customer and product is
published too, the audit keeps a log, and rows arrive within five minutes.

Which values are bad and which columns reference which table is read from the
grade's generator config (`invalid_values`, `references`): the checker knows
what the shops are told to get wrong. Each check is declared next to it (`registry.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from psycopg2 import sql

from coursekit.checker import registry
from coursekit.checker.context import WAIT, Check, CheckResult, Context, _dds, _keys, _present, _shape
from coursekit.checker.registry import Line, check
from coursekit.checker.stack import SourceTable
from coursekit.reference import rules

LATENCY_LIMIT_SEC = 300  # created_at -> load_dttm, 95th percentile
LATENCY_WINDOW = "1 hour"  # rows created this recently are measured
# The quarantine contract: the least a learner's design must have, and the names it may choose.
# quarantine.<table>: the key, src_id and a reason column (any of REASON_COLUMNS). A status column is
# optional (STATUS_COLUMNS, the first present); a row is held unless its status is a CLOSED one
# (case-insensitive): no status column means every row is held. A copied source column orders.status
# holds none of the closed values, so it cannot release anything by accident.
REASON_COLUMNS = ("failed_rules", "reason", "reasons", "rule", "rules", "failed_rule", "error", "errors")
STATUS_COLUMNS = ("quarantine_status", "status")
RELEASED = ("released", "published", "replayed", "resolved")  # the very row held was published later
CLOSED = (*RELEASED, "superseded", "replaced", "closed", "fixed", "done")  # no longer held


def _generator_columns(ctx: Context) -> dict[str, dict[str, dict]]:
    """table -> column -> its generator spec (references, invalid_values, ...)."""
    config = json.loads(ctx.stack.grade.generator_config.read_text(encoding="utf-8"))
    return {name: spec["columns"] for name, spec in config["tables"].items()}


def _columns(ctx: Context, schema: str, table: str) -> list[str]:
    rows = ctx.query(
        sql.SQL(
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s"
            " order by ordinal_position"
        ),
        (schema, table),
    )
    return [row[0] for row in rows]


def _quarantine(table: SourceTable) -> sql.Identifier:
    return sql.Identifier("quarantine", table.name)


def _reason_column(columns: list[str]) -> str | None:
    return next((c for c in REASON_COLUMNS if c in columns), None)


def _status_column(columns: list[str]) -> str | None:
    return next((c for c in STATUS_COLUMNS if c in columns), None)


def _status_is(status: str, values: tuple[str, ...]) -> sql.Composable:
    """`status` (a column name) is one of `values`, case-insensitive; NULL is none of them."""
    return sql.SQL("coalesce(lower(trim({}::text)) = any({}), false)").format(
        sql.Identifier(status), sql.Literal(list(values))
    )


def _held_keys(ctx: Context, table: SourceTable) -> set[tuple[str, object]]:
    """(src_id, key) of rows waiting in quarantine: every row, unless its status says it was closed."""
    columns = _columns(ctx, "quarantine", table.name)
    if not {table.key, "src_id"} <= set(columns):
        return set()
    status = _status_column(columns)
    where = sql.SQL("where not {}").format(_status_is(status, CLOSED)) if status else sql.SQL("")
    rows = ctx.query(
        sql.SQL("select src_id, {key} from {q} {where}").format(
            key=sql.Identifier(table.key), q=_quarantine(table), where=where
        )
    )
    return {(src_id, key) for src_id, key in rows}


QUARANTINE = Line(
    "quarantine.<table> exists",
    item="failing rows are kept on the side",
    en="with the key, `src_id` and a reason column (`failed_rules`, `reason`, `rule`, `error` or their plurals);"
    " a status column is optional",
    ru="с ключом, `src_id` и колонкой причины (`failed_rules`, `reason`, `rule`, `error` или их множественное"
    " число); колонка статуса необязательна",
)
G4 = ("G4_Senior",)


@check(QUARANTINE, order=90, grades=G4)
def check_quarantine_tables(ctx: Context) -> Iterable[CheckResult]:
    for table in ctx.stack.tables:
        columns = _columns(ctx, "quarantine", table.name)
        missing = [c for c in (table.key, "src_id") if c not in columns]
        reason = _reason_column(columns)
        problems = ([f"missing columns {', '.join(missing)}"] if missing else []) + (
            [] if reason else [f"no reason column (one of {', '.join(REASON_COLUMNS)})"]
        )
        yield QUARANTINE.result(
            bool(columns) and not problems,
            f"quarantine.{table.name} with {table.key}, src_id and why (failed_rules or reason); status optional",
            "no such table" if not columns else ("; ".join(problems) or "ok"),
            "" if columns and not problems else f"write rows that fail the audit to quarantine.{table.name}",
            table=table.name,
        )


REASONS = Line(
    "quarantine.<table>: every held row says why",
    item="failing rows are kept on the side",
    en="no held row has an empty reason",
    ru="ни у одной задержанной строки причина не пуста",
)
HELD = Line(
    "the shops' bad rows are held in quarantine",
    item="failing rows are kept on the side",
    en="some rows are held: the shops write invalid values and late references on purpose",
    ru="какие-то строки задержаны: магазины нарочно пишут неверные значения и ссылки на ещё не пришедшие строки",
    hint="the audit lets everything through: are the rules declared?",
    per="bad_tables",
)


@check(REASONS, HELD, order=100, grades=G4)
def check_bad_rows_held_with_reasons(ctx: Context) -> Iterable[CheckResult]:
    generator = _generator_columns(ctx)
    held_total, bad_tables = 0, []
    for table in ctx.stack.tables:
        spec = generator.get(table.name, {})
        if any(c.get("invalid_share") or c.get("late_share") for c in spec.values()):
            bad_tables.append(table.name)
        reason = _reason_column(_columns(ctx, "quarantine", table.name))
        if not reason:
            continue
        # NULL, '' and an empty array '{}' all say nothing.
        statement = sql.SQL(
            "select count(*), count(*) filter (where coalesce(nullif({r}::text, ''), '{{}}') = '{{}}') from {q}"
        ).format(r=sql.Identifier(reason), q=_quarantine(table))
        held, without_reason = ctx.query(statement)[0]
        held_total += held
        yield REASONS.result(
            without_reason == 0,
            f"{reason} names the rules each row broke",
            f"{without_reason} of {held} rows without a reason" if without_reason else f"ok ({held} rows)",
            "" if without_reason == 0 else f"store the failed rules' names in {reason}",
            table=table.name,
        )
    if bad_tables:
        yield HELD.result(
            held_total > 0,
            f"some rows: the shops make late references and invalid values in {', '.join(bad_tables)}",
            f"{held_total} rows held",
        )


BAD_VALUES = Line(
    "dds.<table>.<column> has none of <bad>",
    item="bad rows are never published",
    en="no version in `dds` holds a value the audit must stop",
    ru="ни одна версия в `dds` не содержит значения, которое аудит должен остановить",
    per="invalid_column",
)


@check(BAD_VALUES, order=110, grades=G4)
def check_bad_values_not_published(ctx: Context) -> Iterable[CheckResult]:
    generator = _generator_columns(ctx)
    for table in _present(ctx):
        dds_columns = set(ctx.dds_columns(table.name))
        for column, spec in generator.get(table.name, {}).items():
            bad = spec.get("invalid_values") or []
            if not bad or column not in dds_columns:
                continue
            rows = ctx.query(
                sql.SQL("select src_id, {key}, {c} from {t} where {c}::text = any(%s) limit 5").format(
                    key=sql.Identifier(table.key), c=sql.Identifier(column), t=_dds(table)
                ),
                ([str(value) for value in bad],),
            )
            yield BAD_VALUES.result(
                not rows,
                f"no {column} in {', '.join(map(str, bad))} (any version)",
                _keys(rows) or "ok",
                f"add a rule for {table.name}.{column} to the audit" if rows else "",
                table=table.name,
                column=column,
                bad=str(bad),
            )


REFERENCES = Line(
    "dds.<table>.<column>: every value is in dds.<parent>",
    item="published facts point at published dimensions",
    en="every published row's `<column>` has its `dds.<parent>` row (any version), from the same shop",
    ru="у каждого `<column>` опубликованной строки есть строка в `dds.<parent>` (любая версия) того же магазина",
    per="reference",
)


@check(REFERENCES, order=120, grades=G4)
def check_references_published(ctx: Context) -> Iterable[CheckResult]:
    generator = _generator_columns(ctx)
    tables = {t.name: t for t in ctx.stack.tables}
    present = {t.name for t in _present(ctx)}
    for table in _present(ctx):
        for column, spec in generator.get(table.name, {}).items():
            parent = spec.get("references")
            if not parent or parent not in tables:
                continue
            if parent not in present:
                orphans = [("all", "no parent table")]
            else:
                orphans = ctx.query(
                    sql.SQL(
                        "select c.src_id, c.{key}, c.{column} from {child} as c where c.{column} is not null"
                        " and not exists (select 1 from {parent} as p where p.{parent_key} = c.{column}"
                        " and p.src_id = c.src_id) limit 5"
                    ).format(
                        key=sql.Identifier(table.key),
                        column=sql.Identifier(column),
                        child=_dds(table),
                        parent=_dds(tables[parent]),
                        parent_key=sql.Identifier(tables[parent].key),
                    )
                )
            yield REFERENCES.result(
                not orphans,
                f"a dds.{parent} row (any version) for each {column}, same shop",
                _keys(orphans) or "ok",
                f"audit {column} against dds.{parent} and publish {parent} before {table.name}" if orphans else "",
                table=table.name,
                column=column,
                parent=parent,
            )


PUBLISHED = Line(
    "dds.<table>: every stable source row is published or quarantined",
    item="nothing is lost",
    en="every row created more than {stable} before the graded run started is in `dds`"
    " or waits in `quarantine.<table>`",
    ru="каждая строка, созданная больше чем за {stable_ru} до начала проверяемого запуска,"
    " есть в `dds` или ждёт в `quarantine.<table>`",
)
PUBLISHED_VALUES = Line(
    "dds.<table>: current values equal the source, or the newer version is held",
    item="values equal the source",
    en="the current version has the source's values, unless the source's newer version waits in quarantine",
    ru="текущая версия совпадает с источником, если только более новая версия из источника не ждёт в карантине",
)


@check(PUBLISHED, PUBLISHED_VALUES, order=55, grades=G4)
def check_published_or_held(ctx: Context) -> Iterable[CheckResult]:
    """G3's 'every stable source row is loaded' and 'values equal', with quarantine as an answer."""
    for table in _present(ctx):
        shape = _shape(ctx, table)
        held = _held_keys(ctx, table)
        compared, lost, stale, kept = 0, [], [], 0
        for shop in ctx.stack.shops:
            result = rules.compare_with_source(
                ctx.shops[shop.name],
                ctx.dwh,
                shape,
                shop.src_id,
                ctx.stable_before[shop.name],
                own_transaction=ctx.own_transaction,
            )
            compared += result.source_rows
            kept += sum((shop.src_id, key) in held for key in set(result.missing) | set(result.different))
            lost += [f"{shop.src_id}:{k}" for k in result.missing if (shop.src_id, k) not in held]
            stale += [f"{shop.src_id}:{k}" for k in result.different if (shop.src_id, k) not in held]
        yield PUBLISHED.result(
            WAIT if not compared else not lost,
            f"all {compared} stable source rows in dds or in quarantine.{table.name}",
            f"{len(lost)} in neither, e.g. {', '.join(lost[:5])}" if lost else f"ok ({kept} held)",
            "a row that fails the audit must be written to quarantine, in the publish transaction"
            if lost
            else "no source row is old enough to compare yet"
            if not compared
            else "",
            table=table.name,
        )
        yield PUBLISHED_VALUES.result(
            WAIT if not compared else not stale,
            "same values as the source, unless the source's version waits in quarantine",
            f"{len(stale)} differ, e.g. {', '.join(stale[:5])}" if stale else "ok",
            "an update in the source was neither published nor quarantined" if stale else "",
            table=table.name,
        )


AUDIT_LOG = Line(
    "quarantine.audit_log has a summary per run for every table",
    item="the audit keeps a log",
    en="with `run_id`, `table_name`, `src_id`, `checked` and `quarantined`, for {tables}",
    ru="с `run_id`, `table_name`, `src_id`, `checked` и `quarantined`, для {tables_ru}",
    per="once",
)


@check(AUDIT_LOG, order=130, grades=G4)
def check_audit_log(ctx: Context) -> Iterable[CheckResult]:
    columns = _columns(ctx, "quarantine", "audit_log")
    needed = {"run_id", "table_name", "src_id", "checked", "quarantined"}
    tables: list[str] = []
    if needed <= set(columns):
        tables = [row[0] for row in ctx.query(sql.SQL("select distinct table_name from quarantine.audit_log"))]
    expected = sorted(t.name for t in ctx.stack.tables)
    yield AUDIT_LOG.result(
        set(expected) <= set(tables),
        f"rows for {', '.join(expected)} with {', '.join(sorted(needed))}",
        (f"tables logged: {', '.join(sorted(tables)) or 'none'}" if columns else "no such table")
        + (
            f"; missing columns {', '.join(sorted(needed - set(columns)))}" if columns and needed - set(columns) else ""
        ),
        "" if set(expected) <= set(tables) else "write checked / published / quarantined / released per run",
    )


LATENCY = Line(
    f"dds.<table>: p95 latency under {LATENCY_LIMIT_SEC // 60} minutes",
    item="rows arrive within 5 minutes",
    en=f"95% of the rows created in the last {LATENCY_WINDOW} (after the first load) reach `dds`"
    f" within {LATENCY_LIMIT_SEC} s of their `created_at` (`load_dttm` stamps the arrival)",
    ru=f"95% строк, созданных за последний час (после первой загрузки), попадают в `dds` не позже"
    f" {LATENCY_LIMIT_SEC} с после их `created_at` (время прихода — `load_dttm`)",
)


@check(LATENCY, order=140, grades=G4)
def check_latency(ctx: Context) -> Iterable[CheckResult]:
    for table in _present(ctx):
        if not {"created_at", "load_dttm"} <= set(ctx.dds_columns(table.name)):
            yield LATENCY.result(
                False,
                "created_at and load_dttm columns",
                "missing",
                "stamp every version with load_dttm (when it was loaded)",
                table=table.name,
            )
            continue
        statement = sql.SQL(
            """
            with arrivals as (
                select src_id, min(created_at) as created_at, min(load_dttm) as arrived
                from {t} group by {key}, src_id
            ), first_loads as (
                select src_id, min(load_dttm) as first_load from {t} group by src_id
            )
            select count(*),
                percentile_cont(0.95) within group (order by extract(epoch from a.arrived - a.created_at)),
                max(extract(epoch from a.arrived - a.created_at))
            from arrivals as a join first_loads as f using (src_id)
            where a.created_at >= f.first_load and a.created_at >= now() - interval {window}
            """
        ).format(t=_dds(table), key=sql.Identifier(table.key), window=sql.Literal(LATENCY_WINDOW))
        rows, p95, worst = ctx.query(statement)[0]
        ok = rows > 0 and p95 is not None and p95 < LATENCY_LIMIT_SEC
        yield LATENCY.result(
            WAIT if not rows else ok,
            f"95% of the last {LATENCY_WINDOW}'s new rows in dds within {LATENCY_LIMIT_SEC} s of created_at",
            f"p95 {p95:.0f} s, max {worst:.0f} s over {rows} rows" if rows else "no rows created since the first load",
            ""
            if ok
            else "runs are too slow or too rare: schedule every minute, keep runs short"
            if rows
            else "rows count once they are created after the first load",
            table=table.name,
        )


RELEASED_LINE = Line(
    "quarantine rows were released",
    item="late rows are published when they pass (bonus)",
    en="some held row passed a later audit (its customer arrived) and was published, with status `released` (or"
    " `published`, `replayed`, `resolved`); the report calls it a bonus, but it counts towards DONE",
    ru="какая-то задержанная строка прошла более поздний аудит (пришёл её покупатель) и была опубликована со"
    " статусом `released` (или `published`, `replayed`, `resolved`); в отчёте это бонус, но без него DONE не будет",
    hint="re-audit open quarantine rows every run and publish those that pass",
    per="once",
)


@check(RELEASED_LINE, order=150, grades=G4)
def check_released(ctx: Context) -> Iterable[CheckResult]:
    released, found = 0, []
    for table in ctx.stack.tables:
        status = _status_column(_columns(ctx, "quarantine", table.name))
        if status:
            (count,) = ctx.query(
                sql.SQL("select count(*) from {q} where {released}").format(
                    q=_quarantine(table), released=_status_is(status, RELEASED)
                )
            )[0]
            released += count
            found.append(f"{table.name}: {count}")
    yield RELEASED_LINE.result(
        released > 0,
        f"some rows with status {' / '.join(RELEASED)} (an order whose customer arrived later)",
        ", ".join(found) or "no status column",
    )


def g4_plan(mode: str = "live") -> list[Check]:
    """G4's checks, in report order: G3's on dds (with quarantine as an answer), then the WAP ones.

    Read from the checks' declarations (`registry.py`); the load test's verdict is mode "loadtest".
    """
    return registry.plan("G4_Senior", mode)
