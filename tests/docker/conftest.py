"""The Docker tier: real `docker compose` stacks of the grades (`make test-docker`).

Every test here is marked `docker`; `make test` deselects them (pyproject addopts), and they skip
with the reason when no Docker engine answers. Figures they measure (start times, peak memory per
container) are written to .run/docker-figures.json for the README's Troubleshooting section.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The engine's version; skips the tier when there is no engine or no Compose v2 plugin."""
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no Docker engine answers ({exc}); install and start Docker to run `make test-docker`")
    if info.returncode != 0 or not info.stdout.strip():
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        pytest.skip(f"no Docker engine answers (`docker info`: {reason}); start Docker to run `make test-docker`")
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if compose.returncode != 0:
        pytest.skip("the Docker Compose v2 plugin (`docker compose`) is missing; install docker-compose-plugin")
    return info.stdout.strip()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent and item.get_closest_marker("docker") is None:
            raise pytest.UsageError(f"{item.nodeid}: every test of tests/docker must be marked docker")
