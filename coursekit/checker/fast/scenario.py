"""The events a real warehouse meets, in the order CHECKING.md lists them, for every DAG folder at once.

1. `first_run`: a first run while the shops tick;
2. `paused_run`: the shops paused, so what that run loads is known exactly;
3. `killed_run`: loaded rows updated (G4: and rows added whose parents come later), and the run
   that loads them killed at its first write to dds, inspected right then and resumed (G2: the
   next run, with new rows);
4. `source_down_run`: a run with pg-shop-2 down;
5. `busy_runs`: runs while the shops update and delete, until retention has deleted loaded rows;
6. `final_runs`: the shops stop; a catch-up run; rows it loaded updated; a final run, and a re-run
   of it that must change nothing.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, closing
from datetime import datetime

from coursekit.checker import checks
from coursekit.checker.checks import Observed, Rerun
from coursekit.checker.fast.grading import connect_all, context
from coursekit.checker.fast.kill import kill_in_merge
from coursekit.checker.fast.run import FastRun
from coursekit.checker.fast.runners import Variant
from coursekit.checker.fast.sources import add_late_parent_rows, observe, shops_now, touch_rows
from coursekit.checker.stack import GradeStack
from coursekit.grade import SHOP_DATABASE


def scenario(fast: FastRun, stack: GradeStack, scd2: bool) -> None:
    """Steps 1 to 6, each for every variant with a load DAG, a few at a time (`FastRun.each`)."""
    first_run(fast)
    observed, paused_at = paused_run(fast, stack)
    killed_run(fast, stack, scd2, observed, paused_at)
    source_down_run(fast)
    busy_runs(fast)
    final_runs(fast, stack, scd2)


def run_all(fast: FastRun, note: str, planned_failure: bool = False) -> dict[str, dict]:
    """One run of every variant's load; their replies by variant name."""

    def one(variant: Variant) -> dict:
        return fast.record(variant, note, variant.run(fast.settings.run_timeout), planned_failure)

    return {v.name: reply for v, reply in zip(fast.active, fast.each(one), strict=True)}


def first_run(fast: FastRun) -> None:
    """The first load, while the shops tick.

    Meanwhile, where the variants all run at once, each gets its spare runner (`kill.py`): importing
    Airflow and building its Execution API take ~7 s of one core, which would otherwise
    stand between the kill and the resumed run. (A dozen variants start theirs at the kill.)
    """
    if len(fast.active) <= fast.settings.concurrency:
        for variant in fast.active:
            variant.start_spare(fast.airflow_env(variant))
    run_all(fast, "run 1, the first load (shops ticking)")


def paused_run(fast: FastRun, stack: GradeStack) -> tuple[Observed, datetime]:
    """The shops pause: the run loads exactly what they hold, noted as `observed` where it succeeded."""
    fast.servers.stop_shops()
    paused_at = shops_now(fast)
    observed = observe(fast, stack, paused_at)
    frozen = run_all(fast, "run 2, shops paused: everything they hold is loaded")
    for variant in fast.variants:  # what run 2 loaded, which the killed run must not lose
        if frozen.get(variant.name, {}).get("state") == "success":
            variant.scenario.observed = observed
    return observed, paused_at


def killed_run(fast: FastRun, stack: GradeStack, scd2: bool, observed: Observed, paused_at: datetime) -> None:
    """Loaded rows updated; the run that loads them killed in its merge, inspected, resumed; then the shops go on.

    The run that loads the updates has versions to close, so it is the one killed: a merge
    committing statement by statement then leaves keys without a current version. Still
    paused: no retention can delete a touched row before a run has seen its change, and
    the watermarks stay where run 2 left them. Shops that never update a row (G2) give a run
    nothing to close: the killed run is then run 4, once the shops have made new rows to
    insert, which a load that appends twice doubles on resume.
    """
    touched = touch_rows(fast, stack, observed, paused_at)
    fast.say(f"updated {touched} loaded rows (one value changed, another set to NULL or from NULL to a value)")
    if fast.settings.late_parent_rows:
        # pg-shop-1: shop-2's generator is later stopped mid-tick, which can burn the ids it would create next
        config = json.loads(fast.servers.config_path.read_text(encoding="utf-8"))
        with closing(fast.servers.connect(SHOP_DATABASE["shop-1"])) as shop_1:
            late = add_late_parent_rows(shop_1, config, fast.settings.late_parent_rows)
        fast.say(f"added {late} rows to pg-shop-1 whose parents it creates next (late parents, for a release)")
    if touched:
        resumed = fast.each(lambda v: kill_in_merge(fast, v, scd2, "run 3"))
        seen = dict(zip((v.name for v in fast.active), resumed, strict=True))
    else:
        seen = run_all(fast, "run 3, shops still paused")
    for variant in fast.variants:
        if seen.get(variant.name, {}).get("state") != "success":
            variant.scenario.observed = None  # nothing is known to be loaded
    fast.servers.start_shops()
    if not touched:
        time.sleep(2)  # the restarted generators tick at least once
        fast.each(lambda v: kill_in_merge(fast, v, scd2, "run 4"))


def source_down_run(fast: FastRun) -> None:
    """A run finds pg-shop-2 down (it may fail; a later run must catch up)."""
    fast.servers.stop_shops(("shop-2",))
    fast.servers.postgres["pg-shop-2"].stop("fast")
    run_all(fast, "a run with pg-shop-2 down", planned_failure=True)
    fast.servers.postgres["pg-shop-2"].start()
    fast.servers.start_shops(("shop-2",))


def busy_runs(fast: FastRun) -> None:
    """Keep loading while the shops update rows and delete what the paused run loaded (retention)."""
    settings = fast.settings
    busy, deletes_due = 0, fast.shops_started + settings.delete_after + 3
    while busy < settings.min_busy_runs or time.monotonic() < deletes_due:
        busy += 1
        time.sleep(settings.pause)
        run_all(fast, f"busy run {busy} (shops updating and deleting)")


def final_runs(fast: FastRun, stack: GradeStack, scd2: bool) -> None:
    """The shops stop; the DAG catches up; rows it loaded change once more; the final run must load that;
    the final run is re-run, and not one row of dds may change.

    The rows changed here stay in the shops (no retention runs any more), so a load that
    never re-reads loaded rows ends with values that differ from the source's, however long
    the steps before took.
    """
    fast.servers.stop_shops()
    stopped_at = shops_now(fast)
    run_all(fast, "catch-up run, shops stopped")
    touched = touch_rows(fast, stack, observe(fast, stack, stopped_at), stopped_at, value="changed ✓ at the end")
    fast.say(f"updated {touched} rows the catch-up run loaded (one value changed, another to or from NULL)")
    final = run_all(fast, "final run")
    fast.each(lambda variant: rerun_final(fast, variant, final[variant.name], scd2))


def rerun_final(fast: FastRun, variant: Variant, last: dict, scd2: bool) -> None:
    """Re-run the final run (the shops are stopped): not one row of dds may change."""
    stack = fast.stack(variant)
    with ExitStack() as exit_stack:
        ctx = context(stack, variant.scenario, scd2, connect_all(stack, exit_stack))
        before = checks.fingerprint(ctx)
        again = variant.run(
            fast.settings.run_timeout,
            logical_date=last.get("logical_date") or "",
            run_after=last.get("run_after") or "",
        )
        changed = checks.changed_keys(before, checks.fingerprint(ctx))
    fast.say(f"re-run of the final run: {again.get('state')}", variant)
    variant.scenario.rerun = Rerun(last.get("run_id", "?"), str(again.get("state")), changed)
