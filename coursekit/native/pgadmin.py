"""pgAdmin 4 for `make run`: the same version as the Docker image, from PyPI, in its own virtualenv.

pgAdmin pins ~110 packages (Flask, SQLAlchemy 2.1, boto3, azure, ...) that would fight
Airflow's, so it gets `.venv-pgadmin`, created on first use from constraints-pgadmin.txt.

It is configured from the grade's own files, as the Docker service is:

* `env/pgadmin.env`: every `PGADMIN_CONFIG_X=value` becomes `X = value` in pgAdmin's
  config_local.py, as the image's entrypoint does (desktop mode: no login, no master password);
* `pgadmin/servers.json` and `pgadmin/pgpass` (found through the compose service's mounts),
  with hosts and ports rewritten from compose service names to 127.0.0.1 and the published
  ports, as `make run` does for Airflow's connections. The passfile is copied with mode 0600
  (libpq ignores a password file others can read) and every server points at it, so no
  server asks for a password.

Its settings live in `.run/<grade>/pgadmin/` (survive `make stop`, wiped by `make reset`).
One process, werkzeug's threaded server, as pgAdmin's own `pgAdmin4.py` runs it.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from coursekit.grade import REPO_ROOT
from coursekit.native.processes import tail

PGADMIN_VERSION = "9.18"
CONSTRAINTS = REPO_ROOT / "constraints-pgadmin.txt"
VENV = REPO_ROOT / ".venv-pgadmin"
LAUNCHER = Path(__file__).with_name("pgadmin_launch.py")
CONTAINER_PORT = 80
SERVERS_TARGET = "/pgadmin4/servers.json"
REQUIRED_SERVER_KEYS = ("Name", "Group", "Host", "Port", "MaintenanceDB", "Username")

Rewrite = Callable[[str, int], tuple[str, int]]


class PgAdminError(RuntimeError):
    """pgAdmin cannot start; the message names the cause. The rest of the stack runs without it."""


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """`PGADMIN=0 make run` skips pgAdmin (saves its memory and, the first time, its install)."""
    return env.get("PGADMIN", "1").strip().lower() not in ("0", "false", "no", "off")


# -- the virtualenv --------------------------------------------------------------------------------


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(log_path: Path, progress: Callable[[str], None] = print, venv: Path = VENV) -> Path:
    """pgAdmin's python, installing the virtualenv first if it is missing or its pins changed.

    A lock file serialises two `make run`s (or tests) that would install at the same time.
    """
    marker = venv / ".installed"
    wanted = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == wanted:
            return venv_python(venv)
        progress(f"  … pgadmin     installing pgAdmin {PGADMIN_VERSION} into {venv.name} (once; ~30 s, 600 MB)")
        started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            steps = [] if venv_python(venv).exists() else [[sys.executable, "-m", "venv", str(venv)]]
            steps.append(
                [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
                + ["-c", str(CONSTRAINTS), f"pgadmin4=={PGADMIN_VERSION}"]
            )
            for step in steps:
                if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                    raise PgAdminError(
                        f"installing pgAdmin {PGADMIN_VERSION} into {venv} failed (needs PyPI); "
                        f"see {log_path}:\n{tail(log_path)}"
                    )
        marker.write_text(wanted)
        progress(f"  ✓ pgadmin     installed in {time.monotonic() - started:.0f} s")
    return venv_python(venv)


# -- configuration from the grade's files ----------------------------------------------------------


def config_local(env: Mapping[str, str], data_dir: Path, port: int) -> str:
    """pgAdmin's config_local.py: the env file's PGADMIN_CONFIG_* settings, then this machine's paths."""
    lines = ["# Written by `make run` (coursekit/native/pgadmin.py) from env/pgadmin.env; rewritten at every start."]
    for key, raw in env.items():
        if key.startswith("PGADMIN_CONFIG_"):
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise PgAdminError(
                    f"env/pgadmin.env: {key}={raw} is not a Python value (write e.g. False, 5, 'text')"
                ) from None
            lines.append(f"{key.removeprefix('PGADMIN_CONFIG_')} = {value!r}")
    lines += [
        f"DATA_DIR = {str(data_dir)!r}",
        "DEFAULT_SERVER = '127.0.0.1'",
        f"DEFAULT_SERVER_PORT = {port}",
        # No OS keyring (it would ask for an unlock on a desktop, and fail without D-Bus):
        # database passwords come from the passfile anyway.
        "USE_OS_SECRET_STORAGE = False",
    ]
    return "\n".join(lines) + "\n"


def render_servers(servers_file: Path, rewrite: Rewrite, passfile: Path) -> dict:
    """servers.json for this machine: hosts and ports rewritten, every server using `passfile`."""
    where = _short(servers_file)
    try:
        data = json.loads(servers_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PgAdminError(f"{where} does not exist") from None
    except json.JSONDecodeError as exc:
        raise PgAdminError(f"{where} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    servers = data.get("Servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not servers:
        raise PgAdminError(f'{where} has no "Servers" object: pgAdmin would register nothing')
    for key, server in servers.items():
        missing = [k for k in REQUIRED_SERVER_KEYS if not isinstance(server, dict) or k not in server]
        if missing:
            raise PgAdminError(f'{where}: server "{key}" lacks {", ".join(missing)}')
        if not isinstance(server["Port"], int):
            raise PgAdminError(f'{where}: server "{key}" has Port {server["Port"]!r}; it must be a number')
        server["Host"], server["Port"] = rewrite(server["Host"], server["Port"])
        server.setdefault("ConnectionParameters", {})["passfile"] = str(passfile)
    return data


def render_pgpass(pgpass_file: Path, rewrite: Rewrite) -> str:
    """The passfile with `service:5432` rewritten to `127.0.0.1:<published port>`."""
    try:
        text = pgpass_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PgAdminError(f"{_short(pgpass_file)} does not exist: every server would ask for a password") from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = re.split(r"(?<!\\):", line, maxsplit=4)
        if len(fields) != 5 or not fields[1].isdigit():
            raise PgAdminError(f"{_short(pgpass_file)} line {number}: expected host:port:database:user:password")
        host, port = rewrite(fields[0], int(fields[1]))
        lines.append(":".join([host, str(port), *fields[2:]]))
    return "\n".join(lines) + "\n"


def prepare(
    pgadmin_env: Mapping[str, str], servers_file: Path, pgpass_file: Path, rewrite: Rewrite, home: Path, port: int
) -> Path:
    """Write config_local.py, servers.json and the passfile under `home`; returns the servers file.

    Everything is checked before anything is written, so a broken file leaves the last good
    configuration (and pgAdmin's settings) as they were.
    """
    data_dir = home / "data"
    passfile = data_dir / "pgpass"
    config = config_local(pgadmin_env, data_dir, port)
    servers = render_servers(servers_file, rewrite, passfile)
    pgpass = render_pgpass(pgpass_file, rewrite)
    (home / "conf").mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "conf" / "config_local.py").write_text(config, encoding="utf-8")
    rendered = home / "conf" / "servers.json"
    rendered.write_text(json.dumps(servers, indent=2), encoding="utf-8")
    passfile.touch(mode=0o600)
    passfile.chmod(0o600)
    passfile.write_text(pgpass, encoding="utf-8")
    return rendered


def command(python: Path, servers: Path) -> list[str]:
    return [str(python), str(LAUNCHER), str(servers)]


def environment(home: Path) -> dict[str, str]:
    """pgAdmin finds config_local.py on PYTHONPATH (pgAdmin's documented way to configure it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PYTHONPATH": str(home / "conf")}


def answers(port: int) -> bool:
    """pgAdmin's own health URL (the Docker healthcheck asks the same)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/misc/ping", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(path.parents[3]))  # e.g. G0_Trainee/deploy/pgadmin/servers.json
    except (ValueError, IndexError):
        return str(path)
