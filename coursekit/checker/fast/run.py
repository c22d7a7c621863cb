"""One fast grading: the private copy's servers and shops, shared by every DAG folder under test, and their Airflows."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console

from coursekit.checker.fast.runners import Variant, migrated_metadata_db, run_record
from coursekit.checker.fast.servers import Servers
from coursekit.checker.fast.settings import FastSettings
from coursekit.checker.pipeline import choose_load
from coursekit.checker.stack import GradeStack, Shop
from coursekit.grade import SHOP_DATABASE, Grade
from coursekit.native.compose import load_compose


class FastRun:
    """A private copy of one grade: databases and generators shared by every DAG folder under test."""

    def __init__(
        self,
        grade: Grade,
        folders: dict[str, Path],
        settings: FastSettings,
        console: Console,
        dag_id: str | None = None,
    ) -> None:
        self.grade = grade
        self.dag_id = dag_id  # --dag-id: the load to grade, whatever the folder holds
        self.settings = settings
        self.console = console
        self.root = Path(tempfile.mkdtemp(prefix=f"coursekit-fast-{grade.name}-"))
        self.services = load_compose(grade.deploy_dir / "docker-compose.yml", env={})
        self.servers = Servers(grade, self.services, settings, self.root)
        self.started = self.shops_started = time.monotonic()
        default = grade.env("pg-dwh").get("POSTGRES_DB") or grade.env("pg-dwh")["POSTGRES_USER"]
        self.variants = [
            Variant(name, path, self.root / "variants" / f"{number:02d}", default if number == 0 else f"dwh_{number}")
            for number, (name, path) in enumerate(folders.items())
        ]

    def say(self, text: str, variant: Variant | None = None) -> None:
        who = f"{variant.name}: " if variant is not None and len(self.variants) > 1 else ""
        self.console.print(f"{time.monotonic() - self.started:5.0f} s  {who}{text}", highlight=False, markup=False)

    def record(self, variant: Variant, note: str, reply: dict, planned_failure: bool = False) -> dict:
        """A run's reply, put first in the variant's runs (the checks read the newest first), and said."""
        variant.scenario.runs.insert(0, run_record(reply, planned_failure))
        failed = " ".join(reply.get("failed_tasks") or []) + reply.get("error", "")
        self.say(f"{note}: {reply.get('state')} {failed}", variant)
        return reply

    @property
    def active(self) -> list[Variant]:
        """The variants that have a load DAG (the others' warehouses stay empty)."""
        return [v for v in self.variants if v.dag_id is not None]

    def each(self, step: Callable[[Variant], object]) -> list:
        """Do `step` for every variant that has a load DAG, a few at a time."""
        active = self.active
        with ThreadPoolExecutor(max(1, min(self.settings.concurrency, len(active) or 1))) as pool:
            return list(pool.map(step, active))

    def start_shops(self) -> None:
        """The servers (the warehouse with one database per variant), then the shops' generators."""
        self.servers.write_generator_config()
        self.servers.start_databases([v.dwh_database for v in self.variants[1:]])
        self.shops_started = time.monotonic()
        self.servers.start_shops()

    # -- Airflow -----------------------------------------------------------------------------------------------

    def airflow_env(self, variant: Variant) -> dict[str, str]:
        """Airflow's connections from the grade's airflow.env, pointed at the private databases."""
        home = variant.root / "airflow"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(variant.root / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
            STAGING_DIR=str(variant.root / "staging"),
        )
        for name, value in self.services["airflow"].env().items():
            if name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
                env[name] = self._rewrite_uri(value, variant)
        return env

    def _rewrite_uri(self, uri: str, variant: Variant) -> str:
        ports = self.servers.ports
        parts = urlsplit(uri)
        if parts.hostname not in ports:
            return uri
        login, _, _ = parts.netloc.rpartition("@")
        hostport = f"127.0.0.1:{ports[parts.hostname]}"
        path = f"/{variant.dwh_database}" if parts.hostname == "pg-dwh" else parts.path
        return urlunsplit(parts._replace(netloc=f"{login}@{hostport}" if login else hostport, path=path))

    def start_airflow(self) -> None:
        """Start every variant's runner; it imports Airflow and parses the folder while the databases start."""
        cached = migrated_metadata_db()
        for variant in self.variants:
            variant.install(cached)
            variant.start_runner(self.airflow_env(variant))

    def wait_for_airflow(self) -> None:
        for variant in self.variants:
            variant.send({"cmd": "parse"})
        for variant in self.variants:
            variant.ready = variant.next_reply(timeout=300)
            variant.choice = choose_load(variant.ready["dags"], self.dag_id)
            variant.dag_id = variant.choice.dag_id

    def close(self) -> None:
        for variant in self.variants:
            variant.close()
        self.servers.close()
        if not self.settings.keep:
            shutil.rmtree(self.root / "pg", ignore_errors=True)

    def stack(self, variant: Variant) -> GradeStack:
        """The checker's view of the private copy, with this variant's warehouse."""
        stack = GradeStack(self.grade)
        stack.dwh_port = self.servers.ports["pg-dwh"]
        stack.dwh_env = {**stack.dwh_env, "POSTGRES_DB": variant.dwh_database}
        stack.dags_dir = variant.root / "dags"
        stack.shops = [
            Shop(
                name=s.name,
                src_id=s.src_id,
                port=self.servers.ports[SHOP_DATABASE[s.name]],
                env=s.env,
                update_window_sec=self.settings.update_window,
                delete_after_sec=self.settings.delete_after,
            )
            for s in stack.shops
        ]
        return stack
