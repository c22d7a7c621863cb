"""Airflow's login is provisioned from the env file, never generated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coursekit.provision import ProvisionError, provision


def env_for(tmp_path, **overrides):
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "airflow:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "home" / "passwords.json"),
        "AIRFLOW_LOGIN_PASSWORD": "airflow",
        "STAGING_DIR": str(tmp_path / "staging"),
    }
    return {**env, **overrides}


def test_writes_the_password_of_every_configured_user(tmp_path):
    env = env_for(tmp_path, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="airflow:admin, viewer:viewer")
    path = provision(env)
    assert json.loads(path.read_text()) == {"airflow": "airflow", "viewer": "airflow"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "staging").is_dir()


def test_rewrites_a_changed_password_on_the_next_start(tmp_path):
    provision(env_for(tmp_path))
    path = provision(env_for(tmp_path, AIRFLOW_LOGIN_PASSWORD="n3w 'pass'"))
    assert json.loads(path.read_text()) == {"airflow": "n3w 'pass'"}


def test_missing_variable_is_named(tmp_path):
    env = env_for(tmp_path)
    del env["AIRFLOW_LOGIN_PASSWORD"]
    with pytest.raises(ProvisionError, match="AIRFLOW_LOGIN_PASSWORD is not set"):
        provision(env)
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.provision"], env={"PATH": ""}, capture_output=True, text=True
    )
    assert result.returncode == 2 and "is not set" in result.stderr
