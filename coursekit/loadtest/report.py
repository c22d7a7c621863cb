"""The load test's report: `report.md` plus PNG plots, in one folder per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from coursekit.loadtest.breakdown import OVERHEAD, STAGE_COLUMNS, RunBreakdown, stage_column
from coursekit.loadtest.ceiling import Ceiling
from coursekit.loadtest.knee import BacklogSample
from coursekit.loadtest.measure import MACHINE, ResourceSample, report_group
from coursekit.loadtest.plots import Plots

LATENCY_LIMIT_SEC = 300


@dataclass
class Phase:
    """One rate, held for a while, and what it achieved."""

    rate: int  # inserts per 1 s tick per shop
    start: datetime
    end: datetime
    source_rows: int = 0  # rows the shops inserted in the phase (all tables, both shops)
    landed: int = 0  # dds versions whose load_dttm falls in the phase
    keys: int = 0  # keys created in the phase that landed
    p50: float = 0.0
    p95: float = 0.0
    worst: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # group -> mean cores busy
    memory: dict[str, float] = field(default_factory=dict)  # group -> peak MiB (PSS natively, containers' usage)
    target_sec: float = LATENCY_LIMIT_SEC
    ramp_ok: bool = True  # the ramp's verdict at the step's end (knee.judge_step)
    reason: str = ""  # the ramp's reason when it failed
    trough_middle: float | None = None  # lowest lag in the step's middle third (s)
    trough_end: float | None = None  # lowest lag in the step's last third (s)
    lag_p95: float | None = None  # 95th percentile of the lag in the step's last third (s)
    samples: list[BacklogSample] = field(default_factory=list)  # what the ramp judged the step on
    step_seconds: float = 0.0  # the step's planned length, as the ramp judged it

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def landed_per_10min(self) -> float:
        return self.landed * 600 / self.seconds if self.seconds else 0.0

    @property
    def inserted_per_sec(self) -> float:
        return self.source_rows / self.seconds if self.seconds else 0.0

    @property
    def keeps_up(self) -> bool:
        """The ramp saw no failure, p95 (measured after the drain) under the target, (nearly) every key arrived."""
        return self.ramp_ok and self.keys > 0 and self.p95 < self.target_sec and self.keys >= 0.9 * self.source_rows

    @property
    def why(self) -> str:
        """Why the step does not keep up ('' if it does)."""
        if not self.ramp_ok:
            return self.reason
        if self.keys == 0:
            return "no key created in the step reached dds"
        if self.p95 >= self.target_sec:
            return f"latency: p95 {self.p95:.0f} s, over the {self.target_sec:.0f} s target (measured after the drain)"
        if self.keys < 0.9 * self.source_rows:
            return f"only {self.keys:,} of {self.source_rows:,} new keys reached dds"
        return ""


@dataclass
class Run:
    grade: str
    mode: str
    started: datetime
    machine: dict[str, str]
    settings: dict[str, str]
    phases: list[Phase]
    series: dict[str, list]
    resources: list[ResourceSample]
    checks: list[tuple[str, str, str]]  # name, PASS / FAIL / WAIT, found
    drained_sec: float
    runs: list[RunBreakdown] = field(default_factory=list)  # every finished load run during the test
    caught_up: bool = True  # False: the drain ended before dds held every shop's newest row
    target_sec: float = LATENCY_LIMIT_SEC
    load_average: list[tuple[float, float, float]] = field(default_factory=list)  # before the load, after the drain
    ceiling: Ceiling | None = None  # the machine's own limit, measured after the drain


def phase_resources(window: list[ResourceSample]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean cores and peak MiB per report group over a phase's samples (containers summed per group)."""
    cpu: dict[str, float] = {}
    memory: dict[str, float] = {}
    for sample in window:
        summed_cpu: dict[str, float] = {}
        summed_memory: dict[str, float] = {}
        for unit, cores in sample.cpu_cores.items():
            summed_cpu[report_group(unit)] = summed_cpu.get(report_group(unit), 0.0) + cores
        for unit, mib in sample.memory_mib.items():
            summed_memory[report_group(unit)] = summed_memory.get(report_group(unit), 0.0) + mib
        for group, cores in summed_cpu.items():
            cpu[group] = cpu.get(group, 0.0) + cores / len(window)
        for group, mib in summed_memory.items():
            memory[group] = max(memory.get(group, 0.0), mib)
    return cpu, memory


def knee(phases: list[Phase]) -> tuple[Phase | None, Phase | None]:
    """(the highest rate that kept up below the first that did not, that first failing step or None)."""
    failed = next((p for p in phases if not p.keeps_up), None)
    below = [p for p in phases if p.keeps_up and (failed is None or p.rate < failed.rate)]
    return (max(below, key=lambda p: p.rate) if below else None), failed


def best_phase(phases: list[Phase]) -> Phase | None:
    return knee(phases)[0]


@dataclass
class StepTimes:
    """Mean seconds per run of the runs that started in one step."""

    label: str
    runs: int
    duration: float
    every: float | None  # mean seconds between consecutive runs' starts
    critical: dict[str, float]  # stage or overhead -> seconds of the run's wall time (sums to duration)
    work: dict[str, float]  # stage -> task-seconds summed over tables
    queued: float  # summed over the run's tasks
    scheduling: float  # summed over the run's tasks
    by_table: dict[tuple[str, str], float]  # (table, stage) -> task-seconds


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def step_times(run: Run) -> list[StepTimes]:
    """The runs grouped by the step they started in (and the drain after the last step), averaged."""
    groups: list[tuple[str, list[RunBreakdown]]] = []
    for index, phase in enumerate(run.phases):
        until = run.phases[index + 1].start if index + 1 < len(run.phases) else phase.end
        groups.append((str(phase.rate), [r for r in run.runs if phase.start <= r.start < until]))
    if run.phases:
        groups.append(("drain", [r for r in run.runs if r.start >= run.phases[-1].end]))
    result = []
    for label, runs in groups:
        if not runs:
            continue
        critical: dict[str, float] = {}
        work: dict[str, float] = {}
        by_table: dict[tuple[str, str], float] = {}
        for r in runs:
            for what, seconds in r.critical.items():
                critical[stage_column(what)] = critical.get(stage_column(what), 0.0) + seconds / len(runs)
            for stage, seconds in r.work.items():
                work[stage_column(stage)] = work.get(stage_column(stage), 0.0) + seconds / len(runs)
            for key, seconds in r.by_table.items():
                by_table[key] = by_table.get(key, 0.0) + seconds / len(runs)
        starts = sorted(r.start for r in runs)
        gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
        result.append(
            StepTimes(
                label,
                len(runs),
                _mean([r.seconds for r in runs]),
                _mean(gaps) if gaps else None,
                critical,
                work,
                _mean([r.queued for r in runs]),
                _mean([r.scheduling for r in runs]),
                by_table,
            )
        )
    return result


def bottleneck(times: StepTimes) -> str:
    """The largest share of a run's wall time, and the table whose tasks of that stage took longest."""
    what, seconds = max(times.critical.items(), key=lambda item: item[1])
    share = seconds / times.duration if times.duration else 0.0
    text = f"{what} takes {share:.0%} of a run's {times.duration:.0f} s"
    tables = {table: s for (table, stage), s in times.by_table.items() if stage_column(stage) == what and table != "-"}
    if tables:
        table, busiest = max(tables.items(), key=lambda item: item[1])
        text += f"; {table}.{what} is the slowest of it ({busiest:.0f} task-seconds per run)"
    elif what in OVERHEAD:
        text += " (Airflow's own overhead between the tasks)"
    return text


def write(run: Run, folder: Path) -> Path:
    """report.md and its plots into `folder`; returns the report's path."""
    folder.mkdir(parents=True, exist_ok=True)
    best, failed = knee(run.phases)
    plots = Plots(run, folder, best, failed).all()
    lines = [f"# Load test of {run.grade}", "", _started(run), "", "## Result", ""]
    lines += _result(run, best, failed)
    lines += _steps(run)
    lines += ["", "## Where the time goes", ""] + _time_split(run)
    lines += ["", "## Warehouse after the test (G4 checks)", ""]
    lines += [f"- {verdict}: {name} ({found})" for name, verdict, found in run.checks]
    lines += ["", "## Machine", ""] + _machine(run)
    lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in run.settings.items()]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    lines += ["", "The backlog samples of every step, as the ramp judged them: [backlog.csv](backlog.csv)."]
    _backlog_csv(run, folder / "backlog.csv")
    report = folder / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _started(run: Run) -> str:
    return f"Started {run.started:%Y-%m-%d %H:%M:%S} UTC, {run.mode}. " + (
        f"The warehouse caught up {run.drained_sec:.0f} s after the load stopped."
        if run.caught_up
        else f"The warehouse had not caught up {run.drained_sec:.0f} s after the load stopped, when the drain "
        "ended: the checks below that compare the shops with dds fail for the rows still on their way."
    )


def _result(run: Run, best: Phase | None, failed: Phase | None) -> list[str]:
    """The knee in words: what kept up, what did not and why, the machine's ceiling beside it."""
    target = f"{run.target_sec:.0f} s"
    by_label = {t.label: t for t in step_times(run)}
    lines: list[str] = []
    if best:
        lines.append(
            f"Highest rate that kept up (latency target {target}): **{best.rate} inserts/s per shop** "
            f"({best.landed_per_10min:,.0f} rows landed per 10 minutes, p95 {best.p95:.0f} s)."
        )
    else:
        lines.append(f"No rate kept up (latency target {target}).")
    if failed:
        lines.append("")
        lines.append(f"First rate that did not keep up: **{failed.rate} inserts/s per shop**. Why: {failed.why}.")
        if str(failed.rate) in by_label:
            lines.append(f"Bottleneck in that step: {bottleneck(by_label[str(failed.rate)])}.")
    else:
        lines.append("")
        lines.append("The ramp did not reach the knee within the steps: every rate kept up.")
    lines += ["", _ceiling_sentence(run.ceiling, best)]
    peak = max(run.phases, key=lambda p: p.landed_per_10min, default=None)
    if peak:
        lines.append("")
        lines.append(f"Peak throughput: {peak.landed_per_10min:,.0f} rows per 10 minutes (rate {peak.rate}).")
    return lines


def _steps(run: Run) -> list[str]:
    """One row per step, and how to read it."""
    target = f"{run.target_sec:.0f} s"
    lines: list[str] = []
    lines += [
        "",
        "| rate (inserts/s/shop) | step (s) | inserted/s (both shops) | rows landed / 10 min | keys landed "
        "| p50 (s) | p95 (s) | max (s) | lag: lowest in middle / last third, p95 last third (s) | Airflow CPU (cores) "
        "| Postgres CPU (cores) | generators CPU (cores) | machine CPU (cores) | Airflow memory peak (MiB) "
        "| Postgres memory peak (MiB) | keeps up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for p in run.phases:
        lines.append(
            f"| {p.rate} | {p.seconds:.0f} | {p.inserted_per_sec:,.0f} | {p.landed_per_10min:,.0f} "
            f"| {p.keys:,} of {p.source_rows:,} | {p.p50:.0f} | {p.p95:.0f} | {p.worst:.0f} "
            f"| {_seconds(p.trough_middle)} / {_seconds(p.trough_end)}, {_seconds(p.lag_p95)} "
            f"| {p.cpu.get('airflow', 0):.2f} | {p.cpu.get('postgres', 0):.2f} | {p.cpu.get('generators', 0):.2f} "
            f"| {p.cpu.get(MACHINE, 0):.2f} | {p.memory.get('airflow', 0):,.0f} "
            f"| {p.memory.get('postgres', 0):,.0f} | {'yes' if p.keeps_up else 'no'} |"
        )
    lines += [
        "",
        "Rows landed = versions written to dds (new keys and changes); latency = a new key's created_at in the "
        "shop -> load_dttm of its first version in dds, including time spent in quarantine. The shops insert "
        "`rate` rows per one-second tick each, split across tables like the grade's generator config, and update "
        "60% as many. Lag = how far dds is behind: the age of the oldest shop row newer than the newest one "
        "dds holds (worst table and shop), "
        "sampled every few seconds; its lowest value in a stretch is the backlog right after a publish, its p95 "
        "estimates the p95 latency of rows created meanwhile. A step fails when that p95 is over "
        f"{target} in the step's last third, or when the lowest lag grows by half plus 30 s both within the "
        "step (middle -> last third) and from the previous step, or when the runs that ended in the step's "
        "second half took more than half the target on average (coursekit/loadtest/knee.py); "
        "after the drain, a step whose measured p95 is over the target fails too. "
        "Machine CPU counts every process on the machine, the load test's and other people's.",
    ]
    return lines


def _time_split(run: Run) -> list[str]:
    """Where the runs' time went, step by step: the critical path, then the task-seconds behind it."""
    times = step_times(run)
    lines: list[str] = []
    if times:
        schedule = next((r.schedule for r in run.runs if r.schedule), "")
        lines += [
            "A run's wall time along its critical path (mean seconds per run; the columns from extract to "
            "scheduling add up to the run's duration): the task that finished last, the task it waited for, and "
            "so on back to the run's start; `queued` = a task waiting for an executor slot (start_date - "
            "queued_when), `scheduling` = Airflow noticing that the upstreams were done (their end -> "
            f"queued_when, and the run's own start and end). The DAG's schedule: `{schedule or 'unknown'}`; a "
            "run longer than the interval delays the next one, so runs then start back to back.",
            "",
            "| step (rate) | runs | run duration (s) | runs started every (s) | extract | load_stg | audit "
            "| publish | other | queued | scheduling |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in times:
            lines.append(
                f"| {t.label} | {t.runs} | {t.duration:.1f} | {_seconds(t.every)} | "
                + " | ".join(f"{t.critical.get(c, 0.0):.1f}" for c in (*STAGE_COLUMNS, "other", *OVERHEAD))
                + " |"
            )
        lines += [
            "",
            "The work behind it (mean task-seconds per run, summed over tables and shops; tasks of different "
            "tables run side by side, so these can add up to more than the run took); queued and scheduling "
            "summed over every task of the run:",
            "",
            "| step (rate) | extract | load_stg | audit | publish | other | queued (all tasks) "
            "| scheduling (all tasks) | slowest table.stage |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for t in times:
            slowest = max(((k, v) for k, v in t.by_table.items() if k[0] != "-"), key=lambda kv: kv[1], default=None)
            lines.append(
                f"| {t.label} | "
                + " | ".join(f"{t.work.get(c, 0.0):.1f}" for c in (*STAGE_COLUMNS, "other"))
                + f" | {t.queued:.1f} | {t.scheduling:.1f} | "
                + (f"{slowest[0][0]}.{slowest[0][1]} ({slowest[1]:.1f} s)" if slowest else "-")
                + " |"
            )
    else:
        lines.append("No finished run of a load DAG was found in Airflow for the test's time (no breakdown).")
    return lines


def _machine(run: Run) -> list[str]:
    lines = [f"- {k}: {v}" for k, v in run.machine.items()]
    if run.load_average:
        cores = int(run.machine.get("cpu cores (logical)", "0") or 0)
        before = run.load_average[0]
        lines.append(f"- load average before the test (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in before)}")
        after = run.load_average[-1]
        lines.append(f"- load average after the drain (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in after)}")
        if cores and before[1] > 0.5 * cores:
            lines.append(
                f"- note: the machine was already busy before the test (5-minute load average {before[1]:.1f} on "
                f"{cores} cores: other people's work); the figures are what this machine gave under that load."
            )
    return lines


def _ceiling_sentence(top: Ceiling | None, best: Phase | None) -> str:
    """The machine's ceiling next to the knee: is the limit the pipeline's or the machine's?"""
    if top is None:
        return "This machine's ceiling was not measured (the load DAGs could not be paused)."
    text = f"This machine's ceiling: {top.line()}."
    if top.reached_asked:
        text += " The generators did all they were asked for, so their own limit is higher still."
    if best is not None and top.rate:
        share = f"{'at most ' if top.reached_asked else ''}{best.rate / top.rate:.0%}"
        text += f" The highest rate that kept up is {share} of what the generators sustain alone."
    return text


def _backlog_csv(run: Run, path: Path) -> None:
    """rate, step_seconds, at_sec (since the step started), rows, lag_sec: what knee.judge_step saw."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["rate", "step_seconds", "at_sec", "rows", "lag_sec"])
        for phase in run.phases:
            for sample in phase.samples:
                writer.writerow(
                    [
                        phase.rate,
                        f"{phase.step_seconds:g}",
                        f"{sample.at:.3f}",
                        "" if sample.rows is None else sample.rows,
                        "" if sample.lag is None else f"{sample.lag:.3f}",
                    ]
                )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
