"""`python -m coursekit.loadtest --grade G4_Senior`: drive the shops harder and harder, measure, report.

By default the test starts its own copy of the grade natively (free ports, a
temporary folder; your `make run` data is not touched), with the grade's
reference solution DAG. `--attach` measures a stack that already runs instead
(`docker compose -f docker-compose.yml -f docker-compose.loadtest.yml up -d`, or
`make run`), whatever DAG it runs; only the load generators are added to it. It measures the
stack's own containers (Docker, per container) or its own processes (`make run`), nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table as RichTable

from coursekit.checker.checks import Context
from coursekit.checker.stack import GradeStack, StackNotReachable
from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.loadtest import measure, report
from coursekit.loadtest.load import LoadGenerators, ShopTarget
from coursekit.loadtest.private_stack import PrivateStack
from coursekit.native.compose import compose_variables

DEFAULT_RATES = "50,200,500"
SHORT_RATES = "20,60"
SAMPLE_EVERY_SEC = 5
DRAIN_TIMEOUT_SEC = 420


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coursekit.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--grade", default=os.environ.get("GRADE", "G4_Senior"), choices=GRADES)
    parser.add_argument("--duration", type=int, help="seconds of load in total, split evenly across the rates")
    parser.add_argument("--rates", help=f"inserts per one-second tick per shop, increasing (default {DEFAULT_RATES})")
    parser.add_argument("--short", action="store_true", help=f"a 2-3 minute run for CI: rates {SHORT_RATES}, 80 s")
    parser.add_argument("--attach", action="store_true", help="measure the stack that runs now instead of a copy")
    parser.add_argument("--update-window", type=int, help="seconds back the load updates rows (default 120)")
    parser.add_argument("--report-dir", type=Path, default=REPO_ROOT / "loadtest-report", help="reports go here")
    parser.add_argument("--keep", action="store_true", help="keep the private copy's folder (logs) afterwards")
    options = parser.parse_args(argv)
    options.rates = [int(r) for r in (options.rates or (SHORT_RATES if options.short else DEFAULT_RATES)).split(",")]
    options.duration = options.duration or (80 if options.short else 600)
    if options.rates != sorted(options.rates) or min(options.rates) < 1:
        parser.error("--rates must be positive and increasing, e.g. 50,200,500")
    return options


def targets(stack: GradeStack) -> list[ShopTarget]:
    """The shops' databases as the load generators reach them: published ports, owner role."""
    return [ShopTarget(shop.name, shop.port, shop.env) for shop in stack.shops]


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    console = Console(width=150)
    grade = Grade.named(options.grade)
    update_window = options.update_window or (
        int(grade.generator_env("shop-1").get("UPDATE_NOT_OLDER_THAN_SEC") or 120) if options.attach else 120
    )
    started = datetime.now(UTC)
    folder = options.report_dir / started.strftime("%Y%m%d-%H%M%S")
    private = None if options.attach else PrivateStack(grade, update_window)
    try:
        if private is not None:
            console.print(f"starting a private copy of {grade.name} in {private.root} (about a minute)...")
            private.start()
            os.environ.update({name: str(port) for name, port in private.ports.items()})
            grade_stack = GradeStack(private.grade)
            # The copy's own generators are idle; the load generators update every table.
            grade_stack.tables = [replace(t, updates=True) for t in grade_stack.tables]
            roots = private.process_roots
            mode = "natively, private copy with the reference solution"
        else:
            grade_stack = GradeStack(grade)
            roots = attached_stack(grade)
            mode = "attached to the running stack" + (f" (Docker project {roots})" if isinstance(roots, str) else "")
        run = drive(options, console, grade, grade_stack, roots, private, update_window, started, mode)
    except (StackNotReachable, RuntimeError) as exc:
        console.print(f"[red]✗[/red] {exc}", highlight=False)
        return 1
    finally:
        if private is not None:
            console.print("stopping the private copy...")
            try:
                private.stop()
            finally:
                if not options.keep:
                    private.remove()
    path = report.write(run, folder)
    console.print(f"report: {path}")
    best = report.best_phase(run.phases)
    console.print(f"highest rate keeping p95 under 5 minutes: {best.rate if best else 'none'} inserts/s per shop")
    return 0


def compose_project(grade: Grade) -> str:
    """The Compose project name of a grade as `docker compose` in its deploy folder resolves it."""
    import yaml

    variables = compose_variables(grade.deploy_dir)
    if variables.get("COMPOSE_PROJECT_NAME"):
        return variables["COMPOSE_PROJECT_NAME"]
    compose = yaml.safe_load((grade.deploy_dir / "docker-compose.yml").read_text(encoding="utf-8"))
    return compose["name"]


def attached_stack(grade: Grade):
    """What `--attach` measures: the grade's Compose project (its name) or `make run`'s processes."""
    project = compose_project(grade)
    if measure.docker_stats(project):
        return project
    roots = measure.native_roots(REPO_ROOT / ".run" / grade.name)
    if any(roots().values()):
        return roots
    raise RuntimeError(
        f"--attach found no running {grade.name}: no container of Docker Compose project {project!r} and no "
        f"`make run GRADE={grade.name}` processes. Start one of them first."
    )


def drive(options, console, grade, grade_stack, roots, private, update_window, started, mode) -> report.Run:
    tables = [measure.Table(t.name, t.key) for t in grade_stack.tables]
    src_ids = {shop.name: shop.src_id for shop in grade_stack.shops}
    work_dir = (private.root if private else options.report_dir / ".work") / "load"
    work_dir.mkdir(parents=True, exist_ok=True)
    # The grade's own generator config (the copy's is idle): its tables, shares and bad values, scaled.
    load = LoadGenerators(grade, targets(grade_stack), work_dir, update_window)
    if isinstance(roots, str):  # a Docker Compose project: one unit per container, plus the load generators
        monitor = measure.DockerMonitor(roots, extra=measure.ResourceMonitor(roots=lambda: {"generators": load.pids}))
    else:
        monitor = measure.ResourceMonitor(roots=lambda: {**roots(), "generators": load.pids})
    phase_seconds = options.duration / len(options.rates)
    phases: list[report.Phase] = []
    with ExitStack() as opened:
        dwh = opened.enter_context(grade_stack.connect_dwh())
        shops = {s.name: opened.enter_context(grade_stack.connect_shop(s)) for s in grade_stack.shops}
        written_at_start = _safe(lambda: measure.rows_written(dwh), 0)
        started = _now(dwh)  # the plots' zero: the monitor's first sample, on the database's clock
        monitor.sample()
        with Live(console=console, refresh_per_second=1) as live:
            try:
                for number, rate in enumerate(options.rates):
                    load.start(rate, number)
                    phase = report.Phase(rate, _now(dwh), _now(dwh))
                    first_sample = len(monitor.samples)
                    deadline = time.monotonic() + phase_seconds
                    while time.monotonic() < deadline:
                        time.sleep(min(SAMPLE_EVERY_SEC, max(0.0, deadline - time.monotonic())))
                        load.check_alive()
                        sample = monitor.sample()
                        written = _safe(lambda: measure.rows_written(dwh), written_at_start) - written_at_start
                        lag = _safe(lambda: measure.lag_seconds(dwh, tables[-1], list(src_ids.values()), _now(dwh)))
                        live.update(_progress(options.rates, number, phase_seconds, deadline, written, lag, sample))
                    load.stop()
                    phase.end = _now(dwh)
                    window = monitor.samples[first_sample:]
                    phase.cpu, phase.memory = report.phase_resources(window)
                    phases.append(phase)
            finally:
                load.stop()
            load_end = _now(dwh)
            drained = _drain(dwh, shops, src_ids, tables, live, monitor)
        for phase in phases:
            phase.source_rows = sum(measure.source_rows(c, tables, phase.start, phase.end) for c in shops.values())
            phase.landed = measure.landed_in_window(dwh, tables, phase.start, phase.end)
            phase.keys, phase.p50, phase.p95, phase.worst = measure.window_latency(dwh, tables, phase.start, phase.end)
        series = measure.series(dwh, tables, phases[0].start, _now(dwh))
        checks = _checks(grade_stack, dwh, shops, load_end, update_window)
    settings = {
        "rates (inserts per 1 s tick per shop)": ", ".join(map(str, options.rates)),
        "seconds per rate": f"{phase_seconds:.0f}",
        "updates per tick": "60% of inserts",
        "update window of the load (s)": str(update_window),
        "dags": "reference solution" if private else "whatever the stack runs",
        "CPU and memory": monitor.method,
    }
    return report.Run(
        grade.name, mode, started, measure.machine(), settings, phases, series, monitor.samples, checks, drained
    )


def _drain(dwh, shops, src_ids, tables, live, monitor, timeout: float = DRAIN_TIMEOUT_SEC) -> float:
    """Wait until dds holds every shop's newest row; returns how long that took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        monitor.sample()
        if _safe(lambda: measure.caught_up(dwh, shops, src_ids, tables), False):
            return time.monotonic() - began
        live.update(f"load stopped; waiting for the warehouse to catch up ({time.monotonic() - began:.0f} s)")
        time.sleep(SAMPLE_EVERY_SEC)
    return time.monotonic() - began


def _checks(grade_stack: GradeStack, dwh, shops, load_end: datetime, update_window: int) -> list[tuple[str, str, str]]:
    """The G4 checks over everything the load created (all rows are stable: the load has stopped)."""
    from coursekit.checker.wap_checks import g4_plan

    stack = replace_update_window(grade_stack, update_window)
    stable = {s.name: load_end for s in stack.shops}
    ctx = Context(stack=stack, dwh=dwh, shops=shops, stable_before=stable, scd2=True)
    return [(r.name, str(r.verdict), r.found) for check in g4_plan() for r in check(ctx)]


def replace_update_window(stack: GradeStack, update_window: int) -> GradeStack:
    stack.shops = [replace(shop, update_window_sec=update_window) for shop in stack.shops]
    return stack


def _progress(rates, number, phase_seconds, deadline, written, lag, sample) -> RichTable:
    table = RichTable(title="load test", show_header=True)
    for column in (
        "phase",
        "rate (inserts/s/shop)",
        "left (s)",
        "rows into dds",
        "dds behind (s)",
        "CPU cores",
        "memory MiB",
    ):
        table.add_column(column)
    cpu = ", ".join(f"{g} {v:.2f}" for g, v in sample.cpu_cores.items())
    rss = ", ".join(f"{g} {v:,.0f}" for g, v in sample.memory_mib.items())
    table.add_row(
        f"{number + 1}/{len(rates)}",
        str(rates[number]),
        f"{max(0.0, deadline - time.monotonic()):.0f} of {phase_seconds:.0f}",
        f"{written:,}",
        "-" if lag is None else f"{lag:.0f}",
        cpu,
        rss,
    )
    return table


def _now(dwh) -> datetime:
    return measure.now(dwh)


def _safe(read, default=None):
    """A measurement that fails (e.g. dds not created yet) must not end the test."""
    try:
        return read()
    except Exception:
        return default


if __name__ == "__main__":
    sys.exit(main())
