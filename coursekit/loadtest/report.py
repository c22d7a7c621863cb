"""The load test's report: `report.md` plus PNG plots, in one folder per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from coursekit.loadtest.measure import ResourceSample, report_group

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
        """p95 under five minutes, and (nearly) every created key arrived."""
        return self.keys > 0 and self.p95 < LATENCY_LIMIT_SEC and self.keys >= 0.9 * self.source_rows


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


def best_phase(phases: list[Phase]) -> Phase | None:
    keeping_up = [p for p in phases if p.keeps_up]
    return max(keeping_up, key=lambda p: p.rate) if keeping_up else None


def write(run: Run, folder: Path) -> Path:
    """report.md and three plots into `folder`; returns the report's path."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = _plots(run, folder)
    best = best_phase(run.phases)
    lines = [
        f"# Load test of {run.grade}",
        "",
        f"Started {run.started:%Y-%m-%d %H:%M:%S} UTC, {run.mode}. "
        f"The warehouse caught up {run.drained_sec:.0f} s after the load stopped.",
        "",
        "## Result",
        "",
    ]
    if best:
        lines.append(
            f"Highest rate with p95 latency under {LATENCY_LIMIT_SEC // 60} minutes: "
            f"**{best.rate} inserts/s per shop** ({best.landed_per_10min:,.0f} rows landed per 10 minutes, "
            f"p95 {best.p95:.0f} s)."
        )
    else:
        lines.append(f"No rate kept p95 latency under {LATENCY_LIMIT_SEC // 60} minutes.")
    peak = max(run.phases, key=lambda p: p.landed_per_10min, default=None)
    if peak:
        lines.append(f"Peak throughput: {peak.landed_per_10min:,.0f} rows per 10 minutes (rate {peak.rate}).")
    lines += [
        "",
        "| rate (inserts/s/shop) | phase (s) | inserted/s (both shops) | rows landed / 10 min | keys landed "
        "| p50 (s) | p95 (s) | max (s) | Airflow CPU (cores) | Postgres CPU (cores) | Airflow memory peak (MiB) "
        "| Postgres memory peak (MiB) | keeps up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for p in run.phases:
        lines.append(
            f"| {p.rate} | {p.seconds:.0f} | {p.inserted_per_sec:,.0f} | {p.landed_per_10min:,.0f} "
            f"| {p.keys:,} of {p.source_rows:,} | {p.p50:.0f} | {p.p95:.0f} | {p.worst:.0f} "
            f"| {p.cpu.get('airflow', 0):.2f} | {p.cpu.get('postgres', 0):.2f} | {p.memory.get('airflow', 0):,.0f} "
            f"| {p.memory.get('postgres', 0):,.0f} | {'yes' if p.keeps_up else 'no'} |"
        )
    lines += [
        "",
        "Rows landed = versions written to dds (new keys and changes); latency = a new key's created_at in the "
        "shop -> load_dttm of its first version in dds, including time spent in quarantine. The shops insert "
        "`rate` rows per one-second tick each, split across tables like the grade's generator config, and update "
        "60% as many.",
        "",
        "## Warehouse after the test (G4 checks)",
        "",
    ]
    lines += [f"- {verdict}: {name} ({found})" for name, verdict, found in run.checks]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in run.machine.items()]
    lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in run.settings.items()]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    report = folder / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def _plots(run: Run, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    def minutes(at: datetime) -> float:
        return (at - run.started).total_seconds() / 60

    def mark_phases(axis) -> None:
        for phase in run.phases:
            axis.axvspan(minutes(phase.start), minutes(phase.end), alpha=0.08, color="tab:blue")
            axis.text(minutes(phase.start), 1.0, f" {phase.rate}/s", transform=axis.get_xaxis_transform(), va="top")

    names = []
    figure, axis = plt.subplots(figsize=(10, 4))
    landed = run.series.get("landed", [])
    axis.plot([minutes(b) for b, _ in landed], [n * 10 for _, n in landed], marker=".")  # per minute -> per 10
    axis.set(title="Throughput: rows landed in dds", xlabel="minutes since start", ylabel="rows per 10 minutes")
    mark_phases(axis)
    figure.tight_layout()
    figure.savefig(folder / "throughput.png", dpi=100)
    names.append("throughput.png")

    figure, axis = plt.subplots(figsize=(10, 4))
    latency = run.series.get("latency", [])
    x = [minutes(row[0]) for row in latency]
    for index, label in ((2, "p50"), (3, "p95"), (4, "max")):
        axis.plot(x, [row[index] for row in latency], marker=".", label=label)
    axis.axhline(LATENCY_LIMIT_SEC, color="red", linestyle="--", label="5 minutes")
    axis.set(title="Latency of new rows (created_at -> dds)", xlabel="minutes since start", ylabel="seconds")
    axis.legend()
    mark_phases(axis)
    figure.tight_layout()
    figure.savefig(folder / "latency.png", dpi=100)
    names.append("latency.png")

    figure, (cpu_axis, mem_axis) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    groups = sorted({g for s in run.resources for g in s.cpu_cores})
    times = [s.at / 60 for s in run.resources]  # the monitor starts with the run
    for group in groups:
        cpu_axis.plot(times, [s.cpu_cores.get(group, 0) for s in run.resources], label=group)
        mem_axis.plot(times, [s.memory_mib.get(group, 0) for s in run.resources], label=group)
    cpu_axis.set(title="CPU and memory", ylabel="cores busy")
    mem_axis.set(xlabel="minutes since start", ylabel="memory (MiB)")
    cpu_axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "resources.png", dpi=100)
    names.append("resources.png")
    plt.close("all")
    return names
