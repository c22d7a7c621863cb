"""The runs' checks: the load's recent runs succeeded, never overlapped, and a re-run changes nothing.

Each check is declared next to it (`registry.py`). `fingerprint` and `changed_keys` are what the live
and the fast mode compare around the re-run they make (`Context.rerun`).
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg2 import sql

from coursekit.checker.context import EXAMPLES, FAIL, WAIT, CheckResult, Context, _dds, _present, _shape
from coursekit.checker.registry import EVERY_GRADE, GRADED_LOADS, Line, check

RECENT_RUNS = 10  # "the recent runs succeeded" looks at this many finished runs
RUNS_UNKNOWN = "the checker could not list runs"  # the hint while the runs are unknown

SUCCEEDED = Line(
    f"the last {RECENT_RUNS} runs of the load DAG succeeded",
    item="the load runs reliably",
    en=f"none of the load DAG's latest {RECENT_RUNS} finished runs failed; a failure is named with its"
    " task (`FAST=1` leaves out the run it failed on purpose by taking a shop down)",
    ru=f"ни один из последних {RECENT_RUNS} завершённых запусков DAG-а загрузки не упал; упавший"
    " назван вместе с задачей (`FAST=1` не считает запуск, который сам уронил, выключив магазин)",
    hint="open the failed task's log in the Airflow UI; a load that fails on some batches often builds SQL from"
    " values (quotes, newlines) instead of passing them as parameters",
    per="once",
)


@check(SUCCEEDED, order=170, grades=EVERY_GRADE)
def check_runs_succeeded(ctx: Context) -> Iterable[CheckResult]:
    expected = "no failed run (a failed run means rows loaded late, or lost)"
    if ctx.runs is None:
        yield SUCCEEDED.result(WAIT, expected, "runs unknown", RUNS_UNKNOWN)
        return
    recent = [r for r in ctx.runs if r.state in ("success", "failed") and not r.planned_failure][:RECENT_RUNS]
    if not recent:
        yield SUCCEEDED.result(WAIT, expected, "no finished run yet", "unpause the load DAG")
        return
    failed = [r for r in recent if r.state == "failed"]
    yield SUCCEEDED.result(
        not failed,
        expected,
        f"{len(failed)} of {len(recent)} failed: "
        + "; ".join(f"{r.run_id} in {', '.join(r.failed_tasks) or 'unknown task'}" for r in failed[:3])
        if failed
        else f"all {len(recent)} succeeded",
    )


NEVER_OVERLAP = Line(
    "runs of the load DAG never overlap",
    item="the load runs reliably",
    en="the DAG has `max_active_runs=1`, and no two of its recent runs were active at once",
    ru="у DAG-а `max_active_runs=1`, и никакие два его недавних запуска не шли одновременно",
    hint="two runs at once read the same watermark and write the same staging tables: set max_active_runs=1",
    per="once",
)


@check(NEVER_OVERLAP, order=180, grades=GRADED_LOADS)
def check_runs_never_overlap(ctx: Context) -> Iterable[CheckResult]:
    expected = "max_active_runs=1, and no two runs active at once"
    if ctx.runs is None and ctx.max_active_runs is None:
        yield NEVER_OVERLAP.result(WAIT, expected, "runs unknown", RUNS_UNKNOWN)
        return
    overlapping = []
    for dag_id in dict.fromkeys(r.dag_id for r in ctx.runs or []):  # a pipeline: each of its DAGs on its own
        timed = sorted((r for r in ctx.runs or [] if r.start and r.end and r.dag_id == dag_id), key=lambda r: r.start)
        overlapping += [f"{a.run_id} and {b.run_id}" for a, b in zip(timed, timed[1:], strict=False) if b.start < a.end]
    too_many = ctx.max_active_runs is not None and ctx.max_active_runs != 1
    found = [f"max_active_runs={ctx.max_active_runs}"] if too_many else []
    found += [f"overlapping: {', '.join(overlapping[:3])}"] if overlapping else []
    yield NEVER_OVERLAP.result(not found, expected, "; ".join(found) or "ok")


RERUN = Line(
    "re-running a finished run changes nothing",
    item="loads are idempotent",
    en="the checker re-runs a finished load run (Airflow's Clear); after it, every row the shops can no longer"
    " change is in `dds` exactly as before (WAIT with `--no-rerun`)",
    ru="проверка перезапускает завершённый запуск загрузки (Clear в Airflow); после него у каждой строки,"
    " которую магазины уже не меняют, `dds` хранит то же, что и до него (WAIT с `--no-rerun`)",
    hint="re-running a run loaded its batch again: replace the run's staging rows instead of appending, and"
    " insert only keys whose values differ from their current version",
    per="once",
)


@check(RERUN, order=190, grades=GRADED_LOADS)
def check_rerun_changes_nothing(ctx: Context) -> Iterable[CheckResult]:
    expected = "the same rows in dds after the re-run, for every row the shops can no longer change"
    if ctx.rerun is None:
        yield RERUN.result(
            WAIT,
            expected,
            "not tried",
            "the checker re-runs your last finished run unless --no-rerun is given; make check FAST=1 always does",
        )
        return
    rerun = ctx.rerun
    if rerun.state != "success":
        yield RERUN.result(
            FAIL,
            expected,
            f"the re-run of {rerun.run_id} ended {rerun.state}",
            "a re-run must succeed: create tables with IF NOT EXISTS and replace (not append) a run's staging data",
        )
        return
    changed = {t: keys for t, keys in rerun.changed.items() if keys}
    yield RERUN.result(
        not changed,
        expected,
        "; ".join(f"dds.{t}: {len(k)} keys changed, e.g. {', '.join(k[:EXAMPLES])}" for t, k in changed.items())
        or f"re-ran {rerun.run_id}: nothing changed",
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
