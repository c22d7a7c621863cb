"""`make check GRADE=G3_Middle`: check a grade against its Definition of done.

Two modes end with the same report and the same last line (DONE, NOT DONE,
WAIT or CANNOT CHECK; exit code 0, 1, 3 or 2):

* live (default): checks the grade's running stack (`make run` or Docker).
  1. Notes each shop's clock, waits for a load run that starts after it (and
     late enough to have rows of every table to compare) to finish, and
     re-runs that run (Airflow's "Clear") to prove a re-run changes nothing
     (`--no-rerun` skips that; the check then WAITs).
  2. Waits for a quiet moment (no load run in flight) and takes one snapshot of
     the warehouse, so a verdict never depends on a run being half-way.
  3. Compares it with the shops: rows created before that run started must be
     there; rows the shops can no longer update must carry the source's values.
* fast (`--fast`, `make check FAST=1`): grades the grade's DAG folder (or
  `--dags-dir`) on a private, time-compressed copy of the grade; see `fast/`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg2 import errors, sql
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from coursekit.checker import checks, registry
from coursekit.checker.airflow_api import NOT_LOADS, AirflowClient, wait_for_run
from coursekit.checker.checks import CheckResult, Context, Rerun, Run
from coursekit.checker.cleanup import inspect
from coursekit.checker.pipeline import LoadChoice, choose_load
from coursekit.checker.report import print_report, print_verdict
from coursekit.checker.results_json import Recorder, note_load_dag, reports_dir
from coursekit.checker.stack import GradeStack, StackNotReachable
from coursekit.grade import GRADES, REPO_ROOT, Grade

# grade -> (its checks in report order, SCD2 warehouse?): read from the checks' declarations (registry.py)
PLANS: dict[str, tuple[list[checks.Check], bool]] = {
    grade: (registry.plan(grade, "live"), registry.history(grade)) for grade in GRADES
}


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def snapshot(stack: GradeStack, connections: dict) -> dict[str, datetime]:
    """Each shop's own clock now: the stability windows are measured on it."""
    times = {}
    for shop in stack.shops:
        conn = connections[shop.name]
        with conn.cursor() as cur:
            cur.execute("select now()")
            times[shop.name] = cur.fetchone()[0]
        conn.rollback()
    return times


def decidable_since(stack: GradeStack, connections: dict, since: datetime) -> datetime:
    """The moment a load run must start after for its row checks to have rows to compare.

    A row counts once a run started COMMIT_SLACK_SEC after it was created. On a stack that has
    just started, the first run after `since` may start before that for the first rows of some
    table, and its checks could only WAIT: wait for a later run instead.
    """
    firsts = [since]
    for shop in stack.shops:
        conn = connections[shop.name]
        for table in stack.tables:
            with conn.cursor() as cur:
                try:
                    cur.execute(sql.SQL("select min(created_at) from {}").format(sql.Identifier(table.name)))
                    first = cur.fetchone()[0]
                except errors.UndefinedTable:  # the generator has not created it yet
                    first = None
            conn.rollback()
            if first is not None:
                firsts.append(first + timedelta(seconds=checks.COMMIT_SLACK_SEC))
    return max(firsts)


def _progress(console: Console, text: str) -> Progress:
    return Progress(TextColumn(text), BarColumn(), TimeElapsedColumn(), console=console, transient=True)


def wait_for_fresh_run(
    client: AirflowClient, since: datetime, timeout: float, dag_id: str | None, console: Console
) -> dict:
    with _progress(console, "waiting for a load run that started after the snapshot to finish") as progress:
        bar = progress.add_task("wait", total=timeout)
        run = wait_for_run(client, since, timeout, dag_id, tick=lambda elapsed: progress.update(bar, completed=elapsed))
    if run is None:
        unpaused = client.unpaused_dags()
        raise StackNotReachable(
            f"no DAG run that started after {since:%H:%M:%S} UTC finished within {timeout:.0f} s.\n"
            f"Unpaused DAGs: {', '.join(unpaused) or 'none'}. Unpause your load DAG (or trigger it by hand) "
            f"and run the check again; a slow machine may need --timeout {int(timeout * 2)}."
        )
    return run


def last_finished_run(client: AirflowClient, dag_id: str | None) -> dict:
    """--no-wait: the newest successful load run there is."""
    candidates = [dag_id] if dag_id else [d for d in client.unpaused_dags() if d not in NOT_LOADS]
    runs = [run for d in candidates for run in client.runs(d, limit=1, state="success")]
    if not runs:
        raise StackNotReachable("no load DAG has a successful run yet: unpause it and wait a minute")
    return max(runs, key=lambda r: r["start_date"])


def rerun_run(client: AirflowClient, dag_id: str, run: dict, timeout: float, console: Console) -> str:
    """Clear a finished run and wait until it has finished again; returns its new state."""
    cleared_at = datetime.now(UTC)
    client.clear(dag_id, run["dag_run_id"])
    deadline = time.monotonic() + timeout
    with _progress(console, f"re-running {run['dag_run_id']} to prove a re-run changes nothing") as progress:
        bar = progress.add_task("rerun", total=timeout)
        while time.monotonic() < deadline:
            again = client.run(dag_id, run["dag_run_id"])
            ended = parse_time(again.get("end_date"))
            if again["state"] in ("success", "failed") and ended and ended > cleared_at:
                return again["state"]
            progress.update(bar, completed=timeout - (deadline - time.monotonic()))
            time.sleep(3)
    return "still running"


def quiet_snapshot(client: AirflowClient, dag_id: str | list[str], dwh, timeout: float, console: Console) -> None:
    """Open one read-only repeatable-read snapshot of the warehouse taken while no load run is in flight.

    `dag_id` may be the DAGs of a pipeline: none of them may have a run in flight.
    """
    dag_ids = [dag_id] if isinstance(dag_id, str) else dag_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.active_runs(d) for d in dag_ids):
            dwh.rollback()
            dwh.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with dwh.cursor() as cur:
                cur.execute("select 1")  # the snapshot is taken by the first statement
            if not any(client.active_runs(d) for d in dag_ids):
                return
        dwh.rollback()
        time.sleep(2)
    console.print(
        f"[yellow]![/yellow] {', '.join(dag_ids)} never paused for {timeout:.0f} s; checking a snapshot taken mid-run"
    )


def live_choice(client: AirflowClient, stack: GradeStack, dag_id: str | None) -> LoadChoice:
    """The load of the running stack, chosen as the fast mode chooses (`pipeline.choose_load`).

    The DAGs and their asset links are Airflow's own (its REST API); whom a
    TriggerDagRunOperator triggers comes from parsing the DAG folder, when it parses here.
    """
    facts = client.dag_facts()
    try:
        parsed = {d["dag_id"]: d.get("facts", {}) for d in inspect(stack.dags_dir)["dags"]}
    except (RuntimeError, OSError, ValueError):
        parsed = {}
    for name, known in facts.items():
        for task, target in (parsed.get(name, {}).get("triggers") or {}).items():
            known["triggers"][task] = target
    return choose_load(facts, dag_id)


def wait_for_caused_runs(
    client: AirflowClient, dag_ids: list[str], since: datetime, timeout: float, console: Console
) -> list[str]:
    """Wait until each downstream DAG of the pipeline has a finished run caused at or after `since`.

    Caused: its `run_after` (an asset-triggered run's is its triggering event's time, a triggered
    run's the moment of the trigger) is not before `since`, so a run caused by an earlier run of
    the first DAG does not count. Returns the DAGs that have none (never caused, or still running).
    """
    left, deadline = list(dag_ids), time.monotonic() + timeout
    with _progress(console, f"waiting for the runs it causes ({', '.join(dag_ids)})") as progress:
        bar = progress.add_task("caused", total=timeout)
        while left and time.monotonic() < deadline:
            for name in list(left):
                for run in client.runs(name, limit=5):
                    caused = parse_time(run.get("run_after")) or parse_time(run.get("start_date"))
                    if caused and caused >= since and run["state"] in ("success", "failed"):
                        left.remove(name)
                        break
            if left:
                progress.update(bar, completed=timeout - (deadline - time.monotonic()))
                time.sleep(3)
    return left


def pipeline_runs(client: AirflowClient, dag_ids: list[str]) -> list[Run]:
    """The recent runs of every DAG of the load, newest first (a pipeline's run ids carry their DAG's name)."""
    runs = []
    for name in dag_ids:
        for run in recent_runs(client, name):
            run.dag_id = name
            if len(dag_ids) > 1:
                run.run_id = f"{name}/{run.run_id}"
            runs.append(run)
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(runs, key=lambda r: r.start or oldest, reverse=True)


def pipeline_max_active_runs(client: AirflowClient, dag_ids: list[str]) -> int | None:
    """max_active_runs of the load; of a pipeline, the one DAG that allows more than one run, if any."""
    values = [v for v in (client.dag(d).get("max_active_runs") for d in dag_ids) if v is not None]
    return next((v for v in values if v != 1), values[0] if values else None)


def recent_runs(client: AirflowClient, dag_id: str) -> list[Run]:
    runs = []
    for run in client.runs(dag_id, limit=checks.RECENT_RUNS * 2):
        failed = client.failed_tasks(dag_id, run["dag_run_id"]) if run["state"] == "failed" else []
        runs.append(
            Run(run["dag_run_id"], run["state"], parse_time(run["start_date"]), parse_time(run["end_date"]), failed)
        )
    return runs


def live(stack: GradeStack, plan: list[checks.Check], scd2: bool, options: argparse.Namespace, console: Console):
    client = AirflowClient(stack)
    with ExitStack() as stack_of_connections:
        dwh = stack_of_connections.enter_context(stack.connect_dwh())
        shops = {s.name: stack_of_connections.enter_context(stack.connect_shop(s)) for s in stack.shops}
        shop_now = snapshot(stack, shops)
        client.token()
        since = decidable_since(stack, shops, datetime.now(UTC))
        choice = live_choice(client, stack, options.dag_id)
        deadline = time.monotonic() + min(options.timeout, 120)
        while choice.dag_id is None and not choice.ambiguous and time.monotonic() < deadline:
            time.sleep(5)  # Airflow may still be parsing the folder (a stack just started)
            choice = live_choice(client, stack, options.dag_id)
        console.print(choice.line(), highlight=False, markup=False)
        if choice.dag_id is None:
            raise StackNotReachable(choice.why)
        pipeline = choice.pipeline
        if options.no_wait:
            run = last_finished_run(client, choice.dag_id)
        else:
            run = wait_for_fresh_run(client, since, options.timeout, choice.dag_id, console)
            caused_since = parse_time(run["start_date"]) or since
            missing = wait_for_caused_runs(client, pipeline[1:], caused_since, options.timeout, console)
            if missing:
                console.print(f"[yellow]![/yellow] no finished run of {', '.join(missing)} after {run['dag_run_id']}")
        dag_id = run["dag_id"]
        note_load_dag(dag_id)
        console.print(f"checked after run {dag_id} / {run['dag_run_id']}", highlight=False)
        started = parse_time(run["start_date"]) or datetime.now(UTC)
        slack = timedelta(seconds=checks.COMMIT_SLACK_SEC)
        ctx = Context(
            stack=stack,
            dwh=dwh,
            shops=shops,
            stable_before={s.name: started - timedelta(seconds=s.update_window_sec) - slack for s in stack.shops},
            present_before={s.name: started - slack for s in stack.shops},
            shop_now=shop_now,
            scd2=scd2,
        )
        if not options.no_rerun and checks.check_rerun_changes_nothing in plan:
            before = checks.fingerprint(ctx)
            cleared_at = datetime.now(UTC)
            state = rerun_run(client, dag_id, run, options.timeout, console)
            if state == "success" and wait_for_caused_runs(client, pipeline[1:], cleared_at, options.timeout, console):
                state = "finished, but the runs it causes did not"
            ctx.rerun = Rerun(run["dag_run_id"], state, checks.changed_keys(before, checks.fingerprint(ctx)))
        ctx.runs = pipeline_runs(client, pipeline)
        first = client.first_success(dag_id)
        ctx.first_load = parse_time(first["start_date"]) if first else None
        ctx.max_active_runs = pipeline_max_active_runs(client, pipeline)
        quiet_snapshot(client, pipeline, dwh, options.timeout, console)
        ctx.own_transaction = False
        results: list[CheckResult] = [result for check in plan for result in check(ctx)]
        dwh.rollback()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make check", description=__doc__.splitlines()[0])
    parser.add_argument("--grade", default=os.environ.get("GRADE", "G0_Trainee"), choices=GRADES)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a fresh DAG run (default 300)")
    parser.add_argument(
        "--dag-id", help="grade this DAG's load (default: load_shops_to_dwh, else the folder's only load DAG)"
    )
    parser.add_argument("--no-wait", action="store_true", help="check after the last finished run, without waiting")
    parser.add_argument("--no-rerun", action="store_true", help="do not re-run a finished run (idempotency WAITs)")
    parser.add_argument("--fast", action="store_true", help="grade on a private, time-compressed copy (FAST=1)")
    parser.add_argument(
        "--dags-dir",
        type=Path,
        help="with --fast: grade this DAG folder (default: DAGS_DIR as compose resolves it, else the grade's)",
    )
    parser.add_argument(
        "--grades-root",
        type=Path,
        default=Path(os.environ.get("COURSEKIT_GRADES_ROOT", REPO_ROOT)),
        help="folder holding the grade folders",
    )
    add_report_options(parser)
    options = parser.parse_args(argv)
    console = Console(width=160)
    recorder = Recorder(options.json, None if options.no_keep else reports_dir(options.grades_root))
    where = {"grade_name": options.grade, "grades_root": options.grades_root, "fast": options.fast}
    where["dags_dir"] = options.dags_dir  # None: the grade's (DAGS_DIR as compose resolves it)
    plan, scd2 = registry.plan(options.grade, "fast" if options.fast else "live"), registry.history(options.grade)
    try:
        grade = Grade.named(options.grade, options.grades_root)
        if options.fast:
            from coursekit.checker.fast import grade_fast

            dags_dir = options.dags_dir or GradeStack(grade).dags_dir
            results = grade_fast(grade, plan, scd2, dags_dir, console, dag_id=options.dag_id)
        else:
            results = live(GradeStack(grade), plan, scd2, options, console)
    except StackNotReachable as exc:
        console.print(f"[red]✗[/red] {exc}", markup=True, highlight=False)
        why = str(exc).splitlines()[0]
        return recorder.finish(print_verdict("CANNOT CHECK", why, console), why=why, **where)
    except (ValueError, OSError) as exc:  # a broken env file, compose file or generator config
        console.print(f"[red]✗[/red] {exc}", markup=True, highlight=False)
        why = f"the grade's configuration cannot be read: {exc}"
        return recorder.finish(print_verdict("CANNOT CHECK", why, console), why=why, **where)
    return recorder.finish(print_report(options.grade, results, console), results=results, **where)


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """--json and --no-keep: the machine-readable report (results_json.py, report.schema.json)."""
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the report as JSON here (make check JSON=PATH)"
    )
    parser.add_argument(
        "--no-keep",
        action="store_true",
        help="do not keep the report under .run/reports/ (or $COURSEKIT_REPORTS_DIR) for make progress",
    )


if __name__ == "__main__":
    sys.exit(main())
