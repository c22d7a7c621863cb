"""Credentials agree across a grade's files: databases, Airflow's connections, pgAdmin's server list.

A password that differs between two env files fails only when a learner's
stack starts; here every connection URI and every pgAdmin entry must name a
login one of the databases really has. (The compose files themselves:
tests/test_compose.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from test_compose import (
    GRADE_OBJECTS,
    PGPASS_IN_PGADMIN,
    POSTGRES,
    SHOP_DATABASES,
    grade_ids,
)

from coursekit.envfiles import read_env_file
from coursekit.grade import Grade

# -- credentials agree across files ----------------------------------------------------------------


def postgres_logins(grade: Grade) -> dict[tuple[str, str], tuple[str, str]]:
    """(service, user) -> (password, database) of every login the databases have."""
    logins = {}
    for name in POSTGRES:
        env = read_env_file(grade.env_dir / f"{name}.env")
        logins[(name, env["POSTGRES_USER"])] = (env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
        if env.get("SHOP_READER_USER"):
            logins[(name, env["SHOP_READER_USER"])] = (env["SHOP_READER_PASSWORD"], env["POSTGRES_DB"])
    return logins


def airflow_env(grade: Grade) -> dict[str, str]:
    return read_env_file(grade.env_dir / "airflow.env")


def check_uri(uri: str, logins: dict, schemes: tuple[str, ...]) -> tuple[str, str]:
    """Assert `uri` is a plain URI naming a real login; returns (service, user)."""
    parts = urlsplit(uri)
    assert parts.scheme in schemes, uri
    assert parts.port == 5432 and not parts.query, f"{uri}: compose service port 5432, no options"
    user, password, database = unquote(parts.username or ""), unquote(parts.password or ""), parts.path.lstrip("/")
    assert (parts.hostname, user) in logins, f"{uri}: no such login in deploy/env/{parts.hostname}.env"
    assert logins[(parts.hostname, user)] == (password, database), f"{uri}: password or database differ from env"
    return parts.hostname, user


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_airflow_connections_match_the_database_env_files(grade):
    env, logins = airflow_env(grade), postgres_logins(grade)
    connections = {k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
    assert set(connections) == {"AIRFLOW_CONN_SHOP_1_CONN", "AIRFLOW_CONN_SHOP_2_CONN", "AIRFLOW_CONN_DWH_CONN"}
    used = {key: check_uri(uri, logins, ("postgresql",)) for key, uri in connections.items()}
    shops = {db: read_env_file(grade.env_dir / f"{db}.env") for db in SHOP_DATABASES}
    # The shops are read as the read-only role, never as the generator's owner role.
    assert used["AIRFLOW_CONN_SHOP_1_CONN"] == ("pg-shop-1", shops["pg-shop-1"]["SHOP_READER_USER"])
    assert used["AIRFLOW_CONN_SHOP_2_CONN"] == ("pg-shop-2", shops["pg-shop-2"]["SHOP_READER_USER"])
    assert used["AIRFLOW_CONN_DWH_CONN"][0] == "pg-dwh"
    metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert check_uri(metadata, logins, ("postgresql+psycopg2",))[0] == "airflow-db"


def conn_ids_used(grade: Grade) -> set[str]:
    """Connection ids in the grade's pipeline.yaml and string literals `..._conn` in its DAG files."""
    import ast

    wanted: set[str] = set()
    config_file = grade.dags_dir / "pipeline.yaml"
    if config_file.exists():
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        wanted |= {config["dwh_conn_id"], *(source["conn_id"] for source in config["sources"])}
    for path in grade.dags_dir.rglob("*.py") if grade.dags_dir.is_dir() else []:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"[a-z][a-z0-9_]*_conn", node.value):
                    wanted.add(node.value)
    return wanted


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_connection_ids_the_dags_use_are_defined(grade):
    wanted = conn_ids_used(grade)
    if not wanted:
        pytest.skip(f"{grade.name}'s DAGs name no connection yet")
    defined = {k.removeprefix("AIRFLOW_CONN_").lower() for k in airflow_env(grade) if k.startswith("AIRFLOW_CONN_")}
    assert wanted <= defined, f"the DAGs use {sorted(wanted - defined)}, which airflow.env does not define"


def test_g0_pipeline_connection_ids_are_found():
    assert conn_ids_used(Grade.named("G0_Trainee")) == {"shop_1_conn", "shop_2_conn", "dwh_conn"}


def test_connection_uris_are_read_by_airflow_as_postgres_connections():
    from airflow.models.connection import Connection

    env = airflow_env(Grade.named("G0_Trainee"))
    dwh = read_env_file(Grade.named("G0_Trainee").env_dir / "pg-dwh.env")
    conn = Connection(conn_id="dwh_conn", uri=env["AIRFLOW_CONN_DWH_CONN"])
    assert (conn.conn_type, conn.host, conn.port) == ("postgres", "pg-dwh", 5432)
    assert (conn.login, conn.password, conn.schema) == (dwh["POSTGRES_USER"], dwh["POSTGRES_PASSWORD"], "dwh")


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_airflow_env_options_exist_in_this_airflow(grade):
    """A misspelt AIRFLOW__SECTION__KEY is silently ignored by Airflow: check each against its config.yml."""
    import airflow

    template = Path(airflow.__file__).parent / "config_templates" / "config.yml"
    options = yaml.safe_load(template.read_text(encoding="utf-8"))
    for key in airflow_env(grade):
        if key.startswith("AIRFLOW__"):
            section, option = key.removeprefix("AIRFLOW__").lower().split("__", 1)
            assert option in (options.get(section) or {}).get("options", {}), f"{key}: no [{section}] {option}"


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_airflow_env_settings(grade):
    from cryptography.fernet import Fernet

    env = airflow_env(grade)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "airflow:admin"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airflow/")
    assert env["AIRFLOW_LOGIN_PASSWORD"]
    assert env["STAGING_DIR"] == "/opt/airflow/staging"
    Fernet(env["AIRFLOW__CORE__FERNET_KEY"].encode())  # a valid key, or Airflow cannot start
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64, "HS512 wants a 64-byte key"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 8


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_files_with_secrets_say_they_are_local_only(grade):
    for path in [*grade.env_dir.glob("pg-*.env"), *(grade.env_dir / f for f in ("airflow.env", "airflow-db.env"))]:
        assert "LOCAL-ONLY" in path.read_text(encoding="utf-8"), path
    assert "LOCAL-ONLY" in (grade.env_dir / "pgadmin.env").read_text(encoding="utf-8")


# -- pgAdmin's server list ---------------------------------------------------------------------------


def pgpass_entries(grade: Grade) -> dict[tuple[str, str], str]:
    entries = {}
    for line in (grade.deploy_dir / "pgadmin" / "pgpass").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            host, port, database, user, password = line.split(":")
            assert (port, database) == ("5432", "*"), line
            entries[(host, user)] = password
    return entries


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_pgadmin_servers_are_the_three_databases(grade):
    data = json.loads((grade.deploy_dir / "pgadmin" / "servers.json").read_text(encoding="utf-8"))
    servers = {s["Name"]: s for s in data["Servers"].values()}
    assert set(servers) == {"pg-shop-1", "pg-shop-2", "pg-dwh"}
    logins = postgres_logins(grade)
    for name, server in servers.items():
        # What pgAdmin's `setup.py load-servers` requires, or it imports nothing at all.
        for key in ("Group", "Name", "Port", "Username", "MaintenanceDB", "Host"):
            assert key in server, f"{name}: {key} missing"
        assert isinstance(server["Port"], int)
        assert (server["Group"], server["Host"], server["Port"]) == ("Course", name, 5432)
        env = read_env_file(grade.env_dir / f"{name}.env")
        expected_user = env.get("SHOP_READER_USER") or env["POSTGRES_USER"]
        assert (server["Username"], server["MaintenanceDB"]) == (expected_user, env["POSTGRES_DB"]), name
        assert server["ConnectionParameters"]["passfile"] == PGPASS_IN_PGADMIN
        assert (name, server["Username"]) in logins
    entries = pgpass_entries(grade)
    for (host, user), password in entries.items():
        assert logins[(host, user)][0] == password, f"pgpass {host}:{user} differs from deploy/env/{host}.env"
    assert set(entries) == {(name, s["Username"]) for name, s in servers.items()}
