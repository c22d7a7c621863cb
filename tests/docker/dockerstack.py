"""A grade's Docker Compose stack in a throwaway copy, driven through the real `docker compose`.

Why a copy: the tests must never touch a learner's files, volumes or ports. Each stack gets a
temporary folder holding the grade and the shared coursekit (compose builds the generator from
`../..` and mounts `../../coursekit`), a unique project name (containers, volumes, image tag),
and a `deploy/.env` that moves every port to a free one and sets AIRFLOW_UID - the way the README
tells learners to do it, so the tools must find the ports there by themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from coursekit.grade import REPO_ROOT, Grade
from coursekit.loadtest.measure import docker_stats
from coursekit.pg import free_port

PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
# Variables a contributor's shell may hold that would silently change what is tested.
SHELL_VARIABLES = (*PORT_VARIABLES, "AIRFLOW_UID", "DAGS_DIR", "COMPOSE_FILE", "COMPOSE_PROFILES", "FLOWER_PORT")
RUNTIME_FOLDERS = ("generator_app_data", "logs", "staging", "__pycache__", ".env")
TEST_UID = 1000
CACHE_TAG = "course-airflow:3.3.2-docker-tests"  # keeps the built layers between runs


class DockerStack:
    """One grade's stack: `up()`, `compose(...)`, `down()`, and `destroy()` at the end."""

    def __init__(
        self,
        grade: str,
        files: tuple[str, ...] = ("docker-compose.yml",),
        dags_dir: str | None = None,
        source: Path = REPO_ROOT,
    ):
        """`source`: the checkout to copy from (another clone, e.g. one made with core.autocrlf=true)."""
        self.root = Path(tempfile.mkdtemp(prefix=f"coursekit-docker-{grade.lower()}-"))
        shutil.copytree(source / grade, self.root / grade, ignore=shutil.ignore_patterns(*RUNTIME_FOLDERS))
        shutil.copytree(source / "coursekit", self.root / "coursekit", ignore=shutil.ignore_patterns("__pycache__"))
        self.grade = Grade(grade, self.root / grade)
        self.deploy_dir = self.grade.deploy_dir
        self.files = files
        self.project = f"ct-{grade.split('_')[0].lower()}-{uuid.uuid4().hex[:6]}"
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        dotenv = {"AIRFLOW_UID": str(TEST_UID), **{k: str(v) for k, v in self.ports.items()}}
        if dags_dir:
            dotenv["DAGS_DIR"] = dags_dir
        lines = ["# written by tests/docker: free ports, the host user's uid", *(f"{k}={v}" for k, v in dotenv.items())]
        (self.deploy_dir / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.image = f"course-airflow:3.3.2-{self.project}"
        self.timings: dict[str, float] = {}

    # -- running compose ---------------------------------------------------------------------

    def shell_env(self) -> dict[str, str]:
        """The test process's environment without anything that would override deploy/.env."""
        env = {k: v for k, v in os.environ.items() if k not in SHELL_VARIABLES and not k.startswith("COMPOSE_")}
        env["COMPOSE_PROJECT_NAME"] = self.project
        return env

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", *(arg for f in self.files for arg in ("-f", f)), *args]
        result = subprocess.run(
            command, cwd=self.deploy_dir, env=self.shell_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(command[1:])}` exited {result.returncode}:\n{result.stderr[-3000:]}\n{self.diagnose()}"
            )
        return result

    def up(self, *args: str, timeout: float = 1500) -> float:
        """`up -d --build --wait`; returns the seconds it took."""
        began = time.monotonic()
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", str(int(timeout)), *args, timeout=timeout + 60)
        subprocess.run(["docker", "tag", self.image, CACHE_TAG], capture_output=True, check=False)
        return time.monotonic() - began

    def down(self, *args: str) -> None:
        self.compose("down", "--timeout", "30", *args, timeout=300)

    def destroy(self) -> None:
        """`down -v`, untag the stack's image, delete the copy (files written as AIRFLOW_UID too)."""
        try:
            self.compose("--profile", "flower", "down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        finally:
            subprocess.run(["docker", "image", "rm", self.image], capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():  # not root here: the containers' files need a container to go
                subprocess.run(
                    ["docker", "run", "--rm", "-v", f"{self.root}:/x", "--entrypoint", "rm", CACHE_TAG, "-rf", "/x"],
                    capture_output=True,
                    check=False,
                )
                shutil.rmtree(self.root, ignore_errors=True)

    # -- what runs -------------------------------------------------------------------------------

    def containers(self) -> list[dict[str, Any]]:
        """`docker compose ps -a` as dicts (Service, Name, State, Health, ExitCode, ID)."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        lines = [line for line in out.splitlines() if line.strip()]
        if len(lines) == 1 and lines[0].startswith("["):
            return json.loads(lines[0])
        return [json.loads(line) for line in lines]

    def inspect(self, container: str) -> dict[str, Any]:
        out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]

    def exec(self, service: str, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *command, timeout=timeout, check=False)

    def logs(self, service: str, tail: int = 60) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), service, check=False).stdout

    def diagnose(self) -> str:
        """State of every container and the log tail of the unhappy ones, for assertion messages."""
        try:
            rows = self.containers()
        except Exception as exc:  # diagnosing must never hide the original failure
            return f"(docker compose ps failed: {exc})"
        lines = [f"{r['Service']}: {r['State']} {r.get('Health') or ''} exit={r.get('ExitCode')}" for r in rows]
        for row in rows:
            if row.get("Health") not in ("", "healthy") or (row["State"] != "running" and row.get("ExitCode")):
                lines.append(f"--- logs of {row['Service']} ---\n{self.logs(row['Service'], 30)}")
        return "\n".join(lines)

    # -- reaching the services -----------------------------------------------------------------

    def url(self, service: str) -> str:
        variable = {"airflow": "AIRFLOW_PORT", "pgadmin": "PGADMIN_PORT"}[service]
        return f"http://127.0.0.1:{self.ports[variable]}"

    def airflow_token(self, user: str = "airflow", password: str = "airflow") -> str:
        reply = http_json("POST", self.url("airflow") + "/auth/token", {"username": user, "password": password})
        return reply["access_token"]

    def airflow(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.airflow_token()}"}
        return http_json(method, self.url("airflow") + path, body, headers)

    def checker(self, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`make check` against this copy: the checker finds the ports in deploy/.env by itself."""
        args = [sys.executable, "-m", "coursekit.checker", "--grade", self.grade.name]
        args += ["--grades-root", str(self.root)]
        env = {k: v for k, v in self.shell_env().items() if k != "COMPOSE_PROJECT_NAME"}
        return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def checker_verdict(output: str) -> str:
    """The checker's last line: DONE / WAIT are fine, NOT DONE / CANNOT CHECK are not.

    The old checker's last line was "N of M checks pass": all passing counts as DONE.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    for verdict in ("NOT DONE", "CANNOT CHECK", "DONE", "WAIT"):
        if last.startswith(verdict):
            return verdict
    match = re.search(r"(\d+) of (\d+) checks pass", last)
    if match:
        return "DONE" if match[1] == match[2] else "NOT DONE"
    return f"unknown last line {last!r}"


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def wait_for(what: str, condition, timeout: float, every: float = 5.0):
    """Poll `condition()` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def started_at(inspected: dict[str, Any]) -> float:
    """A container's State.StartedAt as a UNIX timestamp (Docker writes nanoseconds)."""
    text = re.sub(r"(\.\d{6})\d*", r"\1", inspected["State"]["StartedAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


class MemoryWatch:
    """Peak memory of every container of a project, sampled with `docker stats` in the background.

    `docker stats` reports usage without the page cache, the figure Docker compares with
    mem_limit before it OOM-kills; sampling every few seconds can miss a short spike, which is
    why the tests also check that no container was OOM-killed.
    """

    def __init__(self, project: str, every: float = 3.0) -> None:
        self.project = project
        self.every = every
        self.peak: dict[str, float] = {}  # service -> MiB
        self.limit: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for name, usage in docker_stats(self.project).items():  # name: e.g. airflow-worker-2
                    if not usage.memory_mib:
                        continue  # a container caught while it starts or exits ("0B / 0B")
                    self.peak[name] = max(self.peak.get(name, 0.0), usage.memory_mib)
                    if usage.limit_mib:
                        self.limit[name] = usage.limit_mib
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            self._stop.wait(self.every)


class PgAdmin:
    """pgAdmin's own HTTP API, as its web page uses it (desktop mode: no login, a session and a CSRF token)."""

    def __init__(self, base: str) -> None:
        import http.cookiejar

        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.opener.open(base + "/", timeout=60).read()  # starts the session (desktop mode logs in by itself)
        script = self.opener.open(base + "/browser/js/utils.js", timeout=60).read().decode()
        match = re.search(r"pgAdmin\['csrf_token'\] = '([^']+)'", script)
        assert match, "pgAdmin's utils.js carries no CSRF token"
        self.token = match[1]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-pgA-CSRFToken": self.token},
            method=method,
        )
        with self.opener.open(request, timeout=60) as response:
            return json.loads(response.read())

    def servers(self) -> list[dict[str, Any]]:
        """Every server of every server group, as the tree lists them."""
        found = []
        for group in self.call("GET", "/browser/server_group/nodes/")["data"]:
            try:
                found += self.call("GET", f"/browser/server/nodes/{group['_id']}/")["result"]
            except urllib.error.HTTPError as exc:
                if exc.code != 410:  # 410: a group without servers (pgAdmin's default "Servers")
                    raise
        return found

    def connect(self, server: dict[str, Any]) -> dict[str, Any]:
        """Connect with no password typed: pgAdmin must find it in its passfile."""
        try:
            return self.call("POST", f"/browser/server/connect/{server['_pid']}/{server['_id']}", {})
        except urllib.error.HTTPError as exc:  # 401 + prompt_password: pgAdmin would ask for one
            return {"status": exc.code, **json.loads(exc.read() or b"{}")}


FIGURES = REPO_ROOT / ".run" / "docker-figures.json"


def record_figures(section: str, figures: dict) -> None:
    """Merge one test module's measured figures into .run/docker-figures.json."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text(encoding="utf-8")) if FIGURES.exists() else {}
    data[section] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
