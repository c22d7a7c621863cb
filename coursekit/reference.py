"""The reference pipeline, imported from where learners read it: G0's `dags/dwh/`.

The pipeline's steps and the warehouse contract live next to G0's DAG, so that
a learner reads everything in one folder. The checker, the benchmark and the
tests use that same code (one copy, not two): this module puts G0's dags folder
on Python's path, as Airflow does for a DAG bundle, and hands out its modules.

    from coursekit.reference import contract, merge
"""

from __future__ import annotations

import sys

from coursekit.grade import REPO_ROOT

REFERENCE_DAGS = REPO_ROOT / "G0_Trainee" / "airflow_data" / "dags"

if str(REFERENCE_DAGS) not in sys.path:
    sys.path.append(str(REFERENCE_DAGS))

from dwh import config, contract, extract, load, merge, rules, sqlfiles, staging, warehouse  # noqa: E402

__all__ = [
    "REFERENCE_DAGS",
    "config",
    "contract",
    "extract",
    "load",
    "merge",
    "rules",
    "sqlfiles",
    "staging",
    "warehouse",
]
