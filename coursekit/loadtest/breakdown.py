"""Where a DAG run's time goes, from its task instances' own timings.

Airflow records, per task instance, when it was queued (`queued_when`), when it
started and when it ended; the DAG records which tasks wait for which. From
those two facts every run is split two ways:

- **task-seconds per stage, summed over tables**: how much work each stage did
  (extract, load_stg, audit, publish or merge). Tasks run in parallel, so these
  may add up to more than the run took.
- **the critical path**: walking back from the task that finished last, each
  moment of the run is charged to exactly one thing: a task of some stage
  running, that task waiting in the executor's queue (`queued`: start_date -
  queued_when), or Airflow noticing that its upstreams were done (`scheduling`:
  the upstream's end -> queued_when, plus the run's start and end). These add up
  to the run's duration, so they answer "why did this run take 140 s".
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime

STAGES = ("extract", "load_stg", "audit", "publish", "setup", "other")
OVERHEAD = ("queued", "scheduling")
STAGE_COLUMNS = ("extract", "load_stg", "audit", "publish")  # setup and other tasks are shown as "other"


def stage_of(task_id: str) -> str:
    """`orders.extract_new_york` -> extract; `customers.merge_dds` -> publish (G0's name for it)."""
    name = task_id.rsplit(".", 1)[-1]
    if name.startswith("extract"):
        return "extract"
    if name in ("load_stg", "stage"):
        return "load_stg"
    if name.startswith("audit"):
        return "audit"
    if name in ("publish", "merge_dds", "merge"):
        return "publish"
    if name in ("create_schemas", "create_tables"):
        return "setup"
    return "other"


def table_of(task_id: str) -> str:
    """The TaskGroup of a task (the table it loads); '-' for tasks outside any group."""
    return task_id.rsplit(".", 1)[0] if "." in task_id else "-"


@dataclass
class TaskTiming:
    task_id: str
    queued: datetime | None
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())

    @property
    def queued_seconds(self) -> float:
        return max(0.0, (self.start - self.queued).total_seconds()) if self.queued else 0.0


@dataclass
class RunBreakdown:
    """One DAG run: its span, task-seconds per stage and table, and its critical path."""

    dag_id: str
    run_id: str
    start: datetime
    end: datetime
    work: dict[str, float] = field(default_factory=dict)  # stage -> task-seconds summed over tables
    by_table: dict[tuple[str, str], float] = field(default_factory=dict)  # (table, stage) -> task-seconds
    queued: float = 0.0  # summed over tasks: start - queued_when
    scheduling: float = 0.0  # summed over tasks: upstreams' end (or run start) -> queued_when
    critical: dict[str, float] = field(default_factory=dict)  # stage or overhead -> seconds; sums to duration
    schedule: str = ""  # the DAG's schedule as Airflow summarises it (`* * * * *`)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _charge(path: dict[str, float], what: str, seconds: float) -> None:
    if seconds > 0:
        path[what] = path.get(what, 0.0) + seconds


def analyse(
    dag_id: str,
    run_id: str,
    start: datetime,
    end: datetime,
    tasks: list[TaskTiming],
    upstreams: dict[str, list[str]],
) -> RunBreakdown:
    """Split one finished run (see the module's docstring); tasks that never ran are left out."""
    run = RunBreakdown(dag_id, run_id, start, end)
    by_id = {t.task_id: t for t in tasks}
    for t in tasks:
        stage = stage_of(t.task_id)
        run.work[stage] = run.work.get(stage, 0.0) + t.seconds
        key = (table_of(t.task_id), stage)
        run.by_table[key] = run.by_table.get(key, 0.0) + t.seconds
        run.queued += t.queued_seconds
        ready = max([by_id[u].end for u in upstreams.get(t.task_id, []) if u in by_id], default=start)
        run.scheduling += max(0.0, ((t.queued or t.start) - ready).total_seconds())
    # The critical path, charged from the run's end backwards; `cursor` only ever moves back,
    # so the pieces never overlap and add up to end - start exactly.
    cursor = end
    current = max(tasks, key=lambda t: t.end, default=None)

    def back_to(moment: datetime, what: str) -> None:
        nonlocal cursor
        moment = max(moment, start)
        if moment < cursor:
            _charge(run.critical, what, (cursor - moment).total_seconds())
            cursor = moment

    while current is not None:
        back_to(current.end, "scheduling")  # the run (or the next task) noticing this one ended
        back_to(current.start, stage_of(current.task_id))
        back_to(current.queued or current.start, "queued")
        previous = [by_id[u] for u in upstreams.get(current.task_id, []) if u in by_id]
        current = max(previous, key=lambda t: t.end, default=None)
    back_to(start, "scheduling")
    return run


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def upstream_map(client, dag_id: str) -> dict[str, list[str]]:
    """task -> the tasks it waits for, from the DAG's structure (`/api/v2/dags/{dag_id}/tasks`)."""
    tasks = client._request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    upstreams: dict[str, list[str]] = {t["task_id"]: [] for t in tasks}
    for t in tasks:
        for downstream in t.get("downstream_task_ids") or []:
            upstreams.setdefault(downstream, []).append(t["task_id"])
    return upstreams


def load_dags(client) -> list[str]:
    """The unpaused DAGs that stage data (a task named load_stg): the loads, not cleanup or examples."""
    loads = []
    for dag_id in client.unpaused_dags():
        tasks = client._request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]
        if any(stage_of(t["task_id"]) == "load_stg" for t in tasks):
            loads.append(dag_id)
    return loads


def fetch(client, since: datetime, until: datetime, dag_ids: list[str] | None = None) -> list[RunBreakdown]:
    """Every finished run of the load DAGs (`dag_ids`, else `load_dags`) that started in [since, until), split."""
    found = []
    for dag_id in dag_ids or load_dags(client):
        upstreams = upstream_map(client, dag_id)
        schedule = client.dag(dag_id).get("timetable_summary") or ""
        offset = 0
        while True:
            query = urllib.parse.urlencode(
                {
                    "start_date_gte": since.isoformat(),
                    "start_date_lte": until.isoformat(),
                    "order_by": "start_date",
                    "limit": 100,
                    "offset": offset,
                }
            )
            page = client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]
            for run in page:
                if run.get("state") not in ("success", "failed") or not run.get("end_date"):
                    continue
                quoted = urllib.parse.quote(run["dag_run_id"], safe="")
                reply = client._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=1000")
                tasks = [
                    TaskTiming(
                        ti["task_id"], _when(ti.get("queued_when")), _when(ti["start_date"]), _when(ti["end_date"])
                    )
                    for ti in reply["task_instances"]
                    if ti.get("start_date") and ti.get("end_date")
                ]
                split = analyse(
                    dag_id, run["dag_run_id"], _when(run["start_date"]), _when(run["end_date"]), tasks, upstreams
                )
                split.schedule = schedule
                found.append(split)
            if len(page) < 100:
                break
            offset += 100
    return sorted(found, key=lambda r: r.start)


def stage_column(stage: str) -> str:
    """The report's column for a task's stage: the WAP stages, Airflow's overheads, else "other"."""
    return stage if stage in STAGE_COLUMNS or stage in OVERHEAD else "other"


def schedule_seconds(schedule: str) -> float | None:
    """Seconds between runs for the simple schedules (`* * * * *`, `*/5 * * * *`, @hourly), else None."""
    if schedule.strip() == "* * * * *":
        return 60.0
    if schedule.startswith("*/") and schedule.endswith(" * * * *"):
        return 60.0 * int(schedule[2:].split()[0])
    return {"@hourly": 3600.0, "@daily": 86400.0}.get(schedule.strip())
