"""Every grade's DAG folder parses cleanly; G0's small DAGs do what they say.

The DagBag is Airflow's own parser, so an import error here is the same error a
learner would see at the top of the Airflow UI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from coursekit.grade import GRADES, Grade

DAG_FOLDERS = [Grade.named(g).dags_dir for g in GRADES if Grade.named(g).dags_dir.is_dir()]


@pytest.fixture
def no_connections(monkeypatch):
    """Parsing must not need a database: no connection is defined while it runs."""
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("dags_dir", DAG_FOLDERS, ids=lambda p: p.parent.parent.name)
@pytest.mark.usefixtures("no_connections")
def test_dag_folder_imports_without_errors(airflow, dags_dir: Path):
    bag = airflow.install(dags_dir)
    assert bag.import_errors == {}
    assert bag.dags, f"no DAGs found in {dags_dir}"
    for dag_id, dag in bag.dags.items():
        assert Path(dag.fileloc).stem == dag_id, "one DAG per file, file name = dag_id"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id}: module docstring as doc_md"
        assert dag.tags, f"{dag_id}: tags"
        assert dag.catchup is False, f"{dag_id}: catchup=False"
        if dag.timetable.can_be_scheduled:
            assert dag.max_active_runs == 1, f"{dag_id}: scheduled DAGs never overlap"
            assert all(task.retries >= 1 for task in dag.tasks), f"{dag_id}: scheduled tasks retry"


def test_g0_has_the_reference_newcomer_and_cleanup_dags(airflow):
    bag = airflow.install(Grade.named("G0_Trainee").dags_dir)
    assert set(bag.dags) == {"load_shops_to_dwh", "cleanup_staging", "hello_world", "taskflow_example"}
    load = bag.dags["load_shops_to_dwh"]
    for table in ("customers", "products", "orders"):
        assert {
            f"{table}.extract_new_york",
            f"{table}.extract_istanbul",
            f"{table}.load_stg",
            f"{table}.merge_dds",
        } <= set(load.task_ids)
    outlets = {str(asset.name) for task in load.tasks for asset in task.outlets}
    assert outlets == {"dds.customers", "dds.products", "dds.orders"}


def test_a_bad_pipeline_config_is_an_import_error_naming_the_key(airflow):
    bag = airflow.install(
        Grade.named("G0_Trainee").dags_dir,
        pipeline_edit=lambda c: c["tables"]["orders"]["columns"].update(quantity="money"),
    )
    errors = "\n".join(bag.import_errors.values())
    assert "tables.orders.columns" in errors and "'money'" in errors
    assert "load_shops_to_dwh" not in bag.dags


@pytest.mark.parametrize("dag_id", ["hello_world", "taskflow_example"])
def test_newcomer_dags_run(airflow, dag_id):
    bag = airflow.install(Grade.named("G0_Trainee").dags_dir)
    assert airflow.run(bag, dag_id).state == "success"


def test_cleanup_deletes_only_files_older_than_two_hours(airflow):
    bag = airflow.install(Grade.named("G0_Trainee").dags_dir)
    run_dir = airflow.staging_dir / "load_shops_to_dwh" / "old_run" / "orders"
    fresh_dir = airflow.staging_dir / "load_shops_to_dwh" / "new_run" / "orders"
    run_dir.mkdir(parents=True, exist_ok=True)
    fresh_dir.mkdir(parents=True, exist_ok=True)
    old, edge, new = run_dir / "new_york.parquet", fresh_dir / "istanbul.parquet", fresh_dir / "new_york.parquet"
    for path in (old, edge, new):
        path.write_bytes(b"x")
    now = time.time()
    os.utime(old, (now - 3 * 3600, now - 3 * 3600))
    os.utime(edge, (now - 110 * 60, now - 110 * 60))  # 1h50m: still kept
    assert airflow.run(bag, "cleanup_staging").state == "success"
    assert not old.exists() and not run_dir.exists(), "old file and its emptied folders removed"
    assert edge.exists() and new.exists()
