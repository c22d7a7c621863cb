"""
# merge_to_dds (a test solution: G0's load split in two DAGs)

The second half: merge the batch `stage_shops` landed in `stg` into `dds`
(SCD2, one transaction per table). Started by the asset `stg_shops`, or by
stage_shops' TriggerDagRunOperator (then its conf names the staging run).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task
from psycopg import sql

from dwh.config import load_config
from dwh.connections import connect

CONFIG = load_config(Path(__file__).with_name("pipeline.yaml"))
LINK = "asset"  # or "trigger": how stage_shops starts this DAG
STAGED = Asset("stg_shops")  # the batch of every table is in stg


def staging_run_id(table_name: str) -> str | None:
    """The staging run whose batch is in stg: from the trigger's conf, else the batch's own tag."""
    conf = get_current_context()["dag_run"].conf or {}
    if conf.get("stage_run_id"):
        return conf["stage_run_id"]
    with connect(CONFIG.dwh_conn_id) as dwh, dwh.cursor() as cur:
        cur.execute(sql.SQL("select max(load_run_id) from {}").format(sql.Identifier("stg", table_name)))
        return cur.fetchone()[0]


@task
def merge_dds(table_name: str) -> dict[str, int]:
    """Merge the staged batch into dds.<table>, in one transaction."""
    from dwh.merge import merge_into_dds

    run_id = staging_run_id(table_name)
    if run_id is None:
        return {}
    with connect(CONFIG.dwh_conn_id) as dwh:
        return merge_into_dds(dwh, CONFIG.tables[table_name], run_id)


@dag(
    schedule=[STAGED] if LINK == "asset" else None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["test", "pipeline"],
)
def merge_to_dds():
    for table_name in CONFIG.tables:
        merge_dds.override(task_id=f"merge_{table_name}")(table_name)


merge_to_dds()
