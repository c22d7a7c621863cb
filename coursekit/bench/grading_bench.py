"""How long a learner waits for a verdict: the live check against the fast mode (G3's reference).

Prints key=value figures:

* fast_verdict_sec: `make check FAST=1` on G3's solution, start to last line (with
  --runs N, the median of N checks in a row, each listed in fast_verdict_runs_sec),
  and where those seconds went (`fast_split_<phase>_s`, from the time stamps of
  the check's own progress lines, whole seconds; they add up to the verdict):
  databases (the checker's start, 3 embedded servers start), airflow_start (Airflow imported, the
  DAG folder parsed), warmup (shop activity before the first run), each run of
  the scenario, the kill and the inspection right after it, Airflow's restart (the
  spare runner, started ahead, taking over),
  the busy runs (with their pauses: `fast_pause_sleep_s`), the checks, and the
  teardown after the last progress line;
* live_check_sec: one live `make check` on a running native G3 stack (its
  solution unpaused), from the command to its last line: wait for a fresh run,
  re-run it, grade a quiet snapshot;
* live_history_decidable_sec / live_retention_decidable_sec: how long after
  the first load the live mode needs before it can decide "updated keys have
  history" and "rows the shops deleted are kept" with the grade's env files
  (so the earliest possible live DONE), computed from the settings, not waited for.

With --record, a DONE fast verdict's time is written into coursekit/docs/measured.json as
`fast_verdict_sec.<grade>` (with the machine's cores and load), and `make docs` carries it into the pages.

Usage: python -m coursekit.bench.grading_bench [--grade G3_Middle] [--skip-live] [--runs N] [--record]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coursekit.checker.checks import HISTORY_MARGIN_SEC
from coursekit.checker.fast import FastSettings
from coursekit.grade import REPO_ROOT, Grade
from coursekit.pg import free_port

PORTS = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=1800)
    lines = result.stdout.strip().splitlines() or ["(no output)"]
    return time.monotonic() - start, lines[-1]


# The fast check's progress lines ("  12 s  run 1, ...") -> the phase that ended with that line.
PHASES = (
    ("databases up", "databases"),
    ("Airflow ready", "airflow_start"),
    ("load DAG", "warmup"),
    ("run 1,", "run_1"),
    ("run 2,", "run_2"),
    ("updated ", "touch_rows"),
    ("waited on dds", "kill"),
    ("never wrote to dds", "kill"),
    ("inspected right after the kill", "inspect_after_kill"),
    ("Airflow restarted", "airflow_restart"),
    ("resumed after the kill", "resumed_run"),
    ("run 3, shops still paused", "run_3"),
    ("pg-shop-2 down", "source_down_run"),
    ("busy run", "busy_runs"),
    ("catch-up run", "catch_up_run"),
    ("re-run of the final run", "rerun"),
    ("final run:", "final_run"),
    ("graded in", "checks"),
)
PROGRESS = re.compile(r"^\s*(\d+) s  (.*)$")


def fast_split(output: str, total: float) -> dict[str, float]:
    """Seconds per phase of a fast check, from its progress lines (whole seconds), plus the teardown."""
    split: dict[str, float] = {}
    last = 0.0
    for line in output.splitlines():
        match = PROGRESS.match(line)
        if not match:
            continue
        at, text = float(match.group(1)), match.group(2)
        phase = next((name for marker, name in PHASES if marker in text), None)
        if phase is None:
            continue
        split[phase] = split.get(phase, 0.0) + at - last
        last = at
    split["teardown"] = max(0.0, total - last)
    return split


def fast_check(grade_name: str, env: dict[str, str]) -> tuple[float, str, dict[str, float], str]:
    """`make check FAST=1` on the grade's solution: seconds, its last line, the split, its output."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.checker", "--grade", grade_name, "--fast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - start
    lines = result.stdout.strip().splitlines() or ["(no output)"]
    return seconds, lines[-1], fast_split(result.stdout, seconds), result.stdout


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
    parser.add_argument("--runs", type=int, default=1, help="fast checks in a row; the figures are the median run's")
    options = parser.parse_args()
    # The grade's reference: solution/dags where the grade has one (G0's own DAGs are the reference).
    solution = (REPO_ROOT / options.grade / "solution" / "dags").is_dir()
    env = {**os.environ, **({"DAGS_DIR": "../solution/dags"} if solution else {})}
    load_before = os.getloadavg()[0]
    runs = [fast_check(options.grade, env) for _ in range(options.runs)]
    print(f"fast_verdict_runs_sec={','.join(f'{c[0]:.0f}' for c in runs)}")
    seconds, last, split, output = sorted(runs, key=lambda c: c[0])[len(runs) // 2]  # the median run
    verdict = last.split(":")[0]
    for phase, phase_seconds in split.items():
        print(f"fast_split_{phase}_s={phase_seconds:.0f}")
    busy = len(re.findall(r"^\s*\d+ s  busy run \d+", output, re.MULTILINE))
    print(f"fast_busy_runs={busy}")
    # Sleeps the scenario itself takes: a pause before each busy run, and (G2) 2 s before the killed run 4.
    g2_sleep = 2 if re.search(r"^\s*\d+ s  run 4 ", output, re.MULTILINE) else 0
    print(f"fast_pause_sleep_s={busy * FastSettings().pause + g2_sleep:.0f}")
    print(f"fast_load_avg_1m={os.getloadavg()[0]:.2f}")
    print(f"fast_verdict_sec={seconds:.0f}")
    print(f"fast_verdict={verdict}")
    if any(c[1].split(":")[0] != verdict for c in runs):
        print(f"fast_verdicts={','.join(c[1].split(':')[0] for c in runs)}")
    if options.record and verdict == "DONE":
        from coursekit.docs.facts import record_measured

        record_measured(
            f"fast_verdict_sec.{options.grade}",
            round(seconds),
            f"python -m coursekit.bench.grading_bench --grade {options.grade} --skip-live --runs {options.runs}"
            f" --record: make check FAST=1 on the grade's reference, start to last line"
            f"{f', the median of {options.runs} runs in a row' if options.runs > 1 else ''}; {os.cpu_count()} cores,"
            f" load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
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
