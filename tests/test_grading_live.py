"""The live checker never says DONE to a wrong solution while it cannot tell.

A G3 stack runs natively (a private copy, free ports, default settings) with
the overwrite-in-place solution (SCD1: no history). While no key can have
had time to change and be re-loaded, "updated keys have more than one
version" is undecidable: the checker must say WAIT for it, never PASS, and the
verdict must never be DONE, at 1 and 3 minutes after the DAG was unpaused.
The last check also re-runs a finished run through Airflow's API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from solutions.mutations import apply

from coursekit.grade import REPO_ROOT
from coursekit.pg import free_port

PORTS = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
HISTORY = "dds.orders: updated keys have more than one version"


def run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_overwrite_in_place_never_gets_done_while_history_is_undecidable(tmp_path: Path):
    grade = tmp_path / "G3_Middle"
    shutil.copytree(
        REPO_ROOT / "G3_Middle", grade, ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging")
    )
    dags = grade / "airflow_data" / "dags"
    (dags / "load_shops_to_dwh.py").write_text(apply("overwrite_in_place"), encoding="utf-8")
    with open(grade / "deploy" / "env" / "airflow.env", "a", encoding="utf-8") as env_file:
        env_file.write("\nAIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False\n")  # unpaused as soon as parsed
    env = {**os.environ, **{name: str(free_port()) for name in PORTS}, "PGADMIN": "0"}
    where = ["--grade", "G3_Middle", "--grades-root", str(tmp_path)]
    native = ["-m", "coursekit.native"]
    started = run([*native, "run", *where, "--run-dir", str(tmp_path / ".run")], env, 900)
    assert started.returncode == 0, started.stdout + started.stderr
    unpaused_at = time.monotonic()
    try:
        for minute, extra in ((1, ["--no-rerun"]), (3, [])):
            time.sleep(max(0.0, unpaused_at + 60 * minute - time.monotonic()))
            checked = run(["-m", "coursekit.checker", *where, "--timeout", "180", *extra], env, 900)
            lines = checked.stdout.strip().splitlines()
            assert lines, checked.stderr
            last, rows = lines[-1], {line.split(": ", 1)[1]: line.split(":")[0] for line in lines if ": dds." in line}
            print(f"minute {minute}: {last}")
            assert not last.startswith("DONE"), f"minute {minute}: a wrong solution got {last}"
            assert last.startswith(("WAIT", "NOT DONE")), f"minute {minute}: {last}\n{checked.stderr[-2000:]}"
            assert checked.returncode in (1, 3)
            # The load is chosen from Airflow's own list (cleanup_staging and the examples never count).
            assert "load DAG: load_shops_to_dwh (the expected dag_id)" in checked.stdout, checked.stdout[:2000]
            assert rows.get(HISTORY) in ("WAIT", "FAIL"), f"minute {minute}: {HISTORY} was {rows.get(HISTORY)}"
        rerun = [
            line for line in checked.stdout.splitlines() if line.endswith(": re-running a finished run changes nothing")
        ]
        assert rerun and not rerun[0].startswith("WAIT"), f"the live check re-ran a finished run: {rerun}"
    finally:
        run([*native, "stop", *where, "--run-dir", str(tmp_path / ".run")], env, 300)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_the_live_check_grades_dags_linked_by_an_asset_as_one_load(tmp_path: Path):
    """G0's reference split in stage_shops -> (asset) -> merge_to_dds, run by a real scheduler: the live
    check waits for the staging run AND the merge run it causes, then finds every row loaded."""
    grade = tmp_path / "G3_Middle"
    shutil.copytree(
        REPO_ROOT / "G3_Middle", grade, ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging")
    )
    dags = grade / "airflow_data" / "dags"
    shutil.rmtree(dags)
    shutil.copytree(REPO_ROOT / "G3_Middle" / "solution" / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    (dags / "load_shops_to_dwh.py").unlink()
    for dag_file in (Path(__file__).parent / "solutions" / "two_dags").glob("*.py"):
        shutil.copy(dag_file, dags / dag_file.name)
    with open(grade / "deploy" / "env" / "airflow.env", "a", encoding="utf-8") as env_file:
        env_file.write("\nAIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False\n")
    env = {**os.environ, **{name: str(free_port()) for name in PORTS}, "PGADMIN": "0"}
    where = ["--grade", "G3_Middle", "--grades-root", str(tmp_path)]
    native = ["-m", "coursekit.native"]
    started = run([*native, "run", *where, "--run-dir", str(tmp_path / ".run")], env, 900)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        checked = run(["-m", "coursekit.checker", *where, "--timeout", "300", "--no-rerun"], env, 900)
        out = checked.stdout
        assert "load DAG: stage_shops -> merge_to_dds" in out and "linked by assets" in out, out[:3000]
        assert "checked after run stage_shops" in out, out[-3000:]
        rows = {line.split(": ", 1)[1]: line.split(":")[0] for line in out.splitlines() if ": dds." in line}
        assert rows.get("dds.orders: every source row is loaded") == "PASS", out[-4000:]
        assert out.strip().splitlines()[-1].startswith(("DONE", "WAIT")), out[-3000:]
    finally:
        run([*native, "stop", *where, "--run-dir", str(tmp_path / ".run")], env, 300)
