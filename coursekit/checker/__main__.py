"""`make check GRADE=G3_Middle`: check a running grade against its Definition of done.

1. Takes a snapshot time and waits for a load DAG run that starts after it to
   finish (so the warehouse has seen everything created before the snapshot).
2. Compares the warehouse with the shops, but only rows the generators can no
   longer change (created more than UPDATE_NOT_OLDER_THAN_SEC + a margin ago).
3. Prints a table of checks; exits 0 only if every check passes.

Works the same against `docker compose up -d` and `make run`: both publish the
grade's ports on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from coursekit.checker import checks, wap_checks
from coursekit.checker.airflow_api import AirflowClient, wait_for_run
from coursekit.checker.checks import CheckResult, Context
from coursekit.checker.cleanup import check_cleanup_dag
from coursekit.checker.report import print_report
from coursekit.checker.stack import GradeStack, StackNotReachable
from coursekit.grade import GRADES, REPO_ROOT, Grade

# grade -> (checks, SCD2 warehouse?)
PLANS: dict[str, tuple[list[checks.Check], bool]] = {
    "G0_Trainee": (checks.G3_CHECKS, True),
    "G1_Intern": ([checks.check_tables_exist, checks.check_shops_loaded, check_cleanup_dag], True),
    "G2_Junior": (checks.G2_CHECKS, False),
    "G3_Middle": (checks.G3_CHECKS, True),
    "G4_Senior": (wap_checks.g4_plan(), True),
}


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


def wait_for_fresh_run(stack: GradeStack, since: datetime, timeout: float, dag_id: str | None, console: Console) -> str:
    client = AirflowClient(stack)
    client.token()
    with Progress(
        TextColumn("waiting for a load run that started after the snapshot to finish"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("wait", total=timeout)
        run = wait_for_run(client, since, timeout, dag_id, tick=lambda elapsed: progress.update(bar, completed=elapsed))
    if run is None:
        unpaused = client.unpaused_dags()
        raise StackNotReachable(
            f"no DAG run that started after {since:%H:%M:%S} UTC finished within {timeout:.0f} s.\n"
            f"Unpaused DAGs: {', '.join(unpaused) or 'none'}. Unpause your load DAG (or trigger it by hand) "
            f"and run the check again; a slow machine may need --timeout {int(timeout * 2)}."
        )
    return f"{run['dag_id']} / {run['dag_run_id']}"


def stable_before(stack: GradeStack, times: dict[str, datetime]) -> dict[str, datetime]:
    """Per shop: rows created before this can no longer change (update window + margin before the snapshot)."""
    return {
        shop.name: times[shop.name] - timedelta(seconds=shop.update_window_sec + checks.STABLE_MARGIN_SEC)
        for shop in stack.shops
    }


def run_checks(
    stack: GradeStack, plan: list[checks.Check], scd2: bool, connections: dict, dwh, times
) -> list[CheckResult]:
    ctx = Context(stack=stack, dwh=dwh, shops=connections, stable_before=stable_before(stack, times), scd2=scd2)
    results: list[CheckResult] = []
    for check in plan:
        results.extend(check(ctx))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make check", description=__doc__.splitlines()[0])
    parser.add_argument("--grade", default=os.environ.get("GRADE", "G0_Trainee"), choices=GRADES)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a fresh DAG run (default 300)")
    parser.add_argument("--dag-id", help="wait for this DAG (default: any DAG except the newcomer examples)")
    parser.add_argument("--no-wait", action="store_true", help="check the warehouse as it is, without waiting")
    parser.add_argument(
        "--grades-root",
        type=Path,
        default=Path(os.environ.get("COURSEKIT_GRADES_ROOT", REPO_ROOT)),
        help="folder holding the grade folders",
    )
    options = parser.parse_args(argv)
    console = Console(width=160)
    plan, scd2 = PLANS[options.grade]
    try:
        stack = GradeStack(Grade.named(options.grade, options.grades_root))
        with ExitStack() as stack_of_connections:
            dwh = stack_of_connections.enter_context(stack.connect_dwh())
            connections = {s.name: stack_of_connections.enter_context(stack.connect_shop(s)) for s in stack.shops}
            times = snapshot(stack, connections)
            started = datetime.now(UTC)
            if not options.no_wait:
                run = wait_for_fresh_run(stack, started, options.timeout, options.dag_id, console)
                console.print(f"checked after run {run}")
            results = run_checks(stack, plan, scd2, connections, dwh, times)
    except StackNotReachable as exc:
        console.print(f"[red]✗[/red] {exc}", markup=True, highlight=False)
        return 2
    print_report(options.grade, results, console)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
