"""The load test's plots (matplotlib, PNG files): one method per plot, on a shared time axis.

Every plot marks the ramp's steps as bands labelled with their rate, and the first failing
step (the knee) with a red line, so a reader sees at a glance where the pipeline fell behind.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from coursekit.loadtest.breakdown import OVERHEAD, STAGE_COLUMNS, schedule_seconds, stage_column

if TYPE_CHECKING:
    from coursekit.loadtest.report import Phase, Run

COLORS = {
    "extract": "tab:blue",
    "load_stg": "tab:orange",
    "audit": "tab:green",
    "publish": "tab:purple",
    "other": "tab:brown",
    "queued": "tab:gray",
    "scheduling": "lightgray",
}

WIDE = 11.5  # inches: room for the legend right of the plot


class Plots:
    def __init__(self, run: Run, folder: Path, best: Phase | None, failed: Phase | None) -> None:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a server or in CI
        import matplotlib.pyplot as plt

        self.plt, self.run, self.folder = plt, run, folder
        self.best, self.failed = best, failed  # the knee, as the report names it
        self.names: list[str] = []

    def all(self) -> list[str]:
        """Draw every plot; returns the files' names in the report's order."""
        for draw in (self.throughput, self.latency, self.backlog, self.breakdown, self.resources):
            draw()
        self.plt.close("all")
        return self.names

    def minutes(self, at: datetime) -> float:
        return (at - self.run.started).total_seconds() / 60

    def mark_phases(self, axis) -> None:
        """Steps as bands labelled with their rate; the first failing step red, the knee a red line."""
        for phase in self.run.phases:
            color = "tab:red" if phase is self.failed else "tab:blue"
            axis.axvspan(self.minutes(phase.start), self.minutes(phase.end), alpha=0.08, color=color)
            axis.text(
                self.minutes(phase.start), 1.0, f" {phase.rate}/s", transform=axis.get_xaxis_transform(), va="top"
            )
        if self.failed is not None:
            best, failed = self.best, self.failed
            label = f"knee: {best.rate}/s kept up, {failed.rate}/s did not" if best else f"{failed.rate}/s failed"
            axis.axvline(self.minutes(failed.start), color="tab:red", linewidth=1.5, label=label)

    @staticmethod
    def outside_legend(axis) -> None:
        """Right of the plot: inside, it would cover the steps' labels and the curves."""
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    def target_line(self, axis) -> None:
        axis.axhline(self.run.target_sec, color="red", linestyle="--", label=f"target {self.run.target_sec:.0f} s")

    def save(self, figure, name: str) -> None:
        figure.tight_layout()
        figure.savefig(self.folder / name, dpi=100)
        self.names.append(name)

    def throughput(self) -> None:
        figure, axis = self.plt.subplots(figsize=(WIDE, 4))
        landed = self.run.series.get("landed", [])
        axis.plot([self.minutes(b) for b, _ in landed], [n * 10 for _, n in landed], marker=".")  # per minute -> 10
        axis.set(title="Throughput: rows landed in dds", xlabel="minutes since start", ylabel="rows per 10 minutes")
        self.mark_phases(axis)
        if self.failed is not None:
            self.outside_legend(axis)
        self.save(figure, "throughput.png")

    def latency(self) -> None:
        figure, axis = self.plt.subplots(figsize=(WIDE, 4))
        latency = self.run.series.get("latency", [])
        x = [self.minutes(row[0]) for row in latency]
        for index, label in ((2, "p50"), (3, "p95"), (4, "max")):
            axis.plot(x, [row[index] for row in latency], marker=".", label=label)
        self.target_line(axis)
        axis.set(title="Latency of new rows (created_at -> dds)", xlabel="minutes since start", ylabel="seconds")
        self.mark_phases(axis)
        self.outside_legend(axis)
        self.save(figure, "latency.png")

    def backlog(self) -> None:
        figure, (rows_axis, lag_axis) = self.plt.subplots(2, 1, figsize=(WIDE, 6), sharex=True)
        backlog = self.run.series.get("backlog", [])
        rows = [(self.minutes(at), n) for at, n, _ in backlog if n is not None]
        lags = [(self.minutes(at), lag) for at, _, lag in backlog if lag is not None]
        rows_axis.plot([x for x, _ in rows], [n for _, n in rows])
        rows_axis.set(title="Backlog: what the shops hold that dds does not yet", ylabel="rows not yet in dds")
        lag_axis.plot([x for x, _ in lags], [lag for _, lag in lags])
        self.target_line(lag_axis)
        lag_axis.set(xlabel="minutes since start", ylabel="dds behind (s)")
        for axis in (rows_axis, lag_axis):
            self.mark_phases(axis)
        self.outside_legend(lag_axis)
        self.save(figure, "backlog.png")

    def breakdown(self) -> None:
        figure, axis = self.plt.subplots(figsize=(WIDE, 4.5))
        parts = (*STAGE_COLUMNS, "other", *OVERHEAD)
        for r in self.run.runs:  # one bar per run, as wide as the run lasted, stacked up to its duration
            bottom = 0.0
            for part in parts:
                seconds = sum(v for k, v in r.critical.items() if stage_column(k) == part)
                axis.bar(
                    self.minutes(r.start),
                    seconds,
                    width=r.seconds / 60,
                    bottom=bottom,
                    align="edge",
                    color=COLORS[part],
                )
                bottom += seconds
        for part in parts:
            axis.bar(0, 0, color=COLORS[part], label=part)  # legend entries
        every = schedule_seconds(next((r.schedule for r in self.run.runs if r.schedule), ""))
        if every:
            axis.axhline(every, color="black", linestyle=":", label=f"schedule interval {every:.0f} s")
        axis.set(
            title="Where each run's time goes (critical path; bar width = the run's span)",
            xlabel="minutes since start",
            ylabel="seconds per run",
        )
        self.mark_phases(axis)
        self.outside_legend(axis)
        self.save(figure, "breakdown.png")

    def resources(self) -> None:
        figure, (cpu_axis, mem_axis) = self.plt.subplots(2, 1, figsize=(WIDE, 6), sharex=True)
        samples = self.run.resources
        groups = sorted({g for s in samples for g in s.cpu_cores})
        times = [s.at / 60 for s in samples]  # the monitor starts with the run
        for group in groups:
            cpu_axis.plot(times, [s.cpu_cores.get(group, 0) for s in samples], label=group)
            if any(group in s.memory_mib for s in samples):
                mem_axis.plot(times, [s.memory_mib.get(group, 0) for s in samples], label=group)
        cpu_axis.set(title="CPU and memory", ylabel="cores busy")
        mem_axis.set(xlabel="minutes since start", ylabel="memory (MiB)")
        self.outside_legend(cpu_axis)
        self.outside_legend(mem_axis)
        self.save(figure, "resources.png")
