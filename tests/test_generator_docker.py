"""The generator's Docker image recipe, checked without Docker.

Why these checks: the image must install exactly what the tests ran with
(same pins as constraints-<DOCKER_PYTHON>.txt), contain everything the generator imports and
nothing it does not (no Airflow, no pandas), and follow the course's rules for
images (pinned base tag, non-root user). A typo in a COPY path would otherwise
only show up when a learner runs `docker compose build`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from coursekit.grade import REPO_ROOT, Grade
from coursekit.pythons import docker_constraints

GENERATOR = REPO_ROOT / "coursekit" / "generator"
DOCKERFILE = (GENERATOR / "Dockerfile").read_text(encoding="utf-8")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path) -> dict[str, str]:
    """name -> version of every `name==version` line (comments and blanks skipped)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[normalized(name)] = version
    return found


def instructions(keyword: str) -> list[str]:
    """The arguments of every Dockerfile instruction `keyword` (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [keyword]]


def test_requirements_pin_exactly_the_constraints_versions():
    required = pins(GENERATOR / "requirements.txt")
    constraints = pins(docker_constraints())
    assert required, "requirements.txt is empty"
    for name, version in required.items():
        assert constraints.get(name) == version, (
            f"{name}=={version} but {docker_constraints().name} has {constraints.get(name)}"
        )


def test_requirements_cover_what_the_generator_imports_and_nothing_heavy(tmp_path):
    """Run `--check` in a fresh interpreter and map every imported module to its distribution."""
    grade = Grade.named("G0_Trainee")
    env = {**grade.generator_env("shop-1"), "POSTGRES_HOST": "db", "PATH": "/usr/bin:/bin"}
    script = f"""
import sys
at_startup = set(sys.modules)  # e.g. setuptools' .pth hook: there before any generator code runs
import importlib.metadata, json
from coursekit.generator.__main__ import main
assert main(["--check", "--config", {str(grade.generator_config)!r}, "--log-dir", {str(tmp_path)!r}]) == 0
owners = importlib.metadata.packages_distributions()
imported = set(sys.modules) - at_startup
print(json.dumps(sorted({{d for m in imported for d in owners.get(m.split(".")[0], [])}})))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("coursekit"))))
"""
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    distributions_line, coursekit_line = result.stdout.strip().splitlines()[-2:]
    distributions = {normalized(d) for d in json.loads(distributions_line)} - {"coursekit"}
    assert distributions <= set(pins(GENERATOR / "requirements.txt")), distributions
    assert not {"apache-airflow", "pandas", "sqlalchemy"} & distributions
    modules = set(json.loads(coursekit_line))
    assert {"coursekit.pg", "coursekit.grade"}.isdisjoint(modules), "the image does not contain them"
    allowed = {"coursekit", "coursekit.envfiles"}
    assert all(m in allowed or m.startswith("coursekit.generator") for m in modules), modules


def test_base_image_is_pinned_and_user_is_not_root():
    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    (user,) = instructions("USER")
    assert user.split(":")[0] not in ("root", "0")


def test_copy_sources_exist_and_are_only_the_generator():
    copied = []
    for arguments in instructions("COPY"):
        *sources, _target = arguments.split()
        copied += sources
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path in the repo"
    assert set(copied) == {
        "coursekit/generator/requirements.txt",
        "coursekit/__init__.py",
        "coursekit/envfiles.py",
        "coursekit/generator/",
    }


def test_entrypoint_and_defaults():
    assert json.loads(instructions("ENTRYPOINT")[0]) == ["python", "-m", "coursekit.generator"]
    assert json.loads(instructions("CMD")[0]) == ["--config", "/app/config/config.json", "--log-dir", "/app/logs"]
    assert "PYTHONUNBUFFERED=1" in " ".join(instructions("ENV"))
    assert "--no-deps" in " ".join(instructions("RUN"))
