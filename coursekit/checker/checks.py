"""The checks behind each grade's Definition of done, gathered under one name.

They live by concern, each declared once next to its function (`registry.py`
says how, and derives every grade's plan and Definition of done from the
declarations):

* `load_checks.py`: the tables, their types, both shops, unique keys, every source row with its values, ids;
* `history_checks.py`: the SCD2 rules of the warehouse contract, new versions, rows the shops deleted;
* `run_checks.py`: the runs succeed, never overlap, and a re-run changes nothing;
* `wap_checks.py`: G4's Write-Audit-Publish; `cleanup.py`: G1's cleanup DAG;
* `context.py`: what every check works with (verdicts, report rows, runs, the grading's context).

The checker, the fast mode, the load test and the tests import these names from here.
"""

from __future__ import annotations

from coursekit.checker.context import (
    CANNOT,
    COMMIT_SLACK_SEC,
    EXAMPLES,
    FAIL,
    OPEN_END,
    PASS,
    TECHNICAL,
    WAIT,
    Check,
    CheckResult,
    Context,
    Observed,
    Rerun,
    Run,
    _clock,
    _current,
    _dds,
    _held,
    _keys,
    _present,
    _shape,
)
from coursekit.checker.history_checks import (
    HISTORY_MARGIN_SEC,
    SCD2_RULE_LINES,
    check_deleted_rows_kept,
    check_history_kept,
    check_scd2_rules,
)
from coursekit.checker.load_checks import (
    check_against_source,
    check_column_types,
    check_ids_monotonic,
    check_shops_loaded,
    check_tables_exist,
    check_unique_keys,
)
from coursekit.checker.registry import ONE_TRANSACTION_HINT
from coursekit.checker.run_checks import (
    RECENT_RUNS,
    changed_keys,
    check_rerun_changes_nothing,
    check_runs_never_overlap,
    check_runs_succeeded,
    fingerprint,
)

__all__ = [
    "CANNOT",
    "COMMIT_SLACK_SEC",
    "EXAMPLES",
    "FAIL",
    "HISTORY_MARGIN_SEC",
    "ONE_TRANSACTION_HINT",
    "OPEN_END",
    "PASS",
    "RECENT_RUNS",
    "SCD2_RULE_LINES",
    "TECHNICAL",
    "WAIT",
    "Check",
    "CheckResult",
    "Context",
    "Observed",
    "Rerun",
    "Run",
    "_clock",
    "_current",
    "_dds",
    "_held",
    "_keys",
    "_present",
    "_shape",
    "changed_keys",
    "check_against_source",
    "check_column_types",
    "check_deleted_rows_kept",
    "check_history_kept",
    "check_ids_monotonic",
    "check_rerun_changes_nothing",
    "check_runs_never_overlap",
    "check_runs_succeeded",
    "check_scd2_rules",
    "check_shops_loaded",
    "check_tables_exist",
    "check_unique_keys",
    "fingerprint",
]
