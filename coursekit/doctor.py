"""`make doctor`: can this machine start the course? One PASS / WARN / FAIL line per check, with its fix.

    python -m coursekit.doctor [--grade G0_Trainee] [--docker] [--fast] [--root PATH]

A learner runs it first; `make run` runs its fast part (`--fast`: no Docker, nothing slower than a
second) before it starts anything. It checks what, when missing, fails a start half-way in the words
of whichever tool tripped: the Python version and its venv module, free disk for the virtualenvs (or
the Docker images), memory (natively) or Docker's memory limit, Docker Engine and Compose v2 (with
--docker, i.e. `make doctor DOCKER=1`), the ports the grade publishes and who holds them, AIRFLOW_UID in
deploy/.env (Docker on Linux), Windows line endings in the checkout, and Windows without WSL2 or a
checkout on a Windows drive under WSL. It exits 0 only when no line says FAIL.

It runs before .venv exists (it checks the disk .venv needs), so it uses the standard library only
(psutil, when installed, names the process holding a port) and no syntax newer than Python 3.8: run
by an unsupported Python it still says so. The figures it compares with are measured (see each constant).
COURSEKIT_DOCTOR_FREE_DISK_MB and COURSEKIT_DOCTOR_MEMORY_MB replace the measured free disk and
available memory (the tests use them to provoke the failures); nothing else is faked.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from coursekit.pythons import REPO_ROOT, supported_versions

GRADES = ("G0_Trainee", "G1_Intern", "G2_Junior", "G3_Middle", "G4_Senior")

# Sizes on disk measured on a fresh clone (`du -sm`, Linux x86_64, Python 3.11; notes/laptop-docs.md):
VENV_MB = 980  # .venv after `make venv`: 971 MB
PGADMIN_VENV_MB = 620  # .venv-pgadmin after the first `make run`: 617 MB
DATA_MB = 500  # .run/<grade>: four databases, Airflow's logs, a day of generator rows; with room to spare
# Docker images of one grade (postgres, Airflow + the course's layer, pgAdmin, the generator): the
# stand-in images of the test machine take 2.5 GB (`docker image ls`); upstream ones are larger.
DOCKER_IMAGES_MB = 4000
# Memory: natively G0 uses ~0.9 GB (PSS, `make memory`, pgAdmin included); in Docker the containers
# peak at ~1.9 GB together and their mem_limits add up to 3.6 GB (tests/docker, `docker stats`).
NATIVE_MEMORY_FAIL_MB = 1024
NATIVE_MEMORY_WARN_MB = 2048
DOCKER_MEMORY_FAIL_MB = 2048
DOCKER_MEMORY_WARN_MB = 3700
OLDEST_ENGINE = (20, 10)  # the oldest Docker Engine the Docker tier ran on (20.10.24)

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass
class Check:
    """One line of the report: what was checked, how it went, and what to do about it."""

    name: str
    status: str
    detail: str
    fix: str = ""


# -- Python ------------------------------------------------------------------------------------------


def check_python(root: Path, version: str | None = None, has_venv: bool | None = None) -> Check:
    """The interpreter running this (make runs it with the one it would build .venv with)."""
    version = version or f"{sys.version_info[0]}.{sys.version_info[1]}"
    accepted = supported_versions(root)
    if version not in accepted:
        finder = _run("/bin/sh", str(root / "coursekit" / "find_python.sh"), " ".join(accepted))
        fix = (finder.stderr.strip() if finder else "") or f"install Python {' or '.join(reversed(accepted))}"
        if finder is not None and finder.returncode == 0:
            fix = f"make would use {finder.stdout.strip()}: run `make doctor` rather than this interpreter"
        return Check("python", FAIL, f"Python {version} is not one the course runs on ({', '.join(accepted)})", fix)
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    if has_venv is None:
        has_venv = in_venv or all(importlib.util.find_spec(m) is not None for m in ("venv", "ensurepip"))
    if not has_venv:
        return Check(
            "python",
            FAIL,
            f"Python {version} has no venv module (with ensurepip): it cannot create .venv",
            f"Debian/Ubuntu: sudo apt install python{version}-venv; elsewhere reinstall Python from python.org",
        )
    where = "its .venv" if in_venv else sys.executable
    return Check("python", PASS, f"Python {version} ({where}); the course runs on {', '.join(accepted)}")


# -- disk and memory -------------------------------------------------------------------------------------


def free_disk_mb(path: Path) -> int:
    override = os.environ.get("COURSEKIT_DOCTOR_FREE_DISK_MB")
    return int(override) if override else shutil.disk_usage(path).free // 2**20


def _pgadmin_enabled() -> bool:
    try:
        from coursekit.native.pgadmin import enabled
    except ImportError:  # fcntl: not on Windows itself, which check_platform reports
        return True
    return enabled()


def check_disk(root: Path, docker: bool) -> Check:
    needed = DATA_MB
    parts = [f"{DATA_MB} MB for data"]
    if not docker:
        if not (root / ".venv" / ".installed").exists():
            needed += VENV_MB
            parts.append(f"{VENV_MB} MB for .venv")
        if not (root / ".venv-pgadmin" / ".installed").exists() and _pgadmin_enabled():
            needed += PGADMIN_VENV_MB
            parts.append(f"{PGADMIN_VENV_MB} MB for .venv-pgadmin (PGADMIN=0 skips it)")
    free = free_disk_mb(root)
    detail = f"{free} MB free on {root}; needs {needed} MB ({', '.join(parts)})"
    if free < needed:
        return Check("disk", FAIL, detail, f"free {needed - free} MB or more on this disk, or clone elsewhere")
    return Check("disk", PASS, detail)


def check_docker_disk() -> Check:
    """Room for the images where the engine keeps them (Linux: /var/lib/docker; Docker Desktop: its VM's disk)."""
    info = _run("docker", "info", "--format", "{{.DockerRootDir}}")
    root = Path(info.stdout.strip()) if info is not None and info.returncode == 0 and info.stdout.strip() else None
    if root is None or not root.exists():
        return Check(
            "docker disk",
            PASS,
            f"the engine keeps images in its own VM ({root}); it needs ~{DOCKER_IMAGES_MB} MB there",
        )
    free = free_disk_mb(root)
    detail = f"{free} MB free on {root}; the images need ~{DOCKER_IMAGES_MB} MB"
    if free < DOCKER_IMAGES_MB:
        return Check("docker disk", FAIL, detail, f"free {DOCKER_IMAGES_MB - free} MB there (`docker system prune`)")
    return Check("docker disk", PASS, detail)


def available_memory_mb() -> int | None:
    override = os.environ.get("COURSEKIT_DOCTOR_MEMORY_MB")
    if override:
        return int(override)
    try:
        import psutil

        return psutil.virtual_memory().available // 2**20
    except ImportError:
        pass
    try:
        text = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def check_memory(available: int | None) -> Check:
    if available is None:
        return Check("memory", WARN, "cannot tell the available memory here", "make sure ~1 GB of RAM is free")
    detail = f"{available} MB available; the native stack uses ~0.9 GB (0.75 GB with PGADMIN=0)"
    if available < NATIVE_MEMORY_FAIL_MB:
        return Check("memory", FAIL, detail, "close programs (browser tabs, IDEs) or start with PGADMIN=0")
    if available < NATIVE_MEMORY_WARN_MB:
        return Check("memory", WARN, detail, "it fits, tightly: close what you do not need, or start with PGADMIN=0")
    return Check("memory", PASS, detail)


# -- Docker --------------------------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_docker() -> list[Check]:
    """Engine (answering, version), Compose v2, and the memory the engine may use."""
    if shutil.which("docker") is None:
        fix = "install Docker Desktop (Windows: with the WSL2 backend; macOS) or Docker Engine (Linux)"
        return [Check("docker", FAIL, "no `docker` command", fix)]
    info = _run("docker", "info", "--format", "{{json .}}")
    if info is None or info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1] if info else "timed out"
        return [Check("docker", FAIL, f"the Docker engine does not answer ({reason})", "start Docker Desktop")]
    data = json.loads(info.stdout)
    engine = str(data.get("ServerVersion", ""))
    checks = []
    if _version(engine) < OLDEST_ENGINE:
        checks.append(Check("docker", FAIL, f"Docker Engine {engine}", "update Docker to 20.10 or newer"))
    else:
        checks.append(Check("docker", PASS, f"Docker Engine {engine}"))
    compose = _run("docker", "compose", "version", "--short")
    if compose is None or compose.returncode != 0 or not compose.stdout.strip():
        fix = "install the Compose v2 plugin (Docker Desktop has it; Linux: sudo apt install docker-compose-plugin)"
        checks.append(Check("compose", FAIL, "`docker compose` (Compose v2) is missing", fix))
    elif _version(compose.stdout)[:1] != (2,):
        checks.append(Check("compose", FAIL, f"Compose {compose.stdout.strip()}", "install Compose v2"))
    else:
        checks.append(Check("compose", PASS, f"Compose {compose.stdout.strip()}"))
    override = os.environ.get("COURSEKIT_DOCTOR_MEMORY_MB")
    total = int(override) if override else int(data.get("MemTotal") or 0) // 2**20
    detail = f"Docker may use {total} MB; the stack peaks at ~1.9 GB, its limits add up to 3.6 GB"
    fix = "Docker Desktop: Settings > Resources > Memory: 4 GB (WSL2: memory=4GB in %UserProfile%\\.wslconfig)"
    if total < DOCKER_MEMORY_FAIL_MB:
        checks.append(Check("docker memory", FAIL, detail, fix))
    elif total < DOCKER_MEMORY_WARN_MB:
        checks.append(Check("docker memory", WARN, detail + ": a spike can get a container OOM-killed", fix))
    else:
        checks.append(Check("docker memory", PASS, detail))
    return checks


def check_airflow_uid(deploy_dir: Path, system: str | None = None, uid: int | None = None) -> Check:
    """On Linux the containers write your log folders as AIRFLOW_UID: it must be your uid."""
    system = system or platform.system()
    if system != "Linux":
        return Check("AIRFLOW_UID", PASS, f"not needed on {system} (Docker Desktop maps file owners)")
    from coursekit.native.compose import ComposeError, compose_variables

    uid = os.getuid() if uid is None else uid
    fix = f'echo "AIRFLOW_UID={uid}" >> {deploy_dir}/.env'
    try:
        value = compose_variables(deploy_dir).get("AIRFLOW_UID")
    except ComposeError as exc:
        return Check("AIRFLOW_UID", FAIL, str(exc), f"fix {deploy_dir}/.env")
    if not value:
        return Check("AIRFLOW_UID", FAIL, f"not set in {deploy_dir}/.env: logs would belong to uid 50000", fix)
    if value != str(uid):
        return Check("AIRFLOW_UID", WARN, f"AIRFLOW_UID={value}, but you are uid {uid}", fix + " (replacing it)")
    return Check("AIRFLOW_UID", PASS, f"AIRFLOW_UID={value} (your uid)")


# -- ports ---------------------------------------------------------------------------------------------


def grade_ports(deploy_dir: Path) -> list[tuple[str, int, str]]:
    """(service, host port, variable) of every published port, as Compose resolves them."""
    from coursekit.native.compose import compose_variables, interpolate, port_variable

    if importlib.util.find_spec("yaml") is not None:
        from coursekit.native.compose import load_compose

        services = load_compose(deploy_dir / "docker-compose.yml")
        return [
            (s.name, port, s.port_variables.get(container) or "")
            for s in services.values()
            for container, port in s.published.items()
        ]
    # Before `make venv` there is no PyYAML: the port lines of the course's compose files are simple.
    env = compose_variables(deploy_dir)
    found, service = [], ""
    for line in (deploy_dir / "docker-compose.yml").read_text(encoding="utf-8").splitlines():
        header = re.match(r"^  ([a-z0-9-]+):\s*$", line)
        service = header.group(1) if header else service
        entry = re.match(r'^\s+- "(127\.0\.0\.1:[^"]+)"\s*$', line)
        if entry:
            host = interpolate(entry.group(1), env).split(":")[1]
            found.append((service, int(host), port_variable(entry.group(1)) or ""))
    return found


def port_holder(port: int) -> tuple[int | None, str]:
    """(pid, "name (pid N)") of the process listening on 127.0.0.1:port, when psutil can tell."""
    try:
        import psutil
    except ImportError:
        return None, f"a program (find it with `lsof -i :{port}` or `ss -ltnp | grep {port}`)"
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        connections = []
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            if connection.pid:
                try:
                    process = psutil.Process(connection.pid)
                    command = " ".join(process.cmdline()[:4])[:100]
                    return connection.pid, f"{process.name()} (pid {connection.pid}: {command})"
                except psutil.Error:
                    return connection.pid, f"pid {connection.pid}"
            return None, "a process of another user or a container (`docker ps`)"
    return None, f"a program (find it with `lsof -i :{port}` or `ss -ltnp | grep {port}`)"


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def grade_folders(root: Path) -> Path:
    """Where the grade folders are: COURSEKIT_GRADES_ROOT as for `make run` (the tests' copies), else the checkout."""
    return Path(os.environ.get("COURSEKIT_GRADES_ROOT") or root)


def run_folder(root: Path) -> Path:
    """Where `make run` keeps its state: COURSEKIT_RUN_DIR as for `make run`, else .run/ of the checkout."""
    return Path(os.environ.get("COURSEKIT_RUN_DIR") or root / ".run")


def check_ports(root: Path, grade: str, docker: bool) -> list[Check]:
    deploy_dir = grade_folders(root) / grade / "deploy"
    state_file = run_folder(root) / grade / "state.json"
    try:
        own = set(json.loads(state_file.read_text(encoding="utf-8")).get("pids", {}).values())
    except (OSError, ValueError):
        own = set()
    checks = []
    for service, port, variable in grade_ports(deploy_dir):
        if not port_taken(port):
            checks.append(Check(f"port {port}", PASS, f"free for {service}"))
            continue
        pid, holder = port_holder(port)
        ours = pid is not None and _is_own(pid, own, run_folder(root) / grade)
        if ours:
            fix = f"it is already running: `make status GRADE={grade}`, or `make stop GRADE={grade}` first"
            checks.append(Check(f"port {port}", FAIL, f"{service}: held by this grade's own `make run`", fix))
            continue
        move = f"`{variable}={port + 10000} make run`, or {variable}={port + 10000} in {deploy_dir}/.env"
        fix = f"stop {holder}, or move {service}: {move}" if variable else f"stop {holder}"
        status = WARN if service == "pgadmin" and not docker else FAIL
        if status == WARN:
            fix += " (natively the stack starts without pgAdmin)"
        checks.append(Check(f"port {port}", status, f"{service}: 127.0.0.1:{port} is taken by {holder}", fix))
    return checks


def _is_own(pid: int, own: set[int], run_dir: Path) -> bool:
    """A process `make run` of this grade started (or a child of one), or one of its PostgreSQL servers."""
    try:
        import psutil

        process = psutil.Process(pid)
        if {pid, *(p.pid for p in process.parents())} & own:
            return True
        return str(run_dir) in " ".join(process.cmdline())
    except Exception:
        return False


# -- the checkout: line endings, Windows, WSL ----------------------------------------------------------

SKIP_DIRS = {".git", ".venv", ".venv-pgadmin", ".run", "__pycache__", ".lock-venv", "node_modules", ".ruff_cache"}
BINARY = (".png", ".jpg", ".ico", ".whl", ".gz", ".zip", ".parquet", ".csv", ".pyc")


def crlf_files(root: Path) -> list[str]:
    """Tracked text files with CRLF in the working tree (every file when this is no git checkout)."""
    if (root / ".git").exists() and shutil.which("git"):
        listing = subprocess.run(["git", "ls-files", "--eol"], cwd=root, capture_output=True, text=True, timeout=60)
        if listing.returncode == 0:
            found = []
            for line in listing.stdout.splitlines():
                info, path = line.split("\t", 1)
                if "w/crlf" in info.split() and "-text" not in info:
                    found.append(path)
            return found
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(folder) / name
            if not name.endswith(BINARY):
                try:
                    if b"\r\n" in path.read_bytes():
                        found.append(str(path.relative_to(root)))
                except OSError:
                    continue
    return sorted(found)


def check_line_endings(root: Path) -> Check:
    found = crlf_files(root)
    if not found:
        return Check("line endings", PASS, "no file has Windows line endings (CRLF)")
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return Check(
        "line endings",
        FAIL,
        f"{len(found)} file(s) with Windows line endings (CRLF), which break scripts and env files in Linux: {shown}",
        "a checkout made before .gitattributes: `git rm -rq --cached . && git reset -q --hard`; "
        "a file saved so by an editor: `sed -i 's/\\r$//' FILE` and set the editor to LF",
    )


def check_platform(root: Path, sys_platform: str, release: str, proc_version: str) -> Check:
    """Windows itself is not supported; WSL2 is, with the checkout in WSL's own file system."""
    if sys_platform in ("win32", "cygwin", "msys"):
        return Check(
            "windows",
            FAIL,
            f"running on Windows itself ({sys_platform})",
            "use WSL2: `wsl --install` in PowerShell, then clone and run the course inside WSL (Ubuntu)",
        )
    if "microsoft" not in proc_version.lower():
        return Check("windows", PASS, f"{platform.system() or sys_platform}, not Windows")
    if "wsl2" not in release.lower():
        return Check("windows", FAIL, f"WSL 1 (kernel {release})", "convert it: `wsl --set-version <distro> 2`")
    if re.match(r"^/mnt/[a-z]/", str(root)):
        return Check(
            "windows",
            FAIL,
            f"WSL2, but the checkout {root} is on a Windows drive: slow, and PostgreSQL refuses its permissions",
            "clone into WSL's own home: `cd ~ && git clone <repository URL>`",
        )
    return Check("windows", PASS, f"WSL2 (kernel {release}), checkout inside WSL")


def proc_version() -> str:
    try:
        return Path("/proc/version").read_text(encoding="utf-8")
    except OSError:
        return ""


# -- the report ----------------------------------------------------------------------------------------


def run_checks(root: Path, grade: str, docker: bool, fast: bool) -> list[Check]:
    checks = [check_python(root), check_platform(root, sys.platform, platform.release(), proc_version())]
    checks.append(check_line_endings(root))
    checks.append(check_disk(root, docker))
    if docker:
        if fast:
            checks.append(Check("docker", SKIP, "not checked by the fast part"))
        else:
            checks += check_docker()
            checks.append(check_docker_disk())
        checks.append(check_airflow_uid(grade_folders(root) / grade / "deploy"))
    else:
        checks.append(check_memory(available_memory_mb()))
    checks += check_ports(root, grade, docker)
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--grade", default=os.environ.get("GRADE", "G0_Trainee"), choices=GRADES)
    parser.add_argument("--docker", action="store_true", help="check for `docker compose up` instead of `make run`")
    parser.add_argument("--fast", action="store_true", help="only the checks that take no time (make run)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the checkout to check (default: this one)")
    options = parser.parse_args(argv)
    root = options.root.resolve()
    checks = run_checks(root, options.grade, options.docker, options.fast)
    failed = [c for c in checks if c.status == FAIL]
    if options.fast and not failed and not [c for c in checks if c.status == WARN]:
        return 0  # make run: silent when all is well
    way = "Docker (docker compose)" if options.docker else "natively (make run)"
    print(f"make doctor: {options.grade}, {way}")
    for check in checks:
        if options.fast and check.status == PASS:
            continue
        print(f"  {check.status:<4}  {check.name:<14} {check.detail}")
        if check.fix and check.status in (FAIL, WARN):
            print(f"        {'':<14} fix: {check.fix}")
    if failed:
        print(f"{len(failed)} check(s) FAIL: fix them, then run `make doctor` again.")
        return 1
    if not options.fast:
        other = "natively: make doctor" if options.docker else "for Docker: make doctor DOCKER=1"
        print(f"Ready to start ({other} checks the other way).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
