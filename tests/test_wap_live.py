"""G4's Write-Audit-Publish as a real Airflow DAG, with live generators, judged by the G4 checker.

The DAG tests run G4's reference solution with real generators that make late
references and bad values, kill it inside its publish transaction, and hand the
result to the G4 checker, which must pass it and fail the untouched starter.
(The audit's rules, one by one on hand-made shops: tests/test_wap.py.)
"""

from __future__ import annotations

import ast
import json
import time
from contextlib import ExitStack, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg2 import sql
from support import airflow_conn, dds_snapshot, generator_env, run_generator, start_generators, stop_generator
from test_wap import DAG_ID, G0, G4, SOLUTION, TABLES, execute

from coursekit.checker.checks import FAIL, Context
from coursekit.checker.stack import GradeStack
from coursekit.checker.wap_checks import g4_plan
from coursekit.hostile import kill_dag_at_first_write
from dwh.rules import violations
from wap.config import load_config

# -- the reference DAG in Airflow, with live generators --------------------------------------------

# Test timing: ticks every second, updates up to 8 s back; no retention, so every row stays comparable.
FAST = {
    "TICK_INTERVAL_SEC": 1,
    "UPDATE_NOT_OLDER_THAN_SEC": 8,
    "DELETE_OLDER_THAN_SEC": 0,
    "STOP_GENERATOR_AFTER_SEC": 0,
}
SHOPS = {"shop-1": "New-York", "shop-2": "Istanbul"}


def fast_lookback(config: dict) -> None:
    config["lookback_sec"] = 20  # covers the 8 s update depth + the seconds between test runs


@pytest.fixture
def stack(airflow, shop1_db, shop2_db, dwh_db, monkeypatch):  # noqa: ARG001 - airflow: its metadata database
    """G4's connection ids pointed at three fresh test databases."""
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_1_CONN", airflow_conn(shop1_db))
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_2_CONN", airflow_conn(shop2_db))
    monkeypatch.setenv("AIRFLOW_CONN_DWH_CONN", airflow_conn(dwh_db))
    return {"shop-1": shop1_db, "shop-2": shop2_db, "dwh": dwh_db}


def tick(stack, tmp_path: Path, ticks: int) -> None:
    for shop in SHOPS:
        env = generator_env(G4, shop, stack[shop], **FAST)
        run_generator(G4.generator_config, env, tmp_path / shop, "--max-ticks", str(ticks))


def g4_check(stack, dwh_name: str | None = None) -> dict[str, bool]:
    """G4's checker in-process against the test databases (generators stopped: every row is stable)."""
    grade_stack = GradeStack(G4)
    grade_stack.dwh_port = stack["dwh"].port
    grade_stack.dwh_env = {**grade_stack.dwh_env, "POSTGRES_DB": dwh_name or stack["dwh"].name}
    grade_stack.shops = [
        replace(s, port=stack[s.name].port, env={**s.env, "POSTGRES_DB": stack[s.name].name}, update_window_sec=8)
        for s in grade_stack.shops
    ]
    later = datetime.now(UTC) + timedelta(minutes=1)
    with ExitStack() as opened:
        dwh = opened.enter_context(grade_stack.connect_dwh())
        shops = {s.name: opened.enter_context(grade_stack.connect_shop(s)) for s in grade_stack.shops}
        ctx = Context(stack=grade_stack, dwh=dwh, shops=shops, stable_before=dict.fromkeys(SHOPS, later), scd2=True)
        # Without Airflow's API the run checks WAIT; only a FAIL counts as failed here.
        return {result.name: result.verdict != FAIL for check in g4_plan() for result in check(ctx)}


def wap_invariants(stack, created_before: datetime | None = None) -> None:
    """What the reference must guarantee after any run: dds keeps the contract and only good rows,
    and every source row created before the run (default: all) is published or quarantined."""
    created_before = created_before or datetime.now(UTC) + timedelta(minutes=1)
    config = load_config(SOLUTION / "pipeline.yaml")
    dwh = stack["dwh"]
    with closing(dwh.connect()) as conn:
        for name, table in config.tables.items():
            broken = {rule: rows for rule, rows in violations(conn, table).items() if rows}
            assert broken == {}, f"dds.{name} breaks the contract: {broken}"
    for column, parent, key in (("customer_id", "customers", "customer_id"), ("product_id", "products", "product_id")):
        orphans = dwh.query(
            sql.SQL(
                "select count(*) from dds.orders o where not exists"
                " (select 1 from {p} p where p.{k} = o.{c} and p.src_id = o.src_id)"
            ).format(p=sql.Identifier("dds", parent), k=sql.Identifier(key), c=sql.Identifier(column))
        )
        assert orphans == [(0,)], f"published orders with an unpublished {parent}"
    assert dwh.query("select count(*) from dds.orders where quantity <= 0 or status = 'unknown'") == [(0,)]
    assert dwh.query("select count(*) from dds.products where price <= 0") == [(0,)]
    for name, table in config.tables.items():
        key = sql.Identifier(table.key)
        for shop, src_id in SHOPS.items():
            statement = sql.SQL("select {} from {} where created_at < %s").format(key, sql.Identifier(name))
            source = keys(stack[shop], statement, created_before)
            published = keys(dwh, sql.SQL("select {} from {} where src_id = %s").format(key, dds(name)), src_id)
            held = keys(
                dwh,
                sql.SQL("select {} from {} where src_id = %s and status = 'open'").format(
                    key, sql.Identifier("quarantine", name)
                ),
                src_id,
            )
            assert source <= published | held, f"{name}@{src_id}: lost {sorted(source - published - held)[:10]}"
            every = keys(stack[shop], sql.SQL("select {} from {}").format(key, sql.Identifier(name)))
            assert published | held <= every, f"{name}@{src_id}: rows the shop never had"


def dds(name: str) -> sql.Identifier:
    return sql.Identifier("dds", name)


def keys(db, statement: sql.Composable, *params) -> set:
    return {row[0] for row in db.query(statement, params or None)}


@pytest.mark.parametrize("dags_dir", [SOLUTION], ids=["solution"])
def test_the_solution_folder_parses_and_publishes_dimensions_before_facts(airflow, dags_dir):
    bag = airflow.install(dags_dir)
    assert bag.import_errors == {}
    assert set(bag.dags) == {DAG_ID, "cleanup_staging"}
    dag = bag.dags[DAG_ID]
    assert dag.doc_md and dag.tags and dag.catchup is False and dag.max_active_runs == 1
    assert all(task.retries >= 1 for task in dag.tasks)
    for name in TABLES:
        assert {
            f"{name}.extract_new_york",
            f"{name}.extract_istanbul",
            f"{name}.load_stg",
            f"{name}.audit",
            f"{name}.publish",
        } <= set(dag.task_ids)
    assert {"customers.publish", "products.publish"} <= dag.get_task("orders.audit").upstream_task_ids
    outlets = {str(asset.name) for task in dag.tasks for asset in task.outlets}
    assert outlets == {"dds.customers", "dds.products", "dds.orders"}


def test_deliberate_copies_stay_equal_to_g0():
    # G4's cleanup reads G4's pipeline.yaml, whose audit rules only wap.config's loader knows.
    g0_cleanup = (G0.dags_dir / "cleanup_staging.py").read_text()
    g4_cleanup = g0_cleanup.replace("from dwh.config import load_config", "from wap.config import load_config")
    assert g4_cleanup != g0_cleanup and (SOLUTION / "cleanup_staging.py").read_text() == g4_cleanup
    for name in ("hello_world.py", "taskflow_example.py"):
        assert (G4.dags_dir / name).read_bytes() == (G0.dags_dir / name).read_bytes()
    starter = (G4.dags_dir / "load_shops_to_dwh.py").read_text()
    assert "# TODO:" in starter and "@dag" not in starter


def task_body(dag_file: Path, name: str) -> str:
    """The code of the @task function `name` in `dag_file`, without its docstring."""
    function = next(
        node
        for node in ast.parse(dag_file.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and node.name == name
    )
    return "\n".join(ast.unparse(statement) for statement in function.body[1:])


@pytest.mark.parametrize("task", ["extract", "load_stg"])
def test_the_wap_dag_runs_g0s_write_tasks_unchanged(task):
    """G4's DAG repeats G0's extract and load_stg wrappers (each DAG file reads top to bottom on its own):
    the copy is checked here, so a change to G0's wrapper cannot leave G4's behind."""
    g4 = task_body(SOLUTION / "load_shops_to_dwh_wap.py", task)
    assert g4 == task_body(G0.dags_dir / "load_shops_to_dwh.py", task), f"{task}: G4's wrapper differs from G0's"


def test_g4_shops_make_late_references_and_bad_values():

    tables = json.loads(G4.generator_config.read_text())["tables"]
    orders = tables["orders"]["columns"]
    assert orders["customer_id"]["late_share"] > 0 and orders["product_id"]["late_share"] > 0
    assert orders["quantity"]["invalid_values"] == [0, -3] and orders["status"]["invalid_values"] == ["unknown"]
    assert tables["products"]["columns"]["price"]["invalid_values"] == [0]


@pytest.mark.slow
def test_live_generators_the_reference_and_the_g4_checker(airflow, stack, tmp_path):
    """Runs interleaved with ticks (late references, bad values, updates); then every WAP invariant
    holds, a re-run changes nothing, and the G4 checker passes the warehouse."""
    bag = airflow.install(SOLUTION, pipeline_edit=fast_lookback)
    generators = start_generators(G4, stack, SHOPS, tmp_path, **FAST)
    try:
        for _ in range(4):
            started = datetime.now(UTC)
            assert airflow.run(bag, DAG_ID).state == "success"
            wap_invariants(stack, started)  # holds after every run, also while the shops keep writing
    finally:
        for process in generators:
            stop_generator(process)
    time.sleep(2)
    last = airflow.run(bag, DAG_ID)
    assert last.state == "success"
    wap_invariants(stack)
    dwh = stack["dwh"]
    held = dwh.query("select unnest(failed_rules), count(*) from quarantine.orders group by 1")
    assert {rule for rule, _ in held} & {"quantity > 0", "status in allowed values"}, held
    statuses = dict(dwh.query("select status, count(*) from quarantine.orders group by 1"))
    assert statuses.get("released", 0) + statuses.get("superseded", 0) > 0, statuses
    logged = dwh.query("select distinct table_name, outcome from quarantine.audit_log order by 1")
    assert logged == [("customers", "published"), ("orders", "published"), ("products", "published")]

    snapshot = "select * from quarantine.orders order by order_id, src_id, first_seen"
    columns = "order_id, src_id, source_row, failed_rules, status, first_run_id, closed_run_id"
    before = (dds_snapshot(dwh, TABLES), dwh.query(snapshot.replace("*", columns)))
    again = airflow.run(bag, DAG_ID, again=last)
    assert again.state == "success" and again.run_id == last.run_id
    assert (dds_snapshot(dwh, TABLES), dwh.query(snapshot.replace("*", columns))) == before

    results = g4_check(stack)
    failed = {name for name, passed in results.items() if not passed}
    # Released rows depend on a late parent arriving between two runs; everything else must pass.
    assert failed <= {"quarantine rows were released"}, failed
    assert "dds.orders: every stable source row is published or quarantined" in results
    another_quarantine_design_passes_too(stack, results)


def another_quarantine_design_passes_too(stack, reference: dict[str, bool]) -> None:
    """The quarantine contract is the key, src_id and a reason; names and status words are the learner's.

    The reference's quarantine rewritten as another learner might design it gets the same verdicts;
    a held row whose status says it was published, while dds lacks it, is lost; no status column at
    all holds every row.
    """
    dwh = stack["dwh"]
    for name in TABLES:
        q = f"quarantine.{name}"
        execute(dwh, f"drop index quarantine.{name}_open_uq")
        (check,) = dwh.query("select conname from pg_constraint where conrelid = %s::regclass and contype = 'c'", (q,))[
            0
        ]
        execute(dwh, f"alter table {q} drop constraint {check}")
        execute(dwh, f"alter table {q} rename column failed_rules to reason")
        execute(dwh, f"alter table {q} rename column status to quarantine_status")
        execute(
            dwh,
            f"update {q} set quarantine_status = case quarantine_status"  # noqa: S608 - the test's own names
            " when 'open' then 'HELD' when 'released' then 'Published' else 'Replaced' end",
        )
    # A copied source column orders.status (an order's status, not the quarantine's) changes nothing.
    execute(dwh, "alter table quarantine.orders add column status text default 'paid'")
    assert g4_check(stack) == reference
    # A held order that dds lacks, marked as published, is lost: the status is read.
    held = dwh.query(
        "select order_id, src_id from quarantine.orders q where quarantine_status = 'HELD' and not exists"
        " (select 1 from dds.orders d where d.order_id = q.order_id and d.src_id = q.src_id)"
    )
    assert held, "the shops' bad orders are held"
    execute(dwh, "update quarantine.orders set quarantine_status = 'published' where quarantine_status = 'HELD'")
    lost = g4_check(stack)
    assert not lost["dds.orders: every stable source row is published or quarantined"], lost
    # No status column: every row is held.
    execute(dwh, "alter table quarantine.orders drop column quarantine_status, drop column status")
    no_status = g4_check(stack)
    assert no_status["dds.orders: every stable source row is published or quarantined"], no_status
    assert no_status["quarantine.orders: every held row says why"], no_status


@pytest.mark.slow
def test_the_untouched_starter_fails_the_g4_checker(airflow, stack, tmp_path):
    bag = airflow.install(G4.dags_dir)
    assert bag.import_errors == {} and "load_shops_to_dwh" not in bag.dags
    tick(stack, tmp_path, 3)
    failed = {name for name, passed in g4_check(stack).items() if not passed}
    assert {"dds.customers exists", "dds.orders exists", "quarantine.orders exists"} <= failed
    assert "quarantine.audit_log has a summary per run for every table" in failed


@pytest.mark.slow
def test_a_quarantine_share_over_the_threshold_fails_the_run_loudly(airflow, stack, tmp_path):
    def strict(config: dict) -> None:
        fast_lookback(config)
        config["tables"]["orders"]["audit"].update(max_quarantine_share=0.0, min_rows_for_share=1)

    bag = airflow.install(SOLUTION, pipeline_edit=strict)
    tick(stack, tmp_path, 12)  # ~120 orders per shop: some late, some bad
    run = airflow.run(bag, DAG_ID)
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["orders.audit"] == "failed" and states["orders.publish"] == "upstream_failed"
    assert states["customers.publish"] == "success"
    assert states["orders.audit"] and run.get_task_instance("orders.audit").try_number == 1, "no retries"
    dwh = stack["dwh"]
    assert dwh.query("select count(*) from dds.orders") == [(0,)]
    assert dwh.query("select count(*) from quarantine.orders") == [(0,)]
    outcomes = dwh.query("select src_id, outcome from quarantine.audit_log where table_name = 'orders' order by 1")
    assert ("Istanbul", "halted") in outcomes or ("New-York", "halted") in outcomes


@pytest.mark.slow
def test_a_run_killed_inside_the_publish_transaction_leaves_no_half_state(airflow, stack, tmp_path):
    bag = airflow.install(SOLUTION, pipeline_edit=fast_lookback)
    tick(stack, tmp_path, 3)
    assert airflow.run(bag, DAG_ID).state == "success"
    tick(stack, tmp_path, 6)
    dwh = stack["dwh"]
    state = (
        "select (select count(*) from dds.orders), (select count(*) from quarantine.orders), "
        "(select count(*) from quarantine.orders where status <> 'open')"
    )
    before = dwh.query(state)

    # A SHARE lock lets reads of dds.orders through but blocks writes: the publish of orders has
    # written quarantine.orders (uncommitted) and waits at the merge's first write. Then the whole
    # Airflow process is killed, as an OOM kill would.
    def in_flight() -> None:
        written = dwh.query(
            "select count(*) from pg_locks where relation = 'quarantine.orders'::regclass and mode = 'RowExclusiveLock'"
        )
        assert written[0][0] >= 1, "the killed transaction had written quarantine.orders"

    killed = kill_dag_at_first_write(
        dwh.connect, ["dds.orders"], airflow.dags_dir, DAG_ID, timeout=180, like="%merge_batch%", before_kill=in_flight
    )
    assert killed is not None, "the run never reached the orders merge"
    assert killed.settled, "the killed run's transaction is still open"
    assert dwh.query(state) == before, "neither quarantine nor dds kept any of the killed publish"

    assert airflow.run(bag, DAG_ID).state == "success"
    wap_invariants(stack)
