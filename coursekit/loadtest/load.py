"""The load: generator processes at a given rate, started and stopped per phase.

Why real generator processes and not a bulk INSERT: the pipeline must meet
what a shop really does at that rate, ticks committing inserts and updates
(and late references and bad values) while it reads, not one tidy batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from coursekit.grade import Grade

UPDATE_SHARE = 0.6  # updates per tick = 60% of the inserts, as the course's shops do


def scaled_config(base: dict, rate: int) -> dict:
    """The grade's generator config with `rate` inserts per tick, split like the base config's inserts."""
    tables = base["tables"]
    total = sum(spec["insert_rows_per_tick"] for spec in tables.values()) or 1
    scaled = {}
    for name, spec in tables.items():
        inserts = max(1, round(rate * spec["insert_rows_per_tick"] / total))
        scaled[name] = {**spec, "insert_rows_per_tick": inserts, "update_rows_per_tick": round(inserts * UPDATE_SHARE)}
    return {**base, "tables": scaled}


@dataclass
class ShopTarget:
    """Where one shop's load generator writes."""

    name: str  # shop-1
    port: int
    env: dict[str, str]  # the shop's generator env (database role, seed, city, locale)


class LoadGenerators:
    """One generator process per shop at one rate; `stop()` ends them cleanly (SIGTERM)."""

    def __init__(self, grade: Grade, shops: list[ShopTarget], work_dir: Path, update_window: int) -> None:
        self.grade = grade
        self.shops = shops
        self.work_dir = work_dir
        self.update_window = update_window
        self.processes: list[subprocess.Popen] = []

    def start(self, rate: int, phase: int) -> None:
        base = json.loads(self.grade.generator_config.read_text(encoding="utf-8"))
        config = self.work_dir / f"generator-{rate}.json"
        config.write_text(json.dumps(scaled_config(base, rate), indent=2), encoding="utf-8")
        for shop in self.shops:
            env = {**os.environ, **shop.env}
            env.update(
                POSTGRES_HOST="127.0.0.1",
                POSTGRES_PORT=str(shop.port),
                TICK_INTERVAL_SEC="1",
                UPDATE_NOT_OLDER_THAN_SEC=str(self.update_window),
                DELETE_OLDER_THAN_SEC="0",  # keep every row: the test compares them all at the end
                STOP_GENERATOR_AFTER_SEC="0",
                # Another seed per phase: a phase does not replay the values of the one before.
                GENERATOR_SEED=str(int(shop.env.get("GENERATOR_SEED", "1")) + 1000 * phase),
            )
            log_dir = self.work_dir / "generators" / shop.name
            log_dir.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "coursekit.generator", "--config", str(config), "--log-dir", str(log_dir)]
            with open(log_dir / "stdout.log", "ab") as out:
                self.processes.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a load generator exited with {process.returncode}; see {self.work_dir}/generators")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []
