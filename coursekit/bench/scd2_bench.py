"""How fast is an SCD2 load? `python -m coursekit.bench.scd2_bench` (or `make bench`).

Three questions about the reference load (COPY the batch into stg, then one
set-based merge into dds): how close does it come to simply copying the rows
into Postgres, how much faster is it than the loader most tutorials show, and
does a batch get dearer as the warehouse's history grows? Answered on one real
PostgreSQL server (embedded, on a free port, in a temp folder removed
afterwards):

1. the SCD2 load: a batch of `--batch` orders (all keys already in dds, a
   `--changed-share` of them changed, the rest identical to their current
   versions) into a dds holding `--big` current versions, through the real
   code: `load_stg` (Parquet -> CSV -> COPY into the unlogged stg, which holds
   the previous run's batch of the same keys, as in steady state) and
   `merge_into_dds`, on psycopg 3 connections in autocommit mode as the DAG's;
   the merge's time is split by statement (`merge_classify_scd2_s`,
   `merge_close_changed_s`, `merge_insert_versions_s`, `merge_summary_s`, and
   `merge_commit_s`), which add up to `scd2_merge_s`;
2. the physical limit: the same Parquet file through the same CSV path
   (`copy_into`) into an empty plain table without indexes;
3. the naive loader of many tutorials: pandas `to_sql` in chunks into stg,
   changes found in pandas, one UPDATE per changed key, new versions by
   `to_sql` (timed on `--naive-rows` rows and extrapolated per row if fewer);
4. the same batch into a dds of `--small` rows, and into a dds of `--big` rows
   that shares exactly those rows with the batch: the same work against a
   100 times larger table, which isolates the cost of table size. (Against the
   small dds most of the batch is new, so comparing it with step 1 compares
   different work; that figure is printed too, as
   `batch_cost_growth_step1_vs_10k`.)
5. dbt's `snapshot` (check strategy, same value columns, timestamps to the
   second, hard deletes ignored) beside the course's merge task, each as a
   process of its own, on one copy of the big warehouse with the batch in stg
   (see `scd2_dbt.py`): `scd2_vs_dbt_speedup` is dbt's snapshot SQL seconds
   (its run_results.json) divided by our merge's, `scd2_vs_dbt_command_speedup`
   the same for the whole commands; dbt's history must describe exactly the
   versions dds holds. `--dbt no` leaves it out (dbt needs PyPI once).

Every measured load starts from an identical copy of a prepared database
(CREATE DATABASE ... TEMPLATE), so repeats measure the same work. The
measurements run in `--repeats` rounds of one each, and the median is
reported. After each load the benchmark checks the result: the merge's counts,
exactly one closed version per changed key, dds's current rows equal to the
batch, and (once per table size) the whole warehouse contract. A wrong result
is an error, not a figure. The figures are printed last, as `key=value` lines,
with the machine's load average: on a shared machine other work inflates them.

Sizes: `--batch`, `--big`, `--small`, `--changed-share`, `--repeats`,
`--naive-rows`, `--naive-method`, `--seed`, `--dbt`, or the same names as
`SCD2_BENCH_BATCH` etc. in the environment (the command line wins). The
defaults take two to three minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql

from coursekit.bench import scd2_dbt
from coursekit.pg import EmbeddedPostgres, PostgresSpec, free_port
from coursekit.reference import config, contract, load, merge, rules, sqlfiles, staging, warehouse

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# -- the table -------------------------------------------------------------------
# G0's orders table plus a money column and a nullable timestamp, so that every
# kind of value the pipeline carries (ints, text with NULLs, numeric, timestamptz)
# takes part in change detection.

NAME = "orders"
SRC_ID = "New-York"
RUN_ID = "scd2_bench_run"
PREVIOUS_RUN_ID = "scd2_bench_previous_run"
CONFIG = config.parse_config(
    {
        "lookback_sec": 3600,
        "sources": [{"src_id": SRC_ID, "conn_id": "shop_1_conn"}],
        "tables": {
            NAME: {
                "key": "order_id",
                "columns": {
                    "order_id": "bigint",
                    "customer_id": "bigint",
                    "product_id": "bigint",
                    "quantity": "integer",
                    "amount": "numeric(12,2)",
                    "status": "text",
                    "comment": "text",
                    "paid_at": "timestamptz",
                    "created_at": "timestamptz",
                },
            }
        },
    },
    "scd2_bench",
)
TABLE = CONFIG.tables[NAME]
STG_COLUMNS = [*TABLE.columns, *contract.STG_COLUMNS]
DDS_COLUMNS = [*TABLE.columns, *contract.DDS_COLUMNS]

STATUSES = ("new", "paid", "packed", "shipped", "delivered")
# Most orders carry no comment (NULL); the others include quotes, a newline and
# non-ASCII text, which the CSV path must carry byte for byte. The last entry is
# only ever written by a change.
COMMENTS = (
    None,
    None,
    None,
    None,
    None,
    None,
    "Leave at the door",
    'Call first: "ring twice"',
    "O'Brien's gift; wrap it",
    "Zerbrechlich – bitte\nvorsichtig",
    "Changed: deliver after 6 pm",
)
GIVEN_COMMENTS = len(COMMENTS) - 1  # the entries new orders draw from
CHANGED_COMMENT = len(COMMENTS) - 1
COMMENT_IS_NULL = np.array([c is None for c in COMMENTS])

SECOND_US = 1_000_000
BASE_US = 1_735_689_600 * SECOND_US  # 2025-01-01 00:00:00 UTC: orders are created from here on
EXTRACTED_US = BASE_US + 400 * 86_400 * SECOND_US  # when the measured batch was read: after every created_at
PREVIOUS_EXTRACTED_US = EXTRACTED_US - 60 * SECOND_US  # the run before, one schedule interval earlier
OPEN_END_US = 253_402_300_799 * SECOND_US  # OPEN_END (9999-12-31 23:59:59 UTC) in microseconds
PREFILL_CHUNK = 200_000  # rows per COPY while filling dds: bounds the CSV held in memory


class BenchmarkError(RuntimeError):
    """A load produced a wrong result: the benchmark refuses to report its speed."""


# -- sizes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much data each part of the benchmark uses, which keys play which role, and
    how the naive loader sends its rows.

    Keys are laid out so that one batch serves every measurement: the batch is
    the `batch` newest keys of the big dds (a lookback window reads the newest
    rows), and its first `overlap` keys are also the newest keys of the small dds
    and of the same-mix big dds, whose other rows are older keys.
    """

    batch: int
    big: int
    small: int
    changed_share: float
    repeats: int
    naive_rows: int
    naive_method: str
    seed: int
    dbt: bool = True

    def check(self) -> None:
        """Reject sizes the key layout cannot serve, with a message naming the option."""
        if not 1 <= self.small <= self.big:
            raise SystemExit("--small must be between 1 and --big")
        if not 1 <= self.batch <= self.big:
            raise SystemExit("--batch must be between 1 and --big (every batch key exists in the big dds)")
        if not 0 < self.changed_share <= 1:
            raise SystemExit("--changed-share must be in (0, 1]")
        if not 1 <= self.naive_rows <= self.batch:
            raise SystemExit("--naive-rows must be between 1 and --batch")
        if self.repeats < 1:
            raise SystemExit("--repeats must be at least 1")

    @property
    def overlap(self) -> int:
        """Batch keys that exist in the small dds (the rest of the batch is new there)."""
        return min(self.small, self.batch)

    @property
    def first_batch_key(self) -> int:
        """Chosen so that the same-mix big dds can hold `big` keys ending with the overlap."""
        return self.big - self.overlap + 1

    @property
    def batch_keys(self) -> np.ndarray:
        return np.arange(self.first_batch_key, self.first_batch_key + self.batch, dtype=np.int64)

    @property
    def changed(self) -> int:
        return round(self.batch * self.changed_share)

    def dds_keys(self, rows: int, last_key: int) -> tuple[int, int]:
        """First and last key of a dds of `rows` consecutive keys ending at `last_key`."""
        return last_key - rows + 1, last_key

    def changed_mask(self) -> np.ndarray:
        """Which batch rows carry a change: a seeded random `changed_share` of the
        overlap and of the rest separately, so every dds sees the same share."""
        rng = np.random.default_rng(self.seed)
        mask = np.zeros(self.batch, dtype=bool)
        in_overlap = round(self.overlap * self.changed_share)
        mask[rng.choice(self.overlap, in_overlap, replace=False)] = True
        rest = self.batch - self.overlap
        if rest:
            mask[self.overlap + rng.choice(rest, self.changed - in_overlap, replace=False)] = True
        return mask


def option(name: str, default: float, kind: type) -> float:
    """A size from `SCD2_BENCH_<NAME>` if set, else `default`; the CLI overrides both."""
    value = os.environ.get(f"SCD2_BENCH_{name.upper()}")
    return kind(value) if value else default


def parse_sizes(argv: list[str] | None) -> Sizes:
    """Sizes from the command line, then the environment, then the defaults below."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batch", type=int, default=option("batch", 100_000, int), help="rows per batch")
    parser.add_argument("--big", type=int, default=option("big", 1_000_000, int), help="rows of the big dds")
    parser.add_argument("--small", type=int, default=option("small", 10_000, int), help="rows of the small dds")
    parser.add_argument(
        "--changed-share",
        type=float,
        default=option("changed_share", 0.2, float),
        help="share of batch rows that changed since the current version (default 0.2)",
    )
    parser.add_argument("--repeats", type=int, default=option("repeats", 5, int), help="loads per measurement")
    parser.add_argument(
        "--naive-rows",
        type=int,
        default=option("naive_rows", 0, int),
        help="rows the naive loader is timed on (default: the whole batch); the figure is extrapolated per row",
    )
    parser.add_argument(
        "--naive-method",
        choices=("executemany", "multi"),
        default=os.environ.get("SCD2_BENCH_NAIVE_METHOD") or "executemany",
        help="to_sql's method: executemany (pandas' default, method=None; SQLAlchemy batches it into "
        "multi-row INSERTs) or multi (one INSERT per chunk); the default was 2-3x faster here, so the fairer",
    )
    parser.add_argument("--seed", type=int, default=option("seed", 42, int), help="which rows change")
    parser.add_argument(
        "--dbt",
        choices=("yes", "no"),
        default=os.environ.get("SCD2_BENCH_DBT") or "yes",
        help="also run dbt's snapshot on the same batch (default yes; installs .venv-dbt on first use)",
    )
    args = parser.parse_args(argv)
    sizes = Sizes(
        batch=args.batch,
        big=args.big,
        small=args.small,
        changed_share=args.changed_share,
        repeats=args.repeats,
        naive_rows=args.naive_rows or args.batch,
        naive_method=args.naive_method,
        seed=args.seed,
        dbt=args.dbt == "yes",
    )
    sizes.check()
    return sizes


# -- data ----------------------------------------------------------------------------


def orders(keys: np.ndarray) -> dict[str, np.ndarray]:
    """Orders-like values computed from the key alone.

    The same key always yields the same row, so the batch's unchanged rows are
    identical to what dds holds without storing the data anywhere. Values are
    kept as numpy integers (indexes into STATUSES/COMMENTS, cents, microseconds)
    until `to_arrow`, which makes changing them cheap and exact.
    """
    k = keys.astype(np.int64)
    status = (k // 7) % len(STATUSES)
    quantity = 1 + k % 5
    created = BASE_US + k * 1_250_000  # 1.25 s apart: created_at has sub-second parts, as in a shop
    return {
        "order_id": k,
        "customer_id": 1 + (k * 7_919) % 50_000,
        "product_id": 1 + (k * 104_729) % 2_000,
        "quantity": quantity,
        "amount_cents": quantity * (199 + (k * 31) % 9_800),
        "status": status,
        "comment": k % GIVEN_COMMENTS,
        "paid_us": np.where(status == 0, -1, created + (k % 3_600) * SECOND_US),  # -1 stands for NULL
        "created_us": created,
    }


def with_changes(rows: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """The rows as the shop updated them: each masked row changes one thing.

    A third advance their status, a third gain or lose their comment (NULL <->
    text: change detection must be NULL-safe), a third change quantity and amount.
    """
    changed = {column: values.copy() for column, values in rows.items()}
    positions = np.flatnonzero(mask)
    kind = np.arange(len(positions)) % 3
    status_rows, comment_rows, amount_rows = (positions[kind == n] for n in range(3))
    changed["status"][status_rows] = (changed["status"][status_rows] + 1) % len(STATUSES)
    had_no_comment = COMMENT_IS_NULL[changed["comment"][comment_rows]]
    changed["comment"][comment_rows] = np.where(had_no_comment, CHANGED_COMMENT, 0)
    changed["quantity"][amount_rows] += 1
    changed["amount_cents"][amount_rows] += 100
    return changed


def timestamps(micros: np.ndarray) -> pa.Array:
    """UTC timestamps from microseconds; negative values become NULL."""
    import pyarrow as pa

    return pa.array(micros, pa.timestamp("us", tz="UTC"), mask=micros < 0)


def to_arrow(rows: dict[str, np.ndarray]) -> pa.Table:
    """The source columns as Arrow, typed as the pipeline's Parquet files type them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cents = pa.array(rows["amount_cents"]).cast(pa.decimal128(19, 0))
    amount = pc.multiply(cents, pa.scalar(Decimal("0.01"), pa.decimal128(3, 2))).cast(pa.decimal128(12, 2))
    return pa.table(
        {
            "order_id": pa.array(rows["order_id"], pa.int64()),
            "customer_id": pa.array(rows["customer_id"], pa.int64()),
            "product_id": pa.array(rows["product_id"], pa.int64()),
            "quantity": pa.array(rows["quantity"], pa.int32()),
            "amount": amount,
            "status": pa.array(np.array(STATUSES, dtype=object)[rows["status"]], pa.string()),
            "comment": pa.array(np.array(COMMENTS, dtype=object)[rows["comment"]], pa.string()),
            "paid_at": timestamps(rows["paid_us"]),
            "created_at": timestamps(rows["created_us"]),
        }
    )


def constant(value: object, rows: int, type_: pa.DataType) -> pa.Array:
    """One value repeated: the technical columns every row of a load shares."""
    import pyarrow as pa

    return pa.array(np.full(rows, value), type_)


def stg_rows(rows: dict[str, np.ndarray], extracted_us: int, run_id: str) -> pa.Table:
    """A batch as extract writes it: source columns, then src_id, extracted_dttm, load_run_id."""
    import pyarrow as pa

    count = len(rows["order_id"])
    table = to_arrow(rows)
    table = table.append_column("src_id", constant(SRC_ID, count, pa.string()))
    table = table.append_column("extracted_dttm", timestamps(np.full(count, extracted_us)))
    table = table.append_column("load_run_id", constant(run_id, count, pa.string()))
    return table.cast(staging.batch_schema(TABLE))


def dds_rows(rows: dict[str, np.ndarray]) -> pa.Table:
    """Current versions as the pipeline's first load writes them: each starts at its created_at."""
    import pyarrow as pa

    count = len(rows["order_id"])
    table = to_arrow(rows)
    table = table.append_column("src_id", constant(SRC_ID, count, pa.string()))
    table = table.append_column("eff_from_dttm", timestamps(rows["created_us"] // SECOND_US * SECOND_US))
    table = table.append_column("eff_to_dttm", timestamps(np.full(count, OPEN_END_US)))
    table = table.append_column("load_run_id", constant("prefill", count, pa.string()))
    return table.append_column("load_dttm", timestamps(np.full(count, BASE_US)))


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
        broken = {rule: rows for rule, rows in rules.violations(conn, NAME, TABLE).items() if rows}
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
    load.copy_to_stg(conn, NAME, TABLE, [{"src_id": SRC_ID, "path": str(batch_file)}])
    staged = time.perf_counter()
    steps: dict[str, float] = {}
    counts = merge.merge_into_dds(conn, NAME, TABLE, RUN_ID, timings=steps)
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


# -- dbt's snapshot beside our merge ---------------------------------------------------

# The merge task as a process of its own, as `dbt snapshot` is one: the whole
# command's time is comparable. The connection string comes in the environment.
MERGE_TASK = """
import json, os, sys, time
import psycopg
from coursekit.reference import config, merge
table = config.Table.model_validate_json(sys.argv[1])
with psycopg.connect(os.environ["SCD2_BENCH_DSN"], autocommit=True) as conn:
    steps = {}
    counts = merge.merge_into_dds(conn, sys.argv[2], table, sys.argv[3], timings=steps)
print(json.dumps({"counts": counts, "merge_s": sum(steps.values())}))
"""


@dataclass
class DbtTiming:
    """One round of our merge task and dbt's snapshot on the same copy: SQL and whole-process seconds."""

    ours_merge: float
    ours_command: float
    dbt_sql: float
    dbt_command: float


def same_history(conn) -> int:
    """dbt's history, in the course's closed intervals, must hold exactly dds's versions; their count."""
    ours, theirs, only_ours, only_theirs = scd2_dbt.history_difference(
        conn, NAME, TABLE.key, list(TABLE.columns), contract.OPEN_END
    )
    if ours != theirs or only_ours or only_theirs:
        raise BenchmarkError(
            f"dbt's snapshot and dds differ: {ours} vs {theirs} versions, {only_ours} only in dds, "
            f"{only_theirs} only in dbt's"
        )
    return ours


def measure_dbt(server: EmbeddedPostgres, prepared: Prepared, expected: Expected, dbt_first: bool) -> DbtTiming:
    """Our merge task and `dbt snapshot`, one after the other, on one fresh copy with the batch in stg."""
    assert prepared.project is not None
    with copy_of(server, prepared.with_snapshot, "run_dbt") as database:
        prepared.project.retarget(server, database)
        with connect(server, database) as conn:
            load.copy_to_stg(conn, NAME, TABLE, [{"src_id": SRC_ID, "path": str(prepared.batch_file)}])

        def ours() -> tuple[dict, float]:
            settle(server, database)
            env = {**os.environ, "SCD2_BENCH_DSN": server.dsn(database)}
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", MERGE_TASK, TABLE.model_dump_json(), NAME, RUN_ID],
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise BenchmarkError(f"the merge task failed:\n{result.stderr[-3000:]}")
            return json.loads(result.stdout.strip().splitlines()[-1]), seconds

        def theirs() -> tuple[float, float]:
            settle(server, database)
            return prepared.project.snapshot({"run_id": RUN_ID})

        if dbt_first:
            dbt_command, dbt_sql = theirs()
            merged, ours_command = ours()
        else:
            merged, ours_command = ours()
            dbt_command, dbt_sql = theirs()
        with connect(server, database) as conn:
            verify(conn, expected, merged["counts"], whole_contract=False)
            same_history(conn)
    return DbtTiming(merged["merge_s"], ours_command, dbt_sql, dbt_command)


# -- the benchmark -------------------------------------------------------------------


@dataclass
class Prepared:
    """The prepared databases and the batch file every measurement loads."""

    batch_file: Path
    big: str = "tmpl_big"
    small: str = "tmpl_small"
    same_mix: str = "tmpl_same_mix"
    copy: str = "raw_copy"
    with_snapshot: str = "tmpl_dbt"  # the big dds plus dbt's snapshot table of the same versions
    project: scd2_dbt.Project | None = None


def prepare(server: EmbeddedPostgres, sizes: Sizes, staging_dir: Path) -> Prepared:
    """Write the batch file and build the template databases (not timed)."""
    keys = sizes.batch_keys
    previous = orders(keys)
    batch = with_changes(previous, sizes.changed_mask())
    batch_file = staging.batch_path(staging_dir, "scd2_bench", RUN_ID, NAME, CONFIG.sources[0].slug)
    staging.write_batch(stg_rows(batch, EXTRACTED_US, RUN_ID), batch_file)
    previous_batch = stg_rows(previous, PREVIOUS_EXTRACTED_US, PREVIOUS_RUN_ID)
    prepared = Prepared(batch_file)
    last_overlap_key = int(keys[sizes.overlap - 1])
    build_warehouse(server, prepared.big, sizes.dds_keys(sizes.big, int(keys[-1])), previous_batch)
    build_warehouse(server, prepared.small, sizes.dds_keys(sizes.small, last_overlap_key), previous_batch)
    build_warehouse(server, prepared.same_mix, sizes.dds_keys(sizes.big, last_overlap_key), previous_batch)
    server.create_database(prepared.copy)
    with connect(server, prepared.copy) as conn:
        warehouse.create_schemas(conn)
        warehouse.ensure_tables(conn, CONFIG)
        # stg's columns and NOT NULLs; no key, no index; logged like dds
        conn.execute("create table public.copy_target (like stg.orders)")
    return prepared


def prepare_dbt(server: EmbeddedPostgres, prepared: Prepared, work_dir: Path, say: Callable[[str], None]) -> None:
    """A copy of the big warehouse whose dbt snapshot table holds dds's versions, built by dbt itself."""
    dbt = scd2_dbt.ensure_venv(say=say)
    admin(
        server,
        sql.SQL("create database {} template {} strategy file_copy").format(
            sql.Identifier(prepared.with_snapshot), sql.Identifier(prepared.big)
        ),
    )
    project = scd2_dbt.Project.write(
        work_dir / "dbt", dbt, server, prepared.with_snapshot, NAME, TABLE.key, list(TABLE.columns), contract.OPEN_END
    )
    say("preparing: dbt snapshots dds's current versions (its first run builds its table) ...")
    project.snapshot({"prefill": True})
    autocommit(server, prepared.with_snapshot, f"vacuum analyze {scd2_dbt.SCHEMA}.{scd2_dbt.SNAPSHOT}")
    with connect(server, prepared.with_snapshot) as conn:
        same_history(conn)
    prepared.project = project


def measure_scd2(
    server: EmbeddedPostgres, template: str, batch_file: Path, expected: Expected, whole_contract: bool
) -> Timing:
    """One SCD2 load into a fresh copy of `template`, then its checks (untimed)."""
    with copy_of(server, template, f"run_{template}") as database:
        settle(server, database)
        with connect(server, database) as conn:
            timing, counts = scd2_load(conn, batch_file)
            verify(conn, expected, counts, whole_contract=whole_contract)
    return timing


def measure_copy(server: EmbeddedPostgres, database: str, batch_file: Path, rows: int) -> float:
    """One raw COPY into the emptied target table, then a count of what arrived."""
    with connect(server, database) as conn:
        conn.execute("truncate public.copy_target")
        settle(server, database)
        seconds = raw_copy(conn, batch_file)
        (copied,) = conn.execute("select count(*) from public.copy_target").fetchone()
    if copied != rows:
        raise BenchmarkError(f"raw COPY stored {copied} rows, expected {rows}")
    return seconds


def measure_naive(server: EmbeddedPostgres, template: str, batch_file: Path, sizes: Sizes) -> float:
    """One naive load of the first `naive_rows` batch rows into a fresh copy of `template`."""
    mask = sizes.changed_mask()[: sizes.naive_rows]
    expected = Expected(new=0, changed=int(mask.sum()), unchanged=int((~mask).sum()))
    with copy_of(server, template, "run_naive") as database:
        settle(server, database)
        engine = naive_engine(server, database)
        try:
            started = time.perf_counter()
            method = None if sizes.naive_method == "executemany" else sizes.naive_method
            counts = naive_load(engine, batch_file, sizes.naive_rows, method)
            seconds = time.perf_counter() - started
        finally:
            engine.dispose()
        with connect(server, database) as conn:
            verify(conn, expected, counts, whole_contract=False)
    return seconds


def run(sizes: Sizes, work_dir: Path, say: Callable[[str], None]) -> dict[str, float | str]:
    """Every measurement on one server; returns the figures."""
    began = time.perf_counter()
    spec = PostgresSpec("scd2-bench", "bench", secrets.token_hex(12), "bench", free_port())
    server = EmbeddedPostgres(spec, work_dir / "pg", durable=False)
    server.start()
    try:
        say(f"preparing: batch {sizes.batch:,} rows, dds {sizes.big:,} and {sizes.small:,} rows ...")
        prepared = prepare(server, sizes, work_dir / "staging")
        if sizes.dbt:
            prepare_dbt(server, prepared, work_dir, say)
        mask = sizes.changed_mask()
        overlap_changed = int(mask[: sizes.overlap].sum())
        in_big = Expected(new=0, changed=sizes.changed, unchanged=sizes.batch - sizes.changed)
        same_mix = Expected(
            new=sizes.batch - sizes.overlap, changed=overlap_changed, unchanged=sizes.overlap - overlap_changed
        )

        # Rounds rather than one measurement after the other: when other work on the
        # machine comes and goes, it then slows every measurement alike, and the
        # ratios between them stay meaningful.
        big, copies, small, big_same_mix, naive, dbt = [], [], [], [], [], []
        for round_ in range(1, sizes.repeats + 1):
            say(
                f"round {round_}/{sizes.repeats}: SCD2 load into the big dds, raw COPY, small dds, same-mix dds, naive"
                + (", our merge task and dbt snapshot" if sizes.dbt else "")
            )
            check_contract = round_ == 1
            big.append(measure_scd2(server, prepared.big, prepared.batch_file, in_big, check_contract))
            copies.append(measure_copy(server, prepared.copy, prepared.batch_file, sizes.batch))
            small.append(measure_scd2(server, prepared.small, prepared.batch_file, same_mix, check_contract))
            big_same_mix.append(measure_scd2(server, prepared.same_mix, prepared.batch_file, same_mix, check_contract))
            naive.append(measure_naive(server, prepared.big, prepared.batch_file, sizes))
            if sizes.dbt:  # who goes first alternates: the second finds stg in the cache
                dbt.append(measure_dbt(server, prepared, in_big, dbt_first=round_ % 2 == 0))
    finally:
        server.stop()

    scd2_s = statistics.median(t.total for t in big)
    copy_s = statistics.median(copies)
    naive_timed_s = statistics.median(naive)
    naive_s = naive_timed_s * sizes.batch / sizes.naive_rows
    small_s = statistics.median(t.total for t in small)
    same_mix_s = statistics.median(t.total for t in big_same_mix)
    if sizes.naive_rows < sizes.batch:
        say(
            f"note: the naive loader was timed on {sizes.naive_rows:,} of {sizes.batch:,} rows "
            f"({naive_timed_s:.1f} s); naive_s is extrapolated per row to the whole batch"
        )
    dbt_figures: dict[str, float | str] = {}
    if dbt:
        ours_merge_s = statistics.median(t.ours_merge for t in dbt)
        ours_command_s = statistics.median(t.ours_command for t in dbt)
        dbt_sql_s = statistics.median(t.dbt_sql for t in dbt)
        dbt_command_s = statistics.median(t.dbt_command for t in dbt)
        dbt_figures = {
            "dbt_version": scd2_dbt.DBT_CORE.split("==")[1],
            "dbt_verified_histories": len(dbt),
            "dbt_ours_merge_s": ours_merge_s,
            "dbt_ours_command_s": ours_command_s,
            "dbt_snapshot_sql_s": dbt_sql_s,
            "dbt_command_s": dbt_command_s,
            "scd2_vs_dbt_speedup": dbt_sql_s / ours_merge_s,
            "scd2_vs_dbt_command_speedup": dbt_command_s / ours_command_s,
        }
    return {
        "batch_rows": sizes.batch,
        "big_rows": sizes.big,
        "small_rows": sizes.small,
        "changed_share": sizes.changed_share,
        "changed_rows": sizes.changed,
        "repeats": sizes.repeats,
        "scd2_stg_load_s": statistics.median(t.stg for t in big),
        "scd2_merge_s": statistics.median(t.merge for t in big),
        # Where the merge's time goes: each statement's median over the rounds.
        **{f"merge_{step}_s": statistics.median(t.steps[step] for t in big) for step in MERGE_STEPS},
        "scd2_load_s": scd2_s,
        "copy_s": copy_s,
        "naive_rows_timed": sizes.naive_rows,
        "naive_extrapolated": int(sizes.naive_rows < sizes.batch),
        "naive_method": sizes.naive_method,
        "naive_s": naive_s,
        "small_new_rows": same_mix.new,
        "small_load_s": small_s,
        "big_same_mix_load_s": same_mix_s,
        "batch_cost_growth_step1_vs_10k": scd2_s / small_s,
        "verified_loads": 4 * sizes.repeats,
        "contract_violations": 0,
        "bench_total_s": time.perf_counter() - began,
        "load_avg_1m": os.getloadavg()[0],
        "cpus": os.cpu_count() or 0,
        "scd2_rows_per_s": sizes.batch / scd2_s,
        "copy_rows_per_s": sizes.batch / copy_s,
        "naive_rows_per_s": sizes.batch / naive_s,
        "scd2_vs_copy_ratio": copy_s / scd2_s,
        "scd2_vs_naive_speedup": naive_s / scd2_s,
        "batch_cost_growth_10k_to_1m": same_mix_s / small_s,
        **dbt_figures,
    }


def render(value: float | str) -> str:
    """Names and whole numbers as they are, other numbers to three decimals (or none from 1000)."""
    if isinstance(value, str | int):
        return str(value)
    return f"{value:.0f}" if value >= 1000 else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    sizes = parse_sizes(argv)
    # A plain SIGTERM would end Python without `finally`: the server and the temp
    # folder would outlive the benchmark. As SystemExit, both are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work_dir = Path(tempfile.mkdtemp(prefix="scd2-bench-"))
    try:
        figures = run(sizes, work_dir, lambda line: print(line, flush=True))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}={render(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
