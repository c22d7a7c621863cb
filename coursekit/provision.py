"""Provision Airflow before it starts: the login and the staging folder.

Airflow 3's SimpleAuthManager keeps logins in a JSON file it must be able to
write, and generates random passwords for users missing from it. Writing
`{"airflow": "airflow"}` there from the env file before every start means the
course's login never changes and nothing has to be re-typed after a restart.
Connections need no step at all: Airflow reads them from `AIRFLOW_CONN_*`.

Run as `python -m coursekit.provision` (the Docker image does, and so does
`make run`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path


class ProvisionError(ValueError):
    """A variable the provisioning needs is missing."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ProvisionError(f"{name} is not set; it comes from deploy/env/airflow.env")
    return value


def provision(env: Mapping[str, str]) -> Path:
    """Write the passwords file for every user in SIMPLE_AUTH_MANAGER_USERS; create STAGING_DIR."""
    users = _required(env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS")
    password = _required(env, "AIRFLOW_LOGIN_PASSWORD")
    path = Path(_required(env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"))
    names = [entry.split(":")[0].strip() for entry in users.split(",") if entry.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict.fromkeys(names, password)) + "\n", encoding="utf-8")
    path.chmod(0o600)
    Path(_required(env, "STAGING_DIR")).mkdir(parents=True, exist_ok=True)
    return path


def main() -> int:
    try:
        path = provision(os.environ)
    except ProvisionError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 2
    print(f"provision: Airflow login written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
