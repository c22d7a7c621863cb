"""A private copy of a grade, run natively on free ports, for one load test.

Why a copy: the test must not touch the learner's `make run` data, ports or
files, and it needs a few settings of its own: the DAGs under test unpaused, a
lookback that matches the load's update window, and the stack's own generators
idle (the test's load generators write instead, at the rate of each phase).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from coursekit.grade import Grade
from coursekit.loadtest import measure
from coursekit.pg import free_port

PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
RUNTIME_FOLDERS = ("generator_app_data", "logs", "staging", "__pycache__")


class PrivateStack:
    """`start()` copies and starts the grade; `stop()` stops it; `remove()` deletes the copy."""

    def __init__(
        self, grade: Grade, update_window: int, root: Path | None = None, dags_dir: Path | None = None
    ) -> None:
        self.source = grade
        # The DAG folder under test (default: the reference solution's, else the grade's own).
        self.dags_dir = dags_dir
        self.root = root or Path(tempfile.mkdtemp(prefix="coursekit-loadtest-"))
        self.grade = Grade(grade.name, self.root / "grades" / grade.name)
        self.run_dir = self.root / "run"
        self.update_window = update_window
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.log = self.root / "native.log"

    @property
    def env(self) -> dict[str, str]:
        """The process environment that puts compose's published ports on the free ports."""
        # DAGS_DIR chose the folder copied in (`dags_dir`); inside the copy it would point elsewhere.
        env = {k: v for k, v in os.environ.items() if k != "DAGS_DIR"}
        return {**env, **{name: str(port) for name, port in self.ports.items()}}

    def prepare(self) -> None:
        shutil.copytree(self.source.path, self.grade.path, ignore=shutil.ignore_patterns(*RUNTIME_FOLDERS))
        solution = self.source.path / "solution" / "dags"
        dags = self.dags_dir or (solution if solution.is_dir() else None)
        if dags is not None and dags.resolve() != self.source.dags_dir.resolve():
            shutil.rmtree(self.grade.dags_dir)
            shutil.copytree(dags, self.grade.dags_dir, ignore=shutil.ignore_patterns("__pycache__"))
        pipeline = self.grade.dags_dir / "pipeline.yaml"
        if pipeline.exists():
            config = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
            # The course's rule: update depth + one schedule interval + a margin.
            config["lookback_sec"] = self.update_window + 60 + 60
            pipeline.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        with open(self.grade.env_dir / "airflow.env", "a", encoding="utf-8") as env:
            env.write("\n# load test: the DAGs run as soon as they are parsed\n")
            env.write("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False\n")
        for shop in ("shop-1", "shop-2"):
            with open(self.grade.env_dir / f"{shop}.env", "a", encoding="utf-8") as env:
                env.write("\n# load test: no retention, every row stays comparable\nDELETE_OLDER_THAN_SEC=0\n")
        # The stack's own generators only create the tables; the load generators do the writing.
        config = json.loads(self.grade.generator_config.read_text(encoding="utf-8"))
        for spec in config["tables"].values():
            spec["insert_rows_per_tick"] = 0
            spec["update_rows_per_tick"] = 0
        self.grade.generator_config.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def _native(self, command: str, timeout: float) -> None:
        args = [sys.executable, "-m", "coursekit.native", command, "--grade", self.grade.name]
        args += ["--grades-root", str(self.grade.path.parent), "--run-dir", str(self.run_dir)]
        with open(self.log, "ab") as log:
            result = subprocess.run(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"`coursekit.native {command}` failed; see {self.log}:\n{tail}")

    def start(self) -> None:
        self.prepare()
        self._native("run", timeout=900)

    def stop(self) -> None:
        self._native("stop", timeout=300)

    def state(self) -> dict:
        path = self.run_dir / self.grade.name / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def process_roots(self) -> dict[str, list[int]]:
        """Component group -> pids whose process trees it is made of."""
        return measure.native_roots(self.run_dir / self.grade.name)()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
