"""Extract: one source table's recent rows into a typed Parquet batch file.

Which rows? Those created after the warehouse's watermark minus a lookback
window. The watermark alone would miss updates: a shop updates rows some time
after creating them, and those rows are older than the watermark. The lookback
must cover the shop's update depth plus one schedule interval plus a margin.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg2 import sql

from coursekit.pipeline.config import Source, Table
from coursekit.pipeline.sqlfiles import compose, ident_list
from coursekit.pipeline.staging import arrow_type, batch_schema, write_batch

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def read_watermark(dwh_conn, name: str, table: Table, source: Source) -> datetime | None:
    """Newest `increment_column` value of this source in dds (None before the first load)."""
    statement = compose(
        "extract", "watermark", dds_table=sql.Identifier("dds", name), increment=sql.Identifier(table.increment_column)
    )
    with dwh_conn.cursor() as cur:
        cur.execute(statement, {"src_id": source.src_id})
        (watermark,) = cur.fetchone()
    dwh_conn.rollback()  # read-only; end the transaction so no lock lingers
    return watermark


def fetch_batch(source_conn, name: str, table: Table, watermark: datetime | None, lookback_sec: int):
    """Read the batch and the source's clock from one consistent snapshot."""
    import pyarrow as pa

    parts = {
        "source_table": sql.Identifier(name),
        "columns": ident_list(list(table.columns)),
        "increment": sql.Identifier(table.increment_column),
        "key": sql.Identifier(table.key),
    }
    source_conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with source_conn.cursor() as cur:
            cur.execute(compose("extract", "source_clock"))
            (clock,) = cur.fetchone()
            statement = compose("extract", "batch", **parts)
            params = {"watermark": watermark, "lookback_sec": lookback_sec}
            log.debug("SQL: %s", cur.mogrify(statement, params).decode())
            cur.execute(statement, params)
            rows = cur.fetchall()
    finally:
        source_conn.rollback()
    columns = {
        column: pa.array([row[i] for row in rows], type=arrow_type(sql_type))
        for i, (column, sql_type) in enumerate(table.columns.items())
    }
    return pa.table(columns), clock


def add_run_metadata(frame: pd.DataFrame, source: Source, extracted_dttm: datetime, run_id: str) -> pd.DataFrame:
    """The transform: tag each row with its shop and the run that saw it."""
    return frame.assign(src_id=source.src_id, extracted_dttm=extracted_dttm, load_run_id=run_id)


def extract_to_parquet(
    source_conn,
    dwh_conn,
    name: str,
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

    watermark = read_watermark(dwh_conn, name, table, source)
    raw, clock = fetch_batch(source_conn, name, table, watermark, lookback_sec)
    frame = add_run_metadata(raw.to_pandas(types_mapper=pd.ArrowDtype), source, clock, run_id)
    write_batch(pa.Table.from_pandas(frame, schema=batch_schema(table), preserve_index=False), path)
    log.info(
        "extracted %s rows of %s from %s (watermark %s, lookback %ss) -> %s",
        raw.num_rows,
        name,
        source.src_id,
        watermark,
        lookback_sec,
        path,
    )
    return {"src_id": source.src_id, "path": str(path), "rows": raw.num_rows}
