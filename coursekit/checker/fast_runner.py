"""The fast mode's Airflow: runs the learner's DAGs one run at a time, on command.

Started by `fast.py` in a private AIRFLOW_HOME (SQLite metadata, the learner's
DAG folder copied, connections pointing at the private databases). It imports
Airflow (and builds the Execution API its first task needs), parses the folder
once told to (`{"cmd": "parse"}`: the databases are up by then), then reads one
JSON command per line on stdin and appends one JSON reply per command to the
reply file (stdout is Airflow's own log):

    {"cmd": "run", "dag_id": "load_shops_to_dwh"}
    {"cmd": "rerun", "dag_id": "...", "logical_date": "...", "run_after": "..."}

Each run is `dag.test()`, Airflow's own way to run a whole DAG run in one
process, with retries off so that a failure shows at once.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def describe(run: Any) -> dict:
    from airflow.utils.state import TaskInstanceState

    failed = sorted(ti.task_id for ti in run.get_task_instances() if ti.state == TaskInstanceState.FAILED)
    return {
        "run_id": run.run_id,
        "state": str(run.state),
        "start": _iso(run.start_date),
        "end": _iso(run.end_date),
        "logical_date": _iso(run.logical_date),
        "run_after": _iso(run.run_after),
        "failed_tasks": failed,
    }


def _build_execution_api() -> None:
    """What dag.test() builds before its first task; a failure here is left to that task to report."""
    try:
        from airflow.sdk.execution_time.supervisor import in_process_api_server

        in_process_api_server().app  # noqa: B018 (a cached property: building it is the point)
    except Exception:
        traceback.print_exc()


def main(dags_folder: str, reply_file: str) -> int:
    # Airflow's parser for a bundle puts the folder on sys.path, as the dag processor and the
    # task runner do, so DAG files can import their own modules (G0's dwh/).
    from airflow.dag_processing.dagbag import BundleDagBag

    replies = Path(reply_file)

    def reply(message: dict) -> None:
        with replies.open("a", encoding="utf-8") as out:
            out.write(json.dumps(message) + "\n")

    # The first task of a process builds Airflow's in-process Execution API (FastAPI, ~5 s on
    # 2 cores): build it now, while the orchestrator starts the databases.
    warm = threading.Thread(target=_build_execution_api, daemon=True)
    warm.start()
    # Parse only when told: the databases are up then, as in a real stack (a DAG file that
    # connects at import time fails or passes as it would there).
    for line in sys.stdin:
        if json.loads(line).get("cmd") == "parse":
            break
    bag = BundleDagBag(dag_folder=dags_folder, bundle_path=Path(dags_folder))
    dags = {}
    for dag_id, dag in bag.dags.items():
        kinds = sorted({type(task).__name__ for task in dag.tasks})
        dags[dag_id] = {"max_active_runs": dag.max_active_runs, "task_types": kinds, "tasks": len(dag.tasks)}
        for task in dag.tasks:
            task.retries = 0
    reply({"ready": True, "dags": dags, "import_errors": {Path(k).name: v for k, v in bag.import_errors.items()}})
    for line in sys.stdin:
        command = json.loads(line)
        warm.join()  # one API, built once (its cache has no lock)
        try:
            dag = bag.get_dag(command["dag_id"])
            if command["cmd"] == "run":
                run = dag.test()
            else:
                run = dag.test(
                    logical_date=datetime.fromisoformat(command["logical_date"]),
                    run_after=datetime.fromisoformat(command["run_after"]),
                )
            reply(describe(run))
        except Exception as exc:  # report it; the orchestrator decides what a failed command means
            traceback.print_exc()
            reply({"state": "error", "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
