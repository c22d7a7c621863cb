"""How fast is one generator tick? `python -m coursekit.bench.generator_bench` (or `make bench`).

The course promises that a tick stays cheap even when a grade turns the
volume up: 10,000 inserts and 6,000 updates per tick must finish well under a
second. This benchmark checks that promise the way the generator really runs:
G0's config with its per-table counts scaled up to those totals (same
proportions between tables), a real PostgreSQL (embedded, on a free port, in a
temp folder removed afterwards), debug logging on, one transaction per tick.

The first two ticks only fill the tables (there is little to update yet), so
they are a warm-up; the figures come from the ticks after them. They are printed last,
as `key=value` lines, for CI and for comparing machines.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from coursekit.generator.config import ShopConfig, load_config
from coursekit.generator.logs import setup_logging
from coursekit.generator.shop import Shop, TickResult
from coursekit.grade import Grade
from coursekit.pg import EmbeddedPostgres, free_port

INSERTS_PER_TICK = 10_000
UPDATES_PER_TICK = 6_000


def scaled_config(config: ShopConfig, inserts: int, updates: int) -> ShopConfig:
    """The same tables with counts scaled so the totals per tick are `inserts` and `updates`."""
    tables = config.tables
    insert_total = sum(t.insert_rows_per_tick for t in tables.values()) or 1
    update_total = sum(t.update_rows_per_tick for t in tables.values()) or 1
    names = list(tables)
    insert_counts = _share_out(inserts, [tables[n].insert_rows_per_tick / insert_total for n in names])
    update_counts = _share_out(updates, [tables[n].update_rows_per_tick / update_total for n in names])
    scaled = {
        name: tables[name].model_copy(update={"insert_rows_per_tick": i, "update_rows_per_tick": u})
        for name, i, u in zip(names, insert_counts, update_counts, strict=True)
    }
    return config.model_copy(update={"tables": scaled})


def _share_out(total: int, weights: list[float]) -> list[int]:
    """Whole numbers in proportion to `weights` that add up to exactly `total`."""
    counts = [int(total * w) for w in weights]
    counts[max(range(len(counts)), key=lambda i: weights[i])] += total - sum(counts)
    return counts


def run(ticks: int, work_dir: Path) -> dict[str, float]:
    grade = Grade.named("G0_Trainee")
    env = grade.generator_env("shop-1")
    config = scaled_config(load_config(grade.generator_config, env["FAKER_LOCALE"]), INSERTS_PER_TICK, UPDATES_PER_TICK)
    setup_logging(work_dir / "logs")
    server = EmbeddedPostgres(grade.postgres_spec("pg-shop-1", free_port()), work_dir / "pg", durable=False)
    server.start()
    try:
        started = time.perf_counter()
        shop = Shop(
            config, seed=int(env["GENERATOR_SEED"]), locale=env["FAKER_LOCALE"], update_window=3600, delete_after=0
        )
        conn = server.connect()
        shop.prepare(conn)
        startup = time.perf_counter() - started
        for number in (1, 2):  # warm-up: fill the tables so that every measured tick has rows to update
            shop.tick(conn, number)
        results: list[TickResult] = [shop.tick(conn, number) for number in range(3, ticks + 3)]
        conn.close()
    finally:
        server.stop()
    inserted = sum(sum(r.inserted.values()) for r in results)
    updated = sum(sum(r.updated.values()) for r in results)
    tick_ms = [r.seconds["total"] * 1000 for r in results]
    return {
        "generator_ticks": len(results),
        "generator_inserts_per_tick": inserted / len(results),
        "generator_updates_per_tick": updated / len(results),
        "generator_insert_rows_per_s": inserted / sum(r.seconds["insert"] for r in results),
        "generator_update_rows_per_s": updated / sum(r.seconds["update"] for r in results),
        "generator_rows_per_s": (inserted + updated) / sum(r.seconds["total"] for r in results),
        "generator_tick_ms_p50": statistics.median(tick_ms),
        "generator_tick_ms_max": max(tick_ms),
        "generator_startup_ms": startup * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=10, help="measured ticks after the warm-up (default 10)")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="generator-bench-"))
    try:
        figures = run(args.ticks, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}={value:.0f}" if isinstance(value, int) or value >= 100 else f"{key}={value:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
