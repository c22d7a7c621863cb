"""G0_Trainee with Docker, as a learner runs it: `docker compose up -d --build --wait` and onwards.

One stack serves the whole module (starting it costs minutes); the tests run in file order and
follow a learner's first day: start with moved ports and their own uid, log in, switch the DAGs
on, see both shops' rows arrive, run `make check`, open pgAdmin, stop and start again, break
config.json, and finally wipe everything with `down -v`.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error

import psycopg2
import pytest
from dockerstack import (
    TEST_UID,
    DockerStack,
    MemoryWatch,
    PgAdmin,
    checker_verdict,
    record_figures,
    started_at,
    wait_for,
)
from psycopg2 import sql

from coursekit.grade import SHOPS

pytestmark = pytest.mark.docker

LOAD_DAG = "load_shops_to_dwh"
TABLES = ("customers", "products", "orders")
LONG_RUNNING = {"pg-shop-1", "pg-shop-2", "pg-dwh", "airflow-db", "shop-1", "shop-2", "airflow", "pgadmin"}
BROKEN_KEY = "tables.products.insert_rows_per_tick"


@pytest.fixture(scope="module")
def g0(docker_engine):
    stack = DockerStack("G0_Trainee")
    watch = MemoryWatch(stack.project)
    stack.watch = watch
    began = time.monotonic()
    try:
        with watch:
            stack.timings["first up --wait (s)"] = stack.up()
            yield stack
    finally:
        stack.timings["module (s)"] = time.monotonic() - began
        record_figures(
            "G0_Trainee",
            {"timings": stack.timings, "peak_mib": watch.peak, "limit_mib": watch.limit, "engine": docker_engine},
        )
        stack.destroy()


def dwh_query(stack: DockerStack, query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on pg-dwh through its published port (moved by deploy/.env)."""
    env = stack.grade.env("pg-dwh")
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=stack.ports["PG_DWH_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DB"],
        connect_timeout=10,
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.close()


def shops_in(stack: DockerStack, schema: str) -> set[str]:
    """src_ids with rows in every table of `schema` (empty while a table is missing)."""
    found = None
    for table in TABLES:
        exists = dwh_query(stack, "select to_regclass(%s) is not null", (f"{schema}.{table}",))[0][0]
        statement = sql.SQL("select distinct src_id from {}").format(sql.Identifier(schema, table))
        ids = {row[0] for row in dwh_query(stack, statement)} if exists else set()
        found = ids if found is None else found & ids
    return found or set()


def dds_rows(stack: DockerStack) -> int:
    count = sql.SQL("select count(*) from {}")
    return sum(dwh_query(stack, count.format(sql.Identifier("dds", table)))[0][0] for table in TABLES)


def test_every_service_is_healthy_and_published_on_loopback_only(g0):
    rows = {row["Service"]: row for row in g0.containers()}
    assert set(rows) == LONG_RUNNING | {"init-dirs"}
    for name in LONG_RUNNING:
        assert (rows[name]["State"], rows[name]["Health"]) == ("running", "healthy"), g0.diagnose()
    assert rows["init-dirs"]["State"] == "exited" and rows["init-dirs"]["ExitCode"] == 0
    published = [p for row in rows.values() for p in row.get("Publishers") or [] if p.get("PublishedPort")]
    assert {p["PublishedPort"] for p in published} == set(g0.ports.values())
    assert {p["URL"] for p in published} == {"127.0.0.1"}
    # How long pgAdmin and Airflow took from container start to their first healthy check.
    for service in ("pgadmin", "airflow"):
        inspected = g0.inspect(rows[service]["ID"])
        passed = [e for e in inspected["State"]["Health"]["Log"] if e["ExitCode"] == 0]
        if passed:
            first = started_at({"State": {"StartedAt": passed[0]["Start"]}})
            g0.timings[f"{service} healthy after container start (s)"] = round(first - started_at(inspected))


def test_files_on_the_host_belong_to_airflow_uid(g0):
    logs = g0.grade.generator_logs_dir
    wait_for("generator info.log files", lambda: all((logs / shop / "info.log").exists() for shop in SHOPS), 120)
    for shop in SHOPS:
        for path in [logs / shop, *(logs / shop).iterdir()]:
            assert path.stat().st_uid == TEST_UID, f"{path} belongs to uid {path.stat().st_uid}"
    for folder in ("logs", "staging"):
        assert (g0.grade.path / "airflow_data" / folder).stat().st_uid == TEST_UID


def test_airflow_login_and_connections(g0):
    token = g0.airflow_token()
    dags = {d["dag_id"] for d in g0.airflow("GET", "/api/v2/dags?limit=100", token=token)["dags"]}
    assert LOAD_DAG in dags
    with pytest.raises(urllib.error.HTTPError) as refused:
        g0.airflow_token(password="not-the-password")
    assert refused.value.code == 401
    for conn_id, host in (("dwh_conn", "pg-dwh"), ("shop_1_conn", "pg-shop-1"), ("shop_2_conn", "pg-shop-2")):
        result = g0.exec("airflow", "airflow", "connections", "get", conn_id, "-o", "json")
        assert result.returncode == 0, result.stderr[-2000:]
        assert f'"host": "{host}"' in result.stdout


def test_dags_parse_in_the_container(g0):
    assert_dags_parse(g0)


def assert_dags_parse(stack: DockerStack) -> set[str]:
    """Import the mounted dags folder with the container's Airflow; no import errors, at least one DAG."""
    script = (
        "import json; from airflow.dag_processing.dagbag import BundleDagBag; "
        "bag = BundleDagBag(dag_folder='/opt/airflow/dags', bundle_path='/opt/airflow/dags'); "
        "print('DAGBAG=' + json.dumps({'dags': sorted(bag.dag_ids), 'errors': bag.import_errors}))"
    )
    result = stack.exec("airflow", "python", "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("DAGBAG=")][-1]
    bag = json.loads(line.removeprefix("DAGBAG="))
    assert not bag["errors"], bag["errors"]
    assert bag["dags"], "no DAG in the dags folder"
    return set(bag["dags"])


def test_unpaused_dags_load_both_shops_into_stg_and_dds(g0):
    token = g0.airflow_token()
    for dag in g0.airflow("GET", "/api/v2/dags?limit=100", token=token)["dags"]:
        g0.airflow("PATCH", f"/api/v2/dags/{dag['dag_id']}", {"is_paused": False}, token=token)
    assert not g0.airflow("GET", f"/api/v2/dags/{LOAD_DAG}", token=token)["is_paused"]
    cities = {g0.grade.generator_env(shop)["CITY_NAME"] for shop in SHOPS}
    began = time.monotonic()
    wait_for("both shops' rows in stg", lambda: shops_in(g0, "stg") == cities, 600, every=10)
    wait_for("both shops' rows in dds", lambda: shops_in(g0, "dds") == cities, 300, every=10)
    g0.timings["unpause to both shops in dds (s)"] = round(time.monotonic() - began)


def test_make_check_passes_reading_the_ports_from_deploy_dotenv(g0):
    began = time.monotonic()
    result = g0.checker()
    g0.timings["make check (s)"] = round(time.monotonic() - began)
    verdict = checker_verdict(result.stdout)
    assert verdict in ("DONE", "WAIT"), f"exit {result.returncode}, {verdict}:\n{result.stdout[-4000:]}"
    assert "FAIL" not in result.stdout.split("\n")[-1]


def test_pgadmin_lists_the_three_servers_and_connects_to_each_without_a_password(g0):
    assert_pgadmin_servers_connect(g0)


def assert_pgadmin_servers_connect(stack: DockerStack) -> None:
    pgadmin = PgAdmin(stack.url("pgadmin"))
    servers = pgadmin.servers()
    assert sorted(s["label"] for s in servers) == ["pg-dwh", "pg-shop-1", "pg-shop-2"]
    for server in servers:
        reply = pgadmin.connect(server)
        assert reply.get("success") == 1 and reply["data"]["connected"], f"{server['label']}: {reply}"


def test_the_image_has_the_virtualenvs_version_of_everything_the_dags_can_import(g0):
    """Natively and in Docker the DAGs run on the same distributions (name==version)."""
    from dependency_closure import airflow_side_closure

    expected = airflow_side_closure()
    script = (
        "import importlib.metadata as m, json, re; "
        "print('DISTS=' + json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
        "for d in m.distributions()}))"
    )
    result = g0.exec("airflow", "python", "-c", script)
    assert result.returncode == 0, result.stderr[-2000:]
    in_image = json.loads([x for x in result.stdout.splitlines() if x.startswith("DISTS=")][-1].removeprefix("DISTS="))
    differ = {
        name: (version, in_image.get(name)) for name, version in expected.items() if in_image.get(name) != version
    }
    assert not differ, f"venv version vs image version: {differ}"
    assert {"psycopg", "psycopg-binary", "psycopg2-binary", "apache-airflow-providers-postgres"} <= set(expected)


def test_down_and_up_keep_data_login_connections_and_pgadmin_servers(g0):
    before = dds_rows(g0)
    assert before > 0
    g0.down()
    restarted = time.time()
    g0.timings["up --wait after down (s)"] = g0.up()
    assert dds_rows(g0) >= before
    test_airflow_login_and_connections(g0)
    assert_pgadmin_servers_connect(g0)
    # The first task attempts after a restart succeed: no ReadTimeout while the API server is cold.
    token = g0.airflow_token()

    def finished_run_after_restart():
        runs = g0.airflow("GET", f"/api/v2/dags/{LOAD_DAG}/dagRuns?order_by=-start_date&limit=5", token=token)
        done = [
            r
            for r in runs["dag_runs"]
            if r["start_date"] and started_at({"State": {"StartedAt": r["start_date"]}}) > restarted
        ]
        done = [r for r in done if r["state"] in ("success", "failed")]
        return done[-1] if done else None

    run = wait_for("a finished load run after the restart", finished_run_after_restart, 360, every=10)
    path = f"/api/v2/dags/{LOAD_DAG}/dagRuns/{run['dag_run_id']}/taskInstances"
    tasks = g0.airflow("GET", path, token=token)["task_instances"]
    attempts = {t["task_id"]: (t["state"], t["try_number"]) for t in tasks}
    assert run["state"] == "success" and all(v == ("success", 1) for v in attempts.values()), attempts


def test_a_broken_config_json_makes_the_generator_exit_2_naming_the_key(g0):
    config_file = g0.grade.generator_config
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tables"]["products"]["insert_rows_per_tick"] = "many"
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    g0.compose("up", "-d", "--no-deps", "--force-recreate", "shop-2")
    container = [r for r in g0.containers() if r["Service"] == "shop-2"][0]["ID"]
    # `docker wait` returns the exit code of the container's next (or current) exit.
    waited = subprocess.run(["docker", "wait", container], capture_output=True, text=True, timeout=120)
    assert waited.stdout.strip() == "2", waited
    assert BROKEN_KEY in g0.logs("shop-2")


def test_peak_memory_of_every_container_stays_under_its_limit(g0):
    assert g0.watch.peak, "docker stats gave no figures"
    over = {name: (round(peak), g0.watch.limit.get(name)) for name, peak in g0.watch.peak.items()}
    over = {name: v for name, v in over.items() if v[1] is None or v[0] >= v[1]}
    assert not over, f"peak MiB >= mem_limit MiB (or no limit): {over}"
    for row in g0.containers():
        assert not g0.inspect(row["ID"])["State"]["OOMKilled"], f"{row['Service']} was OOM-killed"


def test_down_v_wipes_every_volume(g0):
    g0.compose("down", "-v", "--timeout", "20")
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={g0.project}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert volumes == []
    g0.compose("up", "-d", "--wait", "pg-dwh", timeout=300)
    schemas = dwh_query(g0, "select count(*) from information_schema.schemata where schema_name in ('stg', 'dds')")
    assert schemas == [(0,)]
