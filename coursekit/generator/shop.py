"""One shop and its ticks: delete old rows, update recent ones, insert new ones.

A tick is ONE transaction. Why: the learners' pipelines read this database
while it changes, and a half-applied tick (orders without their customers,
updates without the inserts) is not something a real shop backend shows. If
anything fails, the whole tick rolls back and the caller may retry it.

The order inside a tick is fixed: deletes, then updates, then inserts (parents
before children), so a row is never updated in the tick that created it and a
child can point at a parent inserted a moment earlier in the same tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from coursekit.generator import db
from coursekit.generator.config import ShopConfig
from coursekit.generator.values import ParentIds, ValueMaker

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    """What one committed tick did, for the log line and the benchmark."""

    number: int
    at: dt.datetime
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # delete, update, insert, total

    def summary(self, city: str) -> str:
        """`tick 12 New-York: +3 customers, +1 products, +10 orders; ~2 updated; -0 deleted (31 ms)`."""
        inserts = ", ".join(f"+{count} {table}" for table, count in self.inserted.items()) or "+0"
        return (
            f"tick {self.number} {city}: {inserts}; ~{sum(self.updated.values())} updated; "
            f"-{sum(self.deleted.values())} deleted ({self.seconds['total'] * 1000:.0f} ms)"
        )


class Shop:
    """The generator's state: config, windows and the seeded value maker.

    `update_window` and `delete_after` are seconds; 0 turns updates or deletes off.
    """

    def __init__(self, config: ShopConfig, *, seed: int, locale: str, update_window: int, delete_after: int) -> None:
        self.config = config
        self.update_window = update_window
        self.delete_after = delete_after
        self.values = ValueMaker(config, locale, seed)

    # -- schema ------------------------------------------------------------------------------------------------------

    def prepare(self, conn: Any, *, reset: bool = False) -> None:
        """Create missing tables and columns, in one transaction; with `reset` drop the tables first."""
        with conn, conn.cursor() as cur:
            if reset:
                for name in reversed(self.config.order):
                    db.drop_table(cur, name)
            for name in self.config.order:
                db.ensure_table(cur, name, self.config.tables[name])

    # -- one tick ----------------------------------------------------------------------------------------------------

    def tick(self, conn: Any, number: int) -> TickResult:
        """Run tick `number` in one transaction: commit all of it, or (on any error) none of it."""
        started = time.perf_counter()
        with conn, conn.cursor() as cur:
            result = TickResult(number, db.transaction_time(cur))
            log.debug("tick %d at %s: begin", number, result.at.isoformat())
            phase = time.perf_counter()
            for name in self.config.order:
                result.deleted[name] = self._delete(cur, number, name)
            result.seconds["delete"], phase = time.perf_counter() - phase, time.perf_counter()
            for name in self.config.order:
                result.updated[name] = self._update(cur, number, name)
            result.seconds["update"], phase = time.perf_counter() - phase, time.perf_counter()
            for name in self.config.order:
                result.inserted[name] = self._insert(cur, number, name, result.at)
            result.seconds["insert"] = time.perf_counter() - phase
        result.seconds["total"] = time.perf_counter() - started
        log.debug(
            "tick %d timings: delete %.1f ms, update %.1f ms, insert %.1f ms, total with commit %.1f ms",
            number,
            *(result.seconds[key] * 1000 for key in ("delete", "update", "insert", "total")),
        )
        return result

    def _delete(self, cur: Any, number: int, name: str) -> int:
        if not self.delete_after:
            return 0
        table = self.config.tables[name]
        gone = db.delete_older_than(cur, name, table.id_column, self.delete_after)
        if gone:
            log.debug(
                "tick %d deleted %s: %d rows, ids %s, newest created_at %s",
                number,
                name,
                len(gone),
                [row_id for row_id, _ in gone],
                max(created for _, created in gone).isoformat(),
            )
        return len(gone)

    def _update(self, cur: Any, number: int, name: str) -> int:
        """Update `update_rows_per_tick` random recent rows, each in a random non-empty subset of its columns."""
        table = self.config.tables[name]
        columns = table.updatable_columns
        if not self.update_window or not table.update_rows_per_tick or not columns:
            return 0
        candidates = db.ids_created_within(cur, name, table.id_column, self.update_window)
        if not candidates:
            return 0
        rng = self.values.rng
        targets = sorted(rng.sample(candidates, min(table.update_rows_per_tick, len(candidates))))
        # Each row changes a random non-empty subset of the columns: one random number per row,
        # read as a bit mask (1 .. 2^n - 1), is all it takes.
        subsets = 2 ** len(columns) - 1
        masks = []
        for _ in targets:
            bits = 1 + int(rng.random() * subsets)
            masks.append([bool(bits >> index & 1) for index in range(len(columns))])
        new_values = []
        for index, column_name in enumerate(columns):
            needed = sum(mask[index] for mask in masks)
            new_values.append(iter(self._values(cur, name, column_name, needed)))
        rows = []
        for row_id, mask in zip(targets, masks, strict=True):
            row: list[Any] = [row_id]
            for index, changes in enumerate(mask):
                row += [changes, next(new_values[index]) if changes else None]
            rows.append(tuple(row))
        typed = [(column_name, table.columns[column_name].type) for column_name in columns]
        changed = db.update_rows(cur, name, table.id_column, typed, rows)
        if changed:
            log.debug(
                "tick %d updated %s: %d rows, ids %s, oldest created_at %s",
                number,
                name,
                len(changed),
                [row_id for row_id, _ in changed],
                min(created for _, created in changed).isoformat(),
            )
        return len(changed)

    def _insert(self, cur: Any, number: int, name: str, at: dt.datetime) -> int:
        table = self.config.tables[name]
        count = table.insert_rows_per_tick
        if not count:
            return 0
        columns = list(table.columns)
        per_column = [self._values(cur, name, column_name, count) for column_name in columns]
        rows = list(zip(*per_column, strict=True)) if columns else [()] * count
        db.copy_rows(cur, name, columns, rows, at)
        if log.isEnabledFor(logging.DEBUG):  # the identity numbers COPY's rows in order, with no other writer
            last = db.identity_high_water(cur, name, table.id_column)
            log.debug("tick %d inserted %s: %d rows, ids %d..%d", number, name, count, last - count + 1, last)
        return count

    def _values(self, cur: Any, name: str, column_name: str, n: int) -> list[Any]:
        column = self.config.tables[name].columns[column_name]
        parent = self._parent_ids(cur, column.references) if column.references and n else None
        return self.values.values(name, column_name, n, parent)

    def _parent_ids(self, cur: Any, parent: str) -> ParentIds:
        """The parent's ids as they are right now in this transaction (after its inserts, if any)."""
        table = self.config.tables[parent]
        low, high, dense, high_water = db.parent_bounds(cur, parent, table.id_column)

        def snap(guesses: list[int]) -> list[int]:
            if dense:  # every id in [low, high] exists: no lookup needed
                return guesses
            return db.next_existing_ids(cur, parent, table.id_column, guesses)

        return ParentIds(low, high, high_water, table.insert_rows_per_tick * 3 or 3, snap)
