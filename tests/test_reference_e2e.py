"""G0's reference pipeline end to end: real generators, real Airflow, real Postgres.

The generators tick (inserts, updates inside their window, retention deletes)
while the DAG runs several times; then the warehouse must satisfy the contract
for every source row, re-running a run must change nothing, and failed or
killed runs must heal on the next run with no duplicates and no losses.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import (
    airflow_conn,
    dds_snapshot,
    failed_run_explanation,
    generator_env,
    run_generator,
    start_generators,
    stop_generator,
)

from coursekit.grade import Grade
from coursekit.hostile import HOSTILE_TEXT, LONG_TEXT, kill_dag_at_first_write
from dwh.config import load_config
from dwh.rules import compare_with_source, violations

G0 = Grade.named("G0_Trainee")
TABLES = ["customers", "products", "orders"]
SHOPS = {"shop-1": "New-York", "shop-2": "Istanbul"}
# Test timing: ticks every second, updates up to 8 s back, retention 24 s.
FAST = {
    "TICK_INTERVAL_SEC": 1,
    "UPDATE_NOT_OLDER_THAN_SEC": 8,
    "DELETE_OLDER_THAN_SEC": 24,
    "STOP_GENERATOR_AFTER_SEC": 0,
}
LOOKBACK_SEC = 20  # covers the 8 s update depth + ~6 s between test runs + margin


def fast_lookback(config: dict) -> None:
    config["lookback_sec"] = LOOKBACK_SEC


@pytest.fixture
def stack(g0_databases):
    """G0's DAGs wired to three fresh test databases."""
    return g0_databases


def tick(stack, tmp_path: Path, ticks: int) -> None:
    """Let both G0 generators run `ticks` ticks and exit."""
    for shop in SHOPS:
        env = generator_env(G0, shop, stack[shop], **FAST)
        run_generator(G0.generator_config, env, tmp_path / shop, "--max-ticks", str(ticks))


def assert_contract(stack, dags_dir: Path, shops: dict[str, str] = SHOPS) -> None:
    """Every source row (generators stopped: all are stable) is current in dds; all rules hold."""
    config = load_config(dags_dir / "pipeline.yaml")
    stable_before = datetime.now(UTC) + timedelta(minutes=1)
    with closing(stack["dwh"].connect()) as dwh:
        for name, table in config.tables.items():
            broken = {rule: rows for rule, rows in violations(dwh, table).items() if rows}
            assert broken == {}, f"dds.{name} breaks the contract: {broken}"
            for shop, src_id in shops.items():
                with closing(stack[shop].connect()) as src:
                    result = compare_with_source(src, dwh, table, src_id, stable_before)
                assert result.source_rows > 0, f"{name}@{src_id}: the test generated nothing"
                assert result.ok, f"{name}@{src_id}: missing {result.missing[:10]}, different {result.different[:10]}"


@pytest.mark.slow
def test_live_generators_and_repeated_runs_keep_the_contract(airflow, stack, tmp_path):
    bag = airflow.install(G0.dags_dir, pipeline_edit=fast_lookback)
    generators = start_generators(G0, stack, SHOPS, tmp_path, **FAST)
    try:
        for _ in range(6):  # runs interleaved with ~30 s of ticks: inserts, updates, deletes
            assert airflow.run(bag, "load_shops_to_dwh").state == "success"
            time.sleep(3)
    finally:
        for process in generators:
            stop_generator(process)
    last = airflow.run(bag, "load_shops_to_dwh")
    assert last.state == "success"
    assert_contract(stack, airflow.dags_dir)

    dwh = stack["dwh"]
    versions = dwh.query(
        "select count(*) from (select 1 from dds.orders group by order_id, src_id having count(*) > 1) v"
    )
    assert versions[0][0] > 0, "updates in the source became new versions"
    (first_source_id,) = stack["shop-1"].query("select min(order_id) from orders")[0]
    assert first_source_id > 1, "retention deleted the oldest source rows"
    retained = dwh.query(
        "select count(*) from dds.orders where src_id = 'New-York' and order_id < %s"
        " and eff_to_dttm = '9999-12-31 23:59:59+00'",
        (first_source_id,),
    )
    assert retained[0][0] > 0, "rows deleted by retention stay current in dds (history, not business deletes)"

    before = dds_snapshot(dwh, TABLES)
    again = airflow.run(bag, "load_shops_to_dwh", again=last)
    assert again.state == "success" and again.run_id == last.run_id
    assert dds_snapshot(dwh, TABLES) == before, "re-running the last run changed dds"


@pytest.mark.slow
def test_a_run_failing_after_some_tables_heals_on_the_next_run(airflow, stack, tmp_path):
    bag = airflow.install(G0.dags_dir, pipeline_edit=fast_lookback)
    tick(stack, tmp_path, 3)
    shop2 = stack["shop-2"]
    shop2.query("alter table orders rename to orders_away")  # shop 2's orders vanish mid-life
    failed = airflow.run(bag, "load_shops_to_dwh")
    assert failed.state == "failed"
    # `assert run.state == "success"` failing would name the failed task and its error (conftest)
    explanation = failed_run_explanation(failed.state, "success")
    assert 'orders.extract_istanbul: UndefinedTable: relation "orders" does not exist' in explanation
    dwh = stack["dwh"]
    assert dwh.query("select count(*) from dds.customers")[0][0] > 0, "other tables were loaded"
    assert dwh.query("select count(*) from dds.orders")[0][0] == 0, "the failed table was not half-loaded"
    shop2.query("alter table orders_away rename to orders")
    tick(stack, tmp_path, 2)
    assert airflow.run(bag, "load_shops_to_dwh").state == "success"
    assert_contract(stack, airflow.dags_dir)


@pytest.mark.slow
def test_a_run_killed_during_a_merge_leaves_no_half_state(airflow, stack, tmp_path):
    bag = airflow.install(G0.dags_dir, pipeline_edit=fast_lookback)
    tick(stack, tmp_path, 3)
    assert airflow.run(bag, "load_shops_to_dwh").state == "success"
    tick(stack, tmp_path, 3)
    dwh = stack["dwh"]
    orders_before = dwh.query("select count(*) from dds.orders")[0][0]

    # A SHARE lock lets every read of dds.orders through but blocks writes: the next
    # run's merge of orders stops at its first write, half-way through its
    # transaction. Then the whole Airflow process is killed, as an OOM kill would;
    # the killed client's backend finishes its statement, cannot answer, and rolls back.
    killed = kill_dag_at_first_write(
        dwh.connect, ["dds.orders"], airflow.dags_dir, "load_shops_to_dwh", timeout=120, like="%merge_batch%"
    )
    assert killed is not None, "the run never reached the orders merge"
    assert killed.settled, "the killed run's transaction is still open"
    assert dwh.query("select count(*) from dds.orders")[0][0] == orders_before, "no half-merged orders"

    assert airflow.run(bag, "load_shops_to_dwh").state == "success"
    assert_contract(stack, airflow.dags_dir)


@pytest.mark.slow
def test_hostile_strings_arrive_byte_exact(airflow, stack, tmp_path):
    hostile = [*HOSTILE_TEXT, LONG_TEXT]

    bag = airflow.install(G0.dags_dir)
    tick(stack, tmp_path, 1)
    with closing(stack["shop-1"].connect()) as conn, conn, conn.cursor() as cur:
        cur.executemany(
            "insert into customers (first_name, last_name, address, created_at) values (%s, %s, %s, now())",
            [(text, text[::-1], text) for text in hostile],
        )
    assert airflow.run(bag, "load_shops_to_dwh").state == "success"
    stored = stack["dwh"].query(
        "select first_name, last_name, address from dds.customers where src_id = 'New-York' and first_name = any(%s)"
        " order by customer_id",
        (hostile,),
    )
    assert stored == [(text, text[::-1], text) for text in hostile]


@pytest.mark.slow
def test_a_fourth_table_and_a_third_shop_need_only_config(airflow, stack, pg_servers, tmp_path):
    generator_config = json.loads(G0.generator_config.read_text())
    generator_config["tables"]["suppliers"] = {
        "id_column": "supplier_id",
        "insert_rows_per_tick": 2,
        "update_rows_per_tick": 1,
        "columns": {
            "company": {"type": "text", "provider": "company"},
            "country": {"type": "text", "provider": "country"},
            "rating": {"type": "smallint", "provider": "random_int", "params": {"min": 1, "max": 5}},
        },
    }
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(generator_config))

    shop3_server = pg_servers["pg-shop-2"]
    shop3_server.create_database("shop3_for_test")
    from support import Database

    stack["shop-3"] = Database(shop3_server, "shop3_for_test")
    os.environ["AIRFLOW_CONN_SHOP_3_CONN"] = airflow_conn(stack["shop-3"])
    try:

        def extend(config: dict) -> None:
            config["sources"].append({"src_id": "Tokyo", "conn_id": "shop_3_conn"})
            config["tables"]["suppliers"] = {
                "key": "supplier_id",
                "columns": {
                    "supplier_id": "bigint",
                    "company": "text",
                    "country": "text",
                    "rating": "smallint",
                    "created_at": "timestamptz",
                },
            }

        bag = airflow.install(G0.dags_dir, pipeline_edit=extend)
        assert bag.import_errors == {}
        assert "suppliers.extract_tokyo" in bag.get_dag("load_shops_to_dwh").task_ids
        for shop in ("shop-1", "shop-2", "shop-3"):
            env = generator_env(G0, "shop-2" if shop == "shop-3" else shop, stack[shop], **FAST)
            if shop == "shop-3":
                env.update(CITY_NAME="Tokyo", FAKER_LOCALE="ja_JP", GENERATOR_SEED="303")
            run_generator(config_path, env, tmp_path / shop, "--max-ticks", "3")
        assert airflow.run(bag, "load_shops_to_dwh").state == "success"
        assert_contract(stack, airflow.dags_dir, shops={**SHOPS, "shop-3": "Tokyo"})
        by_shop = stack["dwh"].query("select src_id, count(*) from dds.suppliers group by src_id order by src_id")
        assert [src for src, _ in by_shop] == ["Istanbul", "New-York", "Tokyo"]
    finally:
        del os.environ["AIRFLOW_CONN_SHOP_3_CONN"]
        shop3_server.drop_database("shop3_for_test")
