"""Helpers the end-to-end tests share: generator processes, connections, snapshots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from coursekit.grade import Grade
from coursekit.pg import EmbeddedPostgres


def generator_env(grade: Grade, shop: str, db, **overrides: object) -> dict[str, str]:
    """The env a grade's generator container gets, pointed at a test database."""
    env = {**os.environ, **grade.generator_env(shop)}
    env.update(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=str(db.port), POSTGRES_DB=db.name)
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def start_generator(config: Path, env: dict[str, str], log_dir: Path, *args: str) -> subprocess.Popen:
    """A real generator process, as `python -m coursekit.generator`."""
    return subprocess.Popen(
        [sys.executable, "-m", "coursekit.generator", "--config", str(config), "--log-dir", str(log_dir), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# Why the last dag.test() run failed, for the assertion message (conftest's pytest_assertrepr_compare):
# task logs go to the captured stdout, where a long run buries the traceback (CI shows its head and tail).
RUN_FAILURES: list[str] = []


def remember_failure(context) -> None:
    """An on_failure_callback the test harness adds to every task it runs."""
    error = context.get("exception")
    first_line = str(error).strip().partition("\n")[0]
    RUN_FAILURES.append(f"{context['ti'].task_id}: {type(error).__name__}: {first_line}"[:300])


def failed_run_explanation(state: object, expected: object) -> list[str] | None:
    """Lines that say why a DAG run whose state is not `expected` ("success") failed."""
    from airflow.utils.state import DagRunState  # Airflow reads its settings when first imported

    if not isinstance(state, DagRunState) or expected != "success" or state == expected:
        return None
    return [f"the DAG run ended {state.value}; its failed tasks:", *(RUN_FAILURES or ["(none recorded)"])]


def start_generators(grade: Grade, stack: dict, shops, log_root: Path, **overrides: object) -> list[subprocess.Popen]:
    """One live generator per shop, returned once each has committed its first tick.

    A DAG run started sooner finds no source tables and fails, which is right: in
    Docker, Airflow starts only after the shops are healthy. On a loaded machine a
    generator takes seconds to import Faker and create its tables, longer than the
    first run takes to reach its extracts.
    """
    processes = [
        start_generator(grade.generator_config, generator_env(grade, shop, stack[shop], **overrides), log_root / shop)
        for shop in shops
    ]
    for shop, process in zip(shops, processes, strict=True):
        wait_for_first_tick(stack[shop], process)
    return processes


def wait_for_first_tick(db, process: subprocess.Popen, timeout: float = 120) -> None:
    """Block until `orders` has rows: the generator inserts it last in a tick, in one transaction."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output, _ = process.communicate()
            raise AssertionError(f"the generator exited {process.returncode} before its first tick:\n{output}")
        if db.query("select to_regclass('public.orders') is not null")[0][0]:
            if db.query("select exists (select from orders)")[0][0]:
                return
        time.sleep(0.2)
    process.kill()
    output, _ = process.communicate()
    raise AssertionError(f"no tick committed within {timeout:.0f} s; the generator printed:\n{output}")


def run_generator(config: Path, env: dict[str, str], log_dir: Path, *args: str) -> None:
    """Run the generator to completion and fail loudly with its output if it fails."""
    process = start_generator(config, env, log_dir, *args)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output


def stop_generator(process: subprocess.Popen) -> None:
    """SIGTERM: the generator finishes or rolls back its tick and exits 0."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


def airflow_conn(db, user: str | None = None, password: str | None = None) -> str:
    """An AIRFLOW_CONN_* value (JSON form: no URL-escaping of passwords needed)."""
    spec = db.server.spec
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": db.port,
            "login": user or spec.user,
            "password": spec.password if password is None else password,
            "schema": db.name,
        }
    )


def dds_snapshot(dwh_db, tables: list[str]) -> dict[str, list[tuple]]:
    """Every row of every dds table, in a stable order: compared before/after a re-run."""
    statement = sql.SQL("select * from {} order by 1, 2, 3")
    return {name: dwh_db.query(statement.format(sql.Identifier("dds", name))) for name in tables}


@dataclass
class Database:
    """A throwaway database on one of the servers, owned by the service's user."""

    server: EmbeddedPostgres
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    @property
    def port(self) -> int:
        return self.server.spec.port

    def connect(self):
        """A psycopg2 connection (the generator's and the checker's driver)."""
        return self.server.connect(self.name)

    def connect3(self):
        """A psycopg 3 connection in autocommit mode, as the reference pipeline gets it from
        PostgresHook (dwh/connections.py): `with db.connect3() as conn:` closes it on exit."""
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def query(self, sql: str, params: tuple | dict | None = None) -> list[tuple]:
        """Run one statement in its own committed transaction; rows if it returns any."""
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def reader_logs_in(grade: Grade, port: int) -> bool:
    """Whether the shop's read-only role (the one Airflow's shop connections use) logs in to pg-shop-1 at `port`."""
    env = grade.env("pg-shop-1")
    try:
        psycopg2.connect(
            host="127.0.0.1",
            port=port,
            user=env["SHOP_READER_USER"],
            password=env["SHOP_READER_PASSWORD"],
            dbname=env["POSTGRES_DB"],
            connect_timeout=5,
        ).close()
    except psycopg2.OperationalError:
        return False
    return True
