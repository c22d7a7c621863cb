"""`make check GRADE=... FAST=1`: grade a DAG folder on a private, time-compressed copy of the grade.

The live check needs a stack that has run long enough for every mistake to
show (updates within 5 minutes, retention after 2 hours). This mode makes the
same events happen in one to two minutes, on its own embedded databases and
free ports, never touching the learner's running stack:

* the shops tick every second (G4: every 3 s, see `settings_for`), update rows for `update_window` seconds and
  delete them after `delete_after` seconds; their text holds quotes,
  semicolons, newlines, tabs, emoji and Turkish letters, and every column the
  shops ever leave empty is NULL in a fifth of the rows (and some loaded rows
  change to and from NULL);
* the load DAG runs back to back (Airflow's `dag.test()`, see `fast_runner.py`)
  instead of waiting for its cron schedule, with retries off;
* one run is frozen: the shops pause, so what that run loaded is known exactly
  (which keys are later updated, which later deleted); then loaded rows are
  updated (one value changed, another to or from NULL) and a second paused run
  must pick the changes up before retention can delete those rows;
* that second paused run, which has versions to close, is killed in the
  middle of its merge (its first write to `dds` waits on a lock held here,
  then the process is killed): a merge that commits statement by statement
  leaves keys without a current version. The warehouse is inspected right
  then; then the same run (same logical date) runs again, as Airflow's retry
  would. Where the shops never update (G2) there is nothing to close, and the
  killed run is the next one, with new rows to insert;
* one run finds a shop's database down;
* the clock of pg-shop-2 runs 15 minutes behind (G1-G3), as a shop's may;
* at the end the shops stop, the DAG catches up, and its last run is re-run:
  nothing may change.

A load split into DAGs linked by assets or TriggerDagRunOperator is one load
(`pipeline.py`): each run above starts its first DAG and runs the DAG runs that
causes, and the run killed in its merge is whichever DAG writes dds then.

Then the grade's checks run exactly as in the live mode, on this warehouse.
`grade_many` grades several DAG folders side by side against the same shops,
each with its own warehouse database and Airflow (the tests grade a dozen wrong
solutions that way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from psycopg2 import sql
from rich.console import Console

from coursekit.checker import checks
from coursekit.checker.checks import CANNOT, FAIL, WAIT, CheckResult, Context, Observed, Rerun, Run
from coursekit.checker.pipeline import LoadChoice, choose_load
from coursekit.checker.results_json import note_load_dag
from coursekit.checker.stack import GradeStack, Shop, StackNotReachable
from coursekit.grade import POSTGRES_SERVICES, REPO_ROOT, SHOP_DATABASE, SHOPS, Grade
from coursekit.native.compose import load_compose
from coursekit.pg import EmbeddedPostgres, free_port

INITDB_TARGET = "/docker-entrypoint-initdb.d"
KILL_WAIT_SEC = 120  # how long run 3 may go without writing to dds before the lock is let go
# Values a real shop's text meets; each must come back from dds exactly as it went in.
HOSTILE_TEXT = [
    "O'Brien; DROP TABLE customers; --",
    'say "hello", then\ttab',
    "first line\nsecond line\r\nthird",
    "back\\slash \\N and 100%",
    "İstanbul, Şişli: ığüşöç ĞÜŞİÖÇ",
    "🍍 pineapple 🥭 mango",
    "   leading and trailing spaces   ",
    "",
]


@dataclass
class FastSettings:
    """How compressed the scenario is. The defaults give a G3 verdict in about a minute and a half on 2 cores."""

    tick_interval: int = 1  # TICK_INTERVAL_SEC of the private shops
    update_window: int = 30  # UPDATE_NOT_OLDER_THAN_SEC of the private shops
    delete_after: int = 50  # DELETE_OLDER_THAN_SEC
    warmup: float = 6  # seconds of shop activity before the first run
    min_busy_runs: int = 1  # runs with the shops ticking between the source-down run and the end
    pause: float = 3  # seconds of shop activity between two busy runs
    null_share: float = 0.2  # of every column the shops leave empty at times
    run_timeout: float = 600
    concurrency: int = 2  # DAG folders run at once (several are graded side by side in the tests)
    # pg-shop-2's clock runs this far behind (its rows' created_at too): one watermark shared by both
    # shops then skips Istanbul's rows. 0 where a check compares created_at with the warehouse's clock (G4).
    shop_2_clock_behind: int = 900
    keep: bool = False  # keep the private databases for a look afterwards


def settings_for(plan: list[checks.Check], settings: FastSettings | None = None) -> FastSettings:
    """The settings a grade's plan is graded with (the docs quote them: coursekit/docs/facts.py).

    Write-Audit-Publish (G4): latency compares created_at with dds's clock, so no skewed clock; and
    slower ticks, so that orders extracted a few seconds after customers (dag.test runs one task at
    a time) do not reference many customers the run has not seen, which a WAP load rightly holds
    back, up to halting the batch (max_quarantine_share).
    """
    settings = settings or FastSettings()
    if any(getattr(check, "__name__", "") == "check_latency" for check in plan):
        settings = replace(settings, shop_2_clock_behind=0, tick_interval=max(settings.tick_interval, 3))
    return settings


@dataclass
class Scenario:
    """What happened to one DAG folder, for its checks."""

    runs: list[Run] = field(default_factory=list)
    rerun: Rerun | None = None
    observed: Observed | None = None
    after_kill: list[str] | None = None  # what broke right after the kill; None: no run was killed


class Variant:
    """One DAG folder under test: its own warehouse database, Airflow home and Airflow runner."""

    def __init__(self, name: str, dags_dir: Path, root: Path, dwh_database: str) -> None:
        self.name = name
        self.dags_dir = dags_dir
        self.root = root
        self.dwh_database = dwh_database
        self.replies = root / "runner-replies.jsonl"
        self.log = root / "airflow-runs.log"
        self.seen = 0
        self.runner: subprocess.Popen | None = None
        self.ready: dict = {"dags": {}, "import_errors": {}}
        self.dag_id: str | None = None  # the first DAG of the load: each scenario run starts it
        self.choice = LoadChoice(None)
        self.scenario = Scenario()

    def start_runner(self, env: dict[str, str]) -> None:
        self.replies.touch()
        self.seen = len(self.replies.read_text(encoding="utf-8").splitlines())
        with open(self.log, "ab") as log:
            self.runner = subprocess.Popen(
                [sys.executable, "-m", "coursekit.checker.fast_runner", str(self.root / "dags"), str(self.replies)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # the kill takes the runner's whole process group
            )

    def has_reply(self) -> bool:
        return len(self.replies.read_text(encoding="utf-8").splitlines()) > self.seen

    def next_reply(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.has_reply():
                self.seen += 1
                return json.loads(self.replies.read_text(encoding="utf-8").splitlines()[self.seen - 1])
            if self.runner is not None and self.runner.poll() is not None:
                raise StackNotReachable(f"Airflow stopped; see {self.log}")
            time.sleep(0.2)
        raise StackNotReachable(f"Airflow did not answer within {timeout:.0f} s; see {self.log}")

    def send(self, command: dict) -> None:
        assert self.runner is not None and self.runner.stdin is not None
        try:
            self.runner.stdin.write(json.dumps(command) + "\n")
            self.runner.stdin.flush()
        except BrokenPipeError:  # it died while importing Airflow, before its first command
            raise StackNotReachable(f"Airflow stopped; see {self.log}") from None

    def run(self, timeout: float, **rerun: str) -> dict:
        assert self.dag_id is not None
        self.send(self.command("rerun" if rerun else "run", **rerun))
        return self.next_reply(timeout)

    def command(self, cmd: str, **rerun: str) -> dict:
        """A run of the load: its first DAG, then the DAG runs it causes (a pipeline, see pipeline.py)."""
        return {"cmd": cmd, "dag_id": self.dag_id, "pipeline": self.choice.pipeline, **rerun}

    def kill(self) -> None:
        if self.runner is not None and self.runner.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.runner.pid, signal.SIGKILL)
            self.runner.wait(timeout=30)
        self.runner = None


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
        self.ports = {service: free_port() for service in POSTGRES_SERVICES}
        self.servers: dict[str, EmbeddedPostgres] = {}
        self.generators: dict[str, subprocess.Popen] = {}
        self.config_path = self.root / "generator-config.json"
        self.started = self.shops_started = time.monotonic()
        default = grade.env("pg-dwh").get("POSTGRES_DB") or grade.env("pg-dwh")["POSTGRES_USER"]
        self.variants = [
            Variant(name, path, self.root / "variants" / f"{number:02d}", default if number == 0 else f"dwh_{number}")
            for number, (name, path) in enumerate(folders.items())
        ]

    def say(self, text: str, variant: Variant | None = None) -> None:
        who = f"{variant.name}: " if variant is not None and len(self.variants) > 1 else ""
        self.console.print(f"{time.monotonic() - self.started:5.0f} s  {who}{text}", highlight=False, markup=False)

    def each(self, step: Callable[[Variant], object]) -> list:
        """Do `step` for every variant that has a load DAG, a few at a time."""
        active = [v for v in self.variants if v.dag_id is not None]
        with ThreadPoolExecutor(max(1, min(self.settings.concurrency, len(active) or 1))) as pool:
            return list(pool.map(step, active))

    # -- databases and shops -------------------------------------------------------------------------------------

    def start_databases(self) -> None:
        def start(service: str) -> None:
            spec = self.grade.postgres_spec(service, self.ports[service])
            server = EmbeddedPostgres(spec, self.root / "pg" / service, durable=False)
            compose = self.services[service]
            scripts: list[Path] = []
            for mount in compose.mounts:
                if mount.target.startswith(INITDB_TARGET):
                    scripts += sorted(mount.host.glob("*.sh")) if mount.host.is_dir() else [mount.host]
            server.start(scripts, script_env=compose.env())
            self.servers[service] = server

        with ThreadPoolExecutor(len(POSTGRES_SERVICES)) as pool:
            list(pool.map(start, POSTGRES_SERVICES))
        if self.settings.shop_2_clock_behind:
            self.skew_clock("pg-shop-2", self.settings.shop_2_clock_behind)
        for variant in self.variants[1:]:
            self.servers["pg-dwh"].create_database(variant.dwh_database)

    def skew_clock(self, service: str, seconds: int) -> None:
        """Make the shop's own role see a clock `seconds` behind: a `now()` earlier on its search_path.

        The generator (and so created_at, and the update and delete windows) uses
        the database's now(); the reader role Airflow uses is not affected.
        """
        server = self.servers[service]
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

    def start_generator(self, shop: str) -> None:
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

    def stop_generator(self, shop: str) -> None:
        process = self.generators.pop(shop, None)
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the generator finishes or rolls back its tick
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def wait_for_tables(self) -> None:
        """The generators create the shop tables on their first tick."""
        deadline = time.monotonic() + 60
        for shop in SHOPS:
            while True:
                with closing(self.servers[SHOP_DATABASE[shop]].connect()) as conn, conn.cursor() as cur:
                    cur.execute("select count(*) from pg_tables where schemaname = 'public'")
                    if cur.fetchone()[0] >= 3:
                        break
                if self.generators[shop].poll() is not None:
                    raise StackNotReachable(f"the {shop} generator stopped; see {self.root / 'generator-logs'}")
                if time.monotonic() > deadline:
                    raise StackNotReachable(f"the {shop} generator made no tables within 60 s")
                time.sleep(0.5)

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
        parts = urlsplit(uri)
        if parts.hostname not in self.ports:
            return uri
        login, _, _ = parts.netloc.rpartition("@")
        hostport = f"127.0.0.1:{self.ports[parts.hostname]}"
        path = f"/{variant.dwh_database}" if parts.hostname == "pg-dwh" else parts.path
        return urlunsplit(parts._replace(netloc=f"{login}@{hostport}" if login else hostport, path=path))

    def start_airflow(self) -> None:
        """Start every variant's runner; it imports Airflow and parses the folder while the databases start."""
        cached = migrated_metadata_db()
        for variant in self.variants:
            shutil.copytree(variant.dags_dir, variant.root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
            (variant.root / "airflow").mkdir(parents=True)
            shutil.copy(cached, variant.root / "airflow" / "airflow.db")
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
            variant.kill()
        for shop in list(self.generators):
            self.stop_generator(shop)
        for server in self.servers.values():
            with suppress(Exception):
                server.stop("immediate")
        if not self.settings.keep:
            shutil.rmtree(self.root / "pg", ignore_errors=True)

    def stack(self, variant: Variant) -> GradeStack:
        """The checker's view of the private copy, with this variant's warehouse."""
        stack = GradeStack(self.grade)
        stack.dwh_port = self.ports["pg-dwh"]
        stack.dwh_env = {**stack.dwh_env, "POSTGRES_DB": variant.dwh_database}
        stack.dags_dir = variant.root / "dags"
        stack.shops = [
            Shop(
                name=s.name,
                src_id=s.src_id,
                port=self.ports[SHOP_DATABASE[s.name]],
                env=s.env,
                update_window_sec=self.settings.update_window,
                delete_after_sec=self.settings.delete_after,
            )
            for s in stack.shops
        ]
        return stack


def migrated_metadata_db() -> Path:
    """Airflow's SQLite metadata database, migrated once per Airflow version and reused (a migration takes ~20 s)."""
    from importlib.metadata import version

    cache = REPO_ROOT / ".run" / "fast" / f"airflow-{version('apache-airflow-core')}.db"
    if cache.exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=home,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        )
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            raise StackNotReachable(f"airflow db migrate failed: {result.stderr.strip()[-500:]}")
        partial = cache.with_suffix(".partial")
        shutil.copy(Path(home) / "airflow.db", partial)
        partial.replace(cache)
    return cache


def choose_load_dag(dags: dict[str, dict]) -> str | None:
    """The first DAG of the folder's load (see `pipeline.choose_load`)."""
    return choose_load(dags).dag_id


def _run_record(reply: dict, planned_failure: bool = False) -> Run:
    def when(key: str) -> datetime | None:
        return datetime.fromisoformat(reply[key]) if reply.get(key) else None

    return Run(
        reply.get("run_id", "?"),
        "success" if reply.get("state") == "success" else "failed",
        when("start"),
        when("end"),
        reply.get("failed_tasks") or ([reply["error"]] if reply.get("error") else []),
        planned_failure,
    )


def observe(fast: FastRun, stack: GradeStack, before: datetime) -> Observed:
    """Every source row created before `before`, as the shops hold it now (the shops are paused)."""
    loaded: dict[str, dict[str, dict[Any, dict[str, Any]]]] = {}
    for table in stack.tables:
        loaded[table.name] = {}
        for shop in stack.shops:
            with closing(fast.servers[SHOP_DATABASE[shop.name]].connect()) as conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL("select * from {} where created_at < %s").format(sql.Identifier(table.name)), (before,)
                )
                columns = [d.name for d in cur.description]
                key_at = columns.index(table.key)
                loaded[table.name][shop.src_id] = {row[key_at]: dict(zip(columns, row, strict=True)) for row in cur}
    return Observed(loaded)


def kill_in_merge(fast: FastRun, variant: Variant, scd2: bool, name: str) -> dict:
    """Run once, holding every dds table in SHARE mode: the run's first write to dds waits, then the run dies.

    SHARE lets the run read dds (watermarks) but not write it. Once one of its
    statements waits on the lock, the whole runner is killed with SIGKILL and
    the lock released: a statement already sent then runs to its end, as it
    would on a real crash, and commits only if it was not inside a transaction.
    The same run is then resumed (run again with its logical date, as Airflow's
    retry would) and must finish the work with no duplicates and no losses.
    """
    dwh = fast.servers["pg-dwh"].connect(variant.dwh_database)
    with closing(dwh), dwh.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'dds' order by 1")
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            cur.execute(
                sql.SQL("lock table {} in share mode").format(
                    sql.SQL(", ").join(sql.Identifier("dds", t) for t in tables)
                )
            )
        # The run's dates are chosen here, so that the same run can be resumed after the kill.
        when = {"logical_date": datetime.now(UTC).isoformat(), "run_after": datetime.now(UTC).isoformat()}
        variant.send(variant.command("rerun", **when))
        deadline = time.monotonic() + (KILL_WAIT_SEC if tables else 0)
        while time.monotonic() < deadline and not variant.has_reply():
            cur.execute("select pg_stat_clear_snapshot()")  # statistics views are cached per transaction
            cur.execute(
                "select left(query, 80) from pg_stat_activity where wait_event_type = 'Lock'"
                " and pid <> pg_backend_pid() and datname = current_database()"
            )
            waiting = cur.fetchall()
            if waiting:
                variant.kill()
                dwh.rollback()
                fast.say(f"{name} waited on dds ({' '.join(waiting[0][0].split())!r}): killed", variant)
                # This connection stays open (idle) while the killed run's own connections end.
                variant.scenario.after_kill = half_written(fast, variant, scd2, ignore_pid=dwh.get_backend_pid())
                fast.say(f"{name}: the warehouse inspected right after the kill", variant)
                variant.scenario.runs.insert(0, Run("killed in its merge", "failed", None, None, ["killed"], True))
                variant.start_runner(fast.airflow_env(variant))
                variant.send({"cmd": "parse"})
                variant.next_reply(timeout=300)  # ready again
                fast.say("Airflow restarted", variant)
                note = f"{name} resumed after the kill"
                return record(fast, variant, note, variant.run(fast.settings.run_timeout, **when))
            time.sleep(0.2)
        dwh.rollback()  # it never wrote to dds while we waited: let it finish
    return record(fast, variant, f"{name}, never wrote to dds", variant.next_reply(fast.settings.run_timeout))


def half_written(fast: FastRun, variant: Variant, scd2: bool, ignore_pid: int | None = None) -> list[str]:
    """What a killed run left broken, seen before anything else runs: the rules, and the rows loaded before.

    First the killed run's connections must end (their statements finish or roll back);
    `ignore_pid` is the caller's own open connection, which is not the run's. (Counted, it
    made every fast grading wait the whole 30 s here.)
    """
    dwh = fast.servers["pg-dwh"].connect(variant.dwh_database)
    with closing(dwh), dwh.cursor() as cur:  # the killed run's statements finish (or roll back) first
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cur.execute("select pg_stat_clear_snapshot()")
            cur.execute(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and pid <> pg_backend_pid() and pid is distinct from %s and backend_type = 'client backend'",
                (ignore_pid,),
            )
            if not cur.fetchone()[0]:
                break
            time.sleep(0.2)
        dwh.rollback()
    stack = fast.stack(variant)
    broken: list[str] = []
    with ExitStack() as exit_stack:
        ctx = context(stack, variant.scenario, scd2, connect_all(stack, exit_stack))
        plan = [checks.check_unique_keys] + ([checks.check_scd2_rules] if scd2 else [])
        broken += [f"{r.name} ({r.found})" for check in plan for r in check(ctx) if r.verdict == FAIL]
        observed = variant.scenario.observed
        for table in checks._present(ctx) if observed else []:
            held = checks._held(ctx, table)  # a WAP load (G4) rightly keeps some rows out of dds
            kept = set(
                ctx.query(
                    sql.SQL("select distinct src_id, {} from {}").format(
                        sql.Identifier(table.key), sql.Identifier("dds", table.name)
                    )
                )
            )
            gone = [
                f"{src}:{key}"
                for src, keys in observed.loaded[table.name].items()
                for key in keys
                if (src, key) not in kept and (src, key) not in held
            ]
            if gone:
                broken.append(f"dds.{table.name}: {len(gone)} rows loaded before are gone, e.g. {', '.join(gone[:5])}")
    return broken


def record(fast: FastRun, variant: Variant, note: str, reply: dict, planned_failure: bool = False) -> dict:
    variant.scenario.runs.insert(0, _run_record(reply, planned_failure))
    failed = " ".join(reply.get("failed_tasks") or []) + reply.get("error", "")
    fast.say(f"{note}: {reply.get('state')} {failed}", variant)
    return reply


def scenario(fast: FastRun, stack: GradeStack, scd2: bool) -> None:
    """The events a real warehouse meets, in order, for every DAG folder at once; see the module docstring."""
    settings = fast.settings

    def step(note: str, planned_failure: bool = False) -> dict[str, dict]:
        def one(variant: Variant) -> dict:
            return record(fast, variant, note, variant.run(settings.run_timeout), planned_failure)

        active = [v for v in fast.variants if v.dag_id is not None]
        return {v.name: reply for v, reply in zip(active, fast.each(one), strict=True)}

    step("run 1, the first load (shops ticking)")
    for shop in SHOPS:  # freeze: what the next run loads is exactly what the shops hold
        fast.stop_generator(shop)
    with closing(fast.servers["pg-shop-1"].connect()) as conn, conn.cursor() as cur:
        cur.execute("select now()")
        frozen_at = cur.fetchone()[0]
    observed = observe(fast, stack, frozen_at)
    frozen = step("run 2, shops paused: everything they hold is loaded")
    touched = touch_rows(fast, stack, observed)
    fast.say(f"updated {touched} loaded rows (one value changed, another set to NULL or from NULL to a value)")
    for variant in fast.variants:  # what run 2 loaded, which the killed run must not lose
        if frozen.get(variant.name, {}).get("state") == "success":
            variant.scenario.observed = observed
    # The run that loads the updates has versions to close, so it is the one killed in its merge:
    # a merge committing statement by statement then leaves keys without a current version. It is
    # inspected right then, and resumed. Still paused: no retention can delete a touched row before
    # a run has seen its change, and the watermarks stay where run 2 left them.
    if touched:
        active = [v for v in fast.variants if v.dag_id is not None]
        killed = fast.each(lambda v: kill_in_merge(fast, v, scd2, "run 3"))
        seen = dict(zip((v.name for v in active), killed, strict=True))
    else:
        seen = step("run 3, shops still paused")
    for variant in fast.variants:
        if seen.get(variant.name, {}).get("state") != "success":
            variant.scenario.observed = None  # nothing is known to be loaded
    for shop in SHOPS:
        fast.start_generator(shop)
    time.sleep(2)
    if not touched:
        # Shops that never update a row (G2) give a run nothing to close: the killed run is
        # then one with new rows to insert, which a load that appends twice doubles on resume.
        fast.each(lambda v: kill_in_merge(fast, v, scd2, "run 4"))

    fast.stop_generator("shop-2")
    fast.servers["pg-shop-2"].stop("fast")
    step("a run with pg-shop-2 down", planned_failure=True)
    fast.servers["pg-shop-2"].start()
    fast.start_generator("shop-2")

    # Keep loading while the shops update rows and delete what the frozen run loaded.
    busy, deletes_due = 0, fast.shops_started + settings.delete_after + 3
    while busy < settings.min_busy_runs or time.monotonic() < deletes_due:
        busy += 1
        time.sleep(settings.pause)
        step(f"busy run {busy} (shops updating and deleting)")

    for shop in SHOPS:
        fast.stop_generator(shop)
    step("catch-up run, shops stopped")
    final = step("final run")
    fast.each(lambda variant: rerun_final(fast, variant, final[variant.name], scd2))


def rerun_final(fast: FastRun, variant: Variant, last: dict, scd2: bool) -> None:
    """Re-run the final run (the shops are stopped): not one row of dds may change."""
    stack = fast.stack(variant)
    with ExitStack() as exit_stack:
        ctx = context(stack, variant.scenario, scd2, connect_all(stack, exit_stack))
        before = checks.fingerprint(ctx)
        again = variant.run(
            fast.settings.run_timeout,
            logical_date=last.get("logical_date") or "",
            run_after=last.get("run_after") or "",
        )
        changed = checks.changed_keys(before, checks.fingerprint(ctx))
    fast.say(f"re-run of the final run: {again.get('state')}", variant)
    variant.scenario.rerun = Rerun(last.get("run_id", "?"), str(again.get("state")), changed)


def context(stack: GradeStack, s: Scenario, scd2: bool, connections: dict) -> Context:
    """Everything is stable: the shops have stopped, so every row must be loaded with its last values."""
    later = datetime.now(UTC) + timedelta(days=1)
    first = next((r.start for r in reversed(s.runs) if r.state == "success" and r.start), None)
    return Context(
        stack=stack,
        dwh=connections["dwh"],
        shops={shop.name: connections[shop.name] for shop in stack.shops},
        stable_before={shop.name: later for shop in stack.shops},
        present_before={shop.name: later for shop in stack.shops},
        shop_now={shop.name: datetime.now(UTC) for shop in stack.shops},
        scd2=scd2,
        runs=s.runs,
        first_load=first,
        rerun=s.rerun,
        observed=s.observed,
    )


def connect_all(stack: GradeStack, exit_stack: ExitStack) -> dict:
    connections = {"dwh": exit_stack.enter_context(stack.connect_dwh())}
    connections.update({shop.name: exit_stack.enter_context(stack.connect_shop(shop)) for shop in stack.shops})
    return connections


def grade_variant(fast: FastRun, variant: Variant, plan: list[checks.Check], scd2: bool) -> list[CheckResult]:
    stack = fast.stack(variant)
    errors = variant.ready["import_errors"]
    if variant.choice.ambiguous:
        return [cannot_choose(variant.choice)]
    imports = CheckResult(
        "the DAG folder loads",
        "every DAG file imports without errors",
        not errors,
        "no import errors",
        "; ".join(f"{name}: {error.strip().splitlines()[-1]}" for name, error in errors.items())
        or f"DAGs: {', '.join(sorted(variant.ready['dags']))}",
        "open the file's import error in the Airflow UI (or run python on the file)",
    )
    broken = variant.scenario.after_kill
    killed = CheckResult(
        "loads are atomic",
        "a run killed in the middle of its merge leaves no half-written table",
        WAIT if broken is None else not broken,
        "right after the kill: one current version (or row) per key, the rules hold, nothing loaded is gone",
        "no run was killed: none wrote to dds while it waited" if broken is None else "; ".join(broken[:3]) or "ok",
        "the scenario could not kill a run in its merge" if broken is None else checks.ONE_TRANSACTION_HINT,
    )
    with ExitStack() as exit_stack:
        ctx = context(stack, variant.scenario, scd2, connect_all(stack, exit_stack))
        ctx.max_active_runs = pipeline_max_active_runs(variant)
        return [imports, killed] + [result for check in plan for result in check(ctx)]


def grade_many(
    grade: Grade,
    plan: list[checks.Check],
    scd2: bool,
    folders: dict[str, Path],
    console: Console,
    settings: FastSettings | None = None,
    dag_id: str | None = None,
    choices: dict[str, LoadChoice] | None = None,
) -> dict[str, list[CheckResult]]:
    """Grade several DAG folders side by side against the same shops, each with its own warehouse.

    `choices`, if given, receives each folder's load choice (which DAGs were graded, and why).
    """
    settings = settings_for(plan, settings)
    for path in folders.values():
        if not path.is_dir():
            raise StackNotReachable(f"no DAG folder at {path}")
    fast = FastRun(grade, {name: path.resolve() for name, path in folders.items()}, settings, console, dag_id)
    console.print(f"FAST check on a private copy of {grade.name} ({fast.root})", highlight=False)
    try:
        fast.write_generator_config()
        fast.start_airflow()  # imports Airflow meanwhile; it parses the DAG folders once the databases are up
        fast.start_databases()
        fast.shops_started = time.monotonic()
        for shop in SHOPS:
            fast.start_generator(shop)
        fast.say("databases up, shops ticking; Airflow starting")
        fast.wait_for_airflow()
        fast.say("Airflow ready")
        fast.wait_for_tables()
        # Shop activity before the first run, counted from the shops' start: they tick while Airflow starts.
        time.sleep(max(0.0, settings.warmup - (time.monotonic() - fast.shops_started)))
        for variant in fast.variants:
            fast.say(variant.choice.line() + ("" if variant.dag_id else "; the warehouse stays empty"), variant)
            note_load_dag(variant.dag_id, variant.name)
        stack = fast.stack(fast.variants[0])
        if any(v.dag_id for v in fast.variants):
            scenario(fast, stack, scd2)
        results = {v.name: grade_variant(fast, v, plan, scd2) for v in fast.variants}
        if choices is not None:
            choices.update({v.name: v.choice for v in fast.variants})
        fast.say(f"graded in {time.monotonic() - fast.started:.0f} s; Airflow's log: {fast.variants[0].log}")
        return results
    finally:
        fast.close()


def grade_fast(
    grade: Grade,
    plan: list[checks.Check],
    scd2: bool,
    dags_dir: Path,
    console: Console,
    settings: FastSettings | None = None,
    dag_id: str | None = None,
) -> list[CheckResult]:
    """`make check FAST=1`: one DAG folder."""
    console.print(f"grading {dags_dir}", highlight=False)
    choices: dict[str, LoadChoice] = {}
    results = grade_many(grade, plan, scd2, {"yours": dags_dir}, console, settings, dag_id, choices)["yours"]
    console.print(choices["yours"].line(), highlight=False, markup=False)  # right above the report
    return results


def cannot_choose(choice: LoadChoice) -> CheckResult:
    """The one result of a folder whose load cannot be told: the verdict is CANNOT CHECK, naming what was found."""
    return CheckResult("the load DAG is found", "the folder's load DAG is recognisable", CANNOT, "", choice.why)


def pipeline_max_active_runs(variant: Variant) -> int | None:
    """max_active_runs of the load; of a pipeline, the one DAG that allows more than one run, if any."""
    values = [variant.ready["dags"].get(d, {}).get("max_active_runs") for d in variant.choice.pipeline]
    values = [v for v in values if v is not None]
    return next((v for v in values if v != 1), values[0] if values else None)


def touch_rows(fast: FastRun, stack: GradeStack, observed: Observed, value: str = "changed ✓ it's new") -> int:
    """Update loaded rows as a shop would: one value changes, another becomes NULL (or stops being NULL).

    Only rows still inside the shops' update window are touched, so the change
    is one the learner's lookback must catch. The random updates of the
    generators happen too; these make sure at least a few loaded keys change.
    The run that loads these changes is the one killed in its merge: it has
    versions to close, so a merge that commits its statements one by one leaves
    keys without (or with two) current versions, which `half_written` sees.
    Returns how many rows were touched.
    """
    touched = 0
    config = json.loads(fast.config_path.read_text(encoding="utf-8"))
    for table in stack.tables:
        spec = config["tables"][table.name]["columns"]
        column = next(
            (
                c
                for c, e in spec.items()
                if e["type"] == "text" and e.get("null_share", 0) > 0 and not e.get("invalid_values")
            ),
            None,
        )
        if column is None or not table.updates:  # G2's shops never update a row: neither do we
            continue
        for shop in stack.shops:
            server = fast.servers[SHOP_DATABASE[shop.name]]
            with closing(server.connect()) as conn, conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        "select {key} from {t} where {key} = any(%s)"
                        " and created_at > now() - make_interval(secs => %s) order by {key} desc limit 2"
                    ).format(key=sql.Identifier(table.key), t=sql.Identifier(table.name)),
                    (list(observed.loaded[table.name][shop.src_id]), fast.settings.update_window - 5),
                )
                keys = [row[0] for row in cur.fetchall()]
                observed.touched.setdefault(table.name, []).extend((shop.src_id, key) for key in keys)
                touched += len(keys)
                for key, new in zip(keys, [value, None], strict=False):
                    cur.execute(
                        sql.SQL(
                            "update {t} set {c} = case when {c} is null then 'was NULL' else %s end where {key} = %s"
                        ).format(t=sql.Identifier(table.name), c=sql.Identifier(column), key=sql.Identifier(table.key)),
                        (new, key),
                    )
    return touched
