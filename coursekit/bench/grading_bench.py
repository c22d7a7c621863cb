"""How long a learner waits for a verdict: the live check against the fast mode (G3's reference).

Prints key=value figures:

* fast_verdict_sec: `make check FAST=1` on G3's solution, start to last line;
* live_check_sec: one live `make check` on a running native G3 stack (its
  solution unpaused), from the command to its last line: wait for a fresh run,
  re-run it, grade a quiet snapshot;
* live_history_decidable_sec / live_retention_decidable_sec: how long after
  the first load the live mode needs before it can decide "updated keys have
  history" and "rows the shops deleted are kept" with the grade's env files
  (so the earliest possible live DONE), computed from the settings, not waited for.

With --record, a DONE fast verdict's time is written into coursekit/docs/measured.json as
`fast_verdict_sec.<grade>` (with the machine's cores and load), and `make docs` carries it into the pages.

Usage: python -m coursekit.bench.grading_bench [--grade G3_Middle] [--skip-live] [--record]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coursekit.checker.checks import HISTORY_MARGIN_SEC
from coursekit.grade import REPO_ROOT, Grade
from coursekit.pg import free_port

PORTS = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=1800)
    lines = result.stdout.strip().splitlines() or ["(no output)"]
    return time.monotonic() - start, lines[-1]


def live_check(grade_name: str) -> tuple[float, str]:
    root = Path(tempfile.mkdtemp(prefix="coursekit-bench-grading-"))
    grade = root / grade_name
    shutil.copytree(
        REPO_ROOT / grade_name, grade, ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging")
    )
    with open(grade / "deploy" / "env" / "airflow.env", "a", encoding="utf-8") as env_file:
        env_file.write("\nAIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False\n")
    env = {**os.environ, **{name: str(free_port()) for name in PORTS}, "PGADMIN": "0", "DAGS_DIR": "../solution/dags"}
    where = ["--grade", grade_name, "--grades-root", str(root)]
    native = ["-m", "coursekit.native"]
    try:
        subprocess.run([sys.executable, *native, "run", *where, "--run-dir", str(root / ".run")], env=env, check=True)
        time.sleep(90)  # a first run or two, as a learner who just unpaused
        return timed(["-m", "coursekit.checker", *where], env)
    finally:
        subprocess.run([sys.executable, *native, "stop", *where, "--run-dir", str(root / ".run")], env=env)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grade", default="G3_Middle")
    parser.add_argument("--skip-live", action="store_true", help="only the fast mode (no native stack)")
    parser.add_argument("--record", action="store_true", help="write a DONE fast verdict's time to measured.json")
    options = parser.parse_args()
    # The grade's reference: solution/dags where the grade has one (G0's own DAGs are the reference).
    solution = (REPO_ROOT / options.grade / "solution" / "dags").is_dir()
    env = {**os.environ, **({"DAGS_DIR": "../solution/dags"} if solution else {})}
    load_before = os.getloadavg()[0]
    seconds, last = timed(["-m", "coursekit.checker", "--grade", options.grade, "--fast"], env)
    verdict = last.split(":")[0]
    print(f"fast_verdict_sec={seconds:.0f}")
    print(f"fast_verdict={verdict}")
    if options.record and verdict == "DONE":
        from coursekit.docs.facts import record_measured

        record_measured(
            f"fast_verdict_sec.{options.grade}",
            round(seconds),
            f"python -m coursekit.bench.grading_bench --grade {options.grade} --skip-live --record: make check"
            f" FAST=1 on the grade's reference, start to last line; {os.cpu_count()} cores, load average"
            f" {load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
        )
    shop = Grade.named(options.grade).generator_env("shop-1")
    history = int(shop.get("UPDATE_NOT_OLDER_THAN_SEC") or 0) + HISTORY_MARGIN_SEC
    retention = int(shop.get("DELETE_OLDER_THAN_SEC") or 0) + 120
    print(f"live_history_decidable_sec={history}")
    print(f"live_retention_decidable_sec={retention}")
    if not options.skip_live:
        seconds, last = live_check(options.grade)
        print(f"live_check_sec={seconds:.0f}")
        print(f"live_verdict={last.split(':')[0]}")


if __name__ == "__main__":
    main()
