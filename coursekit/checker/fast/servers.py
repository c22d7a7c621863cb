"""The private copy's databases and shops: embedded PostgreSQL servers on free ports and the grade's generators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path

from psycopg2 import sql

from coursekit.checker.fast.settings import FastSettings
from coursekit.checker.stack import StackNotReachable
from coursekit.grade import POSTGRES_SERVICES, SHOP_DATABASE, SHOPS, Grade
from coursekit.hostile import HOSTILE_TEXT
from coursekit.native.compose import Service
from coursekit.pg import EmbeddedPostgres, free_port

INITDB_TARGET = "/docker-entrypoint-initdb.d"


class Servers:
    """pg-shop-1, pg-shop-2 and pg-dwh on free ports, and a generator per shop, all under `root`."""

    def __init__(self, grade: Grade, services: dict[str, Service], settings: FastSettings, root: Path) -> None:
        self.grade = grade
        self.services = services
        self.settings = settings
        self.root = root
        self.ports = {service: free_port() for service in POSTGRES_SERVICES}
        self.postgres: dict[str, EmbeddedPostgres] = {}
        self.generators: dict[str, subprocess.Popen] = {}
        self.config_path = root / "generator-config.json"

    def start_databases(self, warehouses: list[str]) -> None:
        """Every server at once (init scripts included); pg-shop-2's clock behind; one warehouse database each."""

        def start(service: str) -> None:
            server = EmbeddedPostgres(
                self.grade.postgres_spec(service, self.ports[service]), self.root / "pg" / service, durable=False
            )
            compose = self.services[service]
            scripts: list[Path] = []
            for mount in compose.mounts:
                if mount.target.startswith(INITDB_TARGET):
                    scripts += sorted(mount.host.glob("*.sh")) if mount.host.is_dir() else [mount.host]
            server.start(scripts, script_env=compose.env())
            self.postgres[service] = server

        with ThreadPoolExecutor(len(POSTGRES_SERVICES)) as pool:
            list(pool.map(start, POSTGRES_SERVICES))
        if self.settings.shop_2_clock_behind:
            self.skew_clock("pg-shop-2", self.settings.shop_2_clock_behind)
        for database in warehouses:
            self.postgres["pg-dwh"].create_database(database)

    def skew_clock(self, service: str, seconds: int) -> None:
        """Make the shop's own role see a clock `seconds` behind: a `now()` earlier on its search_path.

        The generator (and so created_at, and the update and delete windows) uses
        the database's now(); the reader role Airflow uses is not affected.
        """
        server = self.postgres[service]
        with closing(server.connect()) as conn, conn, conn.cursor() as cur:
            cur.execute("create schema if not exists shop_clock")
            cur.execute(
                sql.SQL(
                    "create or replace function shop_clock.now() returns timestamptz language sql stable"
                    " as $$ select pg_catalog.now() - make_interval(secs => {}) $$"
                ).format(sql.Literal(seconds))
            )
            cur.execute(
                sql.SQL("alter role {} in database {} set search_path = public, shop_clock, pg_catalog").format(
                    sql.Identifier(server.spec.user), sql.Identifier(server.spec.database)
                )
            )

    def connect(self, service: str, database: str | None = None):
        return self.postgres[service].connect(database)

    # -- shops ----------------------------------------------------------------------------------------------------

    def write_generator_config(self) -> None:
        """The grade's config.json, harsher: more NULLs, and hostile text in one column per table.

        Nullable means what the shop's own config leaves empty at times (`null_share`): a
        column the shops never leave empty may rightly be audited as NOT NULL (G4).
        """
        config = json.loads(self.grade.generator_config.read_text(encoding="utf-8"))
        for spec in config["tables"].values():
            hostile_done = False
            for column in reversed(list(spec["columns"])):
                entry = spec["columns"][column]
                taken = entry.get("invalid_share", 0) + entry.get("late_share", 0)
                if 0 < entry.get("null_share", 0) < self.settings.null_share:
                    entry["null_share"] = min(self.settings.null_share, max(0.0, 1 - taken))
                if not hostile_done and entry["type"] == "text" and not entry.get("invalid_values") and not taken:
                    if entry.get("provider") not in (None, "random_element"):
                        entry.update(
                            provider="random_element",
                            params={"elements": HOSTILE_TEXT + ["plain text"] * len(HOSTILE_TEXT)},
                        )
                        hostile_done = True
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def generator_env(self, shop: str) -> dict[str, str]:
        env = {**os.environ, **self.grade.generator_env(shop)}
        env.update(
            POSTGRES_HOST="127.0.0.1",
            POSTGRES_PORT=str(self.ports[SHOP_DATABASE[shop]]),
            TICK_INTERVAL_SEC=str(self.settings.tick_interval),
            UPDATE_NOT_OLDER_THAN_SEC=str(self.settings.update_window),
            DELETE_OLDER_THAN_SEC=str(self.settings.delete_after),
            STOP_GENERATOR_AFTER_SEC="0",
        )
        return env

    def start_shops(self, shops: tuple[str, ...] = SHOPS) -> None:
        for shop in shops:
            log_dir = self.root / "generator-logs" / shop
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / "stdout.log", "ab") as out:
                self.generators[shop] = subprocess.Popen(
                    [sys.executable, "-m", "coursekit.generator", "--config", str(self.config_path)]
                    + ["--log-dir", str(log_dir)],
                    env=self.generator_env(shop),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

    def stop_shops(self, shops: tuple[str, ...] = SHOPS) -> None:
        """SIGTERM every generator at once: each finishes or rolls back its tick."""
        stopping = [p for p in (self.generators.pop(shop, None) for shop in shops) if p and p.poll() is None]
        for process in stopping:
            process.send_signal(signal.SIGTERM)
        for process in stopping:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def wait_for_tables(self) -> None:
        """The generators create the shop tables on their first tick."""
        deadline = time.monotonic() + 60
        for shop in SHOPS:
            while True:
                with closing(self.connect(SHOP_DATABASE[shop])) as conn, conn.cursor() as cur:
                    cur.execute("select count(*) from pg_tables where schemaname = 'public'")
                    if cur.fetchone()[0] >= 3:
                        break
                if self.generators[shop].poll() is not None:
                    raise StackNotReachable(f"the {shop} generator stopped; see {self.root / 'generator-logs'}")
                if time.monotonic() > deadline:
                    raise StackNotReachable(f"the {shop} generator made no tables within 60 s")
                time.sleep(0.5)

    def close(self) -> None:
        """The shops, then every server at once."""
        self.stop_shops()

        def stop(server: EmbeddedPostgres) -> None:
            with suppress(Exception):
                server.stop("immediate")

        with ThreadPoolExecutor(max(1, len(self.postgres))) as pool:
            list(pool.map(stop, self.postgres.values()))
