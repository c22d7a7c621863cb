"""Every checker proven both ways, as rustlings proves its exercises.

Real generators fill two shop databases; the reference pipeline (real Airflow,
dag.test) loads them the way each grade asks. The grade's checker must pass on
that reference and fail, naming the right checks, on the untouched starter and
on deliberately broken warehouses.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg2 import sql
from support import generator_env, run_generator

from coursekit.checker import registry
from coursekit.checker.__main__ import PLANS, decidable_since
from coursekit.checker.checks import COMMIT_SLACK_SEC, FAIL, WAIT, CheckResult, Context
from coursekit.checker.stack import GradeStack
from coursekit.grade import Grade

G0 = Grade.named("G0_Trainee")
SHOPS = ("shop-1", "shop-2")
TICKS = {
    "TICK_INTERVAL_SEC": 1,
    "UPDATE_NOT_OLDER_THAN_SEC": 30,
    "DELETE_OLDER_THAN_SEC": 0,
    "STOP_GENERATOR_AFTER_SEC": 0,
}


def tick(dbs: dict, tmp_path: Path, ticks: int = 4) -> None:
    for shop in SHOPS:
        run_generator(
            G0.generator_config, generator_env(G0, shop, dbs[shop], **TICKS), tmp_path / shop, "--max-ticks", str(ticks)
        )


def big_lookback(config: dict) -> None:
    config["lookback_sec"] = 3600


def load(airflow, dbs: dict, tmp_path: Path, edit=big_lookback, dags_dir: Path = G0.dags_dir) -> None:
    """Two reference runs with shop activity (inserts and updates) before each."""
    bag = airflow.install(dags_dir, pipeline_edit=edit)
    for _ in range(2):
        tick(dbs, tmp_path)
        assert airflow.run(bag, "load_shops_to_dwh").state == "success"


def check(
    grade: str,
    dbs: dict,
    dwh_name: str | None = None,
    update_window: int | None = None,
    stable_before: datetime | None = None,
) -> dict[str, str]:
    """Run the grade's checks against the test databases; returns check name -> PASS / FAIL / WAIT."""
    results = check_results(grade, dbs, dwh_name, update_window, stable_before)
    return {r.name: str(r.verdict) for r in results}


def stack_of_test_databases(grade: str, dbs: dict, dwh_name: str | None = None) -> GradeStack:
    """The grade's stack facts, pointed at the test's databases."""
    stack = GradeStack(Grade.named(grade))
    dwh = dbs["dwh"]
    stack.dwh_port = dwh.port
    stack.dwh_env = {**stack.dwh_env, "POSTGRES_DB": dwh_name or dwh.name}
    stack.shops = [
        replace(s, port=dbs[s.name].port, env={**s.env, "POSTGRES_DB": dbs[s.name].name}) for s in stack.shops
    ]
    return stack


def check_results(
    grade: str,
    dbs: dict,
    dwh_name: str | None = None,
    update_window: int | None = None,
    stable_before: datetime | None = None,
    prepare: Callable[[Context], None] | None = None,
) -> list[CheckResult]:
    """The grade's checks against the test databases; `prepare` may fill in what the checker learns from
    Airflow (runs, a re-run) before they run."""
    stack = stack_of_test_databases(grade, dbs, dwh_name)
    if update_window is not None:  # the test's generators update rows only this far back
        stack.shops = [replace(s, update_window_sec=update_window) for s in stack.shops]
    plan, scd2 = PLANS[grade]
    later = stable_before or datetime.now(UTC) + timedelta(minutes=1)  # generators stopped: every row is stable
    with ExitStack() as stack_of:
        dwh_conn = stack_of.enter_context(stack.connect_dwh())
        shops = {s.name: stack_of.enter_context(stack.connect_shop(s)) for s in stack.shops}
        ctx = Context(stack=stack, dwh=dwh_conn, shops=shops, stable_before={s: later for s in SHOPS}, scd2=scd2)
        if prepare is not None:
            prepare(ctx)
        results = [result for step in plan for result in step(ctx)]
    assert results, "a checker must check something"
    drifted = registry.undeclared(grade, "live", results)
    assert not drifted, f"rows no declaration names (registry.py: a check's Line and what it yields differ): {drifted}"
    return results


def failing(results: dict[str, str]) -> set[str]:
    return {name for name, verdict in results.items() if verdict == FAIL}


def waiting(results: dict[str, str]) -> set[str]:
    return {name for name, verdict in results.items() if verdict == WAIT}


# Without Airflow's REST API (the tests call the checks directly) the run checks cannot know the runs.
RUN_CHECKS = {
    "the last 10 runs of the load DAG succeeded",
    "runs of the load DAG never overlap",
    "re-running a finished run changes nothing",
}


@pytest.fixture
def dbs(g0_databases):
    return g0_databases


def copy_database(db, name: str) -> str:
    """CREATE DATABASE ... TEMPLATE: a private copy of the reference warehouse to break."""
    conn = db.server.connect("postgres")
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        cur.execute(f'create database "{name}" template "{db.name}"')
    return name


def mutate(db, database: str, statements: list[str]) -> None:
    with closing(db.server.connect(database)) as conn, conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


# Broken warehouses the G3 checker must catch: statements that break a loaded reference, and
# the checks that must fail on it (unrelated checks must not).
BROKEN = {
    "double-loaded batch": [
        "alter table dds.orders drop constraint orders_pkey",
        "drop index dds.orders_current_uq",
        "insert into dds.orders select * from dds.orders where src_id = 'New-York'",
    ],
    "missing shop": ["delete from dds.customers where src_id = 'Istanbul'"],
    "overlapping interval": [
        "update dds.products p set eff_to_dttm = p.eff_to_dttm + interval '10 seconds'"
        " where eff_to_dttm <> '9999-12-31 23:59:59+00'"
    ],
    "lost update": [
        "delete from dds.orders where eff_to_dttm = '9999-12-31 23:59:59+00'"
        " and (order_id, src_id) in (select order_id, src_id from dds.orders group by 1, 2 having count(*) > 1)",
        "update dds.orders o set eff_to_dttm = '9999-12-31 23:59:59+00' where eff_from_dttm ="
        " (select max(eff_from_dttm) from dds.orders x where x.order_id = o.order_id and x.src_id = o.src_id)",
    ],
    "missing table": ["drop table dds.products"],
}
CAUGHT_BY = {
    "double-loaded batch": {"dds.orders: exactly one current version per key"},
    "missing shop": {"dds.customers has rows of every shop", "dds.customers: every source row is loaded"},
    "overlapping interval": {"dds.products: no overlap: next eff_from = previous eff_to + 1 second"},
    "lost update": {"dds.orders: current values equal the source"},
    "missing table": {"dds.products exists"},
}


@pytest.mark.slow
def test_g3_and_g0_checkers_pass_on_the_reference_and_catch_broken_warehouses(airflow, dbs, tmp_path):
    load(airflow, dbs, tmp_path)
    for grade in ("G3_Middle", "G0_Trainee"):
        results = check(grade, dbs)
        assert failing(results) == set(), f"{grade} checker fails the reference: {failing(results)}"
        assert waiting(results) == RUN_CHECKS, f"{grade}: only the run checks may wait here"

    # Nothing old enough to compare yet: the comparisons wait, they do not pass on zero rows.
    early = check("G3_Middle", dbs, stable_before=datetime.now(UTC) - timedelta(days=1))
    assert early["dds.orders: every source row is loaded"] == WAIT
    assert early["dds.orders: current values equal the source"] == WAIT

    dwh = dbs["dwh"]
    for number, (variant, statements) in enumerate(BROKEN.items()):
        database = copy_database(dwh, f"{dwh.name}_broken_{number}")
        try:
            mutate(dwh, database, statements)
            failed = failing(check("G3_Middle", dbs, database))
        finally:
            dwh.server.drop_database(database)
        assert CAUGHT_BY[variant] <= failed, f"{variant}: expected {CAUGHT_BY[variant]} among failures {failed}"
        unrelated = {name for name in failed if not any(t in name for t in ("orders", "products", "customers"))}
        assert not unrelated, f"{variant}: unexpected failures {unrelated}"

    # History overwritten instead of kept: decidable once the warehouse is older than the
    # shops' update window plus the margin (the test's windows are tiny, its data seconds old).
    database = copy_database(dwh, f"{dwh.name}_no_history")
    try:
        mutate(dwh, database, ["delete from dds.orders where eff_to_dttm <> '9999-12-31 23:59:59+00'"])
        young = check("G3_Middle", dbs, database)
        import coursekit.checker.history_checks as checks_module  # the module that reads the margin

        margin, checks_module.HISTORY_MARGIN_SEC = checks_module.HISTORY_MARGIN_SEC, 0
        try:
            old = check("G3_Middle", dbs, database, update_window=1)
        finally:
            checks_module.HISTORY_MARGIN_SEC = margin
    finally:
        dwh.server.drop_database(database)
    assert young["dds.orders: updated keys have more than one version"] == WAIT, "too early to tell: neither way"
    assert "dds.orders: updated keys have more than one version" in failing(old)


def test_the_live_check_waits_for_a_run_late_enough_to_have_rows_of_every_table(dbs, tmp_path):
    """A run that starts within COMMIT_SLACK_SEC of a table's first row has none of its rows to compare
    (the check could only WAIT): the live check waits for a run that starts after that."""
    stack = stack_of_test_databases("G3_Middle", dbs)
    since = datetime.now(UTC)
    with ExitStack() as stack_of:
        shops = {s.name: stack_of.enter_context(stack.connect_shop(s)) for s in stack.shops}
        assert decidable_since(stack, shops, since) == since  # no table yet: nothing to wait for
        tick(dbs, tmp_path, ticks=2)
        firsts = []
        for conn in shops.values():
            with conn.cursor() as cur:
                for table in stack.tables:
                    cur.execute(sql.SQL("select min(created_at) from {}").format(sql.Identifier(table.name)))
                    firsts.append(cur.fetchone()[0])
            conn.rollback()
        assert all(firsts), "the generator wrote a row into every table"
        expected = max(firsts) + timedelta(seconds=COMMIT_SLACK_SEC)
        assert decidable_since(stack, shops, since) == expected > datetime.now(UTC)
        much_later = datetime.now(UTC) + timedelta(hours=1)
        assert decidable_since(stack, shops, much_later) == much_later


def test_a_stack_that_is_not_running_gets_a_clear_message():
    """No database on the grade's ports: exit 2 and say how to start the stack, no traceback."""
    import os
    import subprocess
    import sys

    from coursekit.pg import free_port

    env = {**os.environ, **{v: str(free_port()) for v in ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT")}}
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.checker", "--grade", "G2_Junior", "--no-wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot reach pg-dwh" in result.stdout and "make run GRADE=G2_Junior" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("CANNOT CHECK: cannot reach pg-dwh")
    assert "Traceback" not in result.stdout + result.stderr


OPEN = "9999-12-31 23:59:59+00"


def null_versions(key: int, versions: list[tuple[str, str, str]], created: str = "2099-01-01 00:00:00+00") -> list[str]:
    """Statements adding versions of one customer whose phone and address are NULL.

    Each version is (first_name, eff_from_dttm, eff_to_dttm); created_at lies in the
    future so that the synthetic key (large id) never breaks "ids grow with created_at".
    """
    statements = [
        "drop table if exists tpl",
        f"create temp table tpl as select * from dds.customers where eff_to_dttm = '{OPEN}' limit 1",  # noqa: S608 - constants of this test
    ]
    for first_name, start, end in versions:
        statements += [
            f"update tpl set customer_id = {key}, src_id = 'New-York', phone = null, address = null,"  # noqa: S608
            f" first_name = '{first_name}', created_at = '{created}', eff_from_dttm = '{start}', eff_to_dttm = '{end}'",
            "insert into dds.customers select * from tpl",
        ]
    return statements


T0, T9, T10, T15, T20 = (f"2099-01-01 00:00:{s:02d}+00" for s in (0, 9, 10, 15, 20))
# rule broken only on rows holding NULLs -> (statements, the checks that must fail)
NULL_ROWS_BROKEN = {
    "repeated_versions": (
        null_versions(990001, [("Ann", T0, T9), ("Ann", T10, OPEN)]),
        {"dds.customers: no two consecutive identical versions"},
    ),
    "interval_gaps": (
        null_versions(990002, [("Ann", T0, T9), ("Bob", T20, OPEN)]),
        {"dds.customers: no gap: next eff_from = previous eff_to + 1 second"},
    ),
    "interval_overlaps": (
        null_versions(990003, [("Ann", T0, T15), ("Bob", T10, OPEN)]),
        {"dds.customers: no overlap: next eff_from = previous eff_to + 1 second"},
    ),
    "sub_second": (
        # the reference's columns are timestamptz(0): a learner's plain timestamptz keeps fractions
        [f"alter table dds.customers alter column {c} type timestamptz" for c in ("eff_from_dttm", "eff_to_dttm")]
        + null_versions(990004, [("Ann", T0, "2099-01-01 00:00:09.5+00"), ("Bob", "2099-01-01 00:00:10.5+00", OPEN)]),
        {"dds.customers: eff_from_dttm and eff_to_dttm in whole seconds"},
    ),
    "first_version_start": (
        null_versions(990005, [("Ann", "2099-01-01 00:00:05+00", OPEN)]),
        {"dds.customers: a key's first version starts at its created_at (to the second)"},
    ),
    "interval_order": (
        # the reference forbids it with a CHECK constraint; a learner's table may not
        [
            "do $$ declare c text; begin select conname into c from pg_constraint"
            " where conrelid = 'dds.customers'::regclass and contype = 'c';"
            " execute format('alter table dds.customers drop constraint %I', c); end $$"
        ]
        + null_versions(990006, [("Ann", T10, T0)])
        + null_versions(990006, [("Bob", T20, OPEN)])[2:],
        {"dds.customers: eff_from_dttm <= eff_to_dttm"},
    ),
    "current_version_count": (
        ["drop index dds.customers_current_uq"] + null_versions(990007, [("Ann", T0, OPEN), ("Bob", T10, OPEN)]),
        {"dds.customers: exactly one current version per key"},
    ),
}


@pytest.mark.slow
def test_every_contract_rule_catches_violations_only_on_rows_with_nulls(airflow, dbs, tmp_path):
    """NULL-safety: a rule broken only by versions holding NULLs must still fail (IS DISTINCT FROM, not <>)."""
    load(airflow, dbs, tmp_path)
    dwh = dbs["dwh"]
    assert dwh.query("select count(*) from dds.customers where phone is null")[0][0] > 0, "the data has NULLs"
    for number, (rule, (statements, expected)) in enumerate(NULL_ROWS_BROKEN.items()):
        database = copy_database(dwh, f"{dwh.name}_null_{number}")
        try:
            mutate(dwh, database, statements)
            failed = failing(check("G3_Middle", dbs, database))
        finally:
            dwh.server.drop_database(database)
        assert expected <= failed, f"{rule}: expected {expected} among failures {failed}"
        assert all(name.startswith("dds.customers") for name in failed), f"{rule}: unrelated failures {failed}"


def test_the_verdict_line_and_exit_code_follow_the_worst_check():
    from coursekit.checker.checks import PASS, CheckResult
    from coursekit.checker.report import EXIT_CODES, verdict

    def results(*verdicts: str) -> list[CheckResult]:
        return [CheckResult("item", f"check {n}", v, "e", "f", "hint") for n, v in enumerate(verdicts)]

    assert verdict(results(PASS, PASS))[0] == "DONE"
    assert verdict(results(PASS, WAIT))[0] == "WAIT"
    assert verdict(results(WAIT, FAIL, PASS))[0] == "NOT DONE"
    assert "check 1" in verdict(results(WAIT, FAIL, PASS))[1]
    assert EXIT_CODES == {"DONE": 0, "NOT DONE": 1, "CANNOT CHECK": 2, "WAIT": 3}


def test_a_cannot_check_result_makes_the_verdict_cannot_check():
    from coursekit.checker.checks import CANNOT, PASS, CheckResult
    from coursekit.checker.report import verdict

    results = [CheckResult("i", "a", PASS, "e", "f"), CheckResult("i", "b", CANNOT, "", "two DAGs: x, y")]
    assert verdict(results) == ("CANNOT CHECK", "two DAGs: x, y")


def _facts(folder: Path) -> dict:
    from coursekit.checker.cleanup import inspect

    info = inspect(folder)
    assert not info["import_errors"], info["import_errors"]
    return {d["dag_id"]: d["facts"] for d in info["dags"]}


def test_the_load_dag_is_chosen_by_name_by_being_the_only_one_or_not_at_all(tmp_path):
    """Airflow parses real folders; the choice says why, and is CANNOT CHECK when it cannot tell."""
    import shutil

    from coursekit.checker.pipeline import choose_load

    g1 = _facts(Grade.named("G1_Intern").path / "solution" / "dags")
    choice = choose_load(g1)
    assert (choice.dag_id, choice.pipeline) == ("load_shops_to_dwh", ["load_shops_to_dwh"])
    assert "the expected dag_id" in choice.line() and "cleanup_staging" not in choice.pipeline
    g4 = choose_load(_facts(Grade.named("G4_Senior").path / "solution" / "dags"))
    assert g4.dag_id == "load_shops_to_dwh_wap", "G4's reference name is accepted"
    # Renamed: still the only load (cleanup is Bash-only, the examples never count).
    renamed = tmp_path / "renamed"
    shutil.copytree(Grade.named("G3_Middle").path / "solution" / "dags", renamed)
    dag_file = renamed / "load_shops_to_dwh.py"
    dag_file.write_text(
        dag_file.read_text()
        .replace("def load_shops_to_dwh", "def my_load")
        .replace("\nload_shops_to_dwh()", "\nmy_load()"),
        encoding="utf-8",
    )
    mine = choose_load(_facts(renamed))
    assert mine.dag_id == "my_load" and "the only load in the folder; expected load_shops_to_dwh" in mine.why
    # A second, unrelated DAG: the checker cannot tell which is the load, and says what it found.
    (renamed / "other.py").write_text(
        "import pendulum\nfrom airflow.sdk import dag, task\n\n\n"
        '@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)\n'
        "def daily_report():\n    @task\n    def report() -> None:\n        print('x')\n\n    report()\n\n\n"
        "daily_report()\n",
        encoding="utf-8",
    )
    unclear = choose_load(_facts(renamed))
    assert unclear.ambiguous and unclear.dag_id is None
    assert "my_load" in unclear.why and "daily_report" in unclear.why and "load_shops_to_dwh" in unclear.why
    assert choose_load(_facts(renamed), dag_id="my_load").pipeline == ["my_load"], "--dag-id decides"
    assert choose_load(_facts(renamed), dag_id="nope").ambiguous
    # The untouched starter defines no load: nothing to run (NOT DONE, not CANNOT CHECK).
    starter = choose_load(_facts(Grade.named("G3_Middle").dags_dir))
    assert starter.dag_id is None and not starter.ambiguous


@pytest.mark.parametrize("link", ["asset", "trigger"])
def test_dags_linked_by_assets_or_a_trigger_are_one_load_started_by_its_first_dag(tmp_path, link):
    import shutil

    from coursekit.checker.pipeline import choose_load

    folder = tmp_path / "dags"
    shutil.copytree(Grade.named("G3_Middle").path / "solution" / "dags", folder)
    (folder / "load_shops_to_dwh.py").unlink()
    for dag_file in (Path(__file__).parent / "solutions" / "two_dags").glob("*.py"):
        text = dag_file.read_text(encoding="utf-8").replace('LINK = "asset"', f'LINK = "{link}"')
        (folder / dag_file.name).write_text(text, encoding="utf-8")
    choice = choose_load(_facts(folder))
    assert choice.pipeline == ["stage_shops", "merge_to_dds"] and choice.dag_id == "stage_shops"
    by = "assets" if link == "asset" else "TriggerDagRunOperator"
    assert f"a pipeline of 2 DAGs linked by {by}" in choice.line()
    # Named as expected, the downstream DAG still starts from the pipeline's first DAG.
    text = (folder / "merge_to_dds.py").read_text().replace("def merge_to_dds", "def load_shops_to_dwh")
    text = text.replace("\nmerge_to_dds()", "\nload_shops_to_dwh()")
    (folder / "merge_to_dds.py").write_text(text.replace('trigger_dag_id="merge_to_dds"', ""), encoding="utf-8")
    stage = folder / "stage_shops.py"
    stage.write_text(stage.read_text().replace('trigger_dag_id="merge_to_dds"', 'trigger_dag_id="load_shops_to_dwh"'))
    named = choose_load(_facts(folder))
    assert named.pipeline == ["stage_shops", "load_shops_to_dwh"] and "the expected dag_id" in named.why


def test_runs_of_one_dag_may_not_overlap_but_a_pipelines_dags_may_run_side_by_side():
    from coursekit.checker.checks import PASS, Run, check_runs_never_overlap

    def run(name: str, start: int, end: int) -> Run:
        t = datetime(2026, 1, 1, tzinfo=UTC)
        dag_id, _ = name.split("/")
        return Run(name, "success", t + timedelta(seconds=start), t + timedelta(seconds=end), dag_id=dag_id)

    stage_1, merge_1, stage_2 = run("stage_shops/1", 0, 30), run("merge_to_dds/1", 31, 90), run("stage_shops/2", 60, 95)

    def verdict(runs: list[Run]) -> str:
        ctx = Context(stack=None, dwh=None, shops={}, stable_before={}, scd2=True, runs=runs, max_active_runs=1)
        (result,) = check_runs_never_overlap(ctx)
        return result.verdict

    assert verdict([stage_2, merge_1, stage_1]) == PASS
    assert verdict([run("stage_shops/3", 90, 120), stage_2, merge_1, stage_1]) == FAIL, "stage_shops/2 and /3 overlap"


def test_the_fast_scenarios_late_parent_rows_get_their_parents_in_the_next_tick(dbs, tmp_path):
    """G4's fast scenario adds rows whose parents the paused shop creates next, so that a quarantine has
    a held row to release: they copy a valid row, and the generator's next tick creates their parents."""
    import json

    from coursekit.checker.fast.sources import add_late_parent_rows

    g4, shop = Grade.named("G4_Senior"), dbs["shop-1"]
    config = json.loads(g4.generator_config.read_text(encoding="utf-8"))
    env = generator_env(g4, "shop-1", shop, **TICKS)
    run_generator(g4.generator_config, env, tmp_path / "before", "--max-ticks", "2")
    (newest_customer,) = shop.query("select max(customer_id) from customers")[0]
    (newest_order,) = shop.query("select max(order_id) from orders")[0]
    with closing(shop.connect()) as conn:
        assert add_late_parent_rows(conn, config, 3) == 3
    late = shop.query(
        "select customer_id, quantity, status from orders where order_id > %s order by customer_id", (newest_order,)
    )
    assert [row[0] for row in late] == [newest_customer + 1, newest_customer + 2, newest_customer + 3]
    assert all(quantity > 0 and status != "unknown" for _, quantity, status in late), "valid apart from the parent"
    run_generator(g4.generator_config, env, tmp_path / "after", "--max-ticks", "1")
    arrived = shop.query(
        "select count(*) from customers where customer_id between %s and %s", (newest_customer + 1, newest_customer + 3)
    )
    assert arrived[0][0] == 3, "the next tick created their customers"
