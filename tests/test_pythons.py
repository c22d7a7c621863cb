"""Every Python the course supports natively: one constraints file each, and make picks the newest it finds.

Supported = what Airflow 3.3.2 supports that every pinned package has wheels for, with a
`constraints-<version>.txt` each (`make lock`). The Makefile's PYTHON_VERSIONS, pyproject's
requires-python and those files must agree. `make` picks python3.13, python3.12, python3.11, then
python3 (if its version fits), and says in one sentence what to install when none fits.

The interpreters come from pyenv (this machine has 3.10-3.13); the tests skip without them.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from support import reader_logs_in
from test_line_endings import crlf_clone

from coursekit.grade import REPO_ROOT, Grade
from coursekit.pg import free_port
from coursekit.pythons import DOCKER_PYTHON, constraints_file, supported_versions

PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
MAKEFILE = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
MAKE = "/usr/bin/make"


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} := (.*)$", MAKEFILE, re.MULTILINE)
    assert match, f"the Makefile sets no {name}"
    return match.group(1).strip()


def interpreter(version: str) -> Path:
    """A real python<version> (pyenv's), or skip."""
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} under {PYENV}")
    return found[-1]


def fake_bin(tmp_path: Path, **links: Path) -> Path:
    """A folder holding only the given interpreters, e.g. python3=<3.10>: what PATH offers make."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    for name, target in links.items():
        (folder / name.replace("_", ".")).symlink_to(target)
    return folder


def find_python(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    versions = makefile_variable("PYTHON_VERSIONS")
    return subprocess.run(
        ["/bin/sh", str(REPO_ROOT / "coursekit/find_python.sh"), versions, *args],
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_makefile_pyproject_and_constraints_files_agree():
    versions = makefile_variable("PYTHON_VERSIONS").split()
    assert versions == supported_versions(), "PYTHON_VERSIONS (newest first) = the constraints-<version>.txt files"
    assert {"3.11", "3.12", "3.13"} <= set(versions)
    assert makefile_variable("DOCKER_PYTHON") == DOCKER_PYTHON and DOCKER_PYTHON in versions
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    spec = SpecifierSet(project["requires-python"])
    assert all(f"{v}.0" in spec for v in versions), project["requires-python"]
    newest = max(versions, key=lambda v: int(v.split(".")[1]))
    assert f"3.{int(newest.split('.')[1]) + 1}.0" not in spec, "requires-python stops at the newest pinned Python"
    assert "3.10.0" not in spec
    airflow = SpecifierSet(importlib.metadata.metadata("apache-airflow")["Requires-Python"])
    assert all(f"{v}.0" in airflow for v in versions), "Airflow supports every version the course claims"


@pytest.mark.parametrize("version", supported_versions())
def test_each_constraints_file_pins_airflow_and_every_dependency(version):
    text = constraints_file(version).read_text(encoding="utf-8")
    assert text.startswith(f"# Every pinned version of the course on Python {version}.")
    pins = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in text.splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert f"apache-airflow=={makefile_variable('AIRFLOW_VERSION')}" in text
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = project["dependencies"] + project["optional-dependencies"]["dev"]
    missing = [n for n in names if re.sub(r"[-_.]+", "-", re.split(r"[\[<>=;]", n)[0]).lower() not in pins]
    assert not missing, f"constraints-{version}.txt lacks {missing}: run `make lock`"


def test_the_newest_supported_interpreter_is_picked(tmp_path):
    folder = fake_bin(tmp_path, python3_12=interpreter("3.12"), python3_13=interpreter("3.13"))
    result = find_python(str(folder))
    assert result.returncode == 0 and result.stdout.strip() == str(folder / "python3.13"), result.stderr


def test_python3_counts_when_its_version_fits(tmp_path):
    folder = fake_bin(tmp_path, python3=interpreter("3.12"))
    assert find_python(str(folder)).stdout.strip() == str(folder / "python3")


def test_no_fitting_interpreter_is_one_sentence_naming_the_versions_and_how_to_get_one(tmp_path):
    folder = fake_bin(tmp_path, python3=interpreter("3.10"))
    result = find_python(str(folder))
    assert result.returncode == 1 and result.stdout == ""
    message = result.stderr.strip()
    assert message.count("\n") == 0 and message.startswith("make needs Python 3.11, 3.12 or 3.13")
    assert "python3 is 3.10" in message and "python.org" in message and "make PYTHON=" in message


def test_make_venv_and_make_doctor_stop_with_that_sentence(tmp_path):
    """PATH holds only a python3 of a wrong version: make creates nothing and says what to install."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True, timeout=300)
    folder = fake_bin(tmp_path, python3=interpreter("3.10"))
    env = {"PATH": str(folder), "HOME": str(tmp_path)}
    venv = subprocess.run([MAKE, "-C", str(clone), "venv"], env=env, capture_output=True, text=True, timeout=120)
    assert venv.returncode != 0 and "make needs Python 3.11, 3.12 or 3.13" in venv.stderr, venv.stderr
    assert not (clone / ".venv").exists()
    doctor = subprocess.run([MAKE, "-C", str(clone), "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert doctor.returncode != 0, doctor.stdout
    assert "FAIL  python         Python 3.10 is not one the course runs on" in doctor.stdout, doctor.stdout
    assert "make needs Python 3.11, 3.12 or 3.13" in doctor.stdout


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_make_run_on_a_fresh_crlf_clone_with_python_3_13_and_with_3_12(tmp_path):
    """`make run` as a learner with only python3.13 (then only python3.12) types it, on a Windows-style clone.

    PATH: the one interpreter first, then /usr/bin:/bin for make, bash and git (this machine's
    /usr/bin has a python3.11, which make must pass over for the newer one). pip's own cache is
    shared, as on a learner's machine after the first install. pgAdmin runs with 3.13 only (its
    virtualenv is 600 MB). Each clone's stack runs on free ports and is stopped.
    """
    timings = {}
    for version, pgadmin in (("3.13", "1"), ("3.12", "0")):
        clone = crlf_clone(tmp_path / f"clone-{version}")
        folder = fake_bin(tmp_path / version, **{f"python{version.replace('.', '_')}": interpreter(version)})
        ports = {v: free_port() for v in ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT")}
        ports["PGADMIN_PORT"] = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYENV", "VIRTUAL_ENV", "PYTHON"))}
        env.update({k: str(v) for k, v in ports.items()}, PATH=f"{folder}:/usr/bin:/bin", PGADMIN=pgadmin)
        began = time.monotonic()
        run = subprocess.run([MAKE, "-C", str(clone), "run"], env=env, capture_output=True, text=True, timeout=1500)
        timings[version] = round(time.monotonic() - began)
        try:
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            assert f"Creating .venv with {folder}/python{version}" in run.stdout, run.stdout[:2000]
            venv_version = subprocess.run(
                [str(clone / ".venv/bin/python"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            assert venv_version == version
            assert "G0_Trainee is up." in run.stdout
            assert reader_logs_in(Grade.named("G0_Trainee", clone), ports["PG_SHOP_1_PORT"]), (
                "shop_reader logs in to the CRLF clone's shop"
            )
            if pgadmin == "1":
                assert f"http://localhost:{ports['PGADMIN_PORT']}" in run.stdout, run.stdout[-2000:]
                # A second start is stopped by the doctor: the ports are held by this grade's own stack.
                again = subprocess.run([MAKE, "-C", str(clone), "run"], env=env, capture_output=True, text=True)
                assert again.returncode != 0 and "held by this grade's own `make run`" in again.stdout, again.stdout
        finally:
            stop = subprocess.run([MAKE, "-C", str(clone), "stop"], env=env, capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr
    print(f"make_run_fresh_clone_seconds={timings}")
