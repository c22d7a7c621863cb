"""Typed staging files: the batch travels between tasks as Parquet.

CSV loses types (every value becomes text, NULL and '' look alike, time zones
vanish). Parquet keeps them: ints stay ints, NULL stays NULL, timestamps stay
UTC, strings keep quotes, newlines and unicode. Each file is named by DAG, run,
table and source, so runs never overwrite each other and a re-run of the same
run replaces exactly its own files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from dwh.contract import STG_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

    from dwh.config import Table


def _safe(part: str) -> str:
    """Run ids contain ':' and '+'; keep file names portable."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part)


def batch_path(root: Path, dag_id: str, run_id: str, table_name: str, source_slug: str) -> Path:
    """<root>/<dag_id>/<run_id>/<table_name>/<source>.parquet"""
    return root / _safe(dag_id) / _safe(run_id) / table_name / f"{source_slug}.parquet"


def arrow_type(sql_type: str) -> pa.DataType:
    """The Arrow type that holds a Postgres column type without loss."""
    import pyarrow as pa

    simple = {
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "smallint": pa.int16(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "double precision": pa.float64(),
        "text": pa.string(),
    }
    if sql_type in simple:
        return simple[sql_type]
    if sql_type.startswith(("varchar", "char")):
        return pa.string()
    precision, scale = (int(x) for x in re.findall(r"\d+", sql_type))
    return pa.decimal128(precision, scale)


def batch_schema(table: Table) -> pa.Schema:
    """Source columns with their types, then stg's technical columns."""
    import pyarrow as pa

    technical = {"src_id": pa.string(), "extracted_dttm": pa.timestamp("us", tz="UTC"), "load_run_id": pa.string()}
    fields = [pa.field(column, arrow_type(sql_type)) for column, sql_type in table.columns.items()]
    fields += [pa.field(column, technical[column], nullable=False) for column in STG_COLUMNS]
    return pa.schema(fields)


def write_batch(batch: pa.Table, path: Path) -> None:
    """Write atomically: a killed task leaves the old file or none, never half a file."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(batch, tmp)
    os.replace(tmp, path)


def read_batch(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path)
