"""The private stack `make images` photographs: a copy of a grade, started natively, stopped after.

A temporary folder, free ports and its own run dir: a learner's `make run` is
never touched. `let_data_flow` unpauses the load and waits until the warehouse
has something worth showing (several runs, a key with several versions).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from coursekit.grade import REPO_ROOT, Grade

GRADE = "G0_Trainee"
LOAD_DAG = "load_shops_to_dwh"
PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
RUNTIME_FOLDERS = ("generator_app_data", "logs", "staging", "__pycache__", ".run")


class ImagesError(RuntimeError):
    """A picture could not be made; the message says what to install or look at."""


def say(message: str) -> None:
    print(message, flush=True)


class PrivateStack:
    """A copy of a grade started natively on free ports in a temporary folder; a context manager."""

    def __init__(self, grade: str = GRADE) -> None:
        from coursekit.pg import free_port

        self.grade_name = grade
        self.root = Path(tempfile.mkdtemp(prefix="coursekit-images-"))
        self.grade = Grade.named(grade, self.root)
        self.run_dir = self.root / ".run"
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.env = {**os.environ, **{name: str(port) for name, port in self.ports.items()}}
        self.log = self.root / "native.log"
        self.base_url = f"http://127.0.0.1:{self.ports['AIRFLOW_PORT']}"
        self._token: str | None = None

    def __enter__(self) -> PrivateStack:
        shutil.copytree(REPO_ROOT / self.grade_name, self.grade.path, ignore=shutil.ignore_patterns(*RUNTIME_FOLDERS))
        say(f"  … starting a private {self.grade_name} in {self.root} (Airflow on {self.base_url})")
        try:
            self.native("run", timeout=900)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        say("  … stopping the private stack")
        try:
            self.native("stop", timeout=300, check=False)
        finally:
            leftovers = self.live_processes()
            for pid in leftovers:  # started for this folder only: ours to end
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if leftovers:
                say(f"  ! `stop` left {len(leftovers)} processes; killed them: {leftovers}")
            shutil.rmtree(self.root, ignore_errors=True)
            say(f"  ✓ stopped; removed {self.root}")

    def live_processes(self) -> list[int]:
        """Processes whose command line names this stack's folder (zombies do not count)."""
        import psutil

        found = []
        for process in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if process.info["status"] != psutil.STATUS_ZOMBIE and str(self.root) in " ".join(
                    process.info["cmdline"] or []
                ):
                    found.append(process.info["pid"])
            except psutil.Error:
                continue
        return [pid for pid in found if pid != os.getpid()]

    def native(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """`python -m coursekit.native <command> --grade ... --grades-root <copy> --run-dir <copy>/.run ...`."""
        command = [sys.executable, "-m", "coursekit.native", args[0], "--grade", self.grade_name]
        command += ["--grades-root", str(self.root), "--run-dir", str(self.run_dir), *args[1:]]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if self.log.parent.exists():
            with open(self.log, "a", encoding="utf-8") as log:
                log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            raise ImagesError(f"`coursekit.native {' '.join(args)}` failed:\n{result.stdout[-2000:]}{result.stderr}")
        return result.stdout

    # -- Airflow's REST API ---------------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT of the grade's login (airflow.env: user airflow, AIRFLOW_LOGIN_PASSWORD)."""
        if self._token is None:
            env = self.grade.env("airflow")
            user = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "airflow:admin").split(":")[0]
            body = json.dumps({"username": user, "password": env.get("AIRFLOW_LOGIN_PASSWORD", "airflow")}).encode()
            request = urllib.request.Request(
                f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=15) as response:
                self._token = json.loads(response.read())["access_token"]
        return self._token

    def api(self, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/api/v2/{path}", headers={"Authorization": f"Bearer {self.token()}"}
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())

    def dag_runs(self, dag_id: str = LOAD_DAG) -> list[dict]:
        return self.api(f"dags/{dag_id}/dagRuns?order_by=-run_after&limit=50").get("dag_runs", [])

    # -- the warehouse ---------------------------------------------------------------------------------------------

    def dwh(self):
        import psycopg2

        env = self.grade.env("pg-dwh")
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.ports["PG_DWH_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=env["POSTGRES_DB"],
            options="-c timezone=UTC",
        )


def let_data_flow(stack: PrivateStack, minutes: float, min_runs: int = 3, min_versions: int = 3) -> list[dict]:
    """Unpause the load, wait `minutes` and until `min_runs` runs succeeded and a key has `min_versions`."""
    stack.native("airflow", "--", "dags", "unpause", LOAD_DAG)
    say(f"  … {LOAD_DAG} unpaused; letting data flow for {minutes:g} minutes or more")
    started = time.monotonic()
    deadline = started + minutes * 60 + 300
    while True:
        elapsed = time.monotonic() - started
        runs = stack.dag_runs()
        succeeded = [r for r in runs if r["state"] == "success"]
        failed = [r for r in runs if r["state"] == "failed"]
        if failed:
            raise ImagesError(f"{LOAD_DAG} run {failed[0]['dag_run_id']} failed; logs under {stack.root}")
        versions = most_versions(stack)
        if elapsed >= minutes * 60 and len(succeeded) >= min_runs and versions >= min_versions:
            break
        if time.monotonic() > deadline:
            if len(succeeded) >= 1:
                say(f"  ! only {len(succeeded)} successful runs, at most {versions} versions per key; going on")
                break
            raise ImagesError(f"no successful {LOAD_DAG} run within {deadline - started:.0f} s")
        say(f"    {elapsed:4.0f} s: {len(succeeded)} successful runs, at most {versions} versions of a customer")
        time.sleep(20)
    return wait_for_quiet_moment(stack)


def most_versions(stack: PrivateStack) -> int:
    with closing(stack.dwh()) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('dds.customers') is not null")
        if not cur.fetchone()[0]:
            return 0
        cur.execute(
            "select coalesce(max(n), 0) from (select count(*) n from dds.customers group by customer_id, src_id) v"
        )
        return cur.fetchone()[0]


def wait_for_quiet_moment(stack: PrivateStack, timeout: float = 180) -> list[dict]:
    """Until no run is queued or running and the next one is 35 s or more away, so the UI shows green runs.

    The load runs every minute on the minute (pipeline.yaml), and the screenshots take ~20 s.
    """
    deadline = time.monotonic() + timeout
    while True:
        runs = stack.dag_runs()
        finished = runs and all(r["state"] in ("success", "failed") for r in runs)
        if finished and datetime.now(UTC).second <= 25:
            return runs
        if time.monotonic() > deadline:
            say("  ! a run is still going; the pictures may show it")
            return runs
        time.sleep(1)
