"""`make run|stop|status|reset|memory` - a grade's stack without Docker.

python -m coursekit.native run --grade G0_Trainee
python -m coursekit.native airflow --grade G0_Trainee -- dags unpause load_shops_to_dwh
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.native.stack import NativeStack, StackError

NEXT_STEPS = """\
Next steps:
  1. Open Airflow, log in, unpause load_shops_to_dwh (the toggle left of its name).
  2. Watch runs turn green; the data lands in pg-dwh, schemas stg and dds: in pgAdmin
     open Servers > Course > pg-dwh (no password asked), or use any Postgres client.
  3. Check the grade:  make check GRADE={grade}
  Status: make status GRADE={grade}    Stop: make stop GRADE={grade}    Wipe data: make reset GRADE={grade}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.native", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=["run", "stop", "status", "reset", "memory", "airflow"], help="what to do with the stack"
    )
    parser.add_argument("--grade", default=os.environ.get("GRADE", "G0_Trainee"), choices=GRADES)
    parser.add_argument(
        "--grades-root",
        type=Path,
        default=Path(os.environ.get("COURSEKIT_GRADES_ROOT", REPO_ROOT)),
        help="folder holding the grade folders (default: this repo)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("COURSEKIT_RUN_DIR", REPO_ROOT / ".run")),
        help="where native data and state live (default: .run/)",
    )
    argv = sys.argv[1:] if argv is None else argv
    airflow_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    options = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    options.args = airflow_args
    try:
        stack = NativeStack(Grade.named(options.grade, options.grades_root), options.run_dir)
        return COMMANDS[options.command](stack, options)
    except StackError as exc:
        print(f"\n✗ {exc}", file=sys.stderr)
        return 1


def run(stack: NativeStack, options: argparse.Namespace) -> int:
    print(f"Starting {stack.grade.name} natively (no Docker)...")
    try:
        endpoints = stack.start()
    except BaseException:
        print("Start failed; stopping what was started...", file=sys.stderr)
        stack.stop(progress=lambda line: print(line, file=sys.stderr))
        raise
    print(f"\n{stack.grade.name} is up.\n")
    for endpoint in endpoints:
        print(f"  {endpoint.name:<11} {endpoint.url:<45} login {endpoint.login}")
    print("\n" + NEXT_STEPS.format(grade=stack.grade.name))
    return 0


def stop(stack: NativeStack, options: argparse.Namespace) -> int:
    print(f"Stopping {stack.grade.name}...")
    stack.stop()
    print("Stopped. Data is kept in .run/; `make reset` wipes it.")
    return 0


def status(stack: NativeStack, options: argparse.Namespace) -> int:
    print(f"{stack.grade.name}:")
    for name, state, detail in stack.status():
        print(f"  {name:<24} {state:<8} {detail}")
    return 0


def reset(stack: NativeStack, options: argparse.Namespace) -> int:
    stack.reset()
    print(f"{stack.grade.name} reset: the next `make run` starts with empty databases.")
    return 0


def memory(stack: NativeStack, options: argparse.Namespace) -> int:
    from coursekit.native.memory import stack_memory

    usage = stack_memory(stack)
    if not usage:
        raise StackError(f"{stack.grade.name} is not running; start it with `make run GRADE={stack.grade.name}`")
    for name, size in sorted(usage.items()):
        print(f"  {name:<24} {size / 2**20:8.1f} MiB")
    total = sum(usage.values())
    print(f"  {'total':<24} {total / 2**20:8.1f} MiB")
    for name, size in sorted(usage.items()):
        print(f"memory_pss_mib_{name.replace('-', '_')}={size / 2**20:.1f}")
    print(f"memory_pss_mib_total={total / 2**20:.1f}")
    return 0


def airflow(stack: NativeStack, options: argparse.Namespace) -> int:
    """The Airflow CLI with the stack's configuration: `... airflow --grade G -- dags list`."""
    env = stack.airflow_env(stack.load_state())
    return subprocess.run([sys.executable, "-m", "airflow", *options.args], env=env).returncode


COMMANDS = {"run": run, "stop": stop, "status": status, "reset": reset, "memory": memory, "airflow": airflow}

if __name__ == "__main__":
    sys.exit(main())
