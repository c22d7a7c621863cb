"""Each DAG folder under test: its warehouse database, its Airflow home, and the Airflow processes that run it.

A runner is one `fast_runner.py` process (Airflow imported, the folder parsed
on command, one DAG run per command; see there). The scenario kills a runner
in the middle of a merge; a spare runner, started ahead, then takes over at
once instead of importing Airflow again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from coursekit.checker.checks import Observed, Rerun, Run
from coursekit.checker.pipeline import LoadChoice
from coursekit.checker.stack import StackNotReachable
from coursekit.grade import REPO_ROOT
from coursekit.hostile import kill_child


@dataclass
class Scenario:
    """What happened to one DAG folder, for its checks."""

    runs: list[Run] = field(default_factory=list)
    rerun: Rerun | None = None
    observed: Observed | None = None
    after_kill: list[str] | None = None  # what broke right after the kill; None: no run was killed


def run_record(reply: dict, planned_failure: bool = False) -> Run:
    """A runner's reply as the checks read a run."""

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


class Runner:
    """One fast_runner process and the file it appends its replies to."""

    def __init__(self, dags: Path, replies: Path, log: Path, env: dict[str, str]) -> None:
        self.replies = replies
        self.log = log
        self.seen = 0
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "coursekit.checker.fast_runner", str(dags), str(replies)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # the kill takes the runner's whole process group
            )

    def _lines(self) -> list[str]:
        return self.replies.read_text(encoding="utf-8").splitlines() if self.replies.exists() else []

    def has_reply(self) -> bool:
        return len(self._lines()) > self.seen

    def next_reply(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.has_reply():
                self.seen += 1
                return json.loads(self._lines()[self.seen - 1])
            if self.process.poll() is not None:
                raise StackNotReachable(f"Airflow stopped; see {self.log}")
            time.sleep(0.2)
        raise StackNotReachable(f"Airflow did not answer within {timeout:.0f} s; see {self.log}")

    def send(self, command: dict) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:  # it died while importing Airflow, before its first command
            raise StackNotReachable(f"Airflow stopped; see {self.log}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            kill_child(self.process)


class Variant:
    """One DAG folder under test: its own warehouse database, Airflow home and Airflow runner."""

    def __init__(self, name: str, dags_dir: Path, root: Path, dwh_database: str) -> None:
        self.name = name
        self.dags_dir = dags_dir
        self.root = root
        self.dwh_database = dwh_database
        self.log = root / "airflow-runs.log"
        self.runner: Runner | None = None
        self.spare: Runner | None = None  # started ahead of the kill, parsed and ready to take over
        self.started = 0
        self.ready: dict = {"dags": {}, "import_errors": {}}
        self.dag_id: str | None = None  # the first DAG of the load: each scenario run starts it
        self.choice = LoadChoice(None)
        self.scenario = Scenario()

    def install(self, metadata_db: Path) -> None:
        """The folder copied as Airflow's DAG folder, and a migrated metadata database."""
        shutil.copytree(self.dags_dir, self.root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        (self.root / "airflow").mkdir(parents=True)
        shutil.copy(metadata_db, self.root / "airflow" / "airflow.db")

    def new_runner(self, env: dict[str, str]) -> Runner:
        self.started += 1
        return Runner(self.root / "dags", self.root / f"runner-{self.started}.jsonl", self.log, env)

    def start_runner(self, env: dict[str, str]) -> None:
        self.runner = self.new_runner(env)

    def start_spare(self, env: dict[str, str]) -> None:
        """A second runner that imports Airflow and parses the folder now, to replace a killed one at once."""
        if self.spare is None:
            self.spare = self.new_runner(env)
            self.spare.send({"cmd": "parse"})

    def take_spare(self, timeout: float = 300) -> None:
        """The spare replaces the (killed) runner once it has parsed the folder."""
        assert self.spare is not None
        self.runner, self.spare = self.spare, None
        self.runner.next_reply(timeout)

    def send(self, command: dict) -> None:
        assert self.runner is not None
        self.runner.send(command)

    def has_reply(self) -> bool:
        return self.runner is not None and self.runner.has_reply()

    def next_reply(self, timeout: float) -> dict:
        assert self.runner is not None
        return self.runner.next_reply(timeout)

    def run(self, timeout: float, **rerun: str) -> dict:
        assert self.dag_id is not None
        self.send(self.command("rerun" if rerun else "run", **rerun))
        return self.next_reply(timeout)

    def command(self, cmd: str, **rerun: str) -> dict:
        """A run of the load: its first DAG, then the DAG runs it causes (a pipeline, see pipeline.py)."""
        return {"cmd": cmd, "dag_id": self.dag_id, "pipeline": self.choice.pipeline, **rerun}

    def kill(self) -> None:
        if self.runner is not None:
            self.runner.kill()
        self.runner = None

    def close(self) -> None:
        self.kill()
        if self.spare is not None:
            self.spare.kill()
            self.spare = None


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
