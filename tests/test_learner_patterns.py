"""What the patterns learners bring from Airflow 2, psycopg2 and pandas 2 do in this Airflow.

A learner who finished the original course (Airflow 2, psycopg2, pandas 2) or who
follows Airflow's docs writes `PostgresHook(...).get_conn()`, `df.to_sql(...)`,
`cursor.copy_expert`, `except psycopg2.errors.UndefinedTable` and interval loads on
`data_interval_start`. In Airflow 3.3 with the postgres provider 7.x (psycopg 3)
and pandas 3, several of those break or silently change meaning. Each test pins
the behaviour as it is, in the grade's own Airflow and against a real PostgreSQL,
so an upgrade that changes it fails here, and the hints in G2_Junior's and
G3_Middle's READMEs (which describe these traps) get revisited.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import textwrap
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pendulum
import psycopg
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pytest
import sqlalchemy as sa
from psycopg import sql as psycopg_sql
from psycopg2 import sql as psycopg2_sql
from support import airflow_conn

ROWS = """
    create table products (product_id bigint primary key, name text, price numeric(10,2),
                           launched date, created_at timestamptz);
    insert into products values
        (1, 'mango', 9.99, '2020-01-02', '2026-03-01 12:00:00+00'),
        (2, null, 1.50, null, '2026-03-01 12:00:10+00');
"""


@pytest.fixture
def hook(dwh_db, monkeypatch):
    """A PostgresHook on a fresh warehouse database, as a learner's task builds it."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_LEARNER_DWH", airflow_conn(dwh_db))
    dwh_db.query(ROWS)
    return PostgresHook(postgres_conn_id="learner_dwh")


def psycopg2_engine(dwh_db) -> sa.Engine:
    """What `get_sqlalchemy_engine()` was under Airflow 2: the `postgresql://` (psycopg2) dialect."""
    spec = dwh_db.server.spec
    return sa.create_engine(f"postgresql+psycopg2://{spec.user}:{spec.password}@127.0.0.1:{dwh_db.port}/{dwh_db.name}")


def test_the_hook_connects_with_psycopg_3_not_psycopg2(hook):
    conn = hook.get_conn()
    try:
        assert isinstance(conn, psycopg.Connection)
        assert not isinstance(conn, psycopg2.extensions.connection)
    finally:
        conn.close()
    assert hook.get_sqlalchemy_engine().url.drivername == "postgresql+psycopg"


def test_get_df_and_get_pandas_df_turn_numeric_into_float(hook):
    query = "select * from products order by product_id"
    df = hook.get_df(query)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # get_pandas_df is deprecated, but says nothing about it
        old = hook.get_pandas_df(query)
    pd.testing.assert_frame_equal(df, old)
    assert df["price"].dtype == np.float64 and df["price"][0] == 9.99  # coerce_float=True by default
    assert df["launched"].dtype == object and df["launched"][0] == dt.date(2020, 1, 2)
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    exact = hook.get_df(query, coerce_float=False)
    assert exact["price"].dtype == object and exact["price"][0] == Decimal("9.99")


def test_read_sql_on_a_raw_psycopg2_connection_warns_and_also_coerces(dwh_db):
    dwh_db.query(ROWS)
    conn = psycopg2.connect(dwh_db.dsn)
    try:
        with pytest.warns(UserWarning, match="only supports SQLAlchemy connectable"):
            df = pd.read_sql("select price from products order by product_id", conn)
    finally:
        conn.close()
    assert df["price"].dtype == np.float64


def test_a_float_price_does_not_fit_a_decimal_parquet_column(hook):
    schema = pa.schema([("price", pa.decimal128(10, 2))])
    query = "select price from products order by product_id"
    with pytest.raises(pa.ArrowInvalid, match="Conversion failed for column price with type float64"):
        pa.Table.from_pandas(hook.get_df(query), schema=schema, preserve_index=False)
    table = pa.Table.from_pandas(hook.get_df(query, coerce_float=False), schema=schema, preserve_index=False)
    assert table.column("price").to_pylist() == [Decimal("9.99"), Decimal("1.50")]


def test_to_sql_through_the_hooks_engine_sends_text_and_object_columns_as_varchar(hook, dwh_db):
    dwh_db.query("create table target (id bigint, price numeric(10,2), launched date, created_at timestamptz)")
    engine = hook.get_sqlalchemy_engine()
    as_text = pd.DataFrame({"id": [1], "price": ["9.99"], "launched": ["2020-01-02"], "created_at": ["2026-03-01"]})
    for column in ("price", "launched", "created_at"):
        with pytest.raises(pd.errors.DatabaseError, match=rf'column "{column}" is of type .* character varying'):
            as_text[["id", column]].to_sql("target", engine, if_exists="append", index=False)
    # Decimal objects are an object column too: sent as VARCHAR, refused by numeric.
    decimals = pd.DataFrame({"id": [2], "price": [Decimal("1.50")]})
    with pytest.raises(pd.errors.DatabaseError, match='column "price" is of type numeric'):
        decimals.to_sql("target", engine, if_exists="append", index=False)
    # The same text frame through psycopg2 (Airflow 2's engine) works: no casts are rendered.
    as_text.to_sql("target", psycopg2_engine(dwh_db), if_exists="append", index=False)
    # What works with the hook: typed columns, or dtype= naming the SQL types.
    typed = pd.DataFrame(
        {
            "id": [3],
            "price": [1.5],
            "launched": [dt.date(2020, 1, 3)],
            "created_at": pd.to_datetime(["2026-03-01T12:00:00Z"]),
        }
    )
    typed.to_sql("target", engine, if_exists="append", index=False)
    as_text.assign(id=4).to_sql(
        "target",
        engine,
        if_exists="append",
        index=False,
        dtype={"price": sa.Numeric(10, 2), "launched": sa.Date(), "created_at": sa.DateTime(timezone=True)},
    )
    rows = dwh_db.query("select id, price, launched from target order by id")
    assert rows == [
        (1, Decimal("9.99"), dt.date(2020, 1, 2)),
        (3, Decimal("1.50"), dt.date(2020, 1, 3)),
        (4, Decimal("9.99"), dt.date(2020, 1, 2)),
    ]


def test_copy_through_the_hook_is_psycopg_3s_cursor_copy(hook, dwh_db, tmp_path):
    dwh_db.query("create table stg (id bigint, name text)")
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            assert not hasattr(cur, "copy_expert"), "psycopg2's cursor.copy_expert does not exist in psycopg 3"
            with cur.copy("copy stg (id, name) from stdin with (format csv)") as copy:
                copy.write('1,"mango"\n2,\n')  # an unquoted empty field is NULL
            with cur.copy("copy stg (id, name) from stdin") as copy:
                copy.write_row((3, None))
        conn.commit()
    finally:
        conn.close()
    # The hook's own copy_expert(sql, filename) works on psycopg 3 too: it takes a file name.
    batch = tmp_path / "batch.csv"
    batch.write_text('4,"papaya"\n')
    hook.copy_expert("copy stg (id, name) from stdin with (format csv)", str(batch))
    assert dwh_db.query("select id, name from stg order by id") == [(1, "mango"), (2, None), (3, None), (4, "papaya")]


def test_psycopg2_sql_objects_fail_on_the_hooks_connection(hook):
    query = psycopg2_sql.SQL("select count(*) from {}").format(psycopg2_sql.Identifier("products"))
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur, pytest.raises(TypeError, match="unhashable type: 'Composed'"):
            cur.execute(query)
        conn.rollback()
        with pytest.raises(TypeError, match="must be a connection or a cursor"):
            query.as_string(conn)
        assert not hasattr(conn, "set_session"), "psycopg 3 sets conn.autocommit / conn.read_only instead"
        # psycopg 3's own sql module has the same API and works.
        same = psycopg_sql.SQL("select count(*) from {}").format(psycopg_sql.Identifier("products"))
        with conn.cursor() as cur:
            cur.execute(same)
            assert cur.fetchone() == (2,)
        assert same.as_string(conn) == 'select count(*) from "products"'
    finally:
        conn.close()


def test_a_missing_table_raises_psycopg_3s_undefined_table(hook):
    conn = hook.get_conn()
    try:
        with pytest.raises(psycopg.errors.UndefinedTable) as raised, conn.cursor() as cur:
            cur.execute("select max(created_at) from dds.orders")
    finally:
        conn.close()
    assert not isinstance(raised.value, (psycopg2.errors.UndefinedTable, psycopg2.Error)), "psycopg2 except misses it"
    assert raised.value.sqlstate == "42P01"
    # Through get_df it arrives wrapped twice: pandas' DatabaseError <- SQLAlchemy's <- psycopg 3's.
    with pytest.raises(pd.errors.DatabaseError) as wrapped:
        hook.get_df("select max(created_at) from dds.orders")
    assert isinstance(wrapped.value.__cause__, sa.exc.ProgrammingError)
    assert isinstance(wrapped.value.__cause__.orig, psycopg.errors.UndefinedTable)
    # Asking first needs no exception at all, with either driver.
    assert hook.get_first("select to_regclass(%s)", parameters=("dds.orders",)) == (None,)


def test_pandas_3_reads_a_null_text_as_nan_which_changes_a_row_hash(hook):
    df = hook.get_df("select product_id, name from products order by product_id")
    assert pd.__version__.startswith("3.")
    assert df["name"].dtype == pd.StringDtype(na_value=np.nan)  # printed as `str`
    null_name = df["name"][1]
    assert isinstance(null_name, float) and np.isnan(null_name)
    assert "|".join(map(str, df.iloc[1])) == "2|nan"  # pandas 2 (object dtype) gave "2|None"
    # A column that is NULL in every row stays object, with None: the same NULL hashes differently.
    all_null = hook.get_df("select product_id, null::text as name from products where product_id = 2")
    assert all_null["name"].dtype == object and all_null["name"][0] is None
    # What works: turn every missing value into None before hashing (or hash in SQL).
    clean = df.astype(object).where(df.notna(), None)
    assert "|".join(map(str, clean.iloc[1])) == "2|None"
    assert (
        hook.get_first("select md5(row(product_id, name)::text) from products where product_id = 2")[0]
        == (hook.get_first("select md5(row(2::bigint, null::text)::text)")[0])
    )


INTERVAL_DAG = textwrap.dedent(
    '''
    """
    # interval_probe

    Writes what its run's context holds to $PROBE_OUT.
    """

    import json
    import os

    import pendulum
    from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

    SCHEDULE = "*/5 * * * *"
    if os.environ.get("PROBE_INTERVALS"):
        SCHEDULE = CronDataIntervalTimetable(SCHEDULE, timezone="UTC")


    @dag(schedule=SCHEDULE, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["t"])
    def interval_probe():
        @task
        def record():
            context = get_current_context()
            keys = ("logical_date", "data_interval_start", "data_interval_end")
            with open(os.environ["PROBE_OUT"], "w") as out:
                json.dump({key: context[key].isoformat() for key in keys}, out)

        record()


    interval_probe()
    '''
)


def run_interval_probe(airflow, tmp_path: Path, monkeypatch, intervals: bool) -> tuple[dict, object]:
    """One dag.test run at 12:05 of a DAG scheduled every 5 minutes; (its context, the DAG's DagModel)."""
    from airflow.models.dag import DagModel

    folder = tmp_path / "dags"
    folder.mkdir(exist_ok=True)
    (folder / "interval_probe.py").write_text(INTERVAL_DAG)
    out = tmp_path / "context.json"
    monkeypatch.setenv("PROBE_OUT", str(out))
    if intervals:
        monkeypatch.setenv("PROBE_INTERVALS", "1")
    bag = airflow.install(folder)
    assert bag.import_errors == {}
    run = bag.get_dag("interval_probe").test(logical_date=pendulum.datetime(2026, 3, 1, 12, 5, tz="UTC"))
    assert run.state == "success"
    context = {key: dt.datetime.fromisoformat(value) for key, value in json.loads(out.read_text()).items()}
    return context, DagModel.get_dagmodel("interval_probe")


def test_a_cron_schedule_gives_runs_an_empty_data_interval(airflow, tmp_path, monkeypatch):
    assert os.environ.get("AIRFLOW__CORE__CREATE_CRON_DATA_INTERVALS") is None, "Airflow 3's default is in force"
    context, model = run_interval_probe(airflow, tmp_path, monkeypatch, intervals=False)
    at_1205 = dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.UTC)
    assert context == {"logical_date": at_1205, "data_interval_start": at_1205, "data_interval_end": at_1205}
    # The scheduler's next run (CronTriggerTimetable): a point in time, not an interval.
    assert model.next_dagrun_data_interval_start == model.next_dagrun_data_interval_end == model.next_dagrun
    # So an Airflow 2-style `where created_at >= start and created_at < end` reads nothing.


def test_cron_data_interval_timetable_brings_airflow_2_intervals_back(airflow, tmp_path, monkeypatch):
    context, model = run_interval_probe(airflow, tmp_path, monkeypatch, intervals=True)
    assert context["data_interval_start"] == dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert context["data_interval_end"] == context["logical_date"] == dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.UTC)
    start, end = model.next_dagrun_data_interval_start, model.next_dagrun_data_interval_end
    assert end - start == dt.timedelta(minutes=5)
    assert model.next_dagrun == start and model.next_dagrun_create_after == end  # scheduled runs: logical = start
