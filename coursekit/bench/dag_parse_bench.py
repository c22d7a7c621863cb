"""How long Airflow takes to parse each grade's DAG files (the dag-processor does it every 30 s).

Prints `key=value` lines last: `dag_parse_ms_<grade>_<file>` per file: a cold
parse with Airflow's own DagBag in a fresh process (Airflow itself already
imported, as in the dag-processor), the best of three processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from coursekit.grade import GRADES, Grade

PROBE = """
import sys, time
from airflow.dag_processing.dagbag import BundleDagBag
start = time.perf_counter()
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1])
print((time.perf_counter() - start) * 1000)
assert not bag.import_errors, bag.import_errors
"""


def main() -> int:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        for grade in GRADES:
            for path in sorted(Grade.named(grade).dags_dir.glob("*.py")):
                runs = [
                    subprocess.run(
                        [sys.executable, "-c", PROBE, str(path)], env=env, capture_output=True, text=True, check=True
                    )
                    for _ in range(3)
                ]
                key = f"dag_parse_ms_{grade.lower()}_{path.stem}"
                figures[key] = min(float(r.stdout.strip().splitlines()[-1]) for r in runs)
    for key, value in figures.items():
        print(f"{key}={value:.1f}")
    print(f"dag_parse_ms_max={max(figures.values()):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
