"""`make run` without Docker: the grade's compose and env files, run natively.

The end-to-end test drives the real command line on a copy of G0 (so a
learner's own `.run/` is never touched), on free ports, and checks what a
learner would: data reaches the warehouse after unpausing, the login works,
sources are read-only for Airflow, stop leaves no process, data survives a
restart, reset wipes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg2
import pytest

from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.native.compose import ComposeError, interpolate, load_compose
from coursekit.pg import free_port

PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")


def test_interpolation_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $$HOME", env) == "x d d  $HOME"
    with pytest.raises(ComposeError, match="UNSET is required: give it"):
        interpolate("${UNSET:?give it}", env)
    with pytest.raises(ComposeError, match="UNSET is not set"):
        interpolate("${UNSET}", env)


def test_ports_must_bind_to_loopback(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  pg-dwh:\n    image: postgres:18\n    ports: ['5435:5432']\n")
    with pytest.raises(ComposeError, match="must bind to 127.0.0.1"):
        load_compose(compose, {})


def test_g0_compose_maps_ports_env_files_and_mounts():
    services = load_compose(Grade.named("G0_Trainee").deploy_dir / "docker-compose.yml", {"PG_DWH_PORT": "15435"})
    assert services["pg-dwh"].host_port == 15435
    assert services["pg-dwh"].port_variables[5432] == "PG_DWH_PORT"
    assert services["pg-shop-1"].env()["POSTGRES_USER"] == "shop"
    assert services["shop-1"].host_path("/app/config/config.json") == Grade.named("G0_Trainee").generator_config
    assert services["airflow"].host_path("/opt/airflow/dags") == Grade.named("G0_Trainee").dags_dir


def native(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coursekit.native", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def cli_json(stdout: str) -> list:
    """The JSON line of an Airflow CLI answer (it also prints log lines to stdout)."""
    lines = [line for line in stdout.splitlines() if line.startswith("[")]
    assert lines, f"the Airflow CLI printed no JSON answer:\n{stdout[-2000:]}"
    return json.loads(lines[-1])


def live_pids(run_dir: Path) -> list[int]:
    """Processes started for this run dir that still live (zombies do not count)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if process.info["status"] != psutil.STATUS_ZOMBIE and str(run_dir) in cmdline:
                found.append(process.info["pid"])
        except psutil.Error:
            continue
    return found


@pytest.fixture
def grade_copy(tmp_path):
    """A private copy of the grades, free ports, and a run dir: nothing shared with a learner's stack."""

    def make(grade: str) -> tuple[list[str], dict[str, str], dict[str, int]]:
        shutil.copytree(
            REPO_ROOT / grade,
            tmp_path / grade,
            ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging", "__pycache__"),
        )
        ports = {name: free_port() for name in PORT_VARIABLES}
        env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
        args = ["--grade", grade, "--grades-root", str(tmp_path), "--run-dir", str(tmp_path / ".run")]
        return args, env, ports

    yield make
    for grade in GRADES:
        if (tmp_path / grade).exists():
            native(
                "stop",
                "--grade",
                grade,
                "--grades-root",
                str(tmp_path),
                "--run-dir",
                str(tmp_path / ".run"),
                env=dict(os.environ),
            )


def dwh_rows(ports: dict[str, int]) -> dict[str, int]:
    env = Grade.named("G0_Trainee").env("pg-dwh")
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=ports["PG_DWH_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DB"],
    )
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('dds.orders') is not null")
            if not cur.fetchone()[0]:
                return {}
            cur.execute("select src_id, count(*) from dds.orders group by src_id")
            return dict(cur.fetchall())
    finally:
        conn.close()


def airflow_login(ports: dict[str, int], username: str, password: str) -> dict:
    """POST /auth/token of the native Airflow: the response (a token) or an HTTP error."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['AIRFLOW_PORT']}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def assert_sources_are_read_only(ports: dict[str, int]) -> None:
    """Airflow reads the sources through a role that cannot write."""
    shop = Grade.named("G0_Trainee").env("pg-shop-1")
    reader = psycopg2.connect(
        host="127.0.0.1",
        port=ports["PG_SHOP_1_PORT"],
        user=shop["SHOP_READER_USER"],
        password=shop["SHOP_READER_PASSWORD"],
        dbname=shop["POSTGRES_DB"],
    )
    try:
        with reader.cursor() as cur:
            cur.execute("select count(*) from orders")
            assert cur.fetchone()[0] > 0
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("delete from orders")
    finally:
        reader.close()


@pytest.mark.slow
def test_make_run_g0_end_to_end(grade_copy, tmp_path):
    args, env, ports = grade_copy("G0_Trainee")
    started = native("run", *args, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"http://localhost:{ports['AIRFLOW_PORT']}" in started.stdout and "airflow / airflow" in started.stdout

    # The login from airflow.env works against Airflow 3's API.
    assert "access_token" in airflow_login(ports, "airflow", "airflow")

    # DAGs start paused; nothing loads until the learner unpauses.
    assert dwh_rows(ports) == {}
    unpaused = native("airflow", *args, "--", "dags", "unpause", "load_shops_to_dwh", env=env)
    assert unpaused.returncode == 0, unpaused.stderr
    deadline = time.monotonic() + 240
    while set(dwh_rows(ports)) != {"New-York", "Istanbul"}:
        assert time.monotonic() < deadline, "no rows from both shops in dds.orders within 4 minutes"
        time.sleep(5)

    assert_sources_are_read_only(ports)

    memory = native("memory", *args, env=env)
    assert memory.returncode == 0 and "memory_pss_mib_total=" in memory.stdout
    print(memory.stdout)  # the figure, for the record (a benchmark, not an assertion)

    status = native("status", *args, env=env)
    assert "airflow-scheduler" in status.stdout and "running" in status.stdout

    loaded = sum(dwh_rows(ports).values())
    stopped = native("stop", *args, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert live_pids(tmp_path) == [], "make stop left processes behind"

    again = native("run", *args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sum(dwh_rows(ports).values()) >= loaded, "data survives stop/run"
    twice = native("run", *args, env=env)
    assert twice.returncode == 1 and "already running" in twice.stderr

    reset = native("reset", *args, env=env)
    assert reset.returncode == 0, reset.stderr
    assert live_pids(tmp_path) == [] and not (tmp_path / ".run" / "G0_Trainee").exists()


@pytest.mark.slow
def test_a_taken_port_is_named_with_the_variable_that_moves_it(grade_copy):
    args, env, ports = grade_copy("G0_Trainee")
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["PG_DWH_PORT"]))
        blocker.listen()
        result = native("run", *args, env=env)
    assert result.returncode == 1
    assert f"port 127.0.0.1:{ports['PG_DWH_PORT']} (pg-dwh) is already taken" in result.stderr
    assert "PG_DWH_PORT=" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("grade", ["G1_Intern", "G2_Junior", "G3_Middle", "G4_Senior"])
def test_every_grade_starts_natively_and_its_dags_parse(grade_copy, tmp_path, grade):
    args, env, _ = grade_copy(grade)
    started = native("run", *args, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    errors = native("airflow", *args, "--", "dags", "list-import-errors", "-o", "json", env=env)
    assert errors.returncode == 0, errors.stderr
    assert cli_json(errors.stdout) == [], errors.stdout
    listed = cli_json(native("airflow", *args, "--", "dags", "list", "-o", "json", env=env).stdout)
    dag_ids = {dag["dag_id"] for dag in listed}
    assert {"hello_world", "taskflow_example"} <= dag_ids
    if grade == "G1_Intern":
        assert "load_shops_to_dwh" in dag_ids, "G1's reference DAG parses with the starter config"
    assert all(str(dag["is_paused"]) == "True" for dag in listed), "DAGs start paused"
    stopped = native("stop", *args, env=env)
    assert stopped.returncode == 0 and live_pids(tmp_path) == []


def test_a_missing_dags_folder_is_named_before_anything_starts(grade_copy, tmp_path):
    args, env, _ = grade_copy("G2_Junior")
    result = native("run", *args, env={**env, "DAGS_DIR": "../no_such_folder/dags"})
    assert result.returncode == 1
    assert "dags folder" in result.stderr and "no_such_folder/dags" in result.stderr
    assert not (tmp_path / ".run" / "G2_Junior" / "pg").exists(), "nothing was started"
