"""Where a grade's files live, and what its env files say.

Every part of the toolkit (tests, native runner, checker) finds a grade's
configuration through this module, so the folder layout is written down once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coursekit.envfiles import read_env_file, read_env_files
from coursekit.pg import PostgresSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
GRADES = ("G0_Trainee", "G1_Intern", "G2_Junior", "G3_Middle", "G4_Senior")
POSTGRES_SERVICES = ("pg-shop-1", "pg-shop-2", "pg-dwh")
SHOPS = ("shop-1", "shop-2")
# The source database each generator writes to.
SHOP_DATABASE = {"shop-1": "pg-shop-1", "shop-2": "pg-shop-2"}


@dataclass(frozen=True)
class Grade:
    """One grade folder, e.g. `Grade.named("G0_Trainee")`."""

    name: str
    path: Path

    @classmethod
    def named(cls, name: str, root: Path = REPO_ROOT) -> Grade:
        if name not in GRADES:
            raise ValueError(f"unknown grade {name!r}; choose one of: {', '.join(GRADES)}")
        return cls(name, root / name)

    @property
    def deploy_dir(self) -> Path:
        return self.path / "deploy"

    @property
    def env_dir(self) -> Path:
        return self.deploy_dir / "env"

    @property
    def generator_config(self) -> Path:
        return self.path / "docker" / "generator" / "config.json"

    @property
    def dags_dir(self) -> Path:
        return self.path / "airflow_data" / "dags"

    @property
    def generator_logs_dir(self) -> Path:
        return self.path / "generator_app_data" / "logs"

    def env(self, service: str) -> dict[str, str]:
        """The env file of one service (`deploy/env/<service>.env`)."""
        return read_env_file(self.env_dir / f"{service}.env")

    def generator_env(self, shop: str) -> dict[str, str]:
        """What a generator container sees: its database's env, then its own."""
        return read_env_files(self.env_dir / f"{SHOP_DATABASE[shop]}.env", self.env_dir / f"{shop}.env")

    def postgres_spec(self, service: str, port: int) -> PostgresSpec:
        return PostgresSpec.from_env(service, self.env(service), port)
