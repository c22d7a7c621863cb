"""The fast mode's Airflow: runs the learner's DAGs one run at a time, on command.

Started by `fast/runners.py` in a private AIRFLOW_HOME (SQLite metadata, the learner's
DAG folder copied, connections pointing at the private databases). It imports
Airflow (and builds the Execution API its first task needs), parses the folder
once told to (`{"cmd": "parse"}`: the databases are up by then), then reads one
JSON command per line on stdin and appends one JSON reply per command to the
reply file (stdout is Airflow's own log):

    {"cmd": "run", "dag_id": "load_shops_to_dwh"}
    {"cmd": "rerun", "dag_id": "...", "logical_date": "...", "run_after": "..."}

Each run is `dag.test()`, Airflow's own way to run a whole DAG run in one
process, with retries off so that a failure shows at once. A command may name
a `pipeline` (the load split into DAGs linked by assets or
TriggerDagRunOperator, see `pipeline.py`): after the first DAG's run, every DAG
run it causes runs too, in order, as the scheduler would start them; the reply
is the first run's, failed if any run of the pipeline failed.
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


def _record_triggers(triggered: list[tuple[str, dict | None]]) -> None:
    """TriggerDagRunOperator only notes whom it triggers: there is no scheduler here to start that run.

    The pipeline runs the triggered DAG itself right after (with the operator's conf),
    so `wait_for_completion=True` cannot block on a run that would never start.
    """
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    def execute(self, context) -> None:  # noqa: ARG001 - the operator's signature
        triggered.append((str(self.trigger_dag_id), self.conf if isinstance(self.conf, dict) else None))

    TriggerDagRunOperator.execute = execute


def _due(condition: Any, emitted: set[str]) -> bool:
    """An asset schedule's condition, given the assets emitted so far in this pipeline run."""
    from coursekit.checker.pipeline import asset_key

    objects = getattr(condition, "objects", None)
    if objects is not None:
        outcomes = [_due(inner, emitted) for inner in objects]
        return any(outcomes) if type(condition).__name__ == "AssetAny" else all(outcomes)
    return asset_key(condition) in emitted


def run_pipeline(bag: Any, command: dict, facts: dict, triggered: list) -> dict:
    """The command's run of its first DAG, then every run it causes; one reply for all of them."""
    from airflow.utils.state import TaskInstanceState

    triggered.clear()
    first = bag.get_dag(command["dag_id"])
    if command["cmd"] == "run":
        run = first.test()
    else:
        run = first.test(
            logical_date=datetime.fromisoformat(command["logical_date"]),
            run_after=datetime.fromisoformat(command["run_after"]),
        )
    answer = describe(run)
    pipeline = command.get("pipeline") or [command["dag_id"]]
    emitted: set[str] = set()
    ran = [run]
    for dag_id in pipeline[1:]:
        for done in ran:
            succeeded = {ti.task_id for ti in done.get_task_instances() if ti.state == TaskInstanceState.SUCCESS}
            outlets = facts.get(done.dag_id, {}).get("outlets", {})
            emitted |= {key for task_id, keys in outlets.items() if task_id in succeeded for key in keys}
        ran = []
        dag = bag.get_dag(dag_id)
        conf = next((c for target, c in triggered if target == dag_id), None)
        by_trigger = any(target == dag_id for target, _ in triggered)
        condition = getattr(dag.timetable, "asset_condition", None)
        if not by_trigger and not (condition is not None and _due(condition, emitted)):
            continue  # not caused by this run (e.g. the first DAG failed before it emitted its asset)
        downstream = dag.test(run_conf=conf)
        ran.append(downstream)
        caused = describe(downstream)
        if caused["state"] != "success":
            answer["state"] = caused["state"]
        answer["failed_tasks"] += [f"{dag_id}.{task}" for task in caused["failed_tasks"]]
        answer["end"] = caused["end"] or answer["end"]
        answer.setdefault("caused", []).append(caused["run_id"] and f"{dag_id}/{caused['run_id']}")
    return answer


def _build_execution_api(parsed: threading.Event) -> None:
    """What dag.test() builds before its first task; a failure here is left to that task to report.

    Building the app is not enough: its versioned routes (cadwyn) are generated on the first
    request, ~3.5 s on 2 cores that the first task of the first run paid. One request to the
    API's health route, through the transport dag.test() uses (one per process), pays it here.
    """
    try:
        import httpx
        from airflow.sdk.execution_time.supervisor import in_process_api_server

        api = in_process_api_server()
        api.app  # noqa: B018 (a cached property: building it is the point)
        parsed.wait()  # the routes' ~4 s of CPU after the parse, which has a timeout of its own
        # Not closed: closing a client closes its transport, the one dag.test() goes on to use.
        client = httpx.Client(transport=api.transport, base_url="http://in-process.invalid./")
        client.get("/health").raise_for_status()
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

    from coursekit.checker.pipeline import dag_facts

    # The first task of a process builds Airflow's in-process Execution API (FastAPI, ~5 s on
    # 2 cores): build it now, while the orchestrator starts the databases.
    parsed = threading.Event()
    warm = threading.Thread(target=_build_execution_api, args=(parsed,), daemon=True)
    warm.start()
    # Parse only when told: the databases are up then, as in a real stack (a DAG file that
    # connects at import time fails or passes as it would there).
    for line in sys.stdin:
        if json.loads(line).get("cmd") == "parse":
            break
    bag = BundleDagBag(dag_folder=dags_folder, bundle_path=Path(dags_folder))
    dags = {}
    triggered: list[tuple[str, dict | None]] = []
    _record_triggers(triggered)
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = dag_facts(dag)
        for task in dag.tasks:
            task.retries = 0
    parsed.set()
    reply({"ready": True, "dags": dags, "import_errors": {Path(k).name: v for k, v in bag.import_errors.items()}})
    for line in sys.stdin:
        command = json.loads(line)
        warm.join()  # one API, built once (its cache has no lock)
        try:
            reply(run_pipeline(bag, command, dags, triggered))
        except Exception as exc:  # report it; the orchestrator decides what a failed command means
            traceback.print_exc()
            reply({"state": "error", "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
