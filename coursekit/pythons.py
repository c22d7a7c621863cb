"""Which Pythons the course runs on natively, and which one its Docker images use.

The supported versions are the ones with a pinned constraints file, `constraints-<version>.txt`
(as Airflow publishes one per Python): `make lock` writes them, the Makefile's PYTHON_VERSIONS
names them and pyproject.toml's requires-python spans them (tests/test_pythons.py holds all four
together). The Docker images stay on one version, DOCKER_PYTHON, and pin from its file.

Standard library only, and no syntax newer than 3.8: `make doctor` imports it with whatever
Python a machine has, to tell an unsupported one so.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKER_PYTHON = "3.11"  # apache/airflow:3.3.2-python3.11 and python:3.11-slim of coursekit/generator


def supported_versions(root: Path = REPO_ROOT) -> list[str]:
    """ "3.13", "3.12", ...: every version with a constraints file, newest first."""
    found = [
        m.group(1)
        for p in root.glob("constraints-3.*.txt")
        if (m := re.fullmatch(r"constraints-(3\.\d+)\.txt", p.name))
    ]
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")), reverse=True)


def constraints_file(version: str, root: Path = REPO_ROOT) -> Path:
    """The pins for one Python version, e.g. constraints-3.12.txt."""
    return root / f"constraints-{version}.txt"


def docker_constraints(root: Path = REPO_ROOT) -> Path:
    """The pins the Docker images' requirements.txt files take their versions from."""
    return constraints_file(DOCKER_PYTHON, root)
