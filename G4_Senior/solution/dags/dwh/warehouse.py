"""Create the warehouse tables a config describes (stg and dds), idempotently."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from psycopg import sql

from dwh.config import PipelineConfig, Table
from dwh.sqlfiles import compose

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def column_defs(table: Table) -> sql.Composed:
    """`"id" bigint, "name" text, ...`; types were checked against a whitelist by the config."""
    return sql.SQL(",\n    ").join(
        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(sql_type)) for column, sql_type in table.columns.items()
    )


def missing_columns(cur: psycopg.Cursor, schema: str, table: Table) -> list[str]:
    """Configured columns `<schema>.<table>` lacks. ALTER TABLE locks the whole table,
    so it runs only when the config really gained a column, not on every run."""
    cur.execute(compose("warehouse", "existing_columns"), {"schema": schema, "table_name": table.name})
    existing = {row[0] for row in cur.fetchall()}
    return [column for column in table.columns if column not in existing]


def drop_stg_primary_key(cur: psycopg.Cursor, table: Table) -> None:
    """Drop the primary key an older version of this pipeline gave stg.<table>.

    stg is rebuilt every run, so nothing is lost. Looked up first: ALTER TABLE
    locks the table even when there is nothing to drop, and this runs every run.
    """
    stg_table = sql.Identifier("stg", table.name)
    cur.execute(compose("warehouse", "stg_primary_key"), {"stg_table": stg_table.as_string(cur)})
    for (constraint,) in cur.fetchall():
        cur.execute(compose("warehouse", "drop_constraint", stg_table=stg_table, constraint=sql.Identifier(constraint)))
        log.info("dropped primary key %s of stg.%s", constraint, table.name)


def create_schemas(conn: psycopg.Connection) -> None:
    """Schemas stg and dds (the DAG runs the same SQL with SQLExecuteQueryOperator)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(compose("warehouse", "create_schemas"))


def ensure_tables(conn: psycopg.Connection, config: PipelineConfig) -> None:
    """Create every configured stg/dds table; add columns the config gained since."""
    with conn.transaction(), conn.cursor() as cur:
        for table in config.tables.values():
            ensure_table(cur, table)


def ensure_table(cur: psycopg.Cursor, table: Table) -> None:
    """stg.<table> and dds.<table> as the config describes them (inside the caller's transaction)."""
    name = table.name
    parts = {
        "stg_table": sql.Identifier("stg", name),
        "dds_table": sql.Identifier("dds", name),
        "column_defs": column_defs(table),
        "key": sql.Identifier(table.key),
        "increment": sql.Identifier(table.increment_column),
        "current_index": sql.Identifier(f"{name}_current_uq"),
        # SCD2 tables index current versions only (warehouse.sql says why), under a new name.
        "watermark_index": sql.Identifier(f"{name}_{'current' if table.scd2 else 'src'}_increment_ix"),
        "old_watermark_index": sql.Identifier("dds", f"{name}_src_increment_ix"),
    }
    cur.execute(compose("warehouse", "create_stg", **parts))
    drop_stg_primary_key(cur, table)
    cur.execute(compose("warehouse", "create_dds_scd2" if table.scd2 else "create_dds_plain", **parts))
    for schema in ("stg", "dds"):
        for column in missing_columns(cur, schema, table):
            added = {
                "warehouse_table": sql.Identifier(schema, name),
                "column": sql.Identifier(column),
                "column_type": sql.SQL(table.columns[column]),
            }
            cur.execute(compose("warehouse", "add_column", **added))
            log.info("added column %s.%s.%s", schema, name, column)
    log.info("dds.%s ready (%s)", name, "SCD2 history" if table.scd2 else "latest values only")
