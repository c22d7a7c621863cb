"""Parse a dags folder with Airflow's own DagBag and describe its DAGs (Bash tasks, links) as JSON.

Run in a subprocess (`python -m coursekit.checker.inspect_dags <folder> <out.json>`)
with a throwaway AIRFLOW_HOME, so checking never touches a learner's Airflow. The
answer goes to a file: Airflow writes its own log lines to stdout.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path


def schedule_gap_seconds(dag) -> float | None:
    """Longest time between two scheduled runs over the next days; None if never scheduled."""
    timetable = dag.timetable
    expression = getattr(timetable, "expression", None)
    if expression:
        from croniter import croniter

        moments = croniter(expression, datetime(2026, 1, 1, tzinfo=UTC))
        times = [moments.get_next(datetime) for _ in range(50)]
        return max((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
    delta = getattr(timetable, "delta", None)
    if delta is not None:
        return delta.total_seconds()
    return None


def describe(folder: str) -> dict:
    # Airflow's own parser for a bundle: it puts the folder on sys.path, as the dag processor
    # does, so DAG files can import their own modules (G0's dwh/).
    from airflow.dag_processing.dagbag import BundleDagBag

    from coursekit.checker.pipeline import dag_facts

    bag = BundleDagBag(dag_folder=folder, bundle_path=Path(folder))
    dags = []
    for dag_id, dag in bag.dags.items():
        bash = [
            {
                "task_id": task.task_id,
                "bash_command": task.bash_command,
                "env": task.env or {},
                "append_env": bool(getattr(task, "append_env", False)),
                "params": {**dict(dag.params.dump()), **dict(task.params.dump())},
            }
            for task in dag.tasks
            if type(task).__name__ == "BashOperator"
        ]
        dags.append(
            {
                "dag_id": dag_id,
                "bash_tasks": bash,
                "schedule_gap_sec": schedule_gap_seconds(dag),
                "facts": dag_facts(dag),  # for choosing the load (pipeline.choose_load)
            }
        )
    return {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "dags": dags}


if __name__ == "__main__":
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump(describe(sys.argv[1]), out)
