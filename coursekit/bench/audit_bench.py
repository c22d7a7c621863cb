"""What G4's Write-Audit-Publish costs per statement at a shop rate: `python -m coursekit.bench.audit_bench`.

The load test found G4's reference falling behind at 4,000 inserts/s per shop
with the audit taking most of each run. This benchmark rebuilds, in an embedded
PostgreSQL, the warehouse such a run meets, and runs the reference's real
`audit_batch` and `publish` (G4_Senior/solution/dags/wap/audit.py) on it, table
by table in the DAG's order (dimensions first), timing every statement:

* the shops insert `--rate` rows/s each, split across tables like G4's generator
  config (customers 3 : products 1 : orders 10), and update 60 % of the keys
  once, 30 s after creating them; `--history` seconds of that are in the
  warehouse (the load test's ramp had put ~1.9 M orders per shop there by its
  4,000/s step: about 480 s at 4,000/s);
* stg holds this run's batch: every key created in the last `--lookback`
  seconds (the load test's lookback: its update window, 120 s, plus two
  minutes), in its newest version; the keys of the last `--interval` seconds
  are new to dds, a share of the others changed since the last run;
* the shops' bad rows as the generator makes them: 3 % of products priced 0;
  2 % of orders with quantity 0, 1 % with an unknown status; orders pointing at
  one of those held products fail their reference (and are re-audited every
  run, as a late customer would be). Bad rows of earlier runs wait in
  quarantine (open); dds holds every other key, in one or two versions;
* the verdicts and audit log of the previous run are there too; the planner's
  statistics of stg describe the previous run's batch (autovacuum analyzed it
  then; load_stg does not ANALYZE), as a real run's audit meets them.

Then, on a fresh copy of that database, each statement once more under
EXPLAIN (ANALYZE, BUFFERS) (PostgreSQL's auto_explain, sent to this client):
the plans are printed, and the shared buffers each statement touched become
figures too (`*_buffers`): counts, steady on a busy machine where seconds are
not. Each rule's own cost is timed alone over the batch (`rule_<table>_<n>_s`,
named in the output). The checks after the run: every bad row is held, no good
row is, and the warehouse contract holds.

Figures last, as `key=value` lines: per table `audit_<table>_s` and
`publish_<table>_s` with their statements' split, the sizes, the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from coursekit.bench.audit_data import CONFIG, ORDER, PREVIOUS_RUN_ID, RUN_ID, Sizes, expected_failures, fill
from coursekit.pg import EmbeddedPostgres, PostgresSpec, free_port
from coursekit.reference import rules, warehouse
from wap import audit as wap  # G4's solution folder: audit_data put it on the path


class BenchmarkError(RuntimeError):
    """The audit did something wrong: no figures for it."""


# -- the server and its databases -----------------------------------------------------------------


def connect(server: EmbeddedPostgres, database: str) -> psycopg.Connection:
    """Autocommit, as the pipeline's connections (`dwh/connections.py`)."""
    return psycopg.connect(server.dsn(database), autocommit=True)


def prepare(server: EmbeddedPostgres, sizes: Sizes, say) -> tuple[dict[str, int], dict[str, int]]:
    """The template database `tmpl`: the warehouse a run at `sizes.rate` meets, vacuumed and analyzed."""
    server.create_database("tmpl")
    with connect(server, "tmpl") as conn:
        warehouse.create_schemas(conn)
        warehouse.ensure_tables(conn, CONFIG)
        wap.ensure_audit_tables(conn, CONFIG)
        started = time.perf_counter()
        with conn.transaction():
            counts = fill(conn, sizes)
        say(f"filled in {time.perf_counter() - started:.0f} s: {counts}")
        expected = expected_failures(conn, sizes)
        # The audit log of the runs before: one row per run, table and shop.
        runs = max(1, sizes.history // sizes.interval)
        conn.execute(
            "insert into quarantine.audit_log (run_id, table_name, src_id, checked, re_audited, passed, "
            "quarantined, quarantined_share, outcome, audited_at, published_at) "
            "select 'run_' || n, t, s, 1, 0, 1, 0, 0, 'published', now(), now() "
            "from generate_series(1, %(runs)s) as n, unnest(%(tables)s::text[]) as t, unnest(%(shops)s::text[]) as s",
            {"runs": runs, "tables": list(ORDER), "shops": [source.src_id for source in CONFIG.sources]},
        )
        # Autovacuum has analyzed stg while it held the previous run's batch; this run's
        # load_stg (DELETE, then COPY) replaced it a moment ago, and the audit runs before
        # autovacuum can look again (it naps for a minute; load_stg does not ANALYZE): the
        # planner's statistics know the previous run id, not this one.
        for name in ORDER:
            conn.execute(
                sql.SQL("update {} set load_run_id = %s").format(sql.Identifier("stg", name)), [PREVIOUS_RUN_ID]
            )
            conn.execute(sql.SQL("alter table {} set (autovacuum_enabled = false)").format(sql.Identifier("stg", name)))
        conn.execute("vacuum analyze")
        for name in ORDER:
            stg = sql.Identifier("stg", name)
            columns = sql.SQL(", ").join(
                map(sql.Identifier, [*CONFIG.tables[name].columns, "src_id", "extracted_dttm"])
            )
            conn.execute(
                sql.SQL(
                    "with batch as (delete from {stg} returning *) "
                    "insert into {stg} ({columns}, load_run_id) select {columns}, %s from batch"
                ).format(stg=stg, columns=columns),
                [RUN_ID],
            )
    return counts, expected


def copy_database(server: EmbeddedPostgres, name: str) -> None:
    with connect(server, "postgres") as conn:
        conn.execute(sql.SQL("create database {} template tmpl strategy file_copy").format(sql.Identifier(name)))


# -- one run: audit and publish of every table, timed by statement ---------------------------------

UTILITY_STEPS = ("analyze_batch",)  # not planned, so no plan to show
PUBLISH_STATEMENTS = ["audit_outcomes", "quarantine_failed", "close_passed"]  # then log_published per shop
MERGE_STATEMENTS = ["merge_classify", "merge_close_changed", "merge_insert_versions", "merge_summary"]


@dataclass
class TableRun:
    audit: dict[str, float]
    publish: dict[str, float]
    summary: list
    plans: list[tuple[str, str]]  # (stage.statement, plan text) when explained


def explain_plans(conn: psycopg.Connection) -> list[str]:
    """Have every statement of this connection's session send its EXPLAIN (ANALYZE, BUFFERS) to us."""
    plans: list[str] = []
    conn.execute("load 'auto_explain'")
    for setting, value in (
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_analyze", "on"),
        ("auto_explain.log_buffers", "on"),
        ("auto_explain.log_timing", "on"),
        ("auto_explain.log_level", "notice"),
    ):
        conn.execute(sql.SQL("set {} = {}").format(sql.Identifier(*setting.split(".")), sql.Literal(value)))
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    return plans


def run_tables(server: EmbeddedPostgres, database: str, explain: bool) -> dict[str, TableRun]:
    """Audit, then publish, each table in the DAG's order; each task on a connection of its own, as a task."""
    runs = {}
    for name in ORDER:
        stages = {}
        plans: list[tuple[str, str]] = []
        for stage in ("audit", "publish"):
            with connect(server, database) as conn:
                notices = explain_plans(conn) if explain else []
                seconds: dict[str, float] = {}
                if stage == "audit":
                    summary = wap.audit_batch(conn, CONFIG, name, RUN_ID, timings=seconds)
                    labels = [step for step in wap.AUDIT_STEPS if step not in UTILITY_STEPS]
                else:
                    wap.publish(conn, CONFIG, name, RUN_ID, timings=seconds)
                    labels = PUBLISH_STATEMENTS + ["log_published"] * len(CONFIG.sources) + MERGE_STATEMENTS
                stages[stage] = seconds
                if explain:
                    if len(notices) != len(labels):
                        raise BenchmarkError(f"{name}.{stage}: {len(notices)} plans for {len(labels)} statements")
                    plans += [(f"{stage}.{label}", plan) for label, plan in zip(labels, notices, strict=True)]
        runs[name] = TableRun(stages["audit"], stages["publish"], summary, plans)
    return runs


BUFFERS = re.compile(r"^\s*Buffers: (.*)$", re.MULTILINE)
BUFFER_COUNT = re.compile(r"\b(?:shared|local) (?:\w+=\d+ ?)+")


def buffers(plan: str) -> int:
    """Buffers the statement touched (shared and local: hit + read), from its plan's top node."""
    match = BUFFERS.search(plan)
    if not match:
        return 0
    return sum(
        int(count)
        for part in BUFFER_COUNT.findall(match.group(1))
        for kind, count in re.findall(r"(\w+)=(\d+)", part)
        if kind in ("hit", "read")
    )


def check(server: EmbeddedPostgres, database: str, runs: dict[str, TableRun], expected: dict[str, int]) -> None:
    """Every bad batch row was held and every good one published; dds keeps the warehouse contract."""
    for name, run in runs.items():
        held = sum(s.quarantined for s in run.summary) - sum(s.re_audited for s in run.summary)
        if held != expected[name]:
            raise BenchmarkError(f"{name}: the audit held {held} fresh rows, expected {expected[name]}")
        if any(s.outcome == "halted" for s in run.summary):
            raise BenchmarkError(f"{name}: halted: {run.summary}")
    with connect(server, database) as conn:
        bad = conn.execute(
            "select (select count(*) from dds.products where price <= 0)"
            " + (select count(*) from dds.orders where quantity <= 0 or status = 'unknown')"
            " + (select count(*) from dds.orders as o where not exists ("
            "    select 1 from dds.products as p where p.product_id = o.product_id and p.src_id = o.src_id))"
        ).fetchone()[0]
        if bad:
            raise BenchmarkError(f"{bad} bad rows reached dds")
        for name in ORDER:
            broken = {rule: rows for rule, rows in rules.violations(conn, CONFIG.tables[name]).items() if rows}
            if broken:
                raise BenchmarkError(f"dds.{name}: warehouse contract broken: {broken}")


def rule_costs(server: EmbeddedPostgres) -> dict[str, tuple[str, float, int]]:
    """Each rule alone over each batch (the prepared template, read only): (rule, seconds, rows it fails)."""
    costs = {}
    with connect(server, "tmpl") as conn:
        for name in ORDER:
            table = CONFIG.tables[name]
            audit_rules = wap.rule_expressions(CONFIG, table)
            for number, expression in enumerate(audit_rules.expressions):
                query = sql.SQL(
                    "select count(*) from (select s.*{ranks} from {stg} as s where s.load_run_id = %(run_id)s) as b"
                    " where ({rule}) is not null"
                ).format(
                    ranks=sql.SQL("").join(sql.SQL(", ") + rank for rank in audit_rules.ranks),
                    stg=sql.Identifier("stg", name),
                    rule=expression,
                )
                started = time.perf_counter()
                (failing,) = conn.execute(query, {"run_id": RUN_ID, **audit_rules.params}).fetchone()
                costs[f"rule_{name}_{number}"] = (
                    audit_rules.params[f"rule_{number}"],
                    time.perf_counter() - started,
                    failing,
                )
    return costs


# -- the benchmark --------------------------------------------------------------------------------


def run(sizes: Sizes, work_dir: Path, say, show_plans: bool) -> dict[str, float | int | str]:
    began = time.perf_counter()
    server = EmbeddedPostgres(
        PostgresSpec("audit-bench", "bench", secrets.token_hex(12), "bench", free_port()),
        work_dir / "pg",
        durable=False,
    )
    server.start()
    try:
        say(
            f"preparing: {sizes.rate} inserts/s per shop, {sizes.history} s of history, "
            f"{sizes.lookback} s lookback, {sizes.interval} s since the last run ..."
        )
        counts, expected = prepare(server, sizes, say)
        copy_database(server, "timed")
        copy_database(server, "explained")
        say("the run, timed ...")
        timed = run_tables(server, "timed", explain=False)
        check(server, "timed", timed, expected)
        say("the run again on a fresh copy, each statement under EXPLAIN (ANALYZE, BUFFERS) ...")
        explained = run_tables(server, "explained", explain=True)
        check(server, "explained", explained, expected)
        costs = rule_costs(server)
    finally:
        server.stop()

    figures: dict[str, float | int | str] = {
        "rate": sizes.rate,
        "history_s": sizes.history,
        "lookback_s": sizes.lookback,
    }
    figures.update(counts)
    figures.update({f"held_{name}_fresh": count for name, count in expected.items()})
    for name, run_ in explained.items():
        if show_plans:
            for label, plan in run_.plans:
                say(f"\n== {name}.{label}\n{plan}")
        for label, plan in run_.plans:
            figures[f"{name}_{label.replace('.', '_')}_buffers"] = buffers(plan)
    for number_key, (rule, seconds, failing) in costs.items():
        say(f"{number_key}: {rule}: {failing} rows fail, {seconds:.3f} s alone")
    for name, run_ in timed.items():
        figures[f"re_audited_{name}"] = sum(s.re_audited for s in run_.summary)
        figures[f"audit_{name}_s"] = sum(run_.audit.values())
        figures[f"publish_{name}_s"] = sum(run_.publish.values())
        for step, seconds in run_.audit.items():
            figures[f"audit_{name}_{step}_s"] = seconds
        for step, seconds in run_.publish.items():
            figures[f"publish_{name}_{step}_s"] = seconds
    for number_key, (_, seconds, _) in costs.items():
        figures[f"{number_key}_s"] = seconds
    figures["audit_total_s"] = sum(sum(r.audit.values()) for r in timed.values())
    figures["publish_total_s"] = sum(sum(r.publish.values()) for r in timed.values())
    figures["bench_total_s"] = time.perf_counter() - began
    figures["load_avg_1m"] = os.getloadavg()[0]
    return figures


def render(value: float | int | str) -> str:
    return str(value) if isinstance(value, int | str) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=int, default=4000, help="inserts/s per shop (default 4000)")
    parser.add_argument("--history", type=int, default=480, help="seconds of that rate already in dds (default 480)")
    parser.add_argument("--lookback", type=int, default=240, help="seconds of keys in the batch (default 240)")
    parser.add_argument("--interval", type=int, default=60, help="seconds since the previous run (default 60)")
    parser.add_argument("--no-plans", action="store_true", help="do not print the plans (figures only)")
    args = parser.parse_args(argv)
    if not 0 < args.interval <= args.lookback <= args.history:
        parser.error("need 0 < --interval <= --lookback <= --history")
    if args.rate < 1:
        parser.error("--rate must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work_dir = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        figures = run(
            Sizes(args.rate, args.history, args.lookback, args.interval),
            work_dir,
            lambda line: print(line, flush=True),
            show_plans=not args.no_plans,
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}={render(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
