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
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from coursekit.grade import Grade
from coursekit.pg import EmbeddedPostgres, PostgresSpec, free_port
from coursekit.reference import config as dwh_config
from coursekit.reference import contract, rules, warehouse

G4 = Grade.named("G4_Senior")
SOLUTION = G4.path / "solution" / "dags"
if str(SOLUTION) not in sys.path:
    sys.path.append(str(SOLUTION))  # the `wap` package; `dwh` is G0's, of which G4's is a copy

from wap import audit as wap  # noqa: E402

CONFIG = dwh_config.load_config(SOLUTION / "pipeline.yaml")
ORDER = ("customers", "products", "orders")  # the DAG's: dimensions are published before facts
RUN_ID = "audit_bench_run"
PREVIOUS_RUN_ID = "audit_bench_previous_run"
T0 = "2026-06-01 12:00:00+00"  # when this run's batch was read
UPDATE_AFTER_SEC = 30  # a key is updated (if at all) this long after it was created
UPDATED_PERCENT = 60  # the course's shops update 60 % as many rows as they insert
BAD_PRICE_PERCENT = 3  # G4's generator config: products.price invalid_share 0.03
BAD_QUANTITY_PERCENT = 2  # orders.quantity invalid_share 0.02
BAD_STATUS_PERCENT = 1  # orders.status invalid_share 0.01


class BenchmarkError(RuntimeError):
    """The audit did something wrong: no figures for it."""


@dataclass(frozen=True)
class Sizes:
    rate: int
    history: int
    lookback: int
    interval: int

    def per_shop_rate(self, table: str) -> float:
        """Inserts/s of `table` in one shop, split like G4's generator config (as the load test does)."""
        tables = json.loads(G4.generator_config.read_text())["tables"]
        total = sum(t["insert_rows_per_tick"] for t in tables.values())
        return self.rate * tables[table]["insert_rows_per_tick"] / total

    def keys(self, table: str) -> int:
        return max(1, round(self.per_shop_rate(table) * self.history))


# -- the prepared warehouse -----------------------------------------------------------------------
# Every row is computed from its key (k), its shop's index (i) and its version (v):
# the batch, dds's versions and the quarantine's source rows agree without storing
# anything. A hash of the key in 0..99 decides which keys are updated or bad; `at`
# is the key's created_at. (mod(), not %: these strings carry psycopg parameters.)

HASH = "mod(abs(hashint8(k * 7 + i * 1000003 + {salt})), 100)"
BAD_PRODUCT = HASH.format(salt=11) + f" < {BAD_PRICE_PERCENT}"
BAD_PRODUCT_OF = BAD_PRODUCT.replace("hashint8(k ", "hashint8(product_id ")
STATUSES = "array['created', 'paid', 'shipped', 'delivered', 'cancelled']"

ROWS = {
    "customers": {
        "customer_id": "k",
        "first_name": "'F' || mod(k, 997)",
        "last_name": "'L' || mod(k, 991)",
        "email": "'c' || k || '.' || v || '@shop.test'",
        "phone": "case when mod(k, 10) = 0 then null else '+1 555 ' || k end",
        "address": "'Street ' || mod(k, 500) || ', flat ' || v",
        "birth_date": "date '1950-01-01' + mod(k, 15000)::int",
        "created_at": "at",
    },
    "products": {
        "product_id": "k",
        "name": "'P' || mod(k, 15)",
        "category": "'c' || mod(k, 5)",
        "price": f"case when {BAD_PRODUCT} then 0 else 1 + mod(k, 299) + v end",
        "currency": "(array['USD', 'EUR', 'TRY'])[1 + mod(k, 3)]",
        "description": "case when mod(k, 5) = 0 then null else 'about ' || k || ' v' || v end",
        "created_at": "at",
    },
    "orders": {
        "order_id": "k",
        # A customer and a product of the same shop that existed when the order was placed.
        "customer_id": "1 + mod(abs(hashint8(k * 3 + i)), greatest(1, floor("
        "extract(epoch from at - %(start)s) * %(rate_customers)s))::bigint)",
        "product_id": "1 + mod(abs(hashint8(k * 5 + i)), greatest(1, floor("
        "extract(epoch from at - %(start)s) * %(rate_products)s))::bigint)",
        "quantity": f"case when {HASH.format(salt=13)} < {BAD_QUANTITY_PERCENT} then 0 else 1 + mod(k, 12) end",
        "status": f"case when {HASH.format(salt=17)} < {BAD_STATUS_PERCENT} then 'unknown' "
        f"else ({STATUSES})[1 + mod(k + v, 5)] end",
        "comment": "case when mod(k, 2) = 0 then null else 'note ' || k || ' v' || v end",
        "created_at": "at",
    },
}

# Which rules a row breaks (named as wap/audit.py names them), from its source columns.
FAILED_RULES = {
    "customers": "array[]::text[]",
    "products": "array_remove(array[case when price <= 0 then 'price > 0' end], null)",
    "orders": "array_remove(array["
    "case when quantity <= 0 then 'quantity > 0' end, "
    f"case when not (status = any({STATUSES})) then 'status in allowed values' end, "
    f"case when {BAD_PRODUCT_OF} then 'product_id -> products' end], null)",
}

# Every key of every shop created by %(seen)s, one row per version the shop had made by
# then (`newest` marks the last), with the rules its values break.
VERSIONS = """
with keys as (
    select s.src_id, s.i::bigint as i, k,
        %(start)s::timestamptz + make_interval(secs => (k - 1) / %(rate)s) as at,
        {updated} < %(updated_percent)s as updated
    from unnest(%(src_ids)s::text[]) with ordinality as s (src_id, i)
    cross join generate_series(1::bigint, %(keys)s::bigint) as k
), versions as (
    select keys.*, versions.v,
        versions.v = case when updated and at + %(update_after)s <= %(seen)s then 2 else 1 end as newest,
        date_trunc('second', at + %(update_after)s) as updated_at
    from keys
    cross join lateral (
        select 1 union all select 2 where keys.updated and keys.at + %(update_after)s <= %(seen)s
    ) as versions (v)
    where at <= %(seen)s
), source_rows as (
    select {row_columns}, src_id, i, at, newest, v, updated_at from versions
), judged as (
    select source_rows.*, {failed_rules} as failed_rules from source_rows
)
"""

STG = """
insert into stg.{name} ({columns}, src_id, extracted_dttm, load_run_id)
select {columns}, src_id, %(seen)s, %(run_id)s from judged where newest and at >= %(window_start)s
"""
DDS = """
insert into dds.{name} ({columns}, src_id, eff_from_dttm, eff_to_dttm, load_run_id, load_dttm)
select {columns}, src_id,
    case when v = 1 then date_trunc('second', at) else updated_at end,
    case when newest then %(open_end)s::timestamptz else updated_at - interval '1 second' end,
    'prefill', %(seen)s
from judged
where cardinality(failed_rules) = 0
"""
QUARANTINE = """
insert into quarantine.{name} (
    {key}, src_id, source_row, failed_rules, status, extracted_dttm, first_run_id, last_run_id, first_seen, last_seen
)
select j.{key}, j.src_id, to_jsonb(r), j.failed_rules, 'open', %(seen)s, 'prefill', %(previous)s, j.at, %(seen)s
from judged as j
cross join lateral (select {row_of_j}) as r
where j.newest and cardinality(j.failed_rules) > 0
"""
VERDICTS = """
insert into audit.{name} ({key}, src_id, run_id, failed_rules, restaged)
select {key}, src_id, %(previous)s, failed_rules, false
from quarantine.{name}
where extracted_dttm >= %(window_start)s - %(interval)s
"""


def statement(name: str, body: str) -> str:
    """VERSIONS + `body` for table `name` (all names are the benchmark's own constants)."""
    row = ROWS[name]
    return VERSIONS.format(
        updated=HASH.format(salt=5),
        row_columns=", ".join(f"{expr} as {column}" for column, expr in row.items()),
        failed_rules=FAILED_RULES[name],
    ) + body.format(
        name=name,
        columns=", ".join(row),
        key=CONFIG.tables[name].key,
        row_of_j=", ".join(f"j.{column}" for column in row),
    )


def parameters(sizes: Sizes, name: str) -> dict:
    """The values `statement(name, ...)` and its bodies take, but `seen` (when the shop was read)."""
    t0 = datetime.fromisoformat(T0)
    return {
        "src_ids": [source.src_id for source in CONFIG.sources],
        "start": t0 - timedelta(seconds=sizes.history),
        "updated_percent": UPDATED_PERCENT,
        "update_after": timedelta(seconds=UPDATE_AFTER_SEC),
        "rate_customers": sizes.per_shop_rate("customers"),
        "rate_products": sizes.per_shop_rate("products"),
        "rate": sizes.per_shop_rate(name),
        "keys": sizes.keys(name),
        "open_end": contract.OPEN_END,
        "run_id": RUN_ID,
        "previous": PREVIOUS_RUN_ID,
        "window_start": t0 - timedelta(seconds=sizes.lookback),
        "interval": timedelta(seconds=sizes.interval),
    }


def fill(conn: psycopg.Connection, sizes: Sizes) -> dict[str, int]:
    """The state a run meets at `sizes.rate`: stg batch, dds history, quarantine, verdicts."""
    t0 = datetime.fromisoformat(T0)
    previous = t0 - timedelta(seconds=sizes.interval)
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for name in ORDER:
            table_params = parameters(sizes, name)
            # stg: this run's batch, read at t0: every key of the lookback window, newest version.
            cur.execute(statement(name, STG), {**table_params, "seen": t0})
            counts[f"stg_{name}_rows"] = cur.rowcount
            # dds and quarantine as the previous run left them: what the shop had then.
            cur.execute(statement(name, DDS), {**table_params, "seen": previous})
            counts[f"dds_{name}_rows"] = cur.rowcount
            cur.execute(statement(name, QUARANTINE), {**table_params, "seen": previous})
            counts[f"quarantine_{name}_open"] = cur.rowcount
            cur.execute(VERDICTS.format(name=name, key=CONFIG.tables[name].key), table_params)
    return counts


def expected_failures(conn: psycopg.Connection, sizes: Sizes) -> dict[str, int]:
    """Rows of each table's batch that break a rule (computed from the keys, not by the audit)."""
    body = "select count(*) from judged where newest and at >= %(window_start)s and cardinality(failed_rules) > 0"
    seen = datetime.fromisoformat(T0)
    return {
        name: conn.execute(statement(name, body), {**parameters(sizes, name), "seen": seen}).fetchone()[0]
        for name in ORDER
    }


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
            broken = {rule: rows for rule, rows in rules.violations(conn, name, CONFIG.tables[name]).items() if rows}
            if broken:
                raise BenchmarkError(f"dds.{name}: warehouse contract broken: {broken}")


def rule_costs(server: EmbeddedPostgres) -> dict[str, tuple[str, float, int]]:
    """Each rule alone over each batch (the prepared template, read only): (rule, seconds, rows it fails)."""
    costs = {}
    with connect(server, "tmpl") as conn:
        for name in ORDER:
            table = CONFIG.tables[name]
            rules = wap.rule_expressions(CONFIG, table)
            for number, expression in enumerate(rules.expressions):
                query = sql.SQL(
                    "select count(*) from (select s.*{ranks} from {stg} as s where s.load_run_id = %(run_id)s) as b"
                    " where ({rule}) is not null"
                ).format(
                    ranks=sql.SQL("").join(sql.SQL(", ") + rank for rank in rules.ranks),
                    stg=sql.Identifier("stg", name),
                    rule=expression,
                )
                started = time.perf_counter()
                (failing,) = conn.execute(query, {"run_id": RUN_ID, **rules.params}).fetchone()
                costs[f"rule_{name}_{number}"] = (
                    rules.params[f"rule_{number}"],
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
        rules = rule_costs(server)
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
    for number_key, (rule, seconds, failing) in rules.items():
        say(f"{number_key}: {rule}: {failing} rows fail, {seconds:.3f} s alone")
    for name, run_ in timed.items():
        figures[f"re_audited_{name}"] = sum(s.re_audited for s in run_.summary)
        figures[f"audit_{name}_s"] = sum(run_.audit.values())
        figures[f"publish_{name}_s"] = sum(run_.publish.values())
        for step, seconds in run_.audit.items():
            figures[f"audit_{name}_{step}_s"] = seconds
        for step, seconds in run_.publish.items():
            figures[f"publish_{name}_{step}_s"] = seconds
    for number_key, (_, seconds, _) in rules.items():
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
