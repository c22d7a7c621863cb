"""
# load_shops_to_dwh_wap (G4 reference solution)

Every minute, bring what is new or changed in each shop into the warehouse,
keeping history (SCD2), and let through **only rows that pass an audit**:
Write-Audit-Publish. Readers of `dds` never see an order of a customer the
warehouse does not know, a quantity of 0 or a status nobody defined.

For each table in `pipeline.yaml` (one task group per table):

1. **extract_&lt;shop&gt;**: new and recently changed rows -> Parquet (as in G0).
2. **load_stg** (write): each shop's batch replaces its rows in `stg.<table>`.
3. **audit**: the rules of the table's `audit:` section run over the batch,
   together with quarantined rows that may pass now (a late customer arrived).
   Failing rows are held back; a summary per shop goes to the log and to
   `quarantine.audit_log`. If more than `max_quarantine_share` of a shop's
   fresh batch fails, the task fails at once (no retries) and nothing of the
   table is published: that is a broken source, not a few bad rows.
4. **publish**: ONE transaction: failing rows -> `quarantine.<table>` with the
   rules they broke, keys that now pass are marked `released`, passing rows
   are merged into `dds.<table>` by G0's SCD2 merge.

Dimensions before facts: a table's audit waits until every table its
references point at is published, so `orders` are checked against the
customers and products of this very run. Facts are extracted first, so the
dimensions read a moment later hold every customer those orders could see.

Concepts: Write-Audit-Publish, data contracts as config, quarantine and
replay, atomic publish, fail-fast thresholds. Code: `wap/config.py` (the
`audit:` rules), `wap/audit.py` (its SQL in `wap/sql/audit.sql`); extract,
load and merge are G0's, in `dwh/`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Asset, TaskGroup, dag, get_current_context, task

from dwh.connections import connect
from dwh.sqlfiles import statements
from wap.config import load_config

CONFIG = load_config(Path(__file__).with_name("pipeline.yaml"))


@task
def create_tables() -> None:
    """stg and dds tables as in G0, plus the audit, quarantine and audit_log tables (idempotent)."""
    from dwh.warehouse import ensure_tables
    from wap.audit import ensure_audit_tables

    with connect(CONFIG.dwh_conn_id) as dwh:
        ensure_tables(dwh, CONFIG)
        ensure_audit_tables(dwh, CONFIG)


@task
def extract(table_name: str, src_id: str) -> dict:
    """Source rows since watermark - lookback -> this run's Parquet file."""
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
    """Write: each shop's batch replaces its rows in stg.<table> (COPY, one transaction per shop)."""
    from dwh.load import copy_to_stg

    with connect(CONFIG.dwh_conn_id) as dwh:
        return copy_to_stg(dwh, CONFIG.tables[table_name], batches)


@task
def audit(table_name: str) -> list[dict]:
    """Audit: judge the batch, hold failing rows; fail fast when a shop's batch is mostly bad."""
    from airflow.sdk.exceptions import AirflowFailException

    from wap.audit import AuditThresholdExceeded, audit_batch

    try:
        with connect(CONFIG.dwh_conn_id) as dwh:
            summary = audit_batch(dwh, CONFIG, table_name, get_current_context()["run_id"])
    except AuditThresholdExceeded as exc:
        # Retrying cannot fix bad data: fail now, loudly, without the retries of default_args.
        raise AirflowFailException(str(exc)) from exc
    return [{**vars(s), "share": float(s.share)} for s in summary]


@task
def publish(table_name: str) -> dict:
    """Publish: quarantine failing rows, release keys that pass, merge the rest - one transaction."""
    from wap.audit import publish as publish_batch

    with connect(CONFIG.dwh_conn_id) as dwh:
        return publish_batch(dwh, CONFIG, table_name, get_current_context()["run_id"])


@dag(
    schedule=CONFIG.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the stg and audit tables: never two at once
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20)},
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["reference", "scd2", "incremental", "write-audit-publish"],
)
def load_shops_to_dwh_wap():
    create_schemas = SQLExecuteQueryOperator(
        task_id="create_schemas",
        conn_id=CONFIG.dwh_conn_id,
        sql=statements("warehouse")["create_schemas"],
    )
    tables_ready = create_tables()
    create_schemas >> tables_ready

    extracted, audited, published = {}, {}, {}
    for table in CONFIG.tables.values():
        with TaskGroup(group_id=table.name):
            batches = extracted[table.name] = [
                extract.override(task_id=f"extract_{source.slug}")(table.name, source.src_id)
                for source in CONFIG.sources
            ]
            staged = load_stg(table.name, batches)
            audited[table.name] = audit(table.name)
            dds_asset = Asset(name=f"dds.{table.name}", uri=f"postgres://pg-dwh:5432/dwh/dds/{table.name}")
            published[table.name] = publish.override(outlets=[dds_asset])(table.name)
            # Audit and publish read what the task before wrote to stg and audit.<table>: order only.
            tables_ready >> batches
            staged >> audited[table.name] >> published[table.name]

    for table in CONFIG.tables.values():
        for parent in table.audit.references.values():
            # Dimensions are published before facts: orders are audited against this run's customers.
            published[parent] >> audited[table.name]
            # Facts are READ before their dimensions: every customer an order saw then is in the
            # customers read a moment later. The other way round, an order placed between the two
            # reads by a customer who signed up in between would be held for a run for nothing.
            for fact_extract in extracted[table.name]:
                fact_extract >> extracted[parent]


load_shops_to_dwh_wap()
