"""Every tool resolves compose variables as Docker Compose does: shell, then `deploy/.env`, then defaults.

Why: the course tells Docker users to move a taken port in `deploy/.env`. If `make check`,
`make run` or `make loadtest` read only the shell, they probe the default port and report
"cannot reach" - or grade whatever else listens there. The rule lives in one function
(`coursekit.native.compose.compose_variables`); these tests hold each tool to it and compare
it with what the real Compose binary makes of the same folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from coursekit.checker.stack import GradeStack
from coursekit.grade import REPO_ROOT, Grade
from coursekit.native.compose import ComposeError, compose_variables, load_compose
from coursekit.native.stack import NativeStack

PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
MOVED = {"PG_SHOP_1_PORT": "15433", "PG_SHOP_2_PORT": "15434", "PG_DWH_PORT": "15435", "AIRFLOW_PORT": "18080"}


@pytest.fixture
def grade(tmp_path, monkeypatch) -> Grade:
    """A copy of G0 whose deploy/.env moves four ports; the shell sets none of them."""
    for name in PORT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    copy = tmp_path / "G0_Trainee"
    shutil.copytree(
        REPO_ROOT / "G0_Trainee",
        copy,
        ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging", "__pycache__", ".env"),
    )
    lines = ["# moved ports, as the README tells Docker users", *(f"{k}={v}" for k, v in MOVED.items())]
    (copy / "deploy" / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Grade("G0_Trainee", copy)


def test_dotenv_fills_in_what_the_shell_does_not_set(grade):
    assert compose_variables(grade.deploy_dir, {"PG_DWH_PORT": "25435", "OTHER": "x"}) == {
        **MOVED,
        "PG_DWH_PORT": "25435",
        "OTHER": "x",
    }
    services = load_compose(grade.deploy_dir / "docker-compose.yml", {"PG_DWH_PORT": "25435"})
    assert services["pg-dwh"].host_port == 25435  # the shell wins
    assert services["pg-shop-1"].host_port == 15433  # then deploy/.env
    assert services["pgadmin"].host_port == 5050  # then the file's default


def test_the_checker_reads_ports_from_deploy_dotenv(grade):
    stack = GradeStack(grade)
    assert stack.dwh_port == 15435
    assert [shop.port for shop in stack.shops] == [15433, 15434]
    assert stack.airflow_url == "http://127.0.0.1:18080"


def test_make_run_reads_ports_from_deploy_dotenv(grade, tmp_path):
    stack = NativeStack(grade, run_root=tmp_path / ".run")
    assert {s.name: s.host_port for s in stack.postgres_services if s.published} == {
        "pg-shop-1": 15433,
        "pg-shop-2": 15434,
        "pg-dwh": 15435,
    }
    assert stack.airflow_env({"ports": {}})["AIRFLOW__API__PORT"] == "18080"


def test_a_broken_dotenv_is_named(grade):
    (grade.deploy_dir / ".env").write_text("PG_DWH_PORT 15435\n", encoding="utf-8")
    with pytest.raises(ComposeError, match=r"\.env:1: expected KEY=VALUE"):
        load_compose(grade.deploy_dir / "docker-compose.yml", {})


def test_the_rule_is_the_one_compose_itself_applies(grade):
    """The real Compose binary, same folder, same shell: the same published ports."""
    from test_compose import compose_binary

    shell = {"PATH": "/usr/bin:/bin", "HOME": str(grade.path), "PG_DWH_PORT": "25435"}
    result = subprocess.run(
        [str(compose_binary()), "config", "--format", "json"],
        cwd=grade.deploy_dir,
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    by_compose = {name: int(s["ports"][0]["published"]) for name, s in model["services"].items() if s.get("ports")}
    ours = {
        name: service.host_port
        for name, service in load_compose(grade.deploy_dir / "docker-compose.yml", shell).items()
        if service.published
    }
    assert ours == by_compose
    assert ours["pg-dwh"] == 25435 and ours["pg-shop-2"] == 15434
