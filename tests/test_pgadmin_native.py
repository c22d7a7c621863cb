"""pgAdmin 4 in `make run`: registered servers, no password prompt, its settings, its failures.

The slow tests start a private copy of G0 natively (free ports, its own run dir) and drive
pgAdmin through its own HTTP API, the calls its browser UI makes (coursekit/native/pgadmin_api.py):
list the servers, connect with no password, run queries in the query tool. The fast ones check
the configuration written from the grade's files and the messages for a broken servers.json,
a taken port and a pgAdmin that does not start.

pgAdmin lives in its own virtualenv, .venv-pgadmin, which the first test that needs it creates
(~30 s from PyPI, once per clone; later runs reuse it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg2
import pytest

from coursekit.grade import REPO_ROOT, Grade
from coursekit.native import pgadmin
from coursekit.native.pgadmin_api import PgAdminClient
from coursekit.native.stack import NativeStack
from coursekit.pg import free_port, port_is_free

PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
COURSE_SERVERS = {"pg-shop-1", "pg-shop-2", "pg-dwh"}
GRADE = "G0_Trainee"


def copy_grade(root: Path) -> None:
    shutil.copytree(
        REPO_ROOT / GRADE,
        root / GRADE,
        ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging", "__pycache__"),
    )


def native(command: str, root: Path, env: dict[str, str], *extra: str, timeout: float = 900):
    args = [command, "--grade", GRADE, "--grades-root", str(root), "--run-dir", str(root / ".run"), *extra]
    return subprocess.run(
        [sys.executable, "-m", "coursekit.native", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def live_pids(root: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and str(root) in " ".join(process.info["cmdline"] or []):
                found.append(process.info["pid"])
        except psutil.Error:
            continue
    return found


# -- fast: configuration from the grade's files ----------------------------------------------------------------


@pytest.fixture
def stack(tmp_path, monkeypatch) -> NativeStack:
    """A NativeStack of a private G0 copy on free ports (nothing started)."""
    copy_grade(tmp_path)
    for name in PORT_VARIABLES:
        monkeypatch.setenv(name, str(free_port()))
    stack = NativeStack(Grade.named(GRADE, tmp_path), tmp_path / ".run")
    stack.logs_dir.mkdir(parents=True)
    return stack


def test_servers_and_passfile_point_at_the_published_ports(stack):
    service = stack.services["pgadmin"]
    state = {"ports": {}}
    servers_file = pgadmin.prepare(
        service.env(),
        service.host_path(pgadmin.SERVERS_TARGET),
        service.host_path(service.env()["PGPASS_FILE"]),
        lambda host, port: stack._rewrite_host(host, port, state),
        stack.pgadmin_home,
        stack.pgadmin_port(),
    )
    published = {name: stack.services[name].host_port for name in COURSE_SERVERS}
    servers = json.loads(servers_file.read_text())["Servers"].values()
    passfile = stack.pgadmin_home / "data" / "pgpass"
    assert {(s["Name"], s["Host"], s["Port"]) for s in servers} == {(n, "127.0.0.1", p) for n, p in published.items()}
    assert {s["ConnectionParameters"]["passfile"] for s in servers} == {str(passfile)}
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600, "libpq ignores a passfile others can read"
    lines = passfile.read_text().splitlines()
    assert sorted(line.split(":")[1] for line in lines) == sorted(str(p) for p in published.values())
    assert all(line.startswith("127.0.0.1:") for line in lines)
    config = (stack.pgadmin_home / "conf" / "config_local.py").read_text()
    for setting in ("SERVER_MODE = False", "MASTER_PASSWORD_REQUIRED = False", f"PORT = {stack.pgadmin_port()}"):
        assert setting in config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"Servers": {"1": {"Name": "pg-dwh",}}}', "servers.json is not valid JSON: line 1, column 37"),
        ('{"servers": {}}', 'has no "Servers" object'),
        ('{"Servers": {"1": {"Name": "pg-dwh", "Group": "Course"}}}', 'server "1" lacks Host, Port, MaintenanceDB'),
    ],
)
def test_a_broken_servers_json_is_named_and_the_rest_would_start(stack, text, message):
    (stack.grade.deploy_dir / "pgadmin" / "servers.json").write_text(text)
    lines: list[str] = []
    state = {"pids": {}, "ports": {}}
    stack._start_pgadmin(state, lines.append)
    assert "pgadmin" not in state["pids"]
    assert message in state["pgadmin_error"] and f"{GRADE}/deploy/pgadmin/servers.json" in state["pgadmin_error"]
    assert any("not started" in line and message in line for line in lines)
    assert ("pgadmin", "failed", state["pgadmin_error"].splitlines()[0]) in stack.status()


def test_a_taken_port_is_named_with_the_variable_that_moves_it(stack):
    lines: list[str] = []
    state = {"pids": {}, "ports": {}}
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", stack.pgadmin_port()))
        blocker.listen()
        stack._start_pgadmin(state, lines.append)
    assert "pgadmin" not in state["pids"]
    assert f"port 127.0.0.1:{stack.pgadmin_port()} is already taken" in state["pgadmin_error"]
    assert "PGADMIN_PORT=" in state["pgadmin_error"]


def test_pgadmin_0_skips_it(stack, monkeypatch):
    monkeypatch.setenv("PGADMIN", "0")
    lines: list[str] = []
    state = {"pids": {}, "ports": {}}
    stack._start_pgadmin(state, lines.append)
    assert state["pids"] == {} and "pgadmin_error" not in state
    assert lines == ["  - pgadmin     skipped (PGADMIN=0)"]


def test_a_setting_that_is_not_a_python_value_is_named(tmp_path):
    with pytest.raises(pgadmin.PgAdminError, match="PGADMIN_CONFIG_SERVER_MODE=Flase is not a Python value"):
        pgadmin.config_local({"PGADMIN_CONFIG_SERVER_MODE": "Flase"}, tmp_path, 5050)


def test_a_pgadmin_that_exits_at_start_is_reported_with_its_log(stack):
    """A real pgAdmin process that refuses its configuration (needs .venv-pgadmin: created on first use)."""
    env_file = stack.grade.env_dir / "pgadmin.env"
    env_file.write_text(env_file.read_text() + "PGADMIN_CONFIG_MASTER_PASSWORD_REQUIRED=1\n")
    lines: list[str] = []
    state = {"pids": {}, "ports": {}}
    stack._start_pgadmin(state, lines.append)
    assert "pgadmin" in state["pids"], lines
    stack._wait_for_pgadmin(state, lines.append)
    assert "pgadmin" not in state["pids"]
    assert "pgAdmin exited at start" in state["pgadmin_error"]
    assert "Expected boolean value for MASTER_PASSWORD_REQUIRED" in state["pgadmin_error"], "the log's cause is shown"


# -- slow: the real stack ----------------------------------------------------------------------------------------


class RunningStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}}
        self.env.pop("PGADMIN", None)

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        self.env.update(env)
        started = time.monotonic()
        result = native("run", self.root, self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"make run took {time.monotonic() - started:.1f} s")
        return result

    def pgadmin(self) -> PgAdminClient:
        return PgAdminClient(self.ports["PGADMIN_PORT"])

    def dwh_query(self, sql: str) -> list[tuple]:
        """A query on the warehouse straight through libpq (what pgAdmin's answers are compared with)."""
        env = Grade.named(GRADE).env("pg-dwh")
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.ports["PG_DWH_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=env["POSTGRES_DB"],
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def dwh_orders(self) -> dict[str, int]:
        if not self.dwh_query("select to_regclass('dds.orders') is not null")[0][0]:
            return {}
        return dict(self.dwh_query("select src_id, count(*) from dds.orders group by src_id"))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    root = tmp_path_factory.mktemp("pgadmin-native")
    copy_grade(root)
    stack = RunningStack(root)
    result = stack.run()
    assert f"pgAdmin     http://localhost:{stack.ports['PGADMIN_PORT']}" in result.stdout
    yield stack
    native("stop", root, stack.env)


@pytest.mark.slow
def test_pgadmin_lists_the_three_servers_and_connects_to_each_without_a_password(running):
    client = running.pgadmin()
    servers = client.servers()
    assert set(servers) == COURSE_SERVERS
    registered = json.loads((REPO_ROOT / GRADE / "deploy" / "pgadmin" / "servers.json").read_text())["Servers"]
    for wanted in registered.values():
        server = servers[wanted["Name"]]
        assert (server.group, server.host, server.username) == ("Course", "127.0.0.1", wanted["Username"])
        assert not server.connected
        answer = client.connect(server)  # no password in the request, none saved in pgAdmin
        assert answer["connected"] and answer["user"]["name"] == wanted["Username"]
        assert not answer["is_password_saved"]
        columns, rows = client.query(server, wanted["MaintenanceDB"], "select current_user, inet_server_port()")
        published = running.ports[f"PG_{wanted['Name'].removeprefix('pg-').replace('-', '_').upper()}_PORT"]
        assert rows == [[wanted["Username"], published]], "the published port, not the container's 5432"


SCD2_HISTORY = """\
select customer_id, src_id, extract(epoch from eff_from_dttm)::bigint as eff_from, email, address
from dds.customers
where customer_id = {customer_id} and src_id = '{src_id}'
order by eff_from_dttm"""


@pytest.mark.slow
def test_a_query_on_dds_through_pgadmins_query_tool(running):
    unpaused = native("airflow", running.root, running.env, "--", "dags", "unpause", "load_shops_to_dwh")
    assert unpaused.returncode == 0, unpaused.stderr
    deadline = time.monotonic() + 300
    while set(running.dwh_orders()) != {"New-York", "Istanbul"}:
        assert time.monotonic() < deadline, "no rows from both shops in dds.orders within 5 minutes"
        time.sleep(5)
    client = running.pgadmin()
    dwh = client.servers()["pg-dwh"]
    client.connect(dwh)

    before = running.dwh_orders()
    columns, rows = client.query(dwh, "dwh", "select src_id, count(*)::int from dds.orders group by src_id")
    after = running.dwh_orders()
    assert columns == ["src_id", "count"]
    for src_id, count in rows:
        assert before[src_id] <= count <= after[src_id], "pgAdmin reads the same warehouse"

    # One key's SCD2 history (what a learner looks at): the versions' opening columns never change.
    key = running.dwh_query("select customer_id, src_id from dds.customers order by load_dttm limit 1")[0]
    history = SCD2_HISTORY.format(customer_id=int(key[0]), src_id=key[1].replace("'", "''"))
    columns, rows = client.query(dwh, "dwh", history)
    assert columns == ["customer_id", "src_id", "eff_from", "email", "address"]
    assert (
        rows
        and [[str(v) for v in row] for row in rows]
        == [[str(v) for v in row] for row in running.dwh_query(history)][: len(rows)]
    )


@pytest.mark.slow
def test_status_memory_stop_and_settings_that_survive_until_reset(running):
    root, env = running.root, running.env
    status = native("status", root, env)
    assert "pgadmin" in status.stdout and f"http://127.0.0.1:{running.ports['PGADMIN_PORT']}" in status.stdout
    memory = native("memory", root, env)
    assert memory.returncode == 0 and "memory_pss_mib_pgadmin=" in memory.stdout
    print(memory.stdout)  # the figures, for the record

    client = running.pgadmin()
    before = {name: server.sid for name, server in client.servers().items()}
    created = client.call("POST", "/browser/server_group/obj/", {"name": "Mine"})  # a learner's own setting
    assert created[0] == 200 and created[1]["node"]["label"] == "Mine", created

    assert native("stop", root, env).returncode == 0
    assert live_pids(root) == [], "make stop left processes behind"
    assert pgadmin.answers(running.ports["PGADMIN_PORT"]) is False

    moved = free_port()  # the warehouse moves: pgAdmin's pg-dwh follows, nothing is registered twice
    running.ports["PG_DWH_PORT"] = moved
    running.run(PG_DWH_PORT=str(moved))
    client = running.pgadmin()
    groups = {group["label"] for group in client.ok("GET", "/browser/server_group/nodes/")}
    assert "Mine" in groups, "pgAdmin's settings survive stop/run"
    servers = client.servers()
    assert {name: server.sid for name, server in servers.items()} == before
    client.connect(servers["pg-dwh"])
    assert client.query(servers["pg-dwh"], "dwh", "select inet_server_port()")[1] == [[moved]]

    assert native("stop", root, env).returncode == 0
    skipped = running.run(PGADMIN="0")
    assert "skipped (PGADMIN=0)" in skipped.stdout and "pgAdmin " not in skipped.stdout
    assert port_is_free(running.ports["PGADMIN_PORT"])
    assert "pgadmin                  off" in native("status", root, env).stdout

    assert native("reset", root, env).returncode == 0
    assert live_pids(root) == [] and not (root / ".run" / GRADE / "pgadmin").exists()
