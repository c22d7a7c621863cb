"""The grader's fixtures, run for real: an independent correct solution and its wrong variants.

`tests/solutions/independent/load_shops_to_dwh.py` is a second correct G3 solution
(G2 with `KEEP_HISTORY = False`), written without `coursekit`;
`tests/solutions/mutations.py` derives realistic wrong solutions from it. Here,
with real generators, real Airflow (dag.test) and embedded Postgres, the correct
one keeps every warehouse rule through live updates, retention deletes,
re-runs and hostile values, and every wrong one still parses and runs (only the
f-string one crashes, and only on a batch with a quote). That the grader tells
them apart is the grader's own tests' job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg2 import sql
from solutions.mutations import INDEPENDENT, MUTATIONS, SYMPTOMS, apply, g2_correct
from solutions.warehouse import SHOPS, TABLES, contract_breaks, rows, source_mismatches
from support import Database, airflow_conn, dds_snapshot, generator_env, run_generator

from coursekit.grade import Grade
from coursekit.hostile import HOSTILE_TEXT, kill_dag_at_first_write
from dwh.contract import OPEN_END

G3 = Grade.named("G3_Middle")
DAG_ID = "load_shops_to_dwh"
LATE = timedelta(seconds=0.5)  # a row committing after a newer one (ticks are 1 s apart)
# Ticks every second, updates up to 8 s back, retention after 14 s: half a minute shows all three.
FAST = {"TICK_INTERVAL_SEC": 1, "UPDATE_NOT_OLDER_THAN_SEC": 8, "DELETE_OLDER_THAN_SEC": 14}
HOSTILE = HOSTILE_TEXT


def install(airflow, tmp_path: Path, source: str, name: str = "dags"):
    """A dags folder holding only `source` as load_shops_to_dwh.py, installed; returns its DagBag."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{DAG_ID}.py").write_text(source, encoding="utf-8")
    bag = airflow.install(folder)
    assert bag.import_errors == {}, bag.import_errors
    return bag


def tick(stack, tmp_path: Path, ticks: int, **overrides: object) -> None:
    """Both shops' real generators run `ticks` ticks (creating their tables on the first) and exit."""
    for shop in SHOPS:
        env = generator_env(G3, shop, stack[shop], **{**FAST, **overrides})
        run_generator(G3.generator_config, env, tmp_path / "logs" / shop, "--max-ticks", str(ticks))


def insert_hostile_rows(shop_db) -> None:
    """Per table: one row per hostile string in every text column, one row of NULLs in every nullable column."""
    texts = [(s, s[::-1]) for s in HOSTILE]
    with closing(shop_db.connect()) as conn, conn, conn.cursor() as cur:
        cur.executemany(
            "insert into customers (first_name, last_name, email, phone, address, birth_date, created_at)"
            " values (%s, %s, %s, %s, %s, %s, now() - interval '0.123456 second')",
            [(a, b, a, b, a, date(1900, 1, 1)) for a, b in texts]
            + [(None, None, None, None, None, None)]
            + [("Ayşe", None, None, None, None, date(2008, 2, 29))],
        )
        cur.executemany(
            "insert into products (name, category, price, currency, description, created_at)"
            " values (%s, %s, %s, %s, %s, now() - interval '1.999999 second')",
            [(a, b, Decimal("12345678.91"), "TRY", a) for a, b in texts]
            + [(None, None, None, None, None), ("x", "y", Decimal("0.10"), None, None)],
        )
        cur.executemany(
            "insert into orders (customer_id, product_id, quantity, status, comment, created_at)"
            " values (%s, %s, %s, %s, %s, now())",
            [(1, 1, 2**31 - 1, a, b) for a, b in texts] + [(None, None, None, None, None)],
        )


# -- one short shop history, played against every solution -----------------------------------------


@dataclass
class Scenario:
    """Each shop's database before and after a stretch of its life, and the warehouse under test.

    The solutions only read the shops, so the same two states serve every test: run 1
    reads `before`, run 2 reads `after` (the connection is re-pointed between runs).
    """

    before: dict[str, Database]
    after: dict[str, Database]
    retired: dict[str, dict[str, list[int]]]  # table -> src_id -> keys retention deleted in `after`
    dwh: Database | None = None

    def use(self, stage: str, monkeypatch) -> None:
        for shop, db in getattr(self, stage).items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{shop.replace('-', '_').upper()}_CONN", airflow_conn(db))
        monkeypatch.setenv("AIRFLOW_CONN_DWH_CONN", airflow_conn(self.dwh))

    def stack(self) -> dict[str, Database]:
        return {**self.after, "dwh": self.dwh}


def copy_database(template: Database, name: str) -> Database:
    with closing(template.server.connect("postgres")) as conn:
        conn.autocommit = True
        conn.cursor().execute(
            sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template.name))
        )
    return Database(template.server, name)


@pytest.fixture(scope="module")
def scenario_shops(pg_servers, tmp_path_factory) -> Iterator[Scenario]:
    """`before`: 2 generator ticks. `after`: 2 more ticks (inserts; updates of `before`'s rows), then the
    events a warehouse meets: a row that commits late (created_at below `before`'s newest), hostile
    strings and NULLs, changes to and from NULL, the 3 oldest rows of each table deleted by retention.
    Shop 2's clock runs 15 minutes behind shop 1's, so only per-shop watermarks see all of it."""
    logs = tmp_path_factory.mktemp("scenario")
    before = {shop: Database(pg_servers[f"pg-{shop}"], f"scenario_{shop[-1]}_before") for shop in SHOPS}
    for db in before.values():
        db.server.create_database(db.name)
    tick(before, logs, 2, UPDATE_NOT_OLDER_THAN_SEC=120, DELETE_OLDER_THAN_SEC=0)
    after = {shop: copy_database(db, f"scenario_{shop[-1]}_after") for shop, db in before.items()}
    tick(after, logs, 2, UPDATE_NOT_OLDER_THAN_SEC=120, DELETE_OLDER_THAN_SEC=0)
    retired: dict[str, dict[str, list[int]]] = {table: {} for table in TABLES}
    for shop, db in after.items():
        newest = {
            t: rows(before[shop], sql.SQL("select max(created_at) from {}").format(sql.Identifier(t)))[0][0]
            for t in TABLES
        }
        db.query("insert into customers (first_name, created_at) values ('late', %s)", (newest["customers"] - LATE,))
        db.query("insert into products (name, created_at) values ('late', %s)", (newest["products"] - LATE,))
        db.query("insert into orders (status, created_at) values ('late', %s)", (newest["orders"] - LATE,))
        insert_hostile_rows(db)
        for table, (key, _) in TABLES.items():  # retention deletes the first tick (rows older than the late one)
            gone = rows(
                db,
                sql.SQL("delete from {t} where created_at = (select min(created_at) from {t}) returning {k}").format(
                    t=sql.Identifier(table), k=sql.Identifier(key)
                ),
            )
            retired[table][SHOPS[shop]] = sorted(k for (k,) in gone)
        # a change to NULL and one from NULL, on rows run 1 loads
        db.query(
            "update orders set comment = null where order_id ="
            " (select min(order_id) from orders where created_at <= %s and comment is not null)",
            (newest["orders"],),
        )
        db.query(
            "update orders set comment = 'was null' where order_id ="
            " (select min(order_id) from orders where created_at <= %s and comment is null)",
            (newest["orders"],),
        )
    for db in (before["shop-2"], after["shop-2"]):
        for table in TABLES:
            db.query(
                sql.SQL("update {} set created_at = created_at - interval '15 minutes'").format(sql.Identifier(table))
            )
    yield Scenario(before, after, retired)
    for db in (*before.values(), *after.values()):
        db.server.drop_database(db.name)


@pytest.fixture
def scenario(scenario_shops, dwh_db) -> Scenario:
    return replace(scenario_shops, dwh=dwh_db)


@dataclass
class Outcome:
    """What one solution did with the scenario: run states and what the warehouse shows."""

    states: list[str]
    broken: set[str] = field(default_factory=set)  # rules of contract_breaks, after run 2
    mismatches: dict[str, list] = field(default_factory=dict)  # table@src_id -> rows unlike the source
    retired_missing: list[tuple] = field(default_factory=list)  # retention-deleted keys gone from dds
    versioned_keys: int = 0  # keys with more than one version
    identical: tuple[int, int] = (0, 0)  # consecutive identical versions: (with a NULL, without)
    rerun_changed: bool = False
    broken_after_rerun: set[str] = field(default_factory=set)


def identical_versions(dwh) -> tuple[int, int]:
    """Consecutive versions with equal values (NULL-safe): how many hold a NULL, how many do not."""
    with_null = without = 0
    for table, (key, columns) in TABLES.items():
        values = [c for c in columns if c != key]
        found = rows(
            dwh,
            sql.SQL(
                "select ({nulls}) from {t} v join {t} n on n.{key} = v.{key} and n.src_id = v.src_id"
                " and n.eff_from_dttm = v.eff_to_dttm + interval '1 second'"
                " where ({v_values}) is not distinct from ({n_values})"
            ).format(
                t=sql.Identifier("dds", table),
                key=sql.Identifier(key),
                nulls=sql.SQL(" or ").join(sql.SQL("{} is null").format(sql.Identifier("v", c)) for c in values),
                v_values=sql.SQL(", ").join(sql.Identifier("v", c) for c in values),
                n_values=sql.SQL(", ").join(sql.Identifier("n", c) for c in values),
            ),
        )
        with_null += sum(1 for (has_null,) in found if has_null)
        without += sum(1 for (has_null,) in found if not has_null)
    return with_null, without


def play(
    airflow, tmp_path: Path, source: str, scenario: Scenario, monkeypatch, history: bool, rerun: bool = True
) -> Outcome:
    """Run 1 on `before`, run 2 on `after`, then (if `rerun`) re-run run 2; observe the warehouse in between."""
    bag = install(airflow, tmp_path, source)
    scenario.use("before", monkeypatch)
    first = airflow.run(bag, DAG_ID)
    scenario.use("after", monkeypatch)
    second = airflow.run(bag, DAG_ID)
    dwh = scenario.dwh
    outcome = Outcome(states=[first.state, second.state])
    if first.state != "success":
        return outcome
    outcome.broken = {rule.split(": ", 1)[1] for rule in contract_breaks(dwh, history)}
    outcome.mismatches = source_mismatches(scenario.stack(), history)
    current = sql.SQL(" and eff_to_dttm = {}").format(sql.Literal(OPEN_END)) if history else sql.SQL("")
    for table, (key, _) in TABLES.items():
        for src_id, keys in scenario.retired[table].items():
            kept = rows(
                dwh,
                sql.SQL("select {k} from {t} where src_id = %s and {k} = any(%s){current}").format(
                    k=sql.Identifier(key), t=sql.Identifier("dds", table), current=current
                ),
                (src_id, keys),
            )
            outcome.retired_missing += [(table, src_id, k) for k in sorted(set(keys) - {k for (k,) in kept})]
    if history:
        outcome.versioned_keys = sum(
            rows(
                dwh,
                sql.SQL("select count(*) from (select 1 from {} group by {}, src_id having count(*) > 1) v").format(
                    sql.Identifier("dds", table), sql.Identifier(key)
                ),
            )[0][0]
            for table, (key, _) in TABLES.items()
        )
        outcome.identical = identical_versions(dwh)
    if not rerun:
        return outcome
    before = dds_snapshot(dwh, list(TABLES))
    outcome.states.append(airflow.run(bag, DAG_ID, again=second).state)
    outcome.rerun_changed = dds_snapshot(dwh, list(TABLES)) != before
    outcome.broken_after_rerun = {rule.split(": ", 1)[1] for rule in contract_breaks(dwh, history)}
    return outcome


RETIRED = 2 * (3 + 1 + 10)  # one tick of customers, products and orders in each shop
BOTH_SHOPS_ALL_TABLES = {f"{t}@{s}" for t in TABLES for s in SHOPS.values()}


def ran(o: Outcome) -> bool:
    return all(state == "success" for state in o.states)


def is_correct(o: Outcome, history: bool = True) -> bool:
    return (
        o.states == ["success"] * 3
        and not o.broken
        and not o.mismatches
        and not o.retired_missing
        and not o.rerun_changed
        and not o.broken_after_rerun
        and (o.versioned_keys > 0 or not history)
    )


RERUN_SHOWS = {"duplicates_on_rerun", "g2_duplicates_on_rerun", "non_atomic_merge"}  # the others skip the re-run
EXPECTED: dict[str, Callable[[Outcome], bool]] = {
    # only a kill in the middle of a merge shows non_atomic_merge (see the test below)
    "non_atomic_merge": is_correct,
    "overwrite_in_place": lambda o: ran(o) and not o.broken and not o.mismatches and o.versioned_keys == 0,
    "version_per_reread": lambda o: "no consecutive identical versions" in o.broken and o.identical[1] > 0,
    "null_churn": lambda o: ran(o) and not o.mismatches and o.identical[0] > 0 and o.identical[1] == 0,
    "no_lookback": lambda o: ran(o) and {"orders@New-York", "orders@Istanbul"} <= set(o.mismatches),
    "one_shop_only": lambda o: set(o.mismatches) == {f"{t}@Istanbul" for t in TABLES},
    "float_and_timezone": lambda o: ran(o) and set(o.mismatches) == BOTH_SHOPS_ALL_TABLES,
    "overlap_one_second": lambda o: o.broken == {"contiguous versions"} and not o.mismatches,
    "duplicates_on_rerun": lambda o: (
        ran(o)
        and not o.broken
        and not o.mismatches
        and o.rerun_changed
        and "one current version per key" in o.broken_after_rerun
    ),
    "deletes_retention_history": lambda o: ran(o) and not o.mismatches and len(o.retired_missing) == RETIRED,
    "one_watermark": lambda o: ran(o) and set(o.mismatches) == {f"{t}@Istanbul" for t in TABLES},
    "crashes_on_some_batches": lambda o: o.states[:2] == ["success", "failed"],
    "g2_duplicates_on_rerun": lambda o: (
        ran(o) and not o.broken and o.rerun_changed and o.broken_after_rerun == {"one row per key"}
    ),
    "g2_no_lookback": lambda o: ran(o) and {"orders@New-York", "orders@Istanbul"} <= set(o.mismatches),
    "g2_one_shop_only": lambda o: set(o.mismatches) == {f"{t}@Istanbul" for t in TABLES},
    "g2_deletes_retention_history": lambda o: ran(o) and not o.mismatches and len(o.retired_missing) == RETIRED,
}


def test_every_mutation_has_an_expected_symptom_and_the_correct_solution_stands_alone():
    source = INDEPENDENT.read_text(encoding="utf-8")
    assert "import coursekit" not in source and "from coursekit" not in source
    assert source.count("LOOKBACK_SEC = 420\n") == 1 and source.count("KEEP_HISTORY: bool = True") == 1
    assert set(EXPECTED) == set(MUTATIONS) == set(SYMPTOMS)
    for name in MUTATIONS:
        assert apply(name) != source


@pytest.mark.slow
@pytest.mark.parametrize("history", [True, False], ids=["g3", "g2"])
def test_the_independent_solution_gets_the_scenario_right(airflow, scenario, monkeypatch, tmp_path, history):
    source = INDEPENDENT.read_text(encoding="utf-8") if history else g2_correct()
    outcome = play(airflow, tmp_path, source, scenario, monkeypatch, history)
    assert is_correct(outcome, history), outcome
    dwh = scenario.dwh
    stored = rows(
        dwh,
        sql.SQL("select first_name from dds.customers where src_id = 'Istanbul' and first_name = any(%s)"),
        (HOSTILE,),
    )
    assert sorted(name for (name,) in stored) == sorted(HOSTILE), "hostile strings arrive byte for byte"
    types = dict(
        rows(
            dwh,
            sql.SQL(
                "select table_name || '.' || column_name, data_type from information_schema.columns"
                " where table_schema = 'dds' and column_name in ('price', 'birth_date', 'created_at')"
            ),
        )
    )
    assert types == {
        "customers.birth_date": "date",
        "customers.created_at": "timestamp with time zone",
        "products.price": "numeric",
        "products.created_at": "timestamp with time zone",
        "orders.created_at": "timestamp with time zone",
    }
    if history:
        assert outcome.identical == (0, 0)
        moved = rows(dwh, sql.SQL("select count(*) from dds.orders where comment = 'was null'"))
        assert moved == [(2,)], "a change from NULL opened a new version in each shop"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_wrong_solution_runs_and_shows_its_mistake(airflow, scenario, monkeypatch, tmp_path, name):
    history, rerun = not name.startswith("g2_"), name in RERUN_SHOWS
    outcome = play(airflow, tmp_path, apply(name), scenario, monkeypatch, history, rerun)
    assert EXPECTED[name](outcome), f"{name}: {MUTATIONS[name][0]}\n{sorted(outcome.mismatches)}\n{outcome}"


CLOSING_ORDERS = '%update "dds"."orders" as c set eff_to_dttm%'


def kill_during_orders_merge(airflow, dwh: Database) -> None:
    """Run the DAG in a child process and SIGKILL it while its orders merge waits to close versions.

    A SHARE lock lets every read of dds.orders through but blocks writes, so the merge
    stops at its first write; then the whole process dies, as on an OOM kill; the
    orphaned backend gets its lock, finishes its statement, finds no client and ends.
    """
    killed = kill_dag_at_first_write(
        dwh.connect, ["dds.orders"], airflow.dags_dir, DAG_ID, timeout=240, like=CLOSING_ORDERS
    )
    assert killed is not None, "the run never reached the orders merge"
    assert killed.settled, "the killed run's backend is still busy"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["independent", "non_atomic_merge"])
def test_a_merge_killed_halfway(airflow, scenario, monkeypatch, tmp_path, name):
    """The correct merge rolls back whole and the next run completes it; the autocommit one leaves keys
    with no current version, and every later run then fails on the primary key."""
    bag = install(airflow, tmp_path, INDEPENDENT.read_text(encoding="utf-8") if name == "independent" else apply(name))
    scenario.use("before", monkeypatch)
    assert airflow.run(bag, DAG_ID).state == "success"
    scenario.use("after", monkeypatch)
    dwh = scenario.dwh
    orders_before = dds_snapshot(dwh, ["orders"])
    kill_during_orders_merge(airflow, dwh)
    if name == "independent":
        assert dds_snapshot(dwh, ["orders"]) == orders_before, "a killed merge left no trace in dds.orders"
        assert airflow.run(bag, DAG_ID).state == "success"
        assert contract_breaks(dwh) == {}
        assert source_mismatches(scenario.stack()) == {}, "the next run completed the work"
    else:
        assert "orders: one current version per key" in contract_breaks(dwh)
        assert airflow.run(bag, DAG_ID).state == "failed"
