"""
# stage_shops (a test solution: G0's load split in two DAGs)

The first half of G0's reference load: extract every table from both shops and
land the batch in `stg`. When every table is staged it tells `merge_to_dds`,
which merges the batch into `dds`: by emitting the asset `stg_shops` (Airflow 3's
way; `merge_to_dds` is scheduled on it), or -- the original course's design --
by triggering it with `TriggerDagRunOperator`. `LINK` says which; the grader must
grade both as one load (tests/test_grading.py).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, TaskGroup, dag, get_current_context, task

from dwh.config import load_config
from dwh.connections import connect
from dwh.sqlfiles import statements

CONFIG = load_config(Path(__file__).with_name("pipeline.yaml"))
LINK = "asset"  # or "trigger": how this DAG starts merge_to_dds
STAGED = Asset("stg_shops")  # the batch of every table is in stg


@task
def create_tables() -> None:
    """Create the stg and dds tables of every configured table (idempotent)."""
    from dwh.warehouse import ensure_tables

    with connect(CONFIG.dwh_conn_id) as dwh:
        ensure_tables(dwh, CONFIG)


@task
def extract(table_name: str, src_id: str) -> dict:
    """Source rows since watermark - lookback -> Parquet file of this run."""
    from dwh.extract import extract_to_parquet
    from dwh.staging import batch_path

    context = get_current_context()
    table, source = CONFIG.tables[table_name], CONFIG.source(src_id)
    path = batch_path(CONFIG.staging_root(), context["dag"].dag_id, context["run_id"], table.name, source.slug)
    with connect(source.conn_id) as src, connect(CONFIG.dwh_conn_id) as dwh:
        return extract_to_parquet(
            src, dwh, table, source, lookback_sec=CONFIG.lookback_sec, run_id=context["run_id"], path=path
        )


@task
def load_stg(table_name: str, batches: list[dict]) -> int:
    """Replace each shop's batch in stg.<table> with COPY (rows tagged with this run's id)."""
    from dwh.load import copy_to_stg

    with connect(CONFIG.dwh_conn_id) as dwh:
        return copy_to_stg(dwh, CONFIG.tables[table_name], batches)


@task(outlets=[STAGED])
def staged() -> str:
    """Every table is in stg: emitting the asset starts merge_to_dds."""
    return get_current_context()["run_id"]


@dag(
    schedule=CONFIG.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["test", "pipeline"],
)
def stage_shops():
    create_schemas = SQLExecuteQueryOperator(
        task_id="create_schemas", conn_id=CONFIG.dwh_conn_id, sql=statements("warehouse")["create_schemas"]
    )
    tables_ready = create_tables()
    create_schemas >> tables_ready
    if LINK == "asset":
        done = staged()
    else:
        trigger_merge = TriggerDagRunOperator(
            task_id="trigger_merge", trigger_dag_id="merge_to_dds", conf={"stage_run_id": "{{ run_id }}"}
        )
        done = trigger_merge
    for table_name in CONFIG.tables:
        with TaskGroup(group_id=table_name):
            batches = [
                extract.override(task_id=f"extract_{source.slug}")(table_name, source.src_id)
                for source in CONFIG.sources
            ]
            tables_ready >> batches
            load_stg(table_name, batches) >> done


stage_shops()
