"""Which DAGs of a folder are the load: one choice for the fast mode, the live mode and the load test.

A learner may name the load DAG as the grade says (`load_shops_to_dwh`), name it
otherwise, or split it into DAGs linked the way Airflow 3 teaches: a task's
`outlets=[Asset(...)]` and another DAG's `schedule=[Asset(...)]`, or a
`TriggerDagRunOperator` (the original course's staging DAG triggering its dds
DAG). Linked DAGs are one load, a *pipeline*: its first DAG is the one that is
started; the others run because of it.

`dag_facts` describes a parsed DAG as plain JSON (it runs where Airflow is
imported: `fast_runner.py`, `inspect_dags.py`); `choose_load` decides from
those facts alone, and says why, so that every mode prints the same reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

EXPECTED = ("load_shops_to_dwh", "load_shops_to_dwh_wap")  # the grades' dag_id; G4's reference uses the second
NOT_LOADS = {"hello_world", "taskflow_example"}  # the newcomer examples never count as a load
TRIGGER_OPERATORS = {"TriggerDagRunOperator"}


def _assets(condition: Any) -> Iterator[Any]:
    """The assets of a schedule condition (Asset, AssetAll, AssetAny, nested)."""
    if condition is None:
        return
    objects = getattr(condition, "objects", None)
    if objects is not None:
        for inner in objects:
            yield from _assets(inner)
    elif getattr(condition, "uri", None) is not None:
        yield condition


def asset_key(asset: Any) -> str:
    return str(getattr(asset, "uri", None) or getattr(asset, "name", ""))


def dag_facts(dag: Any) -> dict[str, Any]:
    """What the choice needs of one parsed DAG: task types, the assets it waits for and emits, whom it triggers."""
    condition = getattr(dag.timetable, "asset_condition", None)
    outlets: dict[str, list[str]] = {}
    triggers: dict[str, str] = {}
    for task in dag.tasks:
        emitted = [asset_key(a) for a in getattr(task, "outlets", None) or [] if getattr(a, "uri", None)]
        if emitted:
            outlets[task.task_id] = emitted
        if type(task).__name__ in TRIGGER_OPERATORS:
            triggers[task.task_id] = str(getattr(task, "trigger_dag_id", ""))
    return {
        "task_types": sorted({type(task).__name__ for task in dag.tasks}),
        "tasks": len(dag.tasks),
        "max_active_runs": dag.max_active_runs,
        "schedule_assets": sorted({asset_key(a) for a in _assets(condition)}),
        "outlets": outlets,
        "triggers": triggers,
    }


@dataclass
class LoadChoice:
    """The graded load: its DAGs (first the one that is started), or why there is none to grade."""

    dag_id: str | None  # the DAG each load run starts (None: nothing to run)
    pipeline: list[str] = field(default_factory=list)  # every DAG of the load, in the order they run
    why: str = ""
    ambiguous: bool = False  # True: CANNOT CHECK, `why` names what was found

    def line(self) -> str:
        """One line for the report, before the checks."""
        if self.dag_id is None:
            return f"load DAG: none -- {self.why}"
        return f"load DAG: {' -> '.join(self.pipeline)} ({self.why})"


def is_candidate(dag_id: str, facts: dict[str, Any]) -> bool:
    """A DAG that may be (part of) a load: not a newcomer example, not a Bash-only DAG (G1's cleanup)."""
    types = facts.get("task_types") or []
    return dag_id not in NOT_LOADS and bool(types) and set(types) != {"BashOperator"}


def links(dags: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """dag_id -> the DAGs whose runs it causes (by an asset it emits, or by triggering them)."""
    emitted_by: dict[str, set[str]] = {}
    for dag_id, facts in dags.items():
        for keys in (facts.get("outlets") or {}).values():
            for key in keys:
                emitted_by.setdefault(key, set()).add(dag_id)
    caused: dict[str, list[str]] = {dag_id: [] for dag_id in dags}
    for dag_id, facts in dags.items():
        for target in (facts.get("triggers") or {}).values():
            if target in dags and target not in caused[dag_id]:
                caused[dag_id].append(target)
        for key in facts.get("schedule_assets") or []:
            for source in sorted(emitted_by.get(key, ())):
                if source != dag_id and dag_id not in caused[source]:
                    caused[source].append(dag_id)
    return caused


def pipelines(dags: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Candidate DAGs grouped into pipelines (linked DAGs together), each in the order its DAGs run."""
    candidates = {d: f for d, f in dags.items() if is_candidate(d, f)}
    caused = links(candidates)
    neighbours: dict[str, set[str]] = {d: set(caused[d]) for d in candidates}
    for source, targets in caused.items():
        for target in targets:
            neighbours[target].add(source)
    groups, seen = [], set()
    for dag_id in candidates:
        if dag_id in seen:
            continue
        group, todo = [], [dag_id]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            group.append(current)
            todo += sorted(neighbours[current] - seen)
        groups.append(_ordered(set(group), caused))
    return groups


def _ordered(group: set[str], caused: dict[str, list[str]]) -> list[str]:
    """The group's DAGs, those nothing else causes first, then in the order they cause each other."""
    incoming = {d: 0 for d in group}
    for source in group:
        for target in caused[source]:
            if target in group:
                incoming[target] += 1
    order, ready = [], sorted(d for d, n in incoming.items() if n == 0)
    while ready:
        current = ready.pop(0)
        order.append(current)
        for target in caused[current]:
            if target in group:
                incoming[target] -= 1
                if incoming[target] == 0:
                    ready.append(target)
    return order + sorted(group - set(order))  # a cycle: whatever is left, by name


def choose_load(
    dags: dict[str, dict[str, Any]], dag_id: str | None = None, expected: tuple[str, ...] = EXPECTED
) -> LoadChoice:
    """The load to grade, and why (see the rules in CHECKING.md and in checker-docs)."""
    groups = pipelines(dags)
    shown = ", ".join(sorted(dags)) or "no DAGs"

    def pick(name: str, why: str) -> LoadChoice:
        group = next((g for g in groups if name in g), [name])
        kind = _kind(group, dags)
        return LoadChoice(group[0], group, why + (f"; {kind}" if kind else ""))

    if dag_id:
        if dag_id not in dags:
            return LoadChoice(None, [], f"--dag-id {dag_id} is not in the folder (found: {shown})", ambiguous=True)
        return pick(dag_id, "chosen by --dag-id")
    for name in expected:
        if name in dags:
            return pick(name, "the expected dag_id")
    if len(groups) == 1:
        return pick(groups[0][0], f"the only load in the folder; expected {expected[0]}")
    if not groups:
        return LoadChoice(None, [], f"no load DAG in the folder (found: {shown}); expected {expected[0]}")
    found = "; ".join(sorted(" -> ".join(g) for g in groups))
    return LoadChoice(
        None,
        [],
        f"no DAG named {expected[0]}, and {len(groups)} unrelated DAGs (or pipelines) could be the load: {found}."
        f" Name your load DAG {expected[0]}, link its DAGs by assets or TriggerDagRunOperator,"
        ' or choose one with ARGS="--dag-id ..."',
        ambiguous=True,
    )


def _kind(group: list[str], dags: dict[str, dict[str, Any]]) -> str:
    if len(group) < 2:
        return ""
    by = set()
    for dag_id in group:
        facts = dags.get(dag_id, {})
        if facts.get("triggers"):
            by.add("TriggerDagRunOperator")
        if facts.get("schedule_assets"):
            by.add("assets")
    return f"a pipeline of {len(group)} DAGs linked by {' and '.join(sorted(by)) or 'each other'}"
