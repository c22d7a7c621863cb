"""The pipeline's building blocks on real Postgres, without Airflow.

Each test runs the real extract -> Parquet -> stg -> dds path against a source
database it fills itself, so every SCD2 rule can be pinned down exactly.
"""

from __future__ import annotations

import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from coursekit.hostile import HOSTILE_TEXT, LONG_TEXT
from dwh.config import PipelineConfigError, Source, load_config, parse_config
from dwh.extract import extract_to_parquet
from dwh.load import copy_to_stg
from dwh.merge import merge_into_dds
from dwh.rules import compare_with_source, violations
from dwh.staging import batch_path
from dwh.warehouse import create_schemas, ensure_tables

HOSTILE = [*HOSTILE_TEXT, LONG_TEXT]

CONFIG = {
    "lookback_sec": 3600,
    "sources": [{"src_id": "New-York", "conn_id": "shop_1_conn"}],
    "tables": {
        "customers": {
            "key": "customer_id",
            "columns": {
                "customer_id": "bigint",
                "name": "text",
                "phone": "text",
                "score": "numeric(10,2)",
                "birth_date": "date",
                "created_at": "timestamptz",
            },
        }
    },
}
SOURCE_DDL = """
create table customers (
    customer_id bigint generated always as identity primary key,
    name text, phone text, score numeric(10,2), birth_date date,
    created_at timestamptz not null default now()
)
"""


class Loader:
    """The DAG's three steps for one table, run directly against test databases."""

    def __init__(self, source_db, dwh_db, staging: Path, config: dict = CONFIG) -> None:
        self.config = parse_config(config)
        self.source_db, self.dwh_db, self.staging = source_db, dwh_db, staging
        self.runs = 0
        with dwh_db.connect3() as dwh:
            create_schemas(dwh)
            ensure_tables(dwh, self.config)

    def run(self, run_id: str | None = None) -> dict[str, int]:
        self.runs += 1
        run_id = run_id or f"run_{self.runs}"
        source = self.config.sources[0]
        table = next(iter(self.config.tables.values()))
        path = batch_path(self.staging, "test_dag", run_id, table.name, source.slug)
        with self.source_db.connect3() as src, self.dwh_db.connect3() as dwh:
            batch = extract_to_parquet(
                src, dwh, table, source, lookback_sec=self.config.lookback_sec, run_id=run_id, path=path
            )
            copy_to_stg(dwh, table, [batch])
            return merge_into_dds(dwh, table, run_id)

    def history(self, customer_id: int) -> list[tuple]:
        return self.dwh_db.query(
            "select name, phone, eff_from_dttm, eff_to_dttm from dds.customers"
            " where customer_id = %s order by eff_from_dttm",
            (customer_id,),
        )

    def rules_broken(self) -> dict[str, list]:
        """Through psycopg2, the checker's driver: the contract's queries are plain SQL text."""
        with closing(self.dwh_db.connect()) as dwh:
            return {rule: rows for rule, rows in violations(dwh, self.config.tables["customers"]).items() if rows}


@pytest.fixture
def loader(shop1_db, dwh_db, tmp_path) -> Loader:
    execute(shop1_db, SOURCE_DDL)
    return Loader(shop1_db, dwh_db, tmp_path / "staging")


def execute(db, statement: str, params: tuple = ()) -> None:
    with closing(db.connect()) as conn, conn, conn.cursor() as cur:
        cur.execute(statement, params)


def test_first_load_inserts_one_current_version_per_row(loader, shop1_db):
    execute(shop1_db, "insert into customers (name, phone) values ('Ann', '1'), ('Bob', null)")
    assert loader.run() == {"new": 2, "changed": 0, "unchanged": 0}
    created = shop1_db.query("select date_trunc('second', created_at) from customers where customer_id = 1")[0][0]
    (name, phone, eff_from, eff_to) = loader.history(1)[0]
    assert (name, phone, eff_from) == ("Ann", "1", created)
    assert eff_to.isoformat() == "9999-12-31T23:59:59+00:00"
    assert loader.rules_broken() == {}


def test_merging_the_same_batch_again_changes_nothing(loader, shop1_db, dwh_db):
    execute(shop1_db, "insert into customers (name) values ('Ann'), ('Bob')")
    loader.run("run_a")
    before = dwh_db.query("select * from dds.customers order by 1")
    with dwh_db.connect3() as dwh:
        counts = merge_into_dds(dwh, loader.config.tables["customers"], "run_a")
    assert counts == {"new": 0, "changed": 0, "unchanged": 2}
    assert dwh_db.query("select * from dds.customers order by 1") == before


def test_a_change_closes_the_old_version_one_second_before_the_new_one(loader, shop1_db):
    execute(shop1_db, "insert into customers (name, phone) values ('Ann', '1')")
    loader.run()
    time.sleep(1.1)  # the change is dated by the source clock, to the second
    execute(shop1_db, "update customers set phone = '2' where customer_id = 1")
    assert loader.run() == {"new": 0, "changed": 1, "unchanged": 0}
    old, new = loader.history(1)
    assert (old[1], new[1]) == ("1", "2")
    assert (new[2] - old[3]).total_seconds() == 1
    assert new[3].year == 9999
    assert loader.rules_broken() == {}


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [(None, "5", True), ("5", None, True), (None, None, False), ("", None, True), ("5", "5", False)],
)
def test_change_detection_is_null_safe(loader, shop1_db, before, after, changed):
    execute(shop1_db, "insert into customers (name, phone) values ('Ann', %s)", (before,))
    loader.run()
    execute(shop1_db, "update customers set phone = %s where customer_id = 1", (after,))
    counts = loader.run()
    assert counts["changed"] == int(changed)
    assert len(loader.history(1)) == 1 + int(changed)
    assert loader.history(1)[-1][1] == after


def test_changes_faster_than_a_second_still_make_contiguous_versions(loader, shop1_db):
    execute(shop1_db, "insert into customers (name) values ('v0')")
    loader.run()
    for version in range(1, 4):  # three changes inside the same second
        execute(shop1_db, "update customers set name = %s where customer_id = 1", (f"v{version}",))
        loader.run()
    assert [row[0] for row in loader.history(1)] == ["v0", "v1", "v2", "v3"]
    assert loader.rules_broken() == {}


def test_only_this_runs_stg_rows_are_merged(loader, shop1_db, dwh_db):
    execute(shop1_db, "insert into customers (name) values ('Ann')")
    loader.run("run_old")
    execute(shop1_db, "update customers set name = 'Anna' where customer_id = 1")
    with dwh_db.connect3() as dwh:  # a run whose stg batch is not in stg: nothing to merge
        assert merge_into_dds(dwh, loader.config.tables["customers"], "run_never_staged") == {
            "new": 0,
            "changed": 0,
            "unchanged": 0,
        }
    assert [row[0] for row in loader.history(1)] == ["Ann"]


def test_rows_outside_the_lookback_window_are_not_extracted(shop1_db, dwh_db, tmp_path):
    execute(shop1_db, SOURCE_DDL)
    config = {**CONFIG, "lookback_sec": 60}
    loader = Loader(shop1_db, dwh_db, tmp_path, config)
    execute(shop1_db, "insert into customers (name, created_at) values ('old', now() - interval '2 hours')")
    execute(shop1_db, "insert into customers (name) values ('new')")
    loader.run()
    execute(shop1_db, "update customers set name = 'old, updated late' where customer_id = 1")
    assert loader.run() == {"new": 0, "changed": 0, "unchanged": 1}  # only 'new' is re-read


def test_hostile_strings_round_trip_byte_exact(loader, shop1_db, dwh_db):
    with closing(shop1_db.connect()) as conn, conn, conn.cursor() as cur:
        cur.executemany("insert into customers (name, phone) values (%s, %s)", [(s, s) for s in HOSTILE])
    loader.run()
    stored = dwh_db.query("select name, phone from dds.customers order by customer_id")
    assert stored == [(s, s) for s in HOSTILE]
    assert dwh_db.query("select count(*) from dds.customers where name = ''") == [(1,)]  # '' is not NULL


def test_staging_files_keep_types_nulls_and_time_zones(loader, shop1_db, tmp_path):
    execute(
        shop1_db,
        "insert into customers (name, phone, score, birth_date) values (%s, null, 12.50, '1990-02-03')",
        ("O'Brien\n",),
    )
    loader.run("typed")
    (path,) = (tmp_path / "staging").rglob("*.parquet")
    table = pq.read_table(path)
    types = {field.name: str(field.type) for field in table.schema}
    assert types["customer_id"] == "int64"
    assert types["score"] == "decimal128(10, 2)"
    assert types["birth_date"] == "date32[day]"
    assert types["created_at"] == "timestamp[us, tz=UTC]"
    row = table.to_pylist()[0]
    assert row["phone"] is None and row["name"] == "O'Brien\n" and row["score"] == Decimal("12.50")
    assert row["src_id"] == "New-York" and row["load_run_id"] == "typed"


def test_tables_without_history_are_overwritten_in_place(shop1_db, dwh_db, tmp_path):
    execute(shop1_db, SOURCE_DDL)
    plain = {**CONFIG, "tables": {"customers": {**CONFIG["tables"]["customers"], "scd2": False}}}
    loader = Loader(shop1_db, dwh_db, tmp_path, plain)
    execute(shop1_db, "insert into customers (name) values ('Ann'), ('Bob')")
    loader.run()
    execute(shop1_db, "update customers set name = 'Anna' where customer_id = 1")
    assert loader.run() == {"new": 0, "changed": 1, "unchanged": 1}
    assert dwh_db.query("select customer_id, name from dds.customers order by 1") == [(1, "Anna"), (2, "Bob")]
    with closing(dwh_db.connect()) as dwh:
        assert violations(dwh, loader.config.tables["customers"]) == {"duplicate_keys": []}


@pytest.mark.usefixtures("loader")  # creates the source tables
def test_a_column_added_to_the_config_is_added_to_the_tables(dwh_db):
    wider = {**CONFIG, "tables": {"customers": {**CONFIG["tables"]["customers"]}}}
    wider["tables"]["customers"]["columns"] = {**CONFIG["tables"]["customers"]["columns"], "vip": "boolean"}
    with dwh_db.connect3() as dwh:
        ensure_tables(dwh, parse_config(wider))
    for schema in ("stg", "dds"):
        assert dwh_db.query(
            "select data_type from information_schema.columns"
            " where table_schema = %s and table_name = 'customers' and column_name = 'vip'",
            (schema,),
        ) == [("boolean",)]


def test_a_warehouse_built_by_an_older_pipeline_gets_the_current_tables(loader, shop1_db, dwh_db):
    """stg had a primary key (COPY paid for it every run) and dds a watermark index over
    every version; ensure_tables drops both, keeps the data, and changes nothing when rerun."""
    execute(shop1_db, "insert into customers (name) values ('Ann')")
    loader.run()
    execute(dwh_db, "alter table stg.customers add primary key (customer_id, src_id)")
    execute(dwh_db, "drop index dds.customers_current_increment_ix")
    execute(dwh_db, "create index customers_src_increment_ix on dds.customers (src_id, created_at)")
    for _ in range(2):
        with dwh_db.connect3() as dwh:
            ensure_tables(dwh, loader.config)
    keys = "select conname from pg_constraint where conrelid = 'stg.customers'::regclass and contype = 'p'"
    assert dwh_db.query(keys) == []
    indexes = dwh_db.query("select indexname, indexdef from pg_indexes where schemaname = 'dds'")
    assert [name for name, _ in indexes if "increment" in name] == ["customers_current_increment_ix"]
    assert "WHERE (eff_to_dttm = '9999-12-31 23:59:59+00'" in dict(indexes)["customers_current_increment_ix"]
    execute(shop1_db, "update customers set name = 'Anna'")
    assert loader.run() == {"new": 0, "changed": 1, "unchanged": 0}
    assert loader.rules_broken() == {}


def test_a_key_twice_in_one_batch_fails_the_merge_whole(loader, shop1_db, dwh_db):
    """stg has no primary key; dds's keys still refuse two current versions of one key."""
    execute(shop1_db, "insert into customers (name) values ('Ann'), ('Bob')")
    loader.run()
    execute(dwh_db, "update stg.customers set load_run_id = 'twice', name = name || '!'")
    execute(dwh_db, "insert into stg.customers select * from stg.customers where customer_id = 1")
    with pytest.raises(psycopg.errors.UniqueViolation), dwh_db.connect3() as dwh:
        merge_into_dds(dwh, loader.config.tables["customers"], "twice")
    assert dwh_db.query("select count(*) from dds.customers where load_run_id = 'twice'") == [(0,)]
    assert dwh_db.query("select count(*) from dds.customers where eff_to_dttm <> '9999-12-31 23:59:59+00'") == [(0,)]


def test_contract_comparison_finds_missing_and_different_rows(loader, shop1_db, dwh_db):
    execute(shop1_db, "insert into customers (name) values ('Ann'), ('Bob')")
    loader.run()
    execute(shop1_db, "update customers set name = 'Changed' where customer_id = 1")
    execute(shop1_db, "insert into customers (name) values ('Late')")
    table = loader.config.tables["customers"]
    with closing(shop1_db.connect()) as src, closing(dwh_db.connect()) as dwh:
        (now,) = shop1_db.query("select now() + interval '1 minute'")[0]
        result = compare_with_source(src, dwh, table, "New-York", now)
    assert (result.source_rows, result.missing, result.different) == (3, [3], [1])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("lookback_sec"), "lookback_sec: Field required"),
        (lambda c: c.update(lookback_sec=-1), "lookback_sec: Input should be greater than or equal to 0"),
        (lambda c: c["tables"]["customers"].update(key="nope"), "tables.customers: Value error, key 'nope'"),
        (lambda c: c["tables"]["customers"]["columns"].update(x="money"), "column 'x' has type 'money'"),
        (lambda c: c["sources"].append(dict(c["sources"][0])), "sources must have unique src_id"),
        (lambda c: c.update(surprise=1), "surprise: Extra inputs are not permitted"),
        (lambda c: c["tables"].update({"Bad-Name": c["tables"]["customers"]}), "tables.Bad-Name.[key]"),
        (lambda c: c["tables"]["customers"]["columns"].update(src_id="text"), "reserved"),
        (lambda c: c["tables"]["customers"].update(name="clients"), "tables.customers.name: 'clients'"),
        # Audit rules are G4's (wap/config.py): G0's config does not know the key.
        (lambda c: c["tables"]["customers"].update(audit={}), "tables.customers.audit: Extra inputs"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, edit, message):
    import copy

    import yaml

    data = copy.deepcopy(CONFIG)
    edit(data)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PipelineConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_each_table_knows_its_name_from_its_key():
    config = parse_config(CONFIG)
    assert [(key, table.name) for key, table in config.tables.items()] == [("customers", "customers")]
    stated = parse_config({**CONFIG, "tables": {"customers": {**CONFIG["tables"]["customers"], "name": "customers"}}})
    assert stated == config


def test_source_slugs_are_safe_names():
    assert Source(src_id="New-York", conn_id="c").slug == "new_york"
    assert Source(src_id="São Paulo 2", conn_id="c").slug == "s_o_paulo_2"
