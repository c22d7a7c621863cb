"""How the checker reaches a running grade: ports from compose, logins from env files.

Docker and `make run` publish the same ports on 127.0.0.1, so the checker does
not care which one runs the stack.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from coursekit.grade import SHOP_DATABASE, SHOPS, Grade
from coursekit.native.compose import load_compose


class StackNotReachable(RuntimeError):
    """A database or Airflow of the grade does not answer."""


@dataclass(frozen=True)
class Shop:
    """One shop as the checker sees it: where its database is and how the generator behaves."""

    name: str
    src_id: str  # CITY_NAME: the warehouse tags this shop's rows with it
    port: int
    env: dict[str, str]
    update_window_sec: int
    delete_after_sec: int


@dataclass(frozen=True)
class SourceTable:
    name: str
    key: str
    updates: bool  # the generator updates rows of this table


class GradeStack:
    """Connections and facts of one grade's running stack."""

    def __init__(self, grade: Grade) -> None:
        self.grade = grade
        services = load_compose(grade.deploy_dir / "docker-compose.yml")
        self.dwh_port = services["pg-dwh"].host_port
        self.dwh_env = grade.env("pg-dwh")
        # The folder Airflow runs (DAGS_DIR moves it, as in compose): the cleanup check reads it.
        self.dags_dir = services["airflow"].host_path("/opt/airflow/dags") or grade.dags_dir
        airflow_env = services["airflow"].env()
        self.airflow_url = f"http://127.0.0.1:{services['airflow'].published.get(8080, 8080)}"
        self.airflow_user = airflow_env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "airflow:admin").split(":")[0]
        self.airflow_password = airflow_env.get("AIRFLOW_LOGIN_PASSWORD", "airflow")
        self.shops = []
        for shop in SHOPS:
            env = grade.generator_env(shop)
            self.shops.append(
                Shop(
                    name=shop,
                    src_id=env["CITY_NAME"],
                    port=services[SHOP_DATABASE[shop]].host_port,
                    env=env,
                    update_window_sec=int(env.get("UPDATE_NOT_OLDER_THAN_SEC") or 0),
                    delete_after_sec=int(env.get("DELETE_OLDER_THAN_SEC") or 0),
                )
            )
        config = json.loads(Path(grade.generator_config).read_text(encoding="utf-8"))
        self.tables = [
            SourceTable(name, spec["id_column"], int(spec.get("update_rows_per_tick", 0)) > 0)
            for name, spec in config["tables"].items()
        ]

    def connect_dwh(self):
        return self._connect("pg-dwh", self.dwh_port, self.dwh_env)

    def connect_shop(self, shop: Shop):
        return self._connect(SHOP_DATABASE[shop.name], shop.port, shop.env)

    def _connect(self, service: str, port: int, env: dict[str, str]):
        try:
            return closing(
                psycopg2.connect(
                    host="127.0.0.1",
                    port=port,
                    user=env["POSTGRES_USER"],
                    password=env["POSTGRES_PASSWORD"],
                    dbname=env.get("POSTGRES_DB") or env["POSTGRES_USER"],
                    connect_timeout=5,
                    application_name="course-checker",
                )
            )
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise StackNotReachable(
                f"cannot reach {service} on 127.0.0.1:{port} ({reason}).\n"
                f"Is the {self.grade.name} stack running? Start it with `make run GRADE={self.grade.name}` "
                f"or `cd {self.grade.name}/deploy && docker compose up -d`."
            ) from None
