"""`make check GRADE=... FAST=1`: grade a DAG folder on a private, time-compressed copy of the grade.

The live check needs a stack that has run long enough for every mistake to
show (updates within 5 minutes, retention after 2 hours). This mode makes the
same events happen in about half a minute, on its own embedded databases and
free ports, never touching the learner's running stack:

* the shops tick every second (G4: every 3 s, see `settings.settings_for`), update rows for
  `update_window` seconds and delete them after `delete_after` seconds; their text holds
  quotes, semicolons, newlines, tabs, emoji and Turkish letters (`coursekit.hostile`), and
  every column the shops ever leave empty is NULL in a fifth of the rows (and some
  loaded rows change to and from NULL);
* the load DAG runs back to back (Airflow's `dag.test()`, see `fast_runner.py`)
  instead of waiting for its cron schedule, with retries off;
* one run is frozen: the shops pause, so what that run loaded is known exactly
  (which keys are later updated, which later deleted); then loaded rows are
  updated (one value changed, another to or from NULL) and a second paused run
  must pick the changes up before retention can delete those rows;
* that second paused run, which has versions to close, is killed in the
  middle of its merge (its first write to `dds` waits on a lock held here,
  then the process is killed): a merge that commits statement by statement
  leaves keys without a current version. The warehouse is inspected right
  then; then the same run (same logical date) runs again, as Airflow's retry
  would. Where the shops never update (G2) there is nothing to close, and the
  killed run is the next one, with new rows to insert;
* one run finds a shop's database down;
* the clock of pg-shop-2 runs 15 minutes behind (G1-G3), as a shop's may;
* at the end the shops stop, the DAG catches up, loaded rows change once more
  (they stay in the shops: a load that never re-reads ends stale), the final
  run must load that, and the final run is re-run: nothing may change.

A load split into DAGs linked by assets or TriggerDagRunOperator is one load
(`pipeline.py`): each run above starts its first DAG and runs the DAG runs that
causes, and the run killed in its merge is whichever DAG writes dds then.

Then the grade's checks run exactly as in the live mode, on this warehouse.
`grade_many` grades several DAG folders side by side against the same shops,
each with its own warehouse database and Airflow (the tests grade a dozen wrong
solutions that way).

The package, in the order a grading goes: `settings` (how compressed), `servers`
(databases and shops), `runners` (each folder's Airflow), `run` (one grading's
state), `scenario` (the steps, with `sources`: what the paused shops hold, and
`kill`: the run killed in its merge), `grading` (the checks).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from coursekit.checker import checks
from coursekit.checker.checks import CheckResult
from coursekit.checker.fast.grading import grade_variant
from coursekit.checker.fast.run import FastRun
from coursekit.checker.fast.scenario import scenario
from coursekit.checker.fast.settings import FastSettings, settings_for
from coursekit.checker.pipeline import LoadChoice
from coursekit.checker.results_json import note_load_dag
from coursekit.checker.stack import StackNotReachable
from coursekit.grade import Grade

__all__ = ["FastSettings", "grade_fast", "grade_many", "settings_for"]


def grade_many(
    grade: Grade,
    plan: list[checks.Check],
    scd2: bool,
    folders: dict[str, Path],
    console: Console,
    settings: FastSettings | None = None,
    dag_id: str | None = None,
    choices: dict[str, LoadChoice] | None = None,
) -> dict[str, list[CheckResult]]:
    """Grade several DAG folders side by side against the same shops, each with its own warehouse.

    `choices`, if given, receives each folder's load choice (which DAGs were graded, and why).
    """
    settings = settings_for(plan, settings)
    for path in folders.values():
        if not path.is_dir():
            raise StackNotReachable(f"no DAG folder at {path}")
    fast = FastRun(grade, {name: path.resolve() for name, path in folders.items()}, settings, console, dag_id)
    console.print(f"FAST check on a private copy of {grade.name} ({fast.root})", highlight=False)
    try:
        start(fast)
        if fast.active:
            scenario(fast, fast.stack(fast.variants[0]), scd2)
        results = {v.name: grade_variant(fast.stack(v), v, plan, scd2) for v in fast.variants}
        if choices is not None:
            choices.update({v.name: v.choice for v in fast.variants})
        fast.say(f"graded in {time.monotonic() - fast.started:.0f} s; Airflow's log: {fast.variants[0].log}")
        return results
    finally:
        fast.close()


def start(fast: FastRun) -> None:
    """Airflow imported meanwhile, the databases and shops up, the folders parsed, the shops warmed up."""
    fast.start_airflow()  # imports Airflow meanwhile; it parses the DAG folders once the databases are up
    fast.start_shops()
    fast.say("databases up, shops ticking; Airflow starting")
    fast.wait_for_airflow()
    fast.say("Airflow ready")
    fast.servers.wait_for_tables()
    # Shop activity before the first run, counted from the shops' start: they tick while Airflow starts.
    time.sleep(max(0.0, fast.settings.warmup - (time.monotonic() - fast.shops_started)))
    for variant in fast.variants:
        fast.say(variant.choice.line() + ("" if variant.dag_id else "; the warehouse stays empty"), variant)
        note_load_dag(variant.dag_id, variant.name)


def grade_fast(
    grade: Grade,
    plan: list[checks.Check],
    scd2: bool,
    dags_dir: Path,
    console: Console,
    settings: FastSettings | None = None,
    dag_id: str | None = None,
) -> list[CheckResult]:
    """`make check FAST=1`: one DAG folder."""
    console.print(f"grading {dags_dir}", highlight=False)
    choices: dict[str, LoadChoice] = {}
    results = grade_many(grade, plan, scd2, {"yours": dags_dir}, console, settings, dag_id, choices)["yours"]
    console.print(choices["yours"].line(), highlight=False, markup=False)  # right above the report
    return results
