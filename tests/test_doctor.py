"""`make doctor`: each problem it checks is provoked for real and must come out as FAIL (or WARN) with its fix.

The command line runs as a learner's `make doctor` does. A port is held by a socket of this test,
CRLF is written into a clone, AIRFLOW_UID is left out of deploy/.env; only free disk and memory are
replaced through COURSEKIT_DOCTOR_FREE_DISK_MB / COURSEKIT_DOCTOR_MEMORY_MB (then compared by the
same code), and Windows / WSL are handed to check_platform as what /proc/version would say.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit import doctor
from coursekit.grade import REPO_ROOT
from coursekit.pg import free_port

PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")


@pytest.fixture
def env() -> dict[str, str]:
    """Free ports for every service: the shared machine's own stacks must not decide the outcome."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("COURSEKIT_DOCTOR_")}
    values.update({name: str(free_port()) for name in PORT_VARIABLES})
    return values


def run_doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coursekit.doctor", *args], env=env, capture_output=True, text=True, timeout=120
    )


def line(output: str, name: str) -> str:
    """The report line of check `name` and its fix line."""
    lines = output.splitlines()
    for index, text in enumerate(lines):
        if text[8:].startswith(name + " ") or text[8:] == name:
            fix = lines[index + 1] if index + 1 < len(lines) and "fix:" in lines[index + 1] else ""
            return text + "\n" + fix
    raise AssertionError(f"no {name} line in:\n{output}")


def clone(tmp_path: Path) -> Path:
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True, timeout=300)
    return target


def test_all_well_the_fast_part_is_silent_and_the_full_one_says_ready(env):
    fast = run_doctor(env, "--fast")
    assert fast.returncode == 0 and fast.stdout == "", fast.stdout
    full = run_doctor(env)
    assert full.returncode == 0, full.stdout
    assert "PASS  python" in full.stdout and "PASS  memory" in full.stdout and "Ready to start" in full.stdout


def test_a_taken_port_names_the_process_holding_it_and_the_variable_that_moves_it(env):
    port = int(env["PG_DWH_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run_doctor(env, "--fast")
    assert result.returncode == 1
    report = line(result.stdout, f"port {port}")
    assert report.startswith("  FAIL") and f"pg-dwh: 127.0.0.1:{port} is taken by" in report, report
    assert f"pid {os.getpid()}" in report, "psutil names the process"
    assert f"PG_DWH_PORT={port + 10000} make run" in report


def test_a_taken_pgadmin_port_is_a_warning_natively_and_a_failure_for_docker(env, tmp_path):
    root = clone(tmp_path)
    (root / "G0_Trainee/deploy/.env").write_text(f"AIRFLOW_UID={os.getuid()}\n")
    port = int(env["PGADMIN_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        native = run_doctor(env, "--fast", "--root", str(root))
        docker = run_doctor(env, "--fast", "--docker", "--root", str(root))
    assert native.returncode == 0 and line(native.stdout, f"port {port}").startswith("  WARN"), native.stdout
    assert "starts without pgAdmin" in native.stdout
    assert docker.returncode == 1 and line(docker.stdout, f"port {port}").startswith("  FAIL"), docker.stdout


def test_crlf_in_a_tracked_file_fails_with_the_file_and_the_fix(env, tmp_path):
    root = clone(tmp_path)
    env_file = root / "G0_Trainee/deploy/env/pg-shop-1.env"
    env_file.write_bytes(env_file.read_bytes().replace(b"\n", b"\r\n"))
    result = run_doctor(env, "--fast", "--root", str(root))
    assert result.returncode == 1
    report = line(result.stdout, "line endings")
    assert report.startswith("  FAIL") and "G0_Trainee/deploy/env/pg-shop-1.env" in report
    assert "git reset -q --hard" in report and "sed -i" in report
    # A copy without .git (a zip download) is scanned file by file.
    shutil.rmtree(root / ".git")
    assert doctor.crlf_files(root) == ["G0_Trainee/deploy/env/pg-shop-1.env"]


def test_missing_airflow_uid_fails_for_docker_on_linux(env, tmp_path):
    if sys.platform != "linux":
        pytest.skip("AIRFLOW_UID is checked on Linux only")
    root = clone(tmp_path)
    env.pop("AIRFLOW_UID", None)
    missing = run_doctor(env, "--fast", "--docker", "--root", str(root))
    assert missing.returncode == 1
    report = line(missing.stdout, "AIRFLOW_UID")
    assert report.startswith("  FAIL") and f'echo "AIRFLOW_UID={os.getuid()}" >>' in report, report
    (root / "G0_Trainee/deploy/.env").write_text(f"AIRFLOW_UID={os.getuid()}\n")
    fixed = run_doctor(env, "--docker", "--fast", "--root", str(root))
    assert fixed.returncode == 0, fixed.stdout
    assert doctor.check_airflow_uid(root / "G0_Trainee/deploy", uid=os.getuid() + 1).status == doctor.WARN
    assert doctor.check_airflow_uid(root / "G0_Trainee/deploy", system="Darwin").status == doctor.PASS


def test_low_memory_fails_and_tight_memory_warns(env):
    low = run_doctor({**env, "COURSEKIT_DOCTOR_MEMORY_MB": "600"})
    assert low.returncode == 1 and line(low.stdout, "memory").startswith("  FAIL"), low.stdout
    assert "PGADMIN=0" in line(low.stdout, "memory")
    tight = run_doctor({**env, "COURSEKIT_DOCTOR_MEMORY_MB": "1500"})
    assert tight.returncode == 0 and line(tight.stdout, "memory").startswith("  WARN"), tight.stdout


def test_low_disk_fails_with_what_needs_the_space(env, tmp_path):
    root = clone(tmp_path)  # no .venv yet: the virtualenvs count
    result = run_doctor({**env, "COURSEKIT_DOCTOR_FREE_DISK_MB": "700"}, "--fast", "--root", str(root))
    assert result.returncode == 1
    report = line(result.stdout, "disk")
    assert report.startswith("  FAIL") and "for .venv" in report and "for .venv-pgadmin" in report, report
    assert "700 MB free" in report
    without_pgadmin = run_doctor({**env, "COURSEKIT_DOCTOR_FREE_DISK_MB": "700", "PGADMIN": "0"}, "--root", str(root))
    assert ".venv-pgadmin" not in line(without_pgadmin.stdout, "disk"), "PGADMIN=0 installs no pgAdmin"


def test_docker_checks_and_docker_memory(env, tmp_path):
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers here")
    root = clone(tmp_path)
    (root / "G0_Trainee/deploy/.env").write_text(f"AIRFLOW_UID={os.getuid()}\n")
    ok = run_doctor(env, "--docker", "--root", str(root))
    assert "PASS  docker" in ok.stdout and "PASS  compose        Compose 2." in ok.stdout, ok.stdout
    small = run_doctor({**env, "COURSEKIT_DOCTOR_MEMORY_MB": "1500"}, "--docker", "--root", str(root))
    assert small.returncode == 1 and line(small.stdout, "docker memory").startswith("  FAIL"), small.stdout
    assert "Settings > Resources > Memory" in small.stdout
    full = run_doctor({**env, "COURSEKIT_DOCTOR_FREE_DISK_MB": "3000"}, "--docker", "--root", str(root))
    assert full.returncode == 1 and line(full.stdout, "docker disk").startswith("  FAIL"), full.stdout


@pytest.mark.parametrize(
    ("sys_platform", "release", "proc_version", "root", "status", "words"),
    [
        ("win32", "10", "", "C:/Users/me/course", "FAIL", "wsl --install"),
        ("linux", "4.4.0-19041-Microsoft", "Linux version 4.4.0-19041-Microsoft", "/home/me/c", "FAIL", "WSL 1"),
        ("linux", "5.15.1-microsoft-standard-WSL2", "Linux microsoft-standard-WSL2", "/mnt/c/Users/me/c", "FAIL", "~"),
        ("linux", "5.15.1-microsoft-standard-WSL2", "Linux microsoft-standard-WSL2", "/home/me/c", "PASS", "WSL2"),
        ("linux", "6.1.0-18-amd64", "Linux version 6.1.0-18-amd64 (debian)", "/mnt/c/x", "PASS", "not Windows"),
    ],
)
def test_windows_without_wsl2_and_a_checkout_on_a_windows_drive(
    sys_platform, release, proc_version, root, status, words
):
    check = doctor.check_platform(Path(root), sys_platform, release, proc_version)
    assert check.status == status and words in check.detail + check.fix, check


def test_python_without_venv_module_or_of_a_wrong_version():
    wrong = doctor.check_python(REPO_ROOT, version="3.10")
    assert wrong.status == doctor.FAIL and "3.10 is not one the course runs on" in wrong.detail
    no_venv = doctor.check_python(REPO_ROOT, version="3.12", has_venv=False)
    assert no_venv.status == doctor.FAIL and "sudo apt install python3.12-venv" in no_venv.fix


def test_the_stdlib_port_reader_agrees_with_the_compose_loader(monkeypatch):
    """Before `make venv` there is no PyYAML: the fallback must find the same ports in every grade."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_yaml(name: str, *args: object):
        return None if name == "yaml" else real_find_spec(name, *args)

    for grade in ("G0_Trainee", "G4_Senior"):
        deploy = REPO_ROOT / grade / "deploy"
        with_yaml = doctor.grade_ports(deploy)
        monkeypatch.setattr(importlib.util, "find_spec", without_yaml)
        assert sorted(doctor.grade_ports(deploy)) == sorted(with_yaml) and len(with_yaml) == 5
        monkeypatch.undo()
