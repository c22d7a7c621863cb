"""Seeded, fast value generation for the columns of a config.

Two things matter here, and they pull in opposite directions:

* Reproducible: the same seed, config and empty database give the same rows.
  So all randomness comes from two seeded sources, in a fixed order: the shop's
  `Faker(locale)` seeded with `seed_instance(seed)`, and one `random.Random(seed)`
  for everything else (null/invalid/late decisions, pool sampling, update and
  reference picks).
* Fast: a Faker call costs 1-100 us (`address` is ~100 us), so 10,000 rows of
  six columns straight from Faker would take seconds. Each provider column
  therefore makes at most `FRESH_PER_DRAW` fresh Faker values per batch and
  samples the rest of a big batch from a pool of values it made before. The
  course's normal ticks (a few rows) are all fresh values; only bulk ticks,
  such as the benchmark's, reuse values, which is fine for test data.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coursekit.generator.config import ColumnSpec, ShopConfig, faker_method

FRESH_PER_DRAW = 64  # fresh Faker calls per column per batch; the rest of a batch comes from the pool
POOL_SIZE = 4096  # values kept per provider column for sampling


class ProviderValues:
    """Values of one provider column: fresh Faker calls, topped up from a pool for big batches."""

    def __init__(self, method: Callable[..., Any], params: dict[str, Any], rng: random.Random) -> None:
        self._method = method
        self._params = params
        self._rng = rng
        self._pool: list[Any] = []
        self._next_slot = 0  # once the pool is full, fresh values replace the oldest, round-robin

    def draw(self, n: int) -> list[Any]:
        fresh = [self._method(**self._params) for _ in range(min(n, FRESH_PER_DRAW))]
        for value in fresh:
            if len(self._pool) < POOL_SIZE:
                self._pool.append(value)
            else:
                self._pool[self._next_slot] = value
                self._next_slot = (self._next_slot + 1) % POOL_SIZE
        if n > len(fresh):
            fresh += self._rng.choices(self._pool, k=n - len(fresh))
        return fresh


@dataclass(frozen=True)
class ParentIds:
    """What a reference column needs to know about its parent table during one tick.

    `low`/`high` bound the ids that exist now (None when the table is empty);
    `high_water` is the last id the parent's identity ever handed out, so
    `high_water + k` is an id the parent will get k inserts from now: a
    late-arriving row. `snap` maps arbitrary ids in [low, high] to the next
    existing id, which skips ids that were deleted or lost to a rolled-back tick.
    """

    low: int | None
    high: int | None
    high_water: int
    late_span: int  # late ids are high_water + 1 .. high_water + late_span
    snap: Callable[[list[int]], list[int]]


class ValueMaker:
    """All values of one shop, from its seed: one instance per generator process."""

    def __init__(self, config: ShopConfig, locale: str, seed: int) -> None:
        from faker import Faker  # imported here: `--help` and config errors stay fast

        self.config = config
        self.rng = random.Random(seed)
        self.fake = Faker(locale)
        self.fake.seed_instance(seed)
        self._providers: dict[tuple[str, str], ProviderValues] = {}
        for table_name, table in config.tables.items():
            for column_name, column in table.columns.items():
                if column.provider is not None:
                    method = faker_method(self.fake, column.provider)
                    if method is None:  # load_config rejects these; kept as a guard for direct callers
                        raise ValueError(f"unknown Faker provider {column.provider!r}")
                    key = (table_name, column_name)
                    self._providers[key] = ProviderValues(method, dict(column.params), self.rng)

    def values(self, table: str, column_name: str, n: int, parent: ParentIds | None = None) -> list[Any]:
        """`n` values for one column, with its null, invalid and late shares applied.

        One random number per row decides its fate, with the shares stacked on
        [0, 1): null, then invalid, then late (references only), then normal.
        So each share is a share of all rows, exactly as configured.
        """
        column = self.config.tables[table].columns[column_name]
        fates = self._fates(column, n)
        normal = fates.count("normal")
        if column.references is not None:
            assert parent is not None, "reference columns need their parent's ids"
            made = iter(self._pick_parents(parent, normal))
        else:
            made = iter(self._providers[(table, column_name)].draw(normal))
        limit = column.sql_type.length
        if limit is not None:  # varchar(n)/char(n): cut as Postgres' explicit cast would (COPY would refuse)
            made = (v[:limit] if isinstance(v, str) else v for v in made)
        result: list[Any] = []
        for fate in fates:
            if fate == "normal":
                result.append(next(made))
            elif fate == "null":
                result.append(None)
            elif fate == "invalid":
                result.append(self.rng.choice(column.invalid_values))
            else:  # late: an id the parent will only get a few inserts from now
                assert parent is not None
                result.append(parent.high_water + self.rng.randint(1, parent.late_span))
        return result

    def _fates(self, column: ColumnSpec, n: int) -> list[str]:
        null, invalid, late = column.null_share, column.invalid_share, column.late_share
        if not (null or invalid or late):
            return ["normal"] * n  # nothing to decide: no random draws
        fates = []
        for _ in range(n):
            u = self.rng.random()
            if u < null:
                fates.append("null")
            elif u < null + invalid:
                fates.append("invalid")
            elif u < null + invalid + late:
                fates.append("late")
            else:
                fates.append("normal")
        return fates

    def _pick_parents(self, parent: ParentIds, n: int) -> list[int | None]:
        if n == 0:
            return []
        if parent.low is None or parent.high is None:
            return [None] * n  # nothing to point at yet
        span, uniform = parent.high - parent.low + 1, self.rng.random  # randint is 10x slower; this is as uniform
        guesses = [parent.low + int(uniform() * span) for _ in range(n)]
        return list(parent.snap(guesses))
