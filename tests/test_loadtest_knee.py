"""The ramp's decision: does a step keep up? And where does a run's time go?

knee.judge_step is fed backlog series of the shape the load test samples (every 5 s, the lag
saw-toothing with the one-minute schedule), including the committed report's own samples;
breakdown.analyse is fed task timings of the G4 reference's DAG shape.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coursekit.loadtest.breakdown import TaskTiming, analyse, stage_of
from coursekit.loadtest.knee import BacklogSample, judge_step, plan

REPO = Path(__file__).resolve().parents[1]
STEP = 240.0


def sawtooth(durations: list[float], every: float = 60.0, step: float = STEP, jitter: float = 0.0) -> list:
    """Lag sampled every 5 s while runs start every `every` s (or back to back when longer) and take
    `durations[i]` s each: a run's publish brings dds up to the rows it extracted at its start."""
    starts, t = [], -every
    for duration in durations:
        t = max(t + every, starts[-1][1] if starts else t + every)
        starts.append((t, t + duration))
    samples = []
    for i in range(1, int(step // 5) + 1):
        at = 5.0 * i
        done = [begin for begin, end in starts if end <= at]
        newest = done[-1] if done else -every - durations[0]
        lag = at - newest + (jitter if i % 7 == 0 else 0.0)
        samples.append(BacklogSample(at, int(lag * 2000), lag))
    return samples


def test_a_step_that_keeps_up_passes_even_with_a_slow_run():
    steady = sawtooth([35.0] * 6)
    assert judge_step(steady, STEP, None, 300).keeps_up
    assert 90 <= judge_step(steady, STEP, None, 300).p95_end <= 95  # the top: 60 s apart + 35 s of run
    one_slow = sawtooth([35.0, 35.0, 35.0, 90.0], jitter=8.0)  # a busy moment on a shared machine
    verdict = judge_step(one_slow, STEP, 40.0, 300)
    assert verdict.keeps_up, verdict


def test_a_backlog_that_grows_within_and_across_steps_fails():
    growing = sawtooth([40.0, 40.0, 160.0, 200.0])  # the run after a rate change takes four times as long
    verdict = judge_step(growing, STEP, 40.0, 300)
    assert not verdict.keeps_up and verdict.reason.startswith("backlog grows"), verdict
    assert verdict.trough_end > verdict.trough_middle * 1.5 + 30
    # The same step, but the previous step ended just as far behind: not "grows from one step to the next".
    assert judge_step(growing, STEP, verdict.trough_end, 300).keeps_up


def test_a_warehouse_more_than_the_target_behind_fails_on_latency():
    samples = [BacklogSample(5.0 * i, 900_000, 320.0 + i) for i in range(1, 49)]
    verdict = judge_step(samples, STEP, 310.0, 300)
    assert not verdict.keeps_up and verdict.reason.startswith("latency"), verdict
    assert judge_step(samples, STEP, 310.0, 600).keeps_up  # a looser target


def test_an_empty_warehouse_is_no_verdict_yet():
    samples = [BacklogSample(5.0 * i, 1000 * i, None) for i in range(1, 49)]
    assert judge_step(samples, STEP, None, 300).keeps_up


def test_the_default_plan_is_geometric_and_increasing():
    assert plan(250, 2.0, 6) == [250, 500, 1000, 2000, 4000, 8000]
    assert plan(1, 1.2, 4) == [1, 2, 3, 4]


COMMITTED = REPO / "images" / "loadtest-backlog.csv"


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed load-test samples")
def test_the_committed_reports_samples_give_its_verdicts():
    """The samples the committed run judged, judged again: the same lags (within a few seconds), the same stop.

    The committed samples are timed on the database's clock when each sample began; the ramp timed
    them after the backlog query, seconds later on a loaded machine with millions of rows in flight
    (backlog.csv now records the ramp's own times), so a sample may sit a few seconds off.
    """
    steps: dict[int, list[BacklogSample]] = {}
    seconds: dict[int, float] = {}
    with open(COMMITTED, encoding="utf-8") as source:
        for row in csv.DictReader(source):
            rate = int(row["rate"])
            seconds[rate] = float(row["step_seconds"])
            lag = float(row["lag_sec"]) if row["lag_sec"] else None
            steps.setdefault(rate, []).append(BacklogSample(float(row["at_sec"]), int(row["rows"] or 0), lag))
    report = (REPO / "images" / "loadtest-report.md").read_text(encoding="utf-8")
    cells = {
        int(rate): [None if v == "-" else float(v) for v in re.split(r" / |, ", lags)]
        for rate, lags in re.findall(r"^\| (\d+) \|(?: [^|]+ \|){7} ([\d -]+/ [\d-]+, [\d-]+) \|", report, re.MULTILINE)
    }
    assert set(cells) == set(steps), "a row in the report for every step sampled"
    previous, verdicts = None, []
    for rate in sorted(steps):
        verdict = judge_step(steps[rate], seconds[rate], previous, 300)
        again = [verdict.trough_middle, verdict.trough_end, verdict.p95_end]
        for shown, judged in zip(cells[rate], again, strict=True):
            assert (shown is None) == (judged is None), (rate, cells[rate], again)
            assert shown is None or abs(shown - judged) <= 10, (rate, cells[rate], again)
        verdicts.append(verdict)
        previous = verdict.trough_end
    assert all(v.keeps_up for v in verdicts[:-1]), "the ramp went on while the steps kept up"
    stop = re.search(r"First rate that did not keep up: \*\*(\d+) inserts/s per shop\*\*\. Why: (.+?)\.$", report, re.M)
    best = re.search(r"Highest rate that kept up \(latency target 300 s\): \*\*(\d+) inserts/s per shop", report)
    assert best, "the report names the highest rate that kept up"
    if stop is None:  # every step kept up: so must the last one's samples
        assert "The ramp did not reach the knee within the steps" in report
        assert verdicts[-1].keeps_up and int(best[1]) == max(steps), "the last step is the highest that kept up"
        return
    # The last step failed on its samples, or on its runs' length (knee.judge_step's run_seconds: the
    # runs' times are in the report's breakdown, not in backlog.csv).
    assert not verdicts[-1].keeps_up or stop[2].startswith("runs too long"), "and stopped at the last one"
    assert int(best[1]) < int(stop[1]) <= max(steps), "the report names the knee"


def test_a_runs_critical_path_adds_up_to_its_duration():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    upstreams = {
        "create_tables": ["create_schemas"],
        "orders.extract_new_york": ["create_tables"],
        "orders.load_stg": ["orders.extract_new_york"],
        "orders.audit": ["orders.load_stg", "customers.publish"],
        "orders.publish": ["orders.audit"],
        "customers.extract_new_york": ["create_tables"],
        "customers.load_stg": ["customers.extract_new_york"],
        "customers.audit": ["customers.load_stg"],
        "customers.publish": ["customers.audit"],
    }
    tasks = [
        TaskTiming("create_schemas", at(0.5), at(1), at(2)),
        TaskTiming("create_tables", at(3), at(4), at(5)),
        TaskTiming("orders.extract_new_york", at(6), at(7), at(15)),
        TaskTiming("customers.extract_new_york", at(6), at(9), at(11)),
        TaskTiming("customers.load_stg", at(12), at(12), at(14)),
        TaskTiming("orders.load_stg", at(16), at(16), at(20)),
        TaskTiming("customers.audit", at(15), at(15), at(16)),
        TaskTiming("customers.publish", at(17), at(18), at(21)),
        TaskTiming("orders.audit", at(22), at(23), at(25)),
        TaskTiming("orders.publish", at(26), at(26), at(36)),
    ]
    run = analyse("load", "r1", t0, at(37), tasks, upstreams)
    assert sum(run.critical.values()) == pytest.approx(37.0)
    # orders.publish <- orders.audit <- customers.publish (ended later than orders.load_stg) <- ...
    assert run.critical["publish"] == pytest.approx(10 + 3)
    assert run.critical["audit"] == pytest.approx(2 + 1)
    assert run.critical["queued"] == pytest.approx(1 + 0 + 1 + 0 + 3 + 1 + 0.5)
    assert run.work["extract"] == pytest.approx(8 + 2) and run.work["publish"] == pytest.approx(13)
    assert run.by_table[("orders", "publish")] == 10
    assert run.queued == pytest.approx(0.5 + 1 + 1 + 3 + 0 + 0 + 0 + 1 + 1 + 0)
    assert all(v >= 0 for v in (*run.critical.values(), *run.work.values(), run.scheduling))


def test_task_ids_map_to_stages_for_g0_and_g4():
    assert [stage_of(t) for t in ("orders.extract_istanbul", "orders.load_stg", "orders.audit")] == [
        "extract",
        "load_stg",
        "audit",
    ]
    assert stage_of("orders.publish") == stage_of("orders.merge_dds") == "publish"
    assert stage_of("create_schemas") == "setup" and stage_of("say_hello") == "other"


def test_runs_longer_than_half_the_target_fail_though_the_lag_looks_fine():
    # The committed 4,000/s step: runs of ~160 s, while the sampled lag stayed under the target.
    steady = sawtooth([35.0] * 6)
    assert judge_step(steady, STEP, None, 300).keeps_up
    verdict = judge_step(steady, STEP, None, 300, run_seconds=[150.0, 170.0])
    assert not verdict.keeps_up and verdict.reason.startswith("runs too long"), verdict
    assert "160 s on average" in verdict.reason
    assert judge_step(steady, STEP, None, 300, run_seconds=[40.0, 50.0]).keeps_up  # the 2,000/s step: 47 s
    assert judge_step(steady, STEP, None, 300, run_seconds=[]).keeps_up  # no run ended: no verdict from it
