"""The SCD2 benchmark's table and rows (`scd2_bench.py` measures loads of them).

An orders table like G0's, and values computed from the key alone, so that a
batch, the previous run's batch and a dds of a million current versions are all
generated in seconds, identical wherever the same key appears, and a chosen
share of the batch differs from dds in every kind of value the pipeline carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from coursekit.reference import config, contract, staging

if TYPE_CHECKING:
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
    batch = to_arrow(rows)
    batch = batch.append_column("src_id", constant(SRC_ID, count, pa.string()))
    batch = batch.append_column("extracted_dttm", timestamps(np.full(count, extracted_us)))
    batch = batch.append_column("load_run_id", constant(run_id, count, pa.string()))
    return batch.cast(staging.batch_schema(TABLE))


def dds_rows(rows: dict[str, np.ndarray]) -> pa.Table:
    """Current versions as the pipeline's first load writes them: each starts at its created_at."""
    import pyarrow as pa

    count = len(rows["order_id"])
    versions = to_arrow(rows)
    versions = versions.append_column("src_id", constant(SRC_ID, count, pa.string()))
    versions = versions.append_column("eff_from_dttm", timestamps(rows["created_us"] // SECOND_US * SECOND_US))
    versions = versions.append_column("eff_to_dttm", timestamps(np.full(count, OPEN_END_US)))
    versions = versions.append_column("load_run_id", constant("prefill", count, pa.string()))
    return versions.append_column("load_dttm", timestamps(np.full(count, BASE_US)))
