"""G1's cleanup task: a BashOperator DAG that deletes old staging files, at least daily.

The checker does not trust the code's look: it runs the task's real command
against a temporary staging folder holding a very old file and a fresh one.
The check is declared next to it (`registry.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from coursekit.checker.context import CheckResult, Context
from coursekit.checker.registry import Line, check

DAY = 86_400


def inspect(dags_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_dir)
        answer = Path(home) / "dags.json"
        result = subprocess.run(
            [sys.executable, "-m", "coursekit.checker.inspect_dags", str(dags_dir), str(answer)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(f"could not parse {dags_dir}:\n{result.stderr[-2000:]}")
        return json.loads(answer.read_text(encoding="utf-8"))


def run_command(task: dict, staging: Path) -> subprocess.CompletedProcess[str]:
    """The task's command, its Jinja rendered with params, run with STAGING_DIR pointing at `staging`."""
    import jinja2

    command = jinja2.Template(task["bash_command"]).render(params=task["params"])
    # Like BashOperator: env= replaces the environment unless append_env=True.
    base = os.environ if (not task["env"] or task["append_env"]) else {"PATH": os.environ.get("PATH", "")}
    env = {**base, **task["env"], "STAGING_DIR": str(staging)}
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)


def removes_only_old_files(task: dict) -> tuple[bool, str]:
    if task["env"] and not task["append_env"] and "STAGING_DIR" not in task["env"]:
        return False, "env= replaces the environment, so $STAGING_DIR never reaches the command (add append_env=True)"
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "staging"
        old = staging / "load" / "run_old" / "orders" / "shop_1.parquet"
        new = staging / "load" / "run_new" / "orders" / "shop_1.parquet"
        for path in (old, new):
            path.parent.mkdir(parents=True)
            path.write_bytes(b"parquet")
        past = time.time() - 90 * DAY
        os.utime(old, (past, past))
        result = run_command(task, staging)
        if result.returncode != 0:
            return False, f"the command failed (exit {result.returncode}): {result.stderr.strip()[-200:]}"
        if new.exists() and not old.exists():
            return True, "a 90-day-old file was deleted, a fresh one kept"
        if old.exists():
            return False, "a 90-day-old file in $STAGING_DIR was not deleted"
        return False, "the fresh file was deleted too"


EXISTS = Line(
    "a DAG with a BashOperator task exists",
    item="cleanup DAG",
    en="a DAG in the DAG folder (`airflow_data/dags/`) has a `BashOperator` task",
    ru="у какого-то DAG-а в папке DAG-ов (`airflow_data/dags/`) есть задача `BashOperator`",
    hint="write a DAG with `BashOperator(task_id=..., bash_command=...)`",
    per="once",
)
DAILY = Line(
    "it runs at least daily",
    item="cleanup DAG",
    en="that DAG is scheduled at least once every 24 hours",
    ru="этот DAG запускается по расписанию хотя бы раз в 24 часа",
    hint='set schedule="@daily" (or more often)',
    per="once",
)
DELETES = Line(
    "its command deletes only files older than the threshold",
    item="cleanup DAG",
    en="its command, run with `STAGING_DIR` pointing at a test folder, deletes a 90-day-old file and keeps a fresh one",
    ru="его команда, запущенная с `STAGING_DIR`, указывающим на тестовую папку, удаляет файл 90-дневной"
    " давности и оставляет свежий",
    hint='use "$STAGING_DIR" and find -mmin/-mtime with -delete',
    per="once",
)


@check(EXISTS, DAILY, DELETES, order=200, grades=("G1_Intern",))
def check_cleanup_dag(ctx: Context) -> Iterable[CheckResult]:
    info = inspect(ctx.stack.dags_dir)
    candidates = [dag for dag in info["dags"] if dag["bash_tasks"]]
    yield EXISTS.result(
        bool(candidates),
        "a DAG in airflow_data/dags using BashOperator",
        ", ".join(d["dag_id"] for d in candidates)
        or "none" + (f" (import errors in {', '.join(info['import_errors'])})" if info["import_errors"] else ""),
    )
    if not candidates:
        return
    gap = min((d["schedule_gap_sec"] for d in candidates if d["schedule_gap_sec"]), default=None)
    yield DAILY.result(
        gap is not None and gap <= DAY,
        "schedule every 24 h or more often",
        "not scheduled" if gap is None else f"every {gap / 3600:g} h at most",
    )
    outcomes = [removes_only_old_files(task) for dag in candidates for task in dag["bash_tasks"]]
    passed = any(ok for ok, _ in outcomes)
    yield DELETES.result(
        passed,
        "old files in $STAGING_DIR deleted, fresh ones kept",
        next((why for ok, why in outcomes if ok), outcomes[0][1]),
    )
