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

The table and its rows are in `scd2_data.py`, the loads with their checks in
`scd2_loads.py`, dbt's project in `scd2_dbt.py`; this module runs the rounds.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from coursekit.bench import scd2_dbt
from coursekit.bench.scd2_data import (
    CONFIG,
    EXTRACTED_US,
    NAME,
    PREVIOUS_EXTRACTED_US,
    PREVIOUS_RUN_ID,
    RUN_ID,
    SRC_ID,
    TABLE,
    Sizes,
    orders,
    stg_rows,
    with_changes,
)
from coursekit.bench.scd2_loads import (
    MERGE_STEPS,
    BenchmarkError,
    Expected,
    Timing,
    admin,
    autocommit,
    build_warehouse,
    connect,
    copy_of,
    naive_engine,
    naive_load,
    raw_copy,
    scd2_load,
    settle,
    verify,
)
from coursekit.pg import EmbeddedPostgres, PostgresSpec, free_port
from coursekit.reference import contract, load, staging, warehouse


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
    counts = merge.merge_into_dds(conn, table, sys.argv[2], timings=steps)
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
            load.copy_to_stg(conn, TABLE, [{"src_id": SRC_ID, "path": str(prepared.batch_file)}])

        def ours() -> tuple[dict, float]:
            settle(server, database)
            env = {**os.environ, "SCD2_BENCH_DSN": server.dsn(database)}
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", MERGE_TASK, TABLE.model_dump_json(), RUN_ID],
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


@dataclass
class Rounds:
    """Every round's measurement of each load (one entry per round)."""

    big: list[Timing] = field(default_factory=list)
    copies: list[float] = field(default_factory=list)
    small: list[Timing] = field(default_factory=list)
    big_same_mix: list[Timing] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    dbt: list[DbtTiming] = field(default_factory=list)


def expectations(sizes: Sizes) -> tuple[Expected, Expected]:
    """What a correct merge reports into the big dds, and into the small and same-mix ones."""
    overlap_changed = int(sizes.changed_mask()[: sizes.overlap].sum())
    in_big = Expected(new=0, changed=sizes.changed, unchanged=sizes.batch - sizes.changed)
    same_mix = Expected(
        new=sizes.batch - sizes.overlap, changed=overlap_changed, unchanged=sizes.overlap - overlap_changed
    )
    return in_big, same_mix


def measure_rounds(server: EmbeddedPostgres, prepared: Prepared, sizes: Sizes, say: Callable[[str], None]) -> Rounds:
    """Each load once per round.

    Rounds rather than one measurement after the other: when other work on the
    machine comes and goes, it then slows every measurement alike, and the
    ratios between them stay meaningful.
    """
    in_big, same_mix = expectations(sizes)
    rounds = Rounds()
    batch_file = prepared.batch_file
    for round_ in range(1, sizes.repeats + 1):
        say(
            f"round {round_}/{sizes.repeats}: SCD2 load into the big dds, raw COPY, small dds, same-mix dds, naive"
            + (", our merge task and dbt snapshot" if sizes.dbt else "")
        )
        check_contract = round_ == 1
        rounds.big.append(measure_scd2(server, prepared.big, batch_file, in_big, check_contract))
        rounds.copies.append(measure_copy(server, prepared.copy, batch_file, sizes.batch))
        rounds.small.append(measure_scd2(server, prepared.small, batch_file, same_mix, check_contract))
        rounds.big_same_mix.append(measure_scd2(server, prepared.same_mix, batch_file, same_mix, check_contract))
        rounds.naive.append(measure_naive(server, prepared.big, batch_file, sizes))
        if sizes.dbt:  # who goes first alternates: the second finds stg in the cache
            rounds.dbt.append(measure_dbt(server, prepared, in_big, dbt_first=round_ % 2 == 0))
    return rounds


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
        rounds = measure_rounds(server, prepared, sizes, say)
    finally:
        server.stop()
    if sizes.naive_rows < sizes.batch:
        say(
            f"note: the naive loader was timed on {sizes.naive_rows:,} of {sizes.batch:,} rows "
            f"({statistics.median(rounds.naive):.1f} s); naive_s is extrapolated per row to the whole batch"
        )
    return {**figures(sizes, rounds, began), **dbt_figures(rounds.dbt)}


def figures(sizes: Sizes, rounds: Rounds, began: float) -> dict[str, float | str]:
    """The medians over the rounds, and what they mean: rates, ratios, growth."""
    scd2_s = statistics.median(t.total for t in rounds.big)
    copy_s = statistics.median(rounds.copies)
    naive_s = statistics.median(rounds.naive) * sizes.batch / sizes.naive_rows
    small_s = statistics.median(t.total for t in rounds.small)
    same_mix_s = statistics.median(t.total for t in rounds.big_same_mix)
    return {
        "batch_rows": sizes.batch,
        "big_rows": sizes.big,
        "small_rows": sizes.small,
        "changed_share": sizes.changed_share,
        "changed_rows": sizes.changed,
        "repeats": sizes.repeats,
        "scd2_stg_load_s": statistics.median(t.stg for t in rounds.big),
        "scd2_merge_s": statistics.median(t.merge for t in rounds.big),
        # Where the merge's time goes: each statement's median over the rounds.
        **{f"merge_{step}_s": statistics.median(t.steps[step] for t in rounds.big) for step in MERGE_STEPS},
        "scd2_load_s": scd2_s,
        "copy_s": copy_s,
        "naive_rows_timed": sizes.naive_rows,
        "naive_extrapolated": int(sizes.naive_rows < sizes.batch),
        "naive_method": sizes.naive_method,
        "naive_s": naive_s,
        "small_new_rows": expectations(sizes)[1].new,
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
    }


def dbt_figures(dbt: list[DbtTiming]) -> dict[str, float | str]:
    """dbt's snapshot beside our merge task, medians over the rounds (none with `--dbt no`)."""
    if not dbt:
        return {}
    ours_merge_s = statistics.median(t.ours_merge for t in dbt)
    ours_command_s = statistics.median(t.ours_command for t in dbt)
    dbt_sql_s = statistics.median(t.dbt_sql for t in dbt)
    dbt_command_s = statistics.median(t.dbt_command for t in dbt)
    return {
        "dbt_version": scd2_dbt.DBT_CORE.split("==")[1],
        "dbt_verified_histories": len(dbt),
        "dbt_ours_merge_s": ours_merge_s,
        "dbt_ours_command_s": ours_command_s,
        "dbt_snapshot_sql_s": dbt_sql_s,
        "dbt_command_s": dbt_command_s,
        "scd2_vs_dbt_speedup": dbt_sql_s / ours_merge_s,
        "scd2_vs_dbt_command_speedup": dbt_command_s / ours_command_s,
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
