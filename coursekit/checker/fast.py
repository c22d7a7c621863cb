"""`make check GRADE=... FAST=1`: grade a DAG folder on a private, time-compressed copy of the grade.

The live check needs a stack that has run long enough for every mistake to
show (updates within 5 minutes, retention after 2 hours). This mode makes the
same events happen in about three minutes, on its own embedded databases and
free ports, never touching the learner's running stack:

* the shops tick every second, update rows for `update_window` seconds and
  delete them after `delete_after` seconds; their text holds quotes,
  semicolons, newlines, tabs, emoji and Turkish letters, and every nullable
  column holds NULLs;
* the load DAG runs back to back (Airflow's `dag.test()`, see `fast_runner.py`)
  instead of waiting for its cron schedule;
* one run is frozen: the shops pause, so what that run loaded is known exactly
  (which keys are later updated, which later deleted);
* one run is killed in the middle of its merge (its first write to `dds`
  waits on a lock held here, then the process is killed), then run again;
* one run finds a shop's database down;
* at the end the shops stop, the DAG catches up, and its last run is re-run:
  nothing may change.

Then the grade's checks run exactly as in the live mode, on this warehouse.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from psycopg2 import sql
from rich.console import Console

from coursekit.checker import checks
from coursekit.checker.airflow_api import NOT_LOADS
from coursekit.checker.checks import FAIL, PASS, CheckResult, Context, Observed, Rerun, Run
from coursekit.checker.stack import GradeStack, Shop, StackNotReachable
from coursekit.grade import POSTGRES_SERVICES, REPO_ROOT, SHOP_DATABASE, SHOPS, Grade
from coursekit.native.compose import load_compose
from coursekit.pg import EmbeddedPostgres, free_port

INITDB_TARGET = "/docker-entrypoint-initdb.d"
KILL_WAIT_SEC = 120  # how long run 3 may go without writing to dds before the lock is let go
LOAD_DAG_PREFERENCE = ("load_shops_to_dwh_wap", "load_shops_to_dwh")
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
    """How compressed the scenario is. The defaults fit a G3 verdict into ~3 minutes on 2 cores."""

    update_window: int = 30  # UPDATE_NOT_OLDER_THAN_SEC of the private shops
    delete_after: int = 50  # DELETE_OLDER_THAN_SEC
    warmup: float = 6  # seconds of shop activity before the first run
    min_busy_runs: int = 1  # runs with the shops ticking between the source-down run and the end
    pause: float = 3  # seconds of shop activity between two busy runs
    null_share: float = 0.2  # of every nullable column
    hostile_share: float = 0.5  # of one text column per table
    run_timeout: float = 600
    keep: bool = False  # keep the private copy (data, logs) for a look afterwards


@dataclass
class Scenario:
    """What happened, for the report and the checks."""

    runs: list[Run] = field(default_factory=list)
    rerun: Rerun | None = None
    observed: Observed | None = None
    notes: list[str] = field(default_factory=list)
    killed: bool = False


class FastRun:
    """One private copy of a grade with its databases, generators and Airflow runner."""

    def __init__(self, grade: Grade, dags_dir: Path, settings: FastSettings, console: Console) -> None:
        self.grade = grade
        self.dags_dir = dags_dir
        self.settings = settings
        self.console = console
        self.root = Path(tempfile.mkdtemp(prefix=f"coursekit-fast-{grade.name}-"))
        self.services = load_compose(grade.deploy_dir / "docker-compose.yml", env={})
        self.ports = {service: free_port() for service in POSTGRES_SERVICES}
        self.servers: dict[str, EmbeddedPostgres] = {}
        self.generators: dict[str, subprocess.Popen] = {}
        self.runner: subprocess.Popen | None = None
        self.replies_seen = 0
        self.started = time.monotonic()
        self.config_path = self.root / "generator-config.json"
        self.shops_started = time.monotonic()

    # -- setup -------------------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:5.0f} s[/dim]  {text}", highlight=False)

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

    def generator_config(self) -> Path:
        """The grade's config.json with NULLs in every nullable column and hostile text in one column per table."""
        config = json.loads(self.grade.generator_config.read_text(encoding="utf-8"))
        for spec in config["tables"].values():
            hostile_done = False
            for column in reversed(list(spec["columns"])):
                entry = spec["columns"][column]
                taken = entry.get("invalid_share", 0) + entry.get("late_share", 0)
                if entry.get("references") is None and entry.get("null_share", 0) < self.settings.null_share:
                    entry["null_share"] = min(self.settings.null_share, max(0.0, 1 - taken))
                if not hostile_done and entry["type"] == "text" and not entry.get("invalid_values") and not taken:
                    if entry.get("provider") not in (None, "random_element"):
                        entry.update(
                            provider="random_element",
                            params={"elements": HOSTILE_TEXT + ["plain text"] * len(HOSTILE_TEXT)},
                        )
                        hostile_done = True
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return self.config_path

    def generator_env(self, shop: str) -> dict[str, str]:
        env = {**os.environ, **self.grade.generator_env(shop)}
        env.update(
            POSTGRES_HOST="127.0.0.1",
            POSTGRES_PORT=str(self.ports[SHOP_DATABASE[shop]]),
            TICK_INTERVAL_SEC="1",
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

    def airflow_env(self) -> dict[str, str]:
        """Airflow's connections from the grade's airflow.env, pointed at the private databases."""
        home = self.root / "airflow"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.root / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            STAGING_DIR=str(self.root / "staging"),
        )
        for name, value in self.services["airflow"].env().items():
            if name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
                env[name] = self._rewrite_uri(value)
        return env

    def _rewrite_uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.hostname not in self.ports:
            return uri
        netloc = parts.netloc.rsplit("@", 1)
        hostport = f"127.0.0.1:{self.ports[parts.hostname]}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{hostport}" if len(netloc) == 2 else hostport))

    def prepare_airflow(self) -> None:
        shutil.copytree(self.dags_dir, self.root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        home = self.root / "airflow"
        home.mkdir()
        cached = migrated_metadata_db()
        shutil.copy(cached, home / "airflow.db")

    def start_runner(self) -> dict:
        replies = self.root / "runner-replies.jsonl"
        replies.touch()
        self.replies_seen = len(replies.read_text(encoding="utf-8").splitlines())
        log = open(self.root / "airflow-runs.log", "ab")  # the runner writes it while it lives
        self.runner = subprocess.Popen(
            [sys.executable, "-m", "coursekit.checker.fast_runner", str(self.root / "dags"), str(replies)],
            env=self.airflow_env(),
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        log.close()
        return self.next_reply(timeout=180)

    def next_reply(self, timeout: float) -> dict:
        replies = self.root / "runner-replies.jsonl"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = replies.read_text(encoding="utf-8").splitlines()
            if len(lines) > self.replies_seen:
                self.replies_seen += 1
                return json.loads(lines[self.replies_seen - 1])
            if self.runner is not None and self.runner.poll() is not None:
                raise StackNotReachable(f"Airflow stopped; see {self.root / 'airflow-runs.log'}")
            time.sleep(0.2)
        raise StackNotReachable(f"Airflow did not answer within {timeout:.0f} s; see {self.root / 'airflow-runs.log'}")

    def send(self, command: dict) -> None:
        assert self.runner is not None and self.runner.stdin is not None
        self.runner.stdin.write(json.dumps(command) + "\n")
        self.runner.stdin.flush()

    def run(self, dag_id: str, **rerun: str) -> dict:
        self.send({"cmd": "rerun" if rerun else "run", "dag_id": dag_id, **rerun})
        return self.next_reply(self.settings.run_timeout)

    def kill_runner(self) -> None:
        if self.runner is not None and self.runner.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.runner.pid, signal.SIGKILL)
            self.runner.wait(timeout=30)
        self.runner = None

    def close(self) -> None:
        self.kill_runner()
        for shop in list(self.generators):
            self.stop_generator(shop)
        for server in self.servers.values():
            with suppress(Exception):
                server.stop("immediate")
        if not self.settings.keep:
            shutil.rmtree(self.root / "pg", ignore_errors=True)

    # -- the checker's view of the private copy -----------------------------------------------------------------

    def stack(self) -> GradeStack:
        stack = GradeStack(self.grade)
        stack.dwh_port = self.ports["pg-dwh"]
        stack.dags_dir = self.root / "dags"
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
    for dag_id in LOAD_DAG_PREFERENCE:
        if dag_id in dags:
            return dag_id
    loads = [d for d, info in dags.items() if d not in NOT_LOADS and info["task_types"] != ["BashOperator"]]
    return loads[0] if loads else None


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


def _dds_tables(fast: FastRun) -> list[str]:
    with closing(fast.servers["pg-dwh"].connect()) as conn, conn.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'dds' order by 1")
        return [row[0] for row in cur.fetchall()]


def killed_in_merge(fast: FastRun, dag_id: str) -> tuple[bool, dict | None]:
    """Run once, holding every dds table in SHARE mode: the run's first write to dds waits, then the run dies.

    SHARE lets the run read dds (watermarks) but not write it. Once one of its
    statements waits on the lock, the whole runner is killed with SIGKILL and
    the lock released: a statement already sent then runs to its end, as it
    would on a real crash, and commits only if it was not inside a transaction.
    """
    tables = _dds_tables(fast)
    if not tables:
        return False, None
    dwh = fast.servers["pg-dwh"].connect()
    with closing(dwh), dwh.cursor() as cur:
        cur.execute(
            sql.SQL("lock table {} in share mode").format(sql.SQL(", ").join(sql.Identifier("dds", t) for t in tables))
        )
        fast.send({"cmd": "run", "dag_id": dag_id})
        deadline = time.monotonic() + KILL_WAIT_SEC
        replies = fast.root / "runner-replies.jsonl"
        while time.monotonic() < deadline:
            cur.execute("select pg_stat_clear_snapshot()")  # statistics views are cached per transaction
            cur.execute(
                "select left(query, 80) from pg_stat_activity where wait_event_type = 'Lock'"
                " and pid <> pg_backend_pid() and datname = current_database()"
            )
            waiting = cur.fetchall()
            if waiting:
                fast.kill_runner()
                dwh.rollback()
                fast.say(f"run 3 waited on dds ({' '.join(waiting[0][0].split())!r}): killed")
                return True, None
            if len(replies.read_text(encoding="utf-8").splitlines()) > fast.replies_seen:
                dwh.rollback()
                return False, fast.next_reply(5)  # the run ended without writing to dds
            time.sleep(0.2)
        dwh.rollback()  # it never wrote to dds while we waited: let it finish
    return False, fast.next_reply(fast.settings.run_timeout)


def scenario(fast: FastRun, stack: GradeStack, dag_id: str, scd2: bool) -> Scenario:
    """The events a real warehouse meets, in order; see the module docstring."""
    s, settings = Scenario(), fast.settings

    def run(note: str, planned_failure: bool = False, **rerun: str) -> dict:
        reply = fast.run(dag_id, **rerun)
        s.runs.insert(0, _run_record(reply, planned_failure))
        fast.say(f"{note}: {reply.get('state')} {' '.join(reply.get('failed_tasks') or [])}{reply.get('error', '')}")
        return reply

    run("run 1, the first load (shops ticking)")
    # Freeze the shops: what the next run loads is exactly what the shops hold.
    for shop in SHOPS:
        fast.stop_generator(shop)
    with closing(fast.servers["pg-shop-1"].connect()) as conn, conn.cursor() as cur:
        cur.execute("select now()")
        frozen_at = cur.fetchone()[0]
    s.observed = observe(fast, stack, frozen_at)
    frozen = run("run 2, shops paused: everything they hold is loaded")
    if frozen.get("state") != "success":
        s.observed = None  # nothing is known to be loaded
    else:
        touch_rows(fast, stack, s.observed)
        fast.say("updated loaded rows in both shops (a value changed, a value set to NULL)")
    for shop in SHOPS:
        fast.start_generator(shop)
    time.sleep(2)

    s.killed, reply = killed_in_merge(fast, dag_id)
    if s.killed:
        s.runs.insert(0, Run("killed in its merge", "failed", None, None, ["killed"], planned_failure=True))
        fast.start_runner()
        run("run 4, after the kill")
    elif reply is not None:
        s.runs.insert(0, _run_record(reply))
        fast.say(f"run 3: ended without writing to dds ({reply.get('state')})")

    fast.stop_generator("shop-2")
    fast.servers["pg-shop-2"].stop("fast")
    run("a run with pg-shop-2 down", planned_failure=True)
    fast.servers["pg-shop-2"].start()
    fast.start_generator("shop-2")

    # Keep loading while the shops update and delete what the frozen run loaded.
    busy = 0
    deletes_due = fast.shops_started + settings.delete_after + 3  # the first rows are gone from the shops
    while busy < settings.min_busy_runs or time.monotonic() < deletes_due:
        busy += 1
        time.sleep(settings.pause)
        run(f"busy run {busy} (shops updating and deleting)")

    for shop in SHOPS:
        fast.stop_generator(shop)
    run("catch-up run, shops stopped")
    last = run("final run")
    with ExitStack() as exit_stack:
        ctx = context(stack, s, scd2, connect_all(stack, exit_stack))
        before = checks.fingerprint(ctx)
        again = run(
            "re-run of the final run",
            logical_date=last.get("logical_date") or "",
            run_after=last.get("run_after") or "",
        )
        s.runs.pop(0)  # the re-run is graded by its own check
        changed = checks.changed_keys(before, checks.fingerprint(ctx))
    s.rerun = Rerun(last.get("run_id", "?"), str(again.get("state")), changed)
    return s


def touch_rows(fast: FastRun, stack: GradeStack, observed: Observed) -> None:
    """Update loaded rows as a shop would: one text value changes, another becomes NULL (or stops being NULL).

    Only rows still inside the shops' update window are touched, so the change
    is one the learner's lookback must catch. The random updates of the
    generators happen too; these make sure at least a few loaded keys change.
    """
    config = json.loads(fast.config_path.read_text(encoding="utf-8"))
    for table in stack.tables:
        spec = config["tables"][table.name]["columns"]
        column = next(
            (
                c
                for c, e in spec.items()
                if e["type"] == "text"
                and e.get("updatable", True)
                and not e.get("references")
                and not e.get("invalid_values")
                and e.get("provider") != "random_element"
            ),
            None,
        )
        if column is None:
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
                for key, value in zip(keys, ["changed ✓ it's new", None], strict=False):
                    cur.execute(
                        sql.SQL(
                            "update {t} set {c} = case when {c} is null then 'was NULL' else %s end where {key} = %s"
                        ).format(t=sql.Identifier(table.name), c=sql.Identifier(column), key=sql.Identifier(table.key)),
                        (value, key),
                    )


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


def grade_fast(
    grade: Grade,
    plan: list[checks.Check],
    scd2: bool,
    dags_dir: Path | None,
    console: Console,
    settings: FastSettings | None = None,
) -> list[CheckResult]:
    settings = settings or FastSettings()
    dags_dir = (dags_dir or grade.dags_dir).resolve()
    if not dags_dir.is_dir():
        raise StackNotReachable(f"no DAG folder at {dags_dir}")
    fast = FastRun(grade, dags_dir, settings, console)
    console.print(f"FAST check of {dags_dir} on a private copy of {grade.name} ({fast.root})", highlight=False)
    try:
        fast.prepare_airflow()
        fast.config_path = fast.generator_config()
        fast.start_databases()
        fast.shops_started = time.monotonic()
        for shop in SHOPS:
            fast.start_generator(shop)
        fast.say("databases up, shops ticking; starting Airflow")
        ready = fast.start_runner()
        fast.wait_for_tables()
        time.sleep(settings.warmup)
        stack = fast.stack()
        imports = CheckResult(
            "the DAG folder loads",
            "every DAG file imports without errors",
            not ready["import_errors"],
            "no import errors",
            "; ".join(f"{name}: {error.strip().splitlines()[-1]}" for name, error in ready["import_errors"].items())
            or f"DAGs: {', '.join(sorted(ready['dags']))}",
            "open the file's import error in the Airflow UI (or run python on the file)",
        )
        dag_id = choose_load_dag(ready["dags"])
        s = Scenario()
        if dag_id is None:
            fast.say("no load DAG in the folder: checking the empty warehouse")
        else:
            fast.say(f"load DAG {dag_id}")
            s = scenario(fast, stack, dag_id, scd2)
        with ExitStack() as exit_stack:
            ctx = context(stack, s, scd2, connect_all(stack, exit_stack))
            ctx.max_active_runs = ready["dags"].get(dag_id or "", {}).get("max_active_runs")
            if dag_id is None:
                ctx.runs = []
            results = [imports] + [result for check in plan for result in check(ctx)]
        fast.say(f"graded in {time.monotonic() - fast.started:.0f} s; Airflow's log: {fast.root / 'airflow-runs.log'}")
        return results
    finally:
        fast.close()


__all__ = ["FAIL", "PASS", "FastSettings", "grade_fast"]
