"""Extract: one source table's recent rows into a typed Parquet batch file.

Which rows? Those created after the warehouse's watermark minus a lookback
window. The watermark alone would miss updates: a shop updates rows some time
after creating them, and those rows are older than the watermark. The lookback
must cover the shop's update depth plus one schedule interval plus a margin.

Why rows from the hook's connection rather than `PostgresHook.get_df()`:
`get_df` reads through a SQLAlchemy engine of its own, outside the snapshot
that also dates the batch (`source_clock`), and lets pandas guess the types
(`numeric` becomes float, a column NULL in every row becomes `object`). Here
the types come from `pipeline.yaml`, and pandas gets an exact frame.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import IsolationLevel, sql

from dwh.config import Source, Table
from dwh.sqlfiles import compose, ident_list
from dwh.staging import arrow_type, batch_schema, write_batch

if TYPE_CHECKING:
    import pandas as pd
    import psycopg
    import pyarrow as pa

log = logging.getLogger(__name__)


def read_watermark(dwh_conn: psycopg.Connection, table: Table, source: Source) -> datetime | None:
    """Newest `increment_column` value of this source in dds (None before the first load)."""
    statement = compose(
        "extract",
        "watermark_scd2" if table.scd2 else "watermark_plain",
        dds_table=sql.Identifier("dds", table.name),
        increment=sql.Identifier(table.increment_column),
    )
    (watermark,) = dwh_conn.execute(statement, {"src_id": source.src_id}).fetchone()
    return watermark


def fetch_batch(
    source_conn: psycopg.Connection, table: Table, watermark: datetime | None, lookback_sec: int
) -> tuple[pa.Table, datetime]:
    """Read the batch and the source's clock from one consistent, read-only snapshot."""
    import pyarrow as pa

    parts = {
        "source_table": sql.Identifier(table.name),
        "columns": ident_list(list(table.columns)),
        "increment": sql.Identifier(table.increment_column),
        "key": sql.Identifier(table.key),
    }
    source_conn.isolation_level = IsolationLevel.REPEATABLE_READ
    source_conn.read_only = True
    with source_conn.transaction():
        (clock,) = source_conn.execute(compose("extract", "source_clock")).fetchone()
        params = {"watermark": watermark, "lookback_sec": lookback_sec}
        rows = source_conn.execute(compose("extract", "batch", **parts), params).fetchall()
    # Arrow types from the config, not guessed from the values: a column that is NULL in
    # every row of this batch still arrives as a timestamp, a numeric stays exact.
    columns = {
        column: pa.array([row[i] for row in rows], type=arrow_type(sql_type))
        for i, (column, sql_type) in enumerate(table.columns.items())
    }
    return pa.table(columns), clock


def add_run_metadata(frame: pd.DataFrame, source: Source, extracted_dttm: datetime, run_id: str) -> pd.DataFrame:
    """The transform: tag each row with its shop and the run that saw it."""
    return frame.assign(src_id=source.src_id, extracted_dttm=extracted_dttm, load_run_id=run_id)


def extract_to_parquet(
    source_conn: psycopg.Connection,
    dwh_conn: psycopg.Connection,
    table: Table,
    source: Source,
    *,
    lookback_sec: int,
    run_id: str,
    path: Path,
) -> dict[str, Any]:
    """Extract one table of one source into `path`; returns a summary for the next task."""
    import pandas as pd
    import pyarrow as pa

    watermark = read_watermark(dwh_conn, table, source)
    raw, clock = fetch_batch(source_conn, table, watermark, lookback_sec)
    # pd.ArrowDtype keeps NULLs as NULLs and numerics exact (pandas' own dtypes would turn
    # a NULL string into NaN and numeric(10,2) into float).
    frame = add_run_metadata(raw.to_pandas(types_mapper=pd.ArrowDtype), source, clock, run_id)
    write_batch(pa.Table.from_pandas(frame, schema=batch_schema(table), preserve_index=False), path)
    log.info(
        "extracted %s rows of %s from %s (watermark %s, lookback %ss) -> %s",
        raw.num_rows,
        table.name,
        source.src_id,
        watermark,
        lookback_sec,
        path,
    )
    return {"src_id": source.src_id, "path": str(path), "rows": raw.num_rows}
