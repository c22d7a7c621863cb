"""The stack's own scripts, run for real: the read-only role's init script, the healthchecks.

Containers run them where a learner cannot watch; here each runs against a real
embedded Postgres or a stand-in server, with good and hostile input. (The
compose files themselves: tests/test_compose.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg2
import pytest
from test_compose import GRADE_OBJECTS, INIT_SCRIPT

from coursekit.envfiles import read_env_file
from coursekit.grade import REPO_ROOT, Grade
from coursekit.pg import EmbeddedPostgres, PostgresSpec, free_port

# -- the read-only role, for real ---------------------------------------------------------------------


@pytest.fixture
def shop_server(tmp_path):
    env = read_env_file(Grade.named("G0_Trainee").env_dir / "pg-shop-1.env")
    spec = PostgresSpec.from_env("pg-shop-1", env, free_port())
    server = EmbeddedPostgres(spec, tmp_path / "pg-shop-1", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")


def run_init(server: EmbeddedPostgres, monkeypatch, reader: str, password: str) -> None:
    # run_init_script passes os.environ on; the container gets the same from pg-shop-N.env.
    monkeypatch.setenv("SHOP_READER_USER", reader)
    monkeypatch.setenv("SHOP_READER_PASSWORD", password)
    server.run_init_script(Grade.named("G0_Trainee").deploy_dir / INIT_SCRIPT)


def as_owner(server: EmbeddedPostgres, sql: str) -> None:
    conn = server.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def test_init_script_creates_a_reader_that_sees_present_and_future_tables(shop_server, monkeypatch):
    env = read_env_file(Grade.named("G0_Trainee").env_dir / "pg-shop-1.env")
    as_owner(shop_server, "create table before_role (id int); insert into before_role values (1)")
    run_init(shop_server, monkeypatch, env["SHOP_READER_USER"], env["SHOP_READER_PASSWORD"])
    # As the generator does later, as the owner; --reset drops and creates again, the same way.
    as_owner(shop_server, "create table orders (id int); insert into orders values (7)")
    reader = shop_server.connect(user=env["SHOP_READER_USER"], password=env["SHOP_READER_PASSWORD"])
    try:
        with reader.cursor() as cur:
            cur.execute("select (select count(*) from before_role), (select id from orders)")
            assert cur.fetchone() == (1, 7)
        for statement in ("insert into orders values (8)", "create table mine (id int)", "drop table orders"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), reader.cursor() as cur:
                cur.execute(statement)
            reader.rollback()
    finally:
        reader.close()
    # Running it again (a re-created container, `make run` twice) changes nothing and fails nothing.
    run_init(shop_server, monkeypatch, env["SHOP_READER_USER"], env["SHOP_READER_PASSWORD"])


def test_init_script_quotes_hostile_names_and_passwords(shop_server, monkeypatch):
    reader, password = 'rd"; drop table victim; --', "pa'ss\"; drop table victim; --:\\x"
    as_owner(shop_server, "create table victim (id int)")
    run_init(shop_server, monkeypatch, reader, password)
    conn = shop_server.connect(user=reader, password=password)
    try:
        with conn.cursor() as cur:
            cur.execute("select current_user, count(*) from victim")
            assert cur.fetchone() == (reader, 0)
    finally:
        conn.close()


def test_init_script_refuses_to_run_without_the_reader_settings(shop_server, monkeypatch):
    monkeypatch.delenv("SHOP_READER_USER", raising=False)
    monkeypatch.setenv("SHOP_READER_PASSWORD", "x")
    with pytest.raises(Exception, match="SHOP_READER_USER is not set"):
        shop_server.run_init_script(Grade.named("G0_Trainee").deploy_dir / INIT_SCRIPT)


def test_init_script_is_executable():
    """Executable, so the postgres image runs it in its own shell instead of sourcing it."""
    for grade in GRADE_OBJECTS:
        assert os.access(grade.deploy_dir / INIT_SCRIPT, os.X_OK), grade.name
        listed = ["git", "ls-files", "-s", str(grade.deploy_dir / INIT_SCRIPT)]
        mode = subprocess.run(listed, cwd=REPO_ROOT, capture_output=True, text=True).stdout.split(" ")[0]
        assert mode in ("", "100755"), f"{grade.name}: git records mode {mode}; run git update-index --chmod=+x"


# -- the healthcheck scripts, for real -----------------------------------------------------------------

HEALTHCHECKS = Grade.named("G0_Trainee").deploy_dir / "healthchecks"


def run_healthcheck(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECKS / script), *args],
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_generator_health_follows_the_ticks(tmp_path):
    log = tmp_path / "info.log"
    tick = "2026-01-01T10:00:00Z INFO tick 3 New-York: +3 customers; ~2 updated; -0 deleted (12 ms)\n"
    warning = "2026-01-01T10:00:10Z WARNING database shop on pg-shop-1:5432 as shop unreachable (attempt 1)\n"
    env = {"TICK_INTERVAL_SEC": "10"}

    assert run_healthcheck("generator_health.py", str(log), env=env).returncode == 1  # no log yet
    log.write_text(tick)
    result = run_healthcheck("generator_health.py", str(log), env=env)
    assert result.returncode == 0 and "tick 3" in result.stdout
    log.write_text(tick + warning)
    assert run_healthcheck("generator_health.py", str(log), env=env).returncode == 1  # database trouble
    log.write_text(tick)
    stale = time.time() - 120
    os.utime(log, (stale, stale))
    result = run_healthcheck("generator_health.py", str(log), env=env)
    assert result.returncode == 1 and "not written for" in result.stdout
    # Slow shops may be quiet longer: three tick intervals.
    assert run_healthcheck("generator_health.py", str(log), env={"TICK_INTERVAL_SEC": "60"}).returncode == 0


class _Health(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):  # the method name http.server calls
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args):
        pass


def test_airflow_health_needs_every_component_healthy():
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/v2/monitor/health"
    components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    try:
        _Health.body = json.dumps({c: {"status": "healthy"} for c in components}).encode()
        assert run_healthcheck("airflow_health.py", url).returncode == 0
        _Health.body = json.dumps({**{c: {"status": "healthy"} for c in components}, "scheduler": {}}).encode()
        result = run_healthcheck("airflow_health.py", url)
        assert result.returncode == 1 and "scheduler missing" in result.stdout
    finally:
        server.shutdown()
        server.server_close()
    assert run_healthcheck("airflow_health.py", url).returncode == 1  # nobody answers
