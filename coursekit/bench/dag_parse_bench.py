"""How long Airflow takes to parse each grade's DAG files (the dag-processor does it every 30 s).

Prints `key=value` lines last: `dag_parse_ms_<grade>_<file>` per file of the
grade's DAG folder and `dag_parse_ms_<grade>_solution_<file>` per file of its
reference solution: a cold parse with Airflow's own `BundleDagBag` in a fresh
process (Airflow itself already imported, as in the dag-processor), the best of
`--repeats` processes. Each file is parsed as the dag-processor parses it: the
file alone, with its DAG folder (the bundle) on `sys.path`, so that a DAG file's
`from dwh import ...` finds the grade's package next to it. A file that fails to
import is an error (non-zero exit), never a figure.

Usage: python -m coursekit.bench.dag_parse_bench [--repeats 3] [--grade G0_Trainee ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from coursekit.grade import GRADES, Grade

PROBE = """
import sys, time
from airflow.dag_processing.dagbag import BundleDagBag
start = time.perf_counter()
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[2])
seconds = time.perf_counter() - start
assert not bag.import_errors, bag.import_errors
print(len(bag.dags))
print(seconds * 1000)
"""


def dag_folders(grade: str) -> list[tuple[str, Path]]:
    """(label, folder) for the grade's own DAG folder and its reference solution's, where it has one."""
    found = Grade.named(grade)
    folders = [(grade.lower(), found.dags_dir)]
    solution = found.path / "solution" / "dags"
    if solution.is_dir():
        folders.append((f"{grade.lower()}_solution", solution))
    return folders


def parse_ms(path: Path, folder: Path, env: dict[str, str]) -> tuple[int, float]:
    """DAGs found in `path` and milliseconds to parse it, with `folder` as the bundle."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(folder)], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{path} does not parse as the dag-processor parses it:\n{result.stderr[-3000:]}")
    dags, ms = result.stdout.strip().splitlines()[-2:]
    return int(dags), float(ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per file; the best is reported")
    parser.add_argument("--grade", action="append", choices=GRADES, help="only this grade (repeatable)")
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    dags_found = 0
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        for grade in args.grade or GRADES:
            for label, folder in dag_folders(grade):
                for path in sorted(folder.glob("*.py")):
                    runs = [parse_ms(path, folder, env) for _ in range(args.repeats)]
                    dags_found += runs[0][0]
                    figures[f"dag_parse_ms_{label}_{path.stem}"] = min(ms for _, ms in runs)
    for key, value in figures.items():
        print(f"{key}={value:.1f}")
    print(f"dag_parse_files={len(figures)}")
    print(f"dag_parse_dags={dags_found}")
    print(f"dag_parse_ms_max={max(figures.values()):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
