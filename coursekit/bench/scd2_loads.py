"""The loads the SCD2 benchmark times, each verified: the reference's, a raw COPY, the naive one.

`scd2_bench.py` runs them on copies of prepared databases; this module holds
the databases' helpers, the checks that turn a wrong result into an error
instead of a figure, and the loads themselves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql

from coursekit.bench.scd2_data import (
    CONFIG,
    DDS_COLUMNS,
    NAME,
    PREFILL_CHUNK,
    RUN_ID,
    SRC_ID,
    STG_COLUMNS,
    TABLE,
    dds_rows,
    orders,
)
from coursekit.pg import EmbeddedPostgres
from coursekit.reference import contract, load, merge, rules, sqlfiles, staging, warehouse

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class BenchmarkError(RuntimeError):
    """A load produced a wrong result: the benchmark refuses to report its speed."""


# -- databases -----------------------------------------------------------------------


def connect(server: EmbeddedPostgres, database: str) -> psycopg.Connection:
    """A psycopg 3 connection in autocommit mode, as the pipeline's (`dwh/connections.py`):
    every transaction is an explicit `with conn.transaction():` block. Closed by `with`."""
    return psycopg.connect(server.dsn(database), autocommit=True)


def admin(server: EmbeddedPostgres, statement: sql.Composable) -> None:
    """One statement outside a transaction on the maintenance database (CREATE/DROP DATABASE)."""
    with connect(server, "postgres") as conn:
        conn.execute(statement)


def autocommit(server: EmbeddedPostgres, database: str, *statements: str) -> None:
    """Statements that cannot run in a transaction block (VACUUM, CHECKPOINT)."""
    with connect(server, database) as conn:
        for statement in statements:
            conn.execute(statement)


def build_warehouse(
    server: EmbeddedPostgres, database: str, dds_keys: tuple[int, int], previous_batch: pa.Table
) -> None:
    """A warehouse in steady state: dds holds current versions of `dds_keys`, stg the previous run's batch.

    Filled by COPY in chunks (seconds for a million rows), then vacuumed and
    analyzed, so the measured load meets a table as autovacuum would leave it.
    """
    server.create_database(database)
    with connect(server, database) as conn:
        warehouse.create_schemas(conn)
        warehouse.ensure_tables(conn, CONFIG)
        first, last = dds_keys
        for start in range(first, last + 1, PREFILL_CHUNK):
            keys = np.arange(start, min(start + PREFILL_CHUNK, last + 1), dtype=np.int64)
            with conn.transaction(), conn.cursor() as cur:
                load.copy_into(cur, sql.Identifier("dds", NAME), DDS_COLUMNS, dds_rows(orders(keys)))
        with conn.transaction(), conn.cursor() as cur:
            load.copy_into(cur, sql.Identifier("stg", NAME), STG_COLUMNS, previous_batch)
    autocommit(server, database, "vacuum analyze stg.orders", "vacuum analyze dds.orders")


@contextmanager
def copy_of(server: EmbeddedPostgres, template: str, name: str) -> Iterator[str]:
    """A fresh copy of a prepared database, dropped afterwards.

    FILE_COPY copies the files as they are (data, statistics, visibility map), so
    every measured load starts from the same state.
    """
    admin(
        server,
        sql.SQL("create database {} template {} strategy file_copy").format(
            sql.Identifier(name), sql.Identifier(template)
        ),
    )
    try:
        yield name
    finally:
        server.drop_database(name)


def settle(server: EmbeddedPostgres, database: str) -> None:
    """Let earlier writes reach the disk before a measurement starts.

    The server runs without fsync, so a copied database's files and the pages a
    checkpoint writes sit in the kernel's cache and are written back seconds
    later, in the background: during the next measurement, which then timed the
    disk instead of the load (the same raw COPY took 0.25 s or 0.6 s depending on
    what ran before it). CHECKPOINT, then fsync of the server's own files, does
    that work now, untimed. Not sync(): that waits for every process's writes
    on the machine, minutes on a busy one.
    """
    autocommit(server, database, "checkpoint")
    for path in server.data_dir.rglob("*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError):  # dropped meanwhile, or a folder
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a correct merge reports for one batch against one dds."""

    new: int
    changed: int
    unchanged: int

    def counts(self) -> dict[str, int]:
        return {"new": self.new, "changed": self.changed, "unchanged": self.unchanged}


def verify(conn, expected: Expected, counts: dict[str, int], *, whole_contract: bool) -> None:
    """Fail loudly unless the load did exactly what SCD2 requires.

    Checked: the merge's own counts; one closed version per changed key and no
    other (dds started with current versions only); one new version per new or
    changed key; every batch row equal to its key's current version in dds;
    with `whole_contract`, every rule of the warehouse contract on the whole table.
    """
    if counts != expected.counts():
        raise BenchmarkError(f"merge counts {counts}, expected {expected.counts()}")
    stg_table, dds_table = sql.Identifier("stg", NAME), sql.Identifier("dds", NAME)
    values = TABLE.value_columns
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "select count(*) filter (where eff_to_dttm <> %(open_end)s),"
                " count(*) filter (where load_run_id = %(run_id)s) from {}"
            ).format(dds_table),
            {"open_end": contract.OPEN_END, "run_id": RUN_ID},
        )
        closed, inserted = cur.fetchone()
        cur.execute(
            sql.SQL(
                "select count(*) from {stg} as b left join {dds} as c"
                " on c.order_id = b.order_id and c.src_id = b.src_id and c.eff_to_dttm = %(open_end)s"
                " where b.load_run_id = %(run_id)s"
                " and (c.order_id is null or ({batch_values}) is distinct from ({current_values}))"
            ).format(
                stg=stg_table,
                dds=dds_table,
                batch_values=sqlfiles.ident_list(values, "b"),
                current_values=sqlfiles.ident_list(values, "c"),
            ),
            {"open_end": contract.OPEN_END, "run_id": RUN_ID},
        )
        (stale,) = cur.fetchone()
    if closed != expected.changed:
        raise BenchmarkError(f"{closed} versions closed, expected exactly {expected.changed}")
    if inserted != expected.new + expected.changed:
        raise BenchmarkError(f"{inserted} versions inserted, expected {expected.new + expected.changed}")
    if stale:
        raise BenchmarkError(f"{stale} batch rows are not the current version of their key in dds")
    if whole_contract:
        broken = {rule: rows for rule, rows in rules.violations(conn, TABLE).items() if rows}
        if broken:
            raise BenchmarkError(f"warehouse contract broken: {broken}")


# -- the loads -------------------------------------------------------------------------


MERGE_STEPS = ("classify_scd2", "close_changed", "insert_versions", "summary", "commit")


@dataclass
class Timing:
    """Seconds of one load, split where the pipeline splits it into tasks, and the
    merge's seconds split by statement (`MERGE_STEPS`)."""

    stg: float
    merge: float
    steps: dict[str, float]

    @property
    def total(self) -> float:
        return self.stg + self.merge


def scd2_load(conn, batch_file: Path) -> tuple[Timing, dict[str, int]]:
    """The reference pipeline's load task and merge task, back to back, as a DAG runs them."""
    started = time.perf_counter()
    load.copy_to_stg(conn, TABLE, [{"src_id": SRC_ID, "path": str(batch_file)}])
    staged = time.perf_counter()
    steps: dict[str, float] = {}
    counts = merge.merge_into_dds(conn, TABLE, RUN_ID, timings=steps)
    return Timing(staged - started, time.perf_counter() - staged, steps), counts


def raw_copy(conn, batch_file: Path) -> float:
    """Read the same file and COPY it through the same CSV path into an empty plain table."""
    started = time.perf_counter()
    batch = staging.read_batch(batch_file)
    with conn.transaction(), conn.cursor() as cur:
        load.copy_into(cur, sql.Identifier("public", "copy_target"), STG_COLUMNS, batch.select(STG_COLUMNS))
    return time.perf_counter() - started


# The naive loader's SQL, written out as tutorials write it.
NAIVE_CURRENT = """
select d.order_id, d.src_id, d.customer_id, d.product_id, d.quantity, d.amount, d.status, d.comment,
       d.paid_at, d.created_at, d.eff_from_dttm
from stg.orders as s
join dds.orders as d
  on d.order_id = s.order_id and d.src_id = s.src_id and d.eff_to_dttm = '9999-12-31 23:59:59+00'
where s.load_run_id = :run_id
"""
NAIVE_CLOSE = """
update dds.orders set eff_to_dttm = :eff_to
where order_id = :order_id and src_id = :src_id and eff_to_dttm = '9999-12-31 23:59:59+00'
"""


def naive_load(engine, batch_file: Path, rows: int, method: str | None) -> dict[str, int]:
    """The loader of many tutorials: correct SCD2, but row by row where it matters.

    Fair where it is cheap to be: staging and lookup are one statement each,
    the new versions go in with the closing UPDATEs in one transaction, and the
    comparison is NULL-safe. Typical where it costs: rows travel as INSERT
    parameters (`to_sql`, 1000 a chunk, `method` None or "multi") and each changed
    key is closed by its own UPDATE, one round trip each.
    """
    import pandas as pd
    from sqlalchemy import text

    frame = pd.read_parquet(batch_file).head(rows)
    with engine.begin() as conn:
        conn.execute(text("delete from stg.orders where src_id = :src_id"), {"src_id": SRC_ID})
    frame.to_sql(NAME, engine, schema="stg", if_exists="append", index=False, chunksize=1000, method=method)
    # coerce_float=False keeps numeric as Decimal: as floats, 56.20 would differ from Decimal("56.20").
    current = pd.read_sql(text(NAIVE_CURRENT), engine, params={"run_id": RUN_ID}, coerce_float=False)
    merged = frame.merge(current, on=["order_id", "src_id"], how="left", suffixes=("", "_dds"), indicator=True)
    is_new = merged["_merge"] == "left_only"
    is_changed = ~is_new & differs(merged, TABLE.value_columns)
    one_second = pd.Timedelta(seconds=1)
    after_current = pd.to_datetime(merged["eff_from_dttm"], utc=True) + one_second
    seen = merged["extracted_dttm"]
    changed_from = seen.where(seen > after_current, after_current)  # seen, and after the version it replaces
    merged["eff_from_dttm"] = merged["created_at"].dt.floor("s").where(is_new, changed_from)
    versions = merged.loc[is_new | is_changed, [*TABLE.columns, "src_id", "eff_from_dttm"]].assign(
        eff_to_dttm=pd.Timestamp(contract.OPEN_END),
        load_run_id=RUN_ID,
        load_dttm=pd.Timestamp.now(tz="UTC").floor("s"),
    )
    with engine.begin() as conn:
        for row in merged.loc[is_changed].itertuples():
            conn.execute(
                text(NAIVE_CLOSE),
                {"eff_to": row.eff_from_dttm - one_second, "order_id": row.order_id, "src_id": row.src_id},
            )
        versions.to_sql(NAME, conn, schema="dds", if_exists="append", index=False, chunksize=1000, method=method)
    return {
        "new": int(is_new.sum()),
        "changed": int(is_changed.sum()),
        "unchanged": int((~is_new & ~is_changed).sum()),
    }


def differs(merged: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows whose batch value differs from the dds value in any column, NULL-safely."""
    import pandas as pd

    result = pd.Series(False, index=merged.index)
    for column in columns:
        batch, current = merged[column], merged[f"{column}_dds"]
        if isinstance(batch.dtype, pd.DatetimeTZDtype):
            current = pd.to_datetime(current, utc=True)
        both_null = batch.isna() & current.isna()
        equal = (batch == current).fillna(False).astype(bool)
        result |= ~(equal | both_null)
    return result


def naive_engine(server: EmbeddedPostgres, database: str):
    """A SQLAlchemy engine on `database`, the way pandas tutorials connect: `postgresql://`
    means psycopg2 to SQLAlchemy, so the naive loader keeps the driver those tutorials get."""
    from sqlalchemy import create_engine

    return create_engine("postgresql+psycopg2://", creator=lambda: server.connect(database))
