"""Load: replace one source's batch in stg with COPY from the Parquet file.

COPY streams the whole batch in one round trip (row-by-row INSERTs pay one per
row). The Parquet file is turned into CSV in memory by Arrow, quoting every
value and leaving NULLs unquoted, which is how COPY tells NULL from ''.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from psycopg2 import sql

from coursekit.pipeline.config import Table
from coursekit.pipeline.sqlfiles import compose, ident_list
from coursekit.pipeline.staging import TECHNICAL_COLUMNS, read_batch

log = logging.getLogger(__name__)


def to_csv(batch) -> io.BytesIO:
    """Arrow table -> CSV bytes for COPY: values quoted, NULLs bare and empty."""
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buffer.seek(0)
    return buffer


def copy_into(cur, target: sql.Composable, columns: list[str], batch) -> None:
    """COPY an Arrow table into `target` (used for stg, and by the benchmark)."""
    statement = compose("load", "copy", stg_table=target, columns=ident_list(columns))
    cur.copy_expert(statement.as_string(cur.connection), to_csv(batch))


def load_stg(dwh_conn, name: str, table: Table, batches: list[dict]) -> int:
    """For each source: delete its old batch and COPY the new one, in one transaction."""
    stg_table = sql.Identifier("stg", name)
    columns = [*table.columns, *TECHNICAL_COLUMNS]
    total = 0
    for batch_info in batches:
        batch = read_batch(Path(batch_info["path"]))
        with dwh_conn, dwh_conn.cursor() as cur:
            cur.execute(compose("load", "clear_source", stg_table=stg_table), {"src_id": batch_info["src_id"]})
            copy_into(cur, stg_table, columns, batch.select(columns))
        log.info("staged %s rows of %s from %s into stg.%s", batch.num_rows, name, batch_info["src_id"], name)
        total += batch.num_rows
    return total
