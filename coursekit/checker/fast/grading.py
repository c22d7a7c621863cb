"""After the scenario: the grade's checks, exactly as in the live mode, on each variant's warehouse."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

from coursekit.checker import checks
from coursekit.checker.checks import CANNOT, WAIT, CheckResult, Context
from coursekit.checker.fast.runners import Scenario, Variant
from coursekit.checker.pipeline import LoadChoice
from coursekit.checker.stack import GradeStack


def context(stack: GradeStack, s: Scenario, scd2: bool, connections: dict) -> Context:
    """Everything is stable: the shops have stopped, so every row must be loaded with its last values."""
    later = datetime.now(UTC) + timedelta(days=1)
    first = next((r.start for r in reversed(s.runs) if r.state == "success" and r.start), None)
    return Context(
        stack=stack,
        dwh=connections["dwh"],
        shops={shop.name: connections[shop.name] for shop in stack.shops},
        stable_before={shop.name: later for shop in stack.shops},
        present_before={shop.name: later for shop in stack.shops},
        shop_now={shop.name: datetime.now(UTC) for shop in stack.shops},
        scd2=scd2,
        runs=s.runs,
        first_load=first,
        rerun=s.rerun,
        observed=s.observed,
    )


def connect_all(stack: GradeStack, exit_stack: ExitStack) -> dict:
    connections = {"dwh": exit_stack.enter_context(stack.connect_dwh())}
    connections.update({shop.name: exit_stack.enter_context(stack.connect_shop(shop)) for shop in stack.shops})
    return connections


def grade_variant(stack: GradeStack, variant: Variant, plan: list[checks.Check], scd2: bool) -> list[CheckResult]:
    """The fast mode's own two checks (the folder imports; the killed run left nothing half-written), then the plan."""
    if variant.choice.ambiguous:
        return [cannot_choose(variant.choice)]
    errors = variant.ready["import_errors"]
    imports = CheckResult(
        "the DAG folder loads",
        "every DAG file imports without errors",
        not errors,
        "no import errors",
        "; ".join(f"{name}: {error.strip().splitlines()[-1]}" for name, error in errors.items())
        or f"DAGs: {', '.join(sorted(variant.ready['dags']))}",
        "open the file's import error in the Airflow UI (or run python on the file)",
    )
    broken = variant.scenario.after_kill
    killed = CheckResult(
        "loads are atomic",
        "a run killed in the middle of its merge leaves no half-written table",
        WAIT if broken is None else not broken,
        "right after the kill: one current version (or row) per key, the rules hold, nothing loaded is gone",
        "no run was killed: none wrote to dds while it waited" if broken is None else "; ".join(broken[:3]) or "ok",
        "the scenario could not kill a run in its merge" if broken is None else checks.ONE_TRANSACTION_HINT,
    )
    with ExitStack() as exit_stack:
        ctx = context(stack, variant.scenario, scd2, connect_all(stack, exit_stack))
        ctx.max_active_runs = pipeline_max_active_runs(variant)
        return [imports, killed] + [result for check in plan for result in check(ctx)]


def cannot_choose(choice: LoadChoice) -> CheckResult:
    """The one result of a folder whose load cannot be told: the verdict is CANNOT CHECK, naming what was found."""
    return CheckResult("the load DAG is found", "the folder's load DAG is recognisable", CANNOT, "", choice.why)


def pipeline_max_active_runs(variant: Variant) -> int | None:
    """max_active_runs of the load; of a pipeline, the one DAG that allows more than one run, if any."""
    values = [variant.ready["dags"].get(d, {}).get("max_active_runs") for d in variant.choice.pipeline]
    values = [v for v in values if v is not None]
    return next((v for v in values if v != 1), values[0] if values else None)
