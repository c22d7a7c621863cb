"""`python -m coursekit.loadtest --grade G4_Senior`: drive the shops harder and harder, measure, report.

The load ramps up in steps (geometric by default: 250, 500, 1000, ... inserts per second per shop,
four minutes each) and stops at the first step the pipeline does not keep up with (coursekit/
loadtest/knee.py decides, from the backlog sampled during the step). The report names the knee:
the highest rate that kept up, the first that did not and why, with where the runs' time went
(coursekit/loadtest/breakdown.py, from Airflow's task instances).

By default the test starts its own copy of the grade natively (free ports, a
temporary folder; your `make run` data is not touched), with the grade's own
DAG folder: yours (`airflow_data/dags`, or DAGS_DIR as compose resolves it;
`make loadtest SOLUTION=1` or `--dags-dir` for another, e.g. the reference). Its load
DAG is found as the checker finds it (`coursekit/checker/pipeline.py`).
`--attach` measures a stack that already runs instead
(`docker compose -f docker-compose.yml -f docker-compose.loadtest.yml up -d`, or
`make run`), whatever DAG it runs; only the load generators are added to it. It measures the
stack's own containers (Docker, per container) or its own processes (`make run`), nothing else.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from rich.console import Console
from rich.live import Live
from rich.table import Table as RichTable

from coursekit.checker.airflow_api import AirflowClient
from coursekit.checker.checks import Context
from coursekit.checker.pipeline import LoadChoice, choose_load
from coursekit.checker.stack import GradeStack, StackNotReachable
from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.loadtest import breakdown, ceiling, knee, measure, report
from coursekit.loadtest.knee import StepVerdict
from coursekit.loadtest.load import LoadGenerators, ShopTarget
from coursekit.loadtest.private_stack import PrivateStack
from coursekit.native.compose import compose_variables

# At most 27 min of load + drain; with the copy's start and the final checks a full run takes about 30 min.
START_RATE, FACTOR, STEPS, STEP_SEC, DRAIN_SEC = 250, 2.0, 6, 240, 180
SHORT_RATES, SHORT_STEP_SEC, SHORT_DRAIN_SEC = "20,60", 45, 240  # CI: 2-3 minutes of load + drain
CEILING_SEC, SHORT_CEILING_SEC = 60, 15  # the generators flat out with no pipeline, after the drain
SAMPLE_EVERY_SEC = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m coursekit.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--grade", default=os.environ.get("GRADE", "G4_Senior"), choices=GRADES)
    parser.add_argument("--start-rate", type=int, default=START_RATE, help="inserts/s per shop of the first step")
    parser.add_argument("--factor", type=float, default=FACTOR, help="each step's rate = the previous one x this")
    parser.add_argument("--steps", type=int, default=STEPS, help="at most this many steps")
    parser.add_argument("--rates", help="explicit rates instead of --start-rate/--factor/--steps, e.g. 50,200,500")
    parser.add_argument("--step-seconds", type=int, help=f"seconds per step (default {STEP_SEC})")
    parser.add_argument("--drain", type=int, help=f"at most this many seconds to catch up after (default {DRAIN_SEC})")
    parser.add_argument("--latency-target", type=int, default=300, help="seconds a new row may take to dds")
    parser.add_argument(
        "--short", action="store_true", help=f"a 2-3 minute run for CI: rates {SHORT_RATES}, {SHORT_STEP_SEC} s each"
    )
    parser.add_argument("--attach", action="store_true", help="measure the stack that runs now instead of a copy")
    parser.add_argument(
        "--dags-dir",
        type=Path,
        help="the DAG folder to measure (default: DAGS_DIR as compose resolves it, else the grade's airflow_data/dags)",
    )
    parser.add_argument("--update-window", type=int, help="seconds back the load updates rows (default 120)")
    parser.add_argument("--report-dir", type=Path, default=REPO_ROOT / "loadtest-report", help="reports go here")
    parser.add_argument("--keep", action="store_true", help="keep the private copy's folder (logs) afterwards")
    options = parser.parse_args(argv)
    if options.rates or options.short:
        options.rates = [int(r) for r in (options.rates or SHORT_RATES).split(",")]
    else:
        options.rates = knee.plan(options.start_rate, options.factor, options.steps)
    options.step_seconds = options.step_seconds or (SHORT_STEP_SEC if options.short else STEP_SEC)
    options.drain = options.drain or (SHORT_DRAIN_SEC if options.short else DRAIN_SEC)
    options.ceiling_seconds = SHORT_CEILING_SEC if options.short else CEILING_SEC
    if options.rates != sorted(options.rates) or min(options.rates) < 1:
        parser.error("--rates must be positive and increasing, e.g. 50,200,500")
    if options.step_seconds < 30:
        parser.error("--step-seconds must be at least 30 (the backlog is judged on the step's last two thirds)")
    return options


def bound(options: argparse.Namespace) -> str:
    """The plan and its time bound, printed before anything starts."""
    longest = len(options.rates) * options.step_seconds + options.drain + 1.5 * options.ceiling_seconds
    return (
        f"ramp: {', '.join(map(str, options.rates))} inserts/s per shop, {options.step_seconds} s per step, "
        f"stopping at the first step that does not keep up; at most {len(options.rates)} steps x "
        f"{options.step_seconds} s + drain <= {options.drain} s + ceiling {1.5 * options.ceiling_seconds:.0f} s "
        f"= {longest / 60:.0f} min"
    )


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
    load_average = os.getloadavg()  # before anything of the test starts: other people's load
    console.print(bound(options) + (" (plus about a minute to start the private copy)" if not options.attach else ""))
    folder = options.report_dir / started.strftime("%Y%m%d-%H%M%S")
    dags_dir = (options.dags_dir or GradeStack(grade).dags_dir).resolve()
    if not options.attach:
        try:
            choice = folder_load(dags_dir)
        except RuntimeError as exc:
            console.print(f"[red]✗[/red] {exc}", highlight=False)
            return 1
        console.print(f"measuring {_shown(dags_dir)}; {choice.line()}", highlight=False, markup=False)
    private = None if options.attach else PrivateStack(grade, update_window, dags_dir=dags_dir)
    try:
        if private is not None:
            console.print(f"starting a private copy of {grade.name} in {private.root} (about a minute)...")
            private.start()
            os.environ.update({name: str(port) for name, port in private.ports.items()})
            grade_stack = GradeStack(private.grade)
            # The copy's own generators are idle; the load generators update every table.
            grade_stack.tables = [replace(t, updates=True) for t in grade_stack.tables]
            roots = private.process_roots
            mode = f"natively, private copy with the DAGs of {_shown(dags_dir)}"
        else:
            grade_stack = GradeStack(grade)
            roots = attached_stack(grade)
            mode = "attached to the running stack" + (f" (Docker project {roots})" if isinstance(roots, str) else "")
        run = drive(options, console, grade, grade_stack, roots, private, update_window, load_average, mode)
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
    best, failed = report.knee(run.phases)
    console.print(f"highest rate that kept up: {best.rate if best else 'none'} inserts/s per shop")
    console.print(
        f"first rate that did not: {failed.rate} ({failed.why})"
        if failed
        else "did not reach the knee within the steps"
    )
    return 0


def folder_load(dags_dir: Path) -> LoadChoice:
    """The folder's load DAG, chosen as the checker chooses it; a folder without one cannot be measured."""
    from coursekit.checker.cleanup import inspect

    if not dags_dir.is_dir():
        raise RuntimeError(f"no DAG folder at {dags_dir}")
    choice = choose_load({d["dag_id"]: d["facts"] for d in inspect(dags_dir)["dags"]})
    if choice.dag_id is None:
        raise RuntimeError(
            f"nothing to measure in {dags_dir}: {choice.why}. Write your load first, or measure the reference:"
            " make loadtest GRADE=... SOLUTION=1"
        )
    return choice


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


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


@dataclass
class Session:
    """What every part of one measurement shares: the plan, the load, the monitor and the connections."""

    options: argparse.Namespace
    console: Console
    stack: GradeStack
    load: LoadGenerators
    monitor: measure.ResourceMonitor | measure.DockerMonitor
    dwh: object = None
    shops: dict[str, object] = field(default_factory=dict)
    backlog: list[tuple[datetime, int | None, float | None]] = field(default_factory=list)

    @property
    def tables(self) -> list[measure.Table]:
        return [measure.Table(t.name, t.key) for t in self.stack.tables]

    @property
    def src_ids(self) -> dict[str, str]:
        return {shop.name: shop.src_id for shop in self.stack.shops}

    def sample_backlog(self) -> tuple[datetime, int | None, float | None]:
        at, rows, lag = _backlog(self.dwh, self.shops, self.src_ids, self.tables)
        self.backlog.append((at, rows, lag))
        return at, rows, lag


def drive(options, console, grade, grade_stack, roots, private, update_window, load_before, mode) -> report.Run:
    """The ramp, the drain, the measurements over the warehouse, the checks and the machine's ceiling."""
    work_dir = (private.root if private else options.report_dir / ".work") / "load"
    work_dir.mkdir(parents=True, exist_ok=True)
    # The grade's own generator config (the copy's is idle): its tables, shares and bad values, scaled.
    load = LoadGenerators(grade, targets(grade_stack), work_dir, update_window)
    session = Session(options, console, grade_stack, load, _monitor(roots, load))
    with ExitStack() as opened:
        session.dwh = dwh = opened.enter_context(grade_stack.connect_dwh())
        session.shops = {s.name: opened.enter_context(grade_stack.connect_shop(s)) for s in grade_stack.shops}
        started = _now(dwh)  # the plots' zero: the monitor's first sample, on the database's clock
        session.monitor.sample()
        with Live(console=console, refresh_per_second=1) as live:
            try:
                phases = _ramp(session, live)
            finally:
                load.stop()
            load_end = _now(dwh)
            drained = _drain(session, live)
        load_average = [load_before, os.getloadavg()]
        _measure_phases(session, phases)
        series = measure.series(dwh, session.tables, phases[0].start, _now(dwh))
        series["backlog"] = session.backlog
        client = AirflowClient(grade_stack)
        measured = _safe(lambda: choose_load(client.dag_facts()).pipeline, [])  # the checker's choice, in Airflow
        runs = _safe(lambda: breakdown.fetch(client, phases[0].start, _now(dwh), measured or None), [])
        checks = _checks(grade_stack, dwh, session.shops, load_end, update_window)
        console.print(f"the machine's ceiling: DAGs paused, generators flat out {options.ceiling_seconds} s, raw COPY")
        top = _ceiling(session, client)
    dags_dir = private.dags_dir if private and private.dags_dir else None
    settings = {
        "ramp": bound(options),
        "latency target (s)": str(options.latency_target),
        "updates per tick": "60% of inserts",
        "update window of the load (s)": str(update_window),
        "dags": _shown(dags_dir) if dags_dir else "whatever the stack runs",
        "CPU and memory": session.monitor.method,
        "pipeline measured": _commit(dags_dir),
    }
    return report.Run(
        grade.name,
        mode,
        started,
        measure.machine(),
        settings,
        phases,
        series,
        session.monitor.samples,
        checks,
        drained,
        caught_up=drained < options.drain,
        runs=runs,
        target_sec=options.latency_target,
        load_average=load_average,
        ceiling=top,
    )


def _monitor(roots, load: LoadGenerators) -> measure.ResourceMonitor | measure.DockerMonitor:
    """Docker: one unit per container, plus the load generators; natively: the stack's process trees."""
    if isinstance(roots, str):  # a Docker Compose project
        generators = measure.ResourceMonitor(roots=lambda: {"generators": load.pids}, machine_wide=True)
        return measure.DockerMonitor(roots, extra=generators)
    return measure.ResourceMonitor(roots=lambda: {**roots(), "generators": load.pids}, machine_wide=True)


def _ramp(session: Session, live: Live) -> list[report.Phase]:
    """Step after step until one does not keep up (or the plan ends)."""
    phases: list[report.Phase] = []
    previous_trough = None
    for number, rate in enumerate(session.options.rates):
        phase, verdict = _step(session, live, number, rate, previous_trough)
        previous_trough = verdict.trough_end
        phases.append(phase)
        if not verdict.keeps_up:
            session.console.print(f"rate {rate} does not keep up: {verdict.reason}; the ramp stops here")
            break
    return phases


def _step(session: Session, live: Live, number: int, rate: int, previous_trough) -> tuple[report.Phase, StepVerdict]:
    """One rate held for a step, the backlog sampled every few seconds, then judged (knee.judge_step)."""
    options, load, monitor, dwh = session.options, session.load, session.monitor, session.dwh
    load.start(rate, number)
    phase = report.Phase(rate, _now(dwh), _now(dwh), target_sec=options.latency_target)
    first_sample, began = len(monitor.samples), time.monotonic()
    samples: list[knee.BacklogSample] = []
    while (elapsed := time.monotonic() - began) < options.step_seconds:
        time.sleep(min(SAMPLE_EVERY_SEC, max(0.0, options.step_seconds - elapsed)))
        load.check_alive()
        sample = monitor.sample()
        _, rows, lag = session.sample_backlog()
        samples.append(knee.BacklogSample(time.monotonic() - began, rows, lag))
        live.update(_progress(options, number, began, rows, lag, sample))
    load.stop()
    phase.end = _now(dwh)
    phase.cpu, phase.memory = report.phase_resources(monitor.samples[first_sample:])
    phase.samples, phase.step_seconds = samples, options.step_seconds
    # The load DAG's runs that ended in the step's second half, for the run-length rule.
    half = phase.start + timedelta(seconds=options.step_seconds / 2)
    since = phase.start - timedelta(seconds=options.latency_target)
    finished = _safe(lambda: breakdown.fetch(AirflowClient(session.stack), since, _now(dwh)), [])
    verdict = knee.judge_step(
        samples,
        options.step_seconds,
        previous_trough,
        options.latency_target,
        run_seconds=[run.seconds for run in finished if run.end >= half],
    )
    phase.ramp_ok, phase.reason = verdict.keeps_up, verdict.reason
    phase.trough_middle, phase.trough_end = verdict.trough_middle, verdict.trough_end
    phase.lag_p95 = verdict.p95_end
    return phase, verdict


def _measure_phases(session: Session, phases: list[report.Phase]) -> None:
    """After the drain, every step's rows are in dds: count them and their latency, step by step."""
    dwh, tables = session.dwh, session.tables
    for phase in phases:
        phase.source_rows = sum(measure.source_rows(c, tables, phase.start, phase.end) for c in session.shops.values())
        phase.landed = measure.landed_in_window(dwh, tables, phase.start, phase.end)
        phase.keys, phase.p50, phase.p95, phase.worst = measure.window_latency(dwh, tables, phase.start, phase.end)


def _ceiling(session: Session, client: AirflowClient) -> ceiling.Ceiling | None:
    """The machine's own limit beside the knee; None (and a note) if Airflow would not pause."""
    options, load, dwh, shops, tables = session.options, session.load, session.dwh, session.shops, session.tables
    try:
        paused = ceiling.pause_pipeline(client, dwh, stop_runs=not options.attach)
    except (RuntimeError, StackNotReachable, OSError, psycopg2.Error) as exc:
        print(f"no ceiling measured: {exc}", file=sys.stderr)
        return None
    asked = 2 * max(options.rates)
    try:
        # Rows count by created_at (a tick's start): a tick that starts inside the window counts
        # whole, so the generators warm up before it and get time to commit its last tick after it.
        load.start(asked, len(options.rates))
        time.sleep(options.ceiling_seconds / 6)
        start = _now(dwh)
        time.sleep(options.ceiling_seconds)
        end = _now(dwh)
        time.sleep(options.ceiling_seconds / 3)
        load.check_alive()
        session.monitor.sample()
        load.stop()
        rows = sum(measure.source_rows(c, tables, start, end) for c in shops.values())
        out_sec, in_sec = ceiling.copy_rows(shops, dwh, tables, start, end)
    finally:
        load.stop()
        if options.attach:  # the learner's own stack: leave their DAGs as they were
            for dag_id in paused:
                _safe(lambda d=dag_id: client.set_paused(d, False))
    return ceiling.Ceiling(asked, (end - start).total_seconds(), rows, len(shops), out_sec, in_sec)


def _drain(session: Session, live: Live) -> float:
    """Wait until dds holds every shop's newest row; returns how long that took."""
    timeout, began = session.options.drain, time.monotonic()
    while time.monotonic() - began < timeout:
        session.monitor.sample()
        session.sample_backlog()
        if _safe(lambda: measure.caught_up(session.dwh, session.shops, session.src_ids, session.tables), False):
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
    return [(r.name, str(r.verdict), r.found) for check in g4_plan("loadtest") for r in check(ctx)]


def replace_update_window(stack: GradeStack, update_window: int) -> GradeStack:
    stack.shops = [replace(shop, update_window_sec=update_window) for shop in stack.shops]
    return stack


def _progress(options, number, began, rows, lag, sample) -> RichTable:
    table = RichTable(title="load test", show_header=True)
    for column in (
        "step",
        "rate (inserts/s/shop)",
        "left (s)",
        "rows not yet in dds",
        "dds behind (s)",
        "CPU cores",
        "memory MiB",
    ):
        table.add_column(column)
    cpu = ", ".join(f"{g} {v:.2f}" for g, v in sample.cpu_cores.items())
    rss = ", ".join(f"{g} {v:,.0f}" for g, v in sample.memory_mib.items())
    table.add_row(
        f"{number + 1}/{len(options.rates)}",
        str(options.rates[number]),
        f"{max(0.0, options.step_seconds - (time.monotonic() - began)):.0f} of {options.step_seconds}",
        "-" if rows is None else f"{rows:,}",
        "-" if lag is None else f"{lag:.0f}",
        cpu,
        rss,
    )
    return table


def _commit(dags_dir: Path | None) -> str:
    """Which DAG folder ran, at which commit (and whether it had changes), for the record."""
    if dags_dir is None:
        return "the DAGs of the running stack"
    grade_path = dags_dir
    try:
        head = subprocess.run(
            ["git", "-C", str(grade_path), "log", "-1", "--format=%h %s", "--", "."],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(grade_path), "status", "--porcelain", "."], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not head:
        return "unknown (not a git checkout)"
    return f"{_shown(dags_dir)} of commit {head[:80]}" + (" + uncommitted changes" if dirty else "")


def _backlog(dwh, shops, src_ids, tables) -> tuple[datetime, int | None, float | None]:
    """(now, rows not yet in dds, seconds dds is behind); None for what could not be read."""
    at = _now(dwh)
    rows, lag, _ = _safe(lambda: measure.backlog(dwh, shops, src_ids, tables, at), (None, None, {}))
    return at, rows, lag


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
