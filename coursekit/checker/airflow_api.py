"""Just enough of Airflow 3's REST API to wait for, list and re-run the load DAG's runs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

from coursekit.checker.pipeline import NOT_LOADS  # newcomer DAGs never count as a load
from coursekit.checker.stack import GradeStack, StackNotReachable


class AirflowClient:
    def __init__(self, stack: GradeStack) -> None:
        self.base = stack.airflow_url
        self.user, self.password = stack.airflow_user, stack.airflow_password
        self._token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode() if body else None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise StackNotReachable(
                    f"Airflow at {self.base} refused the login {self.user!r} from airflow.env ({exc.code})"
                ) from None
            raise
        except OSError as exc:
            raise StackNotReachable(
                f"Airflow does not answer at {self.base} ({exc}). Is the stack running and healthy?"
            ) from None

    def token(self) -> str:
        if self._token is None:
            reply = self._request("POST", "/auth/token", {"username": self.user, "password": self.password}, auth=False)
            self._token = reply["access_token"]
        return self._token

    def finished_runs_since(self, since: datetime, dag_id: str | None = None) -> list[dict]:
        """Successful runs that started at or after `since` (of one DAG, or of any load DAG)."""
        query = urllib.parse.urlencode({"start_date_gte": since.isoformat(), "state": "success", "limit": 100})
        reply = self._request("GET", f"/api/v2/dags/{dag_id or '~'}/dagRuns?{query}")
        return [run for run in reply["dag_runs"] if dag_id or run["dag_id"] not in NOT_LOADS]

    def runs(self, dag_id: str, limit: int = 25, **filters: str) -> list[dict]:
        """The DAG's runs, newest first."""
        query = urllib.parse.urlencode({"order_by": "-start_date", "limit": limit, **filters})
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        quoted = urllib.parse.quote(run_id, safe="")
        reply = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances?state=failed")
        return sorted(ti["task_id"] for ti in reply["task_instances"])

    def first_success(self, dag_id: str) -> dict | None:
        query = urllib.parse.urlencode({"order_by": "start_date", "limit": 1, "state": "success"})
        runs = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]
        return runs[0] if runs else None

    def active_runs(self, dag_id: str) -> list[dict]:
        query = urllib.parse.urlencode([("state", "running"), ("state", "queued"), ("limit", 10)])
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]

    def dag(self, dag_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/details")

    def clear(self, dag_id: str, run_id: str) -> None:
        """Re-run every task of a finished run, as the UI's "Clear" button does."""
        quoted = urllib.parse.quote(run_id, safe="")
        self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/clear", {"dry_run": False})

    def dag_facts(self) -> dict[str, dict[str, Any]]:
        """What `pipeline.choose_load` needs, as this Airflow sees its DAGs: task types and asset links.

        Whom a TriggerDagRunOperator triggers is not in the API (its target is filled in from
        the parsed folder, see `__main__.live_choice`).
        """
        facts: dict[str, dict[str, Any]] = {}
        for dag in self._request("GET", "/api/v2/dags?limit=100&exclude_stale=true")["dags"]:
            tasks = self._request("GET", f"/api/v2/dags/{dag['dag_id']}/tasks")["tasks"]
            kinds = {
                t["task_id"]: (t.get("class_ref") or {}).get("class_name") or t.get("operator_name") for t in tasks
            }
            facts[dag["dag_id"]] = {
                "task_types": sorted({str(kind) for kind in kinds.values()}),
                "tasks": len(tasks),
                "max_active_runs": dag.get("max_active_runs"),
                "schedule_assets": [],
                "outlets": {},
                "triggers": {task: "" for task, kind in kinds.items() if kind == "TriggerDagRunOperator"},
            }
        for asset in self._request("GET", "/api/v2/assets?limit=100")["assets"]:
            for ref in asset.get("scheduled_dags") or []:
                facts.get(ref["dag_id"], {}).get("schedule_assets", []).append(asset["uri"])
            for ref in asset.get("producing_tasks") or []:
                if ref["dag_id"] in facts:
                    facts[ref["dag_id"]]["outlets"].setdefault(ref["task_id"], []).append(asset["uri"])
        return facts

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG, as the UI's toggle does."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def fail_run(self, dag_id: str, run_id: str) -> None:
        """Mark a run failed, as the UI's "Mark as failed" does: its running tasks are stopped."""
        quoted = urllib.parse.quote(run_id, safe="")
        self._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}", {"state": "failed"})

    def unpaused_dags(self) -> list[str]:
        reply = self._request("GET", "/api/v2/dags?paused=false&limit=100")
        return [dag["dag_id"] for dag in reply["dags"]]


def wait_for_run(
    client: AirflowClient,
    since: datetime,
    timeout: float,
    dag_id: str | None = None,
    tick: Callable[[float], None] | None = None,
) -> dict | None:
    """The first load run started after `since` to finish, or None after `timeout` seconds."""
    start = time.monotonic()
    while True:
        runs = client.finished_runs_since(since, dag_id)
        if runs:
            return runs[0]
        elapsed = time.monotonic() - start
        if tick is not None:
            tick(elapsed)
        if elapsed > timeout:
            return None
        time.sleep(3)
