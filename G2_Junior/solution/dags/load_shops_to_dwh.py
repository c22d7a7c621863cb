"""
# load_shops_to_dwh

Every minute, bring what is new or changed in each shop's database into the
warehouse (`pg-dwh`), keeping every version of every row (SCD2).

For each table in `pipeline.yaml` (one task group per table):

1. **extract_&lt;shop&gt;** reads the rows created after the warehouse's watermark
   minus a lookback window (new rows, plus recent rows the shop may have
   updated) and writes them, tagged with the shop's `src_id`, to a Parquet file.
2. **load_stg** replaces each shop's batch in `stg.<table>` with `COPY`.
3. **merge_dds** merges the batch into `dds.<table>` in one transaction: new keys
   are inserted, changed keys get their current version closed and a new one
   opened, unchanged keys are left alone. Re-running it changes nothing.

Concepts: incremental loading (watermark + lookback), typed staging files,
idempotent tasks, set-based SCD2 merge, TaskFlow, assets.
Needs: connections `shop_1_conn`, `shop_2_conn`, `dwh_conn` (provisioned from
`deploy/env/airflow.env`). Every step is in `dwh/`, next to this file: its
`__init__.py` gives the reading order.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Asset, TaskGroup, dag, get_current_context, task

from dwh.config import load_config
from dwh.connections import connect
from dwh.sqlfiles import statements

CONFIG = load_config(Path(__file__).with_name("pipeline.yaml"))


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
    """Replace each shop's batch in stg.<table> with COPY (one transaction per shop)."""
    from dwh.load import copy_to_stg

    with connect(CONFIG.dwh_conn_id) as dwh:
        return copy_to_stg(dwh, CONFIG.tables[table_name], batches)


@task
def merge_dds(table_name: str) -> dict[str, int]:
    """Merge this run's stg batch (the rows tagged with its run_id) into dds.<table>, in one transaction."""
    from dwh.merge import merge_into_dds

    with connect(CONFIG.dwh_conn_id) as dwh:
        return merge_into_dds(dwh, CONFIG.tables[table_name], get_current_context()["run_id"])


@dag(
    schedule=CONFIG.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the stg tables: never two at once
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["reference", "scd2", "incremental"],
)
def load_shops_to_dwh():
    create_schemas = SQLExecuteQueryOperator(
        task_id="create_schemas",
        conn_id=CONFIG.dwh_conn_id,
        sql=statements("warehouse")["create_schemas"],
    )
    tables_ready = create_tables()
    create_schemas >> tables_ready

    for table in CONFIG.tables.values():
        with TaskGroup(group_id=table.name):
            # The extract results are data (file paths) for load_stg; the merge needs
            # only the order: it reads what load_stg wrote to stg for this run.
            batches = [
                extract.override(task_id=f"extract_{source.slug}")(table.name, source.src_id)
                for source in CONFIG.sources
            ]
            staged = load_stg(table.name, batches)
            dds_asset = Asset(name=f"dds.{table.name}", uri=f"postgres://pg-dwh:5432/dwh/dds/{table.name}")
            merged = merge_dds.override(outlets=[dds_asset])(table.name)
            tables_ready >> batches
            staged >> merged


load_shops_to_dwh()
