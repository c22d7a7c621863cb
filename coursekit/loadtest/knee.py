"""When does a step of the ramp stop keeping up? The decision, on one step's backlog samples.

The backlog is what the shops hold that dds does not yet: sampled every few seconds as rows
(new rows of every table and shop newer than the newest row dds holds of them) and as lag
(how old the oldest of those rows is, worst table and shop; 0 when none is missing). Each
run of the load DAG empties it, so both saw-tooth with the schedule: they climb while a run
works and drop when it publishes. What tells keeping up from falling behind is therefore the
bottom of the teeth, the lowest lag in a window (the "trough"): right after a publish, a
pipeline that keeps up is again only one run behind.

Lag is compared, not rows: rows scale with the rate, so a higher step holds more rows in
flight even when it keeps up perfectly; lag is in seconds at any rate.

Lag sampled at even times is distributed like the latency of rows created at even times: a
row created t s after a run's extract began waits for the next run, and the lag t s after a
publish is just as old. So the 95th percentile of the lag samples estimates the p95 latency
without waiting for every row to arrive.

A step fails when, judged at its end:
- latency: the 95th percentile of the lag samples of the step's last third (after the
  rate change has settled) is over the target; or
- backlog grows: the trough of the last third is clearly higher (x GROWTH_FACTOR +
  GROWTH_MARGIN_SEC) than the trough of the middle third, so the warehouse fell further
  behind while the rate stayed the same (the confirmation within the step), AND clearly
  higher than the previous step's last-third trough (it grows from one step to the next).
  The margins keep a slow run or two on a busy machine from tripping it; or
- runs too long: the runs of the load DAG that ended in the step's second half took, on
  average, more than half the target. Runs that long go back to back, and a row created just
  after a run read the shops waits for that run and the whole next one: about two runs, over
  the target. The lag alone missed it: it trails while runs keep lengthening and does not see
  the time a row spends in quarantine (the committed 4,000/s step: lag p95 200 s, latency
  p95 352 s measured after the drain, runs of 160 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GROWTH_FACTOR = 1.5
GROWTH_MARGIN_SEC = 30.0


@dataclass
class BacklogSample:
    at: float  # seconds since the step started
    rows: int | None  # shop rows newer than dds's newest row of their table and shop
    lag: float | None  # seconds dds is behind, worst table and shop (None before dds has rows)


@dataclass
class StepVerdict:
    keeps_up: bool
    reason: str  # why it failed, '' if it kept up
    trough_middle: float | None  # lowest lag in the step's middle third (s)
    trough_end: float | None  # lowest lag in the step's last third (s)
    p95_end: float | None = None  # 95th percentile of the lag in the step's last third (s)


def trough(samples: list[BacklogSample], since: float, until: float) -> float | None:
    """The lowest lag sampled in [since, until), None if nothing was sampled there."""
    lags = [s.lag for s in samples if since <= s.at < until and s.lag is not None]
    return min(lags) if lags else None


def p95(samples: list[BacklogSample], since: float, until: float) -> float | None:
    """The 95th percentile (nearest rank) of the lag sampled in [since, until)."""
    lags = sorted(s.lag for s in samples if since <= s.at < until and s.lag is not None)
    return lags[max(0, math.ceil(0.95 * len(lags)) - 1)] if lags else None


def judge_step(
    samples: list[BacklogSample],
    step_seconds: float,
    previous_trough: float | None,
    target_sec: float,
    run_seconds: list[float] | None = None,
) -> StepVerdict:
    """Did the pipeline keep up with this step's rate? (see the module's docstring for the rules)

    `run_seconds`: durations of the load DAG's runs that ended in the step's second half (the
    run-length rule is skipped without them).
    """
    third = step_seconds / 3
    middle = trough(samples, third, 2 * third)
    end = trough(samples, 2 * third, step_seconds + 1)
    high = p95(samples, 2 * third, step_seconds + 1)
    if end is None or high is None:
        return StepVerdict(True, "", middle, end, high)
    if high > target_sec:
        return StepVerdict(
            False,
            f"latency: in the step's last third the lag's p95 was {high:.0f} s (lowest {end:.0f} s), over the "
            f"{target_sec:.0f} s target: rows created then reach dds later than that",
            middle,
            end,
            high,
        )
    if run_seconds:
        mean_run = sum(run_seconds) / len(run_seconds)
        if 2 * mean_run > target_sec:
            return StepVerdict(
                False,
                f"runs too long: the {len(run_seconds)} runs that ended in the step's second half took "
                f"{mean_run:.0f} s on average; a row created just after a run read the shops waits for that "
                f"run and the next, about {2 * mean_run:.0f} s, over the {target_sec:.0f} s target",
                middle,
                end,
                high,
            )
    grew_within = middle is not None and end > middle * GROWTH_FACTOR + GROWTH_MARGIN_SEC
    grew_across = previous_trough is None or end > previous_trough * GROWTH_FACTOR + GROWTH_MARGIN_SEC
    if grew_within and grew_across:
        before = "" if previous_trough is None else f"; {previous_trough:.0f} s at the end of the previous step"
        return StepVerdict(
            False,
            f"backlog grows: the lowest lag rose from {middle:.0f} s (middle third) to {end:.0f} s (last third) "
            f"at the same rate{before}",
            middle,
            end,
            high,
        )
    return StepVerdict(True, "", middle, end, high)


def plan(start_rate: int, factor: float, steps: int) -> list[int]:
    """Geometric steps: start, start*factor, ... (rounded to whole inserts per tick, increasing)."""
    rates: list[int] = []
    for number in range(steps):
        rate = round(start_rate * factor**number)
        rates.append(max(rate, rates[-1] + 1) if rates else rate)
    return rates
