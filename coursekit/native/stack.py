"""Run a grade's stack without Docker, from the same compose and env files.

`make run` reads `<grade>/deploy/docker-compose.yml` and its env files and
starts, on this machine:

* an embedded PostgreSQL for every `postgres` service (same users, passwords,
  databases and init scripts; on 127.0.0.1 at the ports compose publishes);
* a generator process for every shop, with its env files and the grade's config;
* Airflow 3 (scheduler, dag-processor, api-server) with the grade's dags folder
  and the same `AIRFLOW_CONN_*` connections, their hosts rewritten from compose
  service names to 127.0.0.1 and the published ports;
* pgAdmin 4 in desktop mode with the grade's servers.json and pgpass, rewritten
  the same way (coursekit/native/pgadmin.py; `PGADMIN=0` skips it). A pgAdmin
  that cannot start is reported and left out; the rest of the stack still runs.

Data lives under `.run/<grade>/` (git-ignored) and survives `make stop`;
`make reset` removes it. What runs is recorded in `.run/<grade>/state.json`, so
`make stop` finds every process it started, even after a failed start.

Natively Airflow runs without the triggerer and without the `standalone`
supervisor process: the course's DAGs defer nothing, and every process saved is
~150 MB on a laptop. Docker runs `airflow standalone` with the same settings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from coursekit.grade import REPO_ROOT, SHOPS, Grade
from coursekit.native import pgadmin
from coursekit.native.compose import ComposeError, Service, load_compose
from coursekit.native.processes import alive, stop_process_group, tail
from coursekit.pg import EmbeddedPostgres, PostgresSpec, free_port, port_is_free
from coursekit.pg import bin_dir as pg_bin_dir

INITDB_TARGET = "/docker-entrypoint-initdb.d"
AIRFLOW_COMPONENTS = ("scheduler", "dag-processor", "api-server")
CONTAINER_AIRFLOW_HOME = "/opt/airflow"

Progress = Callable[[str], None]


class StackError(RuntimeError):
    """Something stops the stack from starting; the message says what to do."""


@dataclass
class Endpoint:
    """How a learner reaches a service from this machine."""

    name: str
    url: str
    login: str


class NativeStack:
    """One grade's stack on this machine."""

    def __init__(self, grade: Grade, run_root: Path = REPO_ROOT / ".run") -> None:
        self.grade = grade
        self.state_dir = run_root / grade.name
        self.state_file = self.state_dir / "state.json"
        self.logs_dir = self.state_dir / "logs"
        self.airflow_home = self.state_dir / "airflow"
        try:
            self.services = load_compose(grade.deploy_dir / "docker-compose.yml")
        except ComposeError as exc:
            raise StackError(str(exc)) from None

    # -- what the compose file describes ----------------------------------------

    @property
    def postgres_services(self) -> list[Service]:
        return [s for s in self.services.values() if (s.image or "").startswith("postgres:")]

    def generator_services(self) -> list[Service]:
        return [self.services[name] for name in SHOPS if name in self.services]

    @property
    def airflow(self) -> Service:
        return self.services["airflow"]

    def host_port(self, service: str, container_port: int, state: dict) -> int:
        """Where `service:container_port` is reached natively."""
        published = self.services[service].published.get(container_port)
        if published is not None:
            return published
        remembered = state.get("ports", {}).get(service)  # unpublished (airflow-db): any free port, kept
        return remembered if remembered and port_is_free(remembered) else free_port()

    def postgres(self, service: Service, port: int) -> EmbeddedPostgres:
        spec = PostgresSpec.from_env(service.name, service.env(), port)
        return EmbeddedPostgres(spec, self.state_dir / "pg" / service.name)

    def init_scripts(self, service: Service) -> list[Path]:
        scripts: list[Path] = []
        for mount in service.mounts:
            if mount.target.startswith(INITDB_TARGET):
                if mount.host.is_dir():
                    scripts += sorted(p for p in mount.host.iterdir() if p.suffix in (".sql", ".sh"))
                else:
                    scripts.append(mount.host)
        return scripts

    # -- state -----------------------------------------------------------------

    def load_state(self) -> dict:
        if not self.state_file.exists():
            return {}
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    def save_state(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2), encoding="utf-8")

    def running_processes(self, state: dict) -> dict[str, int]:
        """Recorded processes that are still alive."""
        return {name: pid for name, pid in state.get("pids", {}).items() if alive(pid)}

    # -- start -----------------------------------------------------------------

    def start(self, progress: Progress = print) -> list[Endpoint]:
        state = self.load_state()
        running = self.running_processes(state) | {
            s.name: 0 for s in self.postgres_services if self.postgres(s, 0).is_running()
        }
        if running:
            raise StackError(
                f"{self.grade.name} is already running ({', '.join(sorted(running))}). "
                f"See `make status GRADE={self.grade.name}`, or stop it with `make stop GRADE={self.grade.name}`."
            )
        if state:
            progress(f"found a stale state file of an earlier run ({self.state_file}); starting afresh")
        state = {"grade": self.grade.name, "pids": {}, "ports": state.get("ports", {})}
        self._check_ports_free()
        self._check_dags_folder()
        self.save_state(state)
        self.logs_dir.mkdir(parents=True, exist_ok=True)

        for service in self.postgres_services:
            port = self.host_port(service.name, 5432, state)
            state["ports"][service.name] = port
            server = self.postgres(service, port)
            first = server.start(self.init_scripts(service), script_env=service.env())
            self.save_state(state)
            self._check_postgres_health(service, port)
            progress(f"  ✓ {service.name:<11} PostgreSQL on 127.0.0.1:{port}" + (" (new data folder)" if first else ""))

        for service in self.generator_services():
            state["pids"][service.name] = self._start_generator(service, state)
            self.save_state(state)
            progress(f"  ✓ {service.name:<11} generator (logs: {service.host_path('/app/logs')})")

        self._start_pgadmin(state, progress)  # boots while Airflow migrates; waited for at the end
        env = self.airflow_env(state)
        from coursekit.provision import provision

        provision(env)
        progress("  … airflow     migrating its metadata database (the first start takes a minute)")
        self._run_airflow(["db", "migrate"], env, timeout=600)
        for component in AIRFLOW_COMPONENTS:
            state["pids"][f"airflow-{component}"] = self._spawn(
                [sys.executable, "-m", "airflow", component], env, f"airflow-{component}"
            )
            self.save_state(state)
        self._wait_for_airflow(state, progress)
        self._wait_for_generators(state)
        self._wait_for_pgadmin(state, progress)
        return self.endpoints()

    def _check_postgres_health(self, service: Service, port: int) -> None:
        """Run the service's compose healthcheck against the native server, as Docker runs it in the container.

        For a shop it checks what the init script creates (the read-only role logs in), so a script
        that did nothing useful fails the start here, as it keeps the container unhealthy in Docker.
        """
        test = service.healthcheck
        if not test or test[0] not in ("CMD", "CMD-SHELL"):
            return
        command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        env = {
            **os.environ,
            **service.env(),
            "PATH": f"{pg_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
            "PGPORT": str(port),  # in the container libpq's default 5432; here the published port
        }
        for variable in ("PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGPASSFILE", "PGSERVICE"):
            env.pop(variable, None)  # the check names its own host, user and database
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            scripts = ", ".join(p.name for p in self.init_scripts(service)) or "none"
            raise StackError(
                f"{service.name} started but is not healthy: its healthcheck failed ({output or 'no output'}). "
                f"Its init scripts ({scripts}) create what the check needs, once, in a new data folder: "
                f"fix them, then `make reset GRADE={self.grade.name}` to create the databases afresh."
            )

    def _check_dags_folder(self) -> None:
        dags = self._host_path(f"{CONTAINER_AIRFLOW_HOME}/dags")
        if not dags.is_dir():
            raise StackError(
                f"Airflow's dags folder {dags} does not exist. Check DAGS_DIR (SOLUTION=1 runs the grade's "
                f"solution/dags folder; `make sync-grades` writes it for G1_Intern to G3_Middle)."
            )

    def _check_ports_free(self) -> None:
        for service in self.services.values():
            for container_port, host_port in service.published.items():
                if service.name == "pgadmin":
                    continue  # checked by _start_pgadmin: a taken port leaves out pgAdmin only
                if not port_is_free(host_port):
                    variable = service.port_variables.get(container_port)
                    hint = f" e.g. `{variable}={host_port + 10000} make run`" if variable else ""
                    raise StackError(
                        f"port 127.0.0.1:{host_port} ({service.name}) is already taken by another program. "
                        f"Stop it, or publish {service.name} elsewhere:{hint}."
                    )

    def _rewrite_host(self, service_host: str, container_port: int, state: dict) -> tuple[str, int]:
        if service_host in self.services:
            return "127.0.0.1", int(
                state["ports"].get(service_host) or self.host_port(service_host, container_port, state)
            )
        return service_host, container_port

    def _start_generator(self, service: Service, state: dict) -> int:
        env = {**os.environ, **service.env()}
        host, port = self._rewrite_host(env["POSTGRES_HOST"], int(env.get("POSTGRES_PORT", 5432)), state)
        env.update(POSTGRES_HOST=host, POSTGRES_PORT=str(port))
        config = service.host_path("/app/config/config.json")
        log_dir = service.host_path("/app/logs")
        if config is None or log_dir is None:
            raise StackError(f"{service.name}: compose must mount config.json at /app/config and logs at /app/logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "coursekit.generator", "--config", str(config), "--log-dir", str(log_dir)]
        return self._spawn(command, env, service.name)

    def airflow_env(self, state: dict) -> dict[str, str]:
        """airflow.env with container hosts and paths translated to this machine."""
        service = self.airflow
        env = {**os.environ}
        for key, value in service.env().items():
            if key.startswith("AIRFLOW_CONN_") or key == "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                value = self._rewrite_uri(value, state)
            elif key == "PYTHONPATH":
                continue  # the virtualenv has coursekit installed
            elif value.startswith(CONTAINER_AIRFLOW_HOME):
                value = str(self._host_path(value))
            env[key] = value
        api_port = service.published.get(8080, 8080)
        env.update(
            AIRFLOW_HOME=str(self.airflow_home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self._host_path(f"{CONTAINER_AIRFLOW_HOME}/dags")),
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self._host_path(f"{CONTAINER_AIRFLOW_HOME}/logs")),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(api_port),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        )
        return env

    def _host_path(self, container_path: str) -> Path:
        mounted = self.airflow.host_path(container_path)
        if mounted is not None:
            return mounted
        return self.airflow_home / container_path[len(CONTAINER_AIRFLOW_HOME) :].lstrip("/")

    def _rewrite_uri(self, uri: str, state: dict) -> str:
        parts = urlsplit(uri)
        if parts.hostname is None:
            return uri
        host, port = self._rewrite_host(parts.hostname, parts.port or 5432, state)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}{host}:{port}"))

    def _spawn(self, command: list[str], env: dict[str, str], name: str) -> int:
        """A detached process in its own session (so stop can signal its whole group)."""
        log = open(self.logs_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        return process.pid

    def _run_airflow(self, args: list[str], env: dict[str, str], timeout: float) -> None:
        log_path = self.logs_dir / f"airflow-{args[0]}.log"
        with open(log_path, "ab") as log:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", *args], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
        if result.returncode != 0:
            raise StackError(f"`airflow {' '.join(args)}` failed; see {log_path}:\n{tail(log_path)}")

    def _wait_for_airflow(self, state: dict, progress: Progress, timeout: float = 300) -> None:
        url = f"http://127.0.0.1:{self.airflow.published.get(8080, 8080)}/api/v2/monitor/health"
        progress(f"  … airflow     waiting for {url}")
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for component in AIRFLOW_COMPONENTS:
                pid = state["pids"][f"airflow-{component}"]
                if not alive(pid):
                    log_path = self.logs_dir / f"airflow-{component}.log"
                    raise StackError(f"airflow {component} exited; see {log_path}:\n{tail(log_path)}")
            health = airflow_health(url)
            if health is not None:
                last = ", ".join(f"{k}: {v}" for k, v in health.items())
                if all(health.get(k) == "healthy" for k in ("metadatabase", "scheduler", "dag_processor")):
                    progress(f"  ✓ airflow     healthy ({last})")
                    return
            time.sleep(2)
        raise StackError(f"Airflow was not healthy within {timeout:.0f} s ({last}); logs in {self.logs_dir}")

    def _wait_for_generators(self, state: dict) -> None:
        time.sleep(1)
        for service in self.generator_services():
            if not alive(state["pids"][service.name]):
                log_path = self.logs_dir / f"{service.name}.log"
                raise StackError(f"generator {service.name} exited at start; see {log_path}:\n{tail(log_path)}")

    # -- pgAdmin: optional; a failure is reported and the rest of the stack runs on ----------------

    @property
    def pgadmin_home(self) -> Path:
        return self.state_dir / "pgadmin"

    def pgadmin_port(self) -> int | None:
        service = self.services.get("pgadmin")
        return service.published.get(pgadmin.CONTAINER_PORT) if service else None

    def _start_pgadmin(self, state: dict, progress: Progress) -> None:
        port = self.pgadmin_port()
        if port is None:
            return
        if not pgadmin.enabled():
            progress("  - pgadmin     skipped (PGADMIN=0)")
            return
        try:
            state["pids"]["pgadmin"] = self._spawn_pgadmin(port, state, progress)
            self.save_state(state)
        except pgadmin.PgAdminError as exc:
            self._pgadmin_failed(state, progress, str(exc))

    def _spawn_pgadmin(self, port: int, state: dict, progress: Progress) -> int:
        service = self.services["pgadmin"]
        if not port_is_free(port):
            variable = service.port_variables.get(pgadmin.CONTAINER_PORT) or "PGADMIN_PORT"
            raise pgadmin.PgAdminError(
                f"port 127.0.0.1:{port} is already taken by another program (a Docker pgAdmin, another grade's "
                f"`make run`?). Free it, or move pgAdmin: `{variable}={port + 10000} make run`."
            )
        servers_file = service.host_path(pgadmin.SERVERS_TARGET)
        pgpass_file = service.host_path(service.env().get("PGPASS_FILE", "/pgadmin4/pgpass"))
        if servers_file is None or pgpass_file is None:
            raise pgadmin.PgAdminError("compose must mount pgadmin/servers.json and the PGPASS_FILE into pgadmin")

        def rewrite(host: str, container_port: int) -> tuple[str, int]:
            return self._rewrite_host(host, container_port, state)

        servers = pgadmin.prepare(service.env(), servers_file, pgpass_file, rewrite, self.pgadmin_home, port)
        python = pgadmin.ensure_venv(self.logs_dir / "pgadmin-install.log", progress)
        return self._spawn(pgadmin.command(python, servers), pgadmin.environment(self.pgadmin_home), "pgadmin")

    def _wait_for_pgadmin(self, state: dict, progress: Progress, timeout: float = 120) -> None:
        pid, port = state["pids"].get("pgadmin"), self.pgadmin_port()
        if pid is None or port is None:
            return
        log_path = self.logs_dir / "pgadmin.log"
        deadline = time.monotonic() + timeout
        while not pgadmin.answers(port):
            if not alive(pid):
                reason = f"pgAdmin exited at start; see {log_path}:\n{tail(log_path)}"
                return self._pgadmin_failed(state, progress, reason)
            if time.monotonic() > deadline:
                stop_process_group(pid)
                reason = f"pgAdmin did not answer within {timeout:.0f} s; see {log_path}"
                return self._pgadmin_failed(state, progress, reason)
            time.sleep(0.5)
        progress(f"  ✓ pgadmin     http://127.0.0.1:{port} (servers of {self.grade.name}/deploy/pgadmin/servers.json)")

    def _pgadmin_failed(self, state: dict, progress: Progress, reason: str) -> None:
        state["pids"].pop("pgadmin", None)
        state["pgadmin_error"] = reason
        self.save_state(state)
        progress(f"  ✗ pgadmin     not started: {reason}\n                the rest of the stack starts without it")

    def endpoints(self) -> list[Endpoint]:
        airflow_env = self.airflow.env()
        user = airflow_env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "airflow:admin").split(":")[0]
        endpoints = [
            Endpoint(
                "Airflow",
                f"http://localhost:{self.airflow.published.get(8080, 8080)}",
                f"{user} / {airflow_env.get('AIRFLOW_LOGIN_PASSWORD', '?')}",
            )
        ]
        for service in self.postgres_services:
            if service.published:
                env = service.env()
                endpoints.append(
                    Endpoint(
                        service.name,
                        f"postgresql://127.0.0.1:{service.host_port}/{env.get('POSTGRES_DB', '')}",
                        f"{env['POSTGRES_USER']} / {env['POSTGRES_PASSWORD']}",
                    )
                )
        if "pgadmin" in self.load_state().get("pids", {}):
            endpoints.append(Endpoint("pgAdmin", f"http://localhost:{self.pgadmin_port()}", "none (desktop mode)"))
        return endpoints

    # -- stop, status, reset ---------------------------------------------------

    def stop(self, progress: Progress = print) -> None:
        state = self.load_state()
        pids = state.get("pids", {})
        for name in [n for n in pids if not n.startswith("airflow-")] + [n for n in pids if n.startswith("airflow-")]:
            if stop_process_group(pids[name]):
                progress(f"  ✓ stopped {name}")
        for service in self.postgres_services:
            server = self.postgres(service, state.get("ports", {}).get(service.name, 0))
            if server.is_running():
                server.stop()
                progress(f"  ✓ stopped {service.name}")
        if self.state_file.exists():
            state = {k: v for k, v in state.items() if k != "pgadmin_error"}
            self.state_file.write_text(json.dumps({**state, "pids": {}}, indent=2), encoding="utf-8")

    def status(self) -> list[tuple[str, str, str]]:
        """(component, state, detail) rows."""
        state = self.load_state()
        rows = []
        for service in self.postgres_services:
            port = state.get("ports", {}).get(service.name)
            running = self.postgres(service, port or 0).is_running()
            rows.append((service.name, "running" if running else "stopped", f"127.0.0.1:{port}" if port else ""))
        for name, pid in state.get("pids", {}).items():
            detail = f"pid {pid}"
            if name in SHOPS:
                detail += f", logs {self.services[name].host_path('/app/logs')}"
            if name == "pgadmin":
                detail += f", http://127.0.0.1:{self.pgadmin_port()}, settings {self.pgadmin_home}"
            rows.append((name, "running" if alive(pid) else "exited", detail))
        if not state.get("pids"):
            rows += [(name, "stopped", "") for name in [*SHOPS, *(f"airflow-{c}" for c in AIRFLOW_COMPONENTS)]]
        if "pgadmin" not in state.get("pids", {}) and self.pgadmin_port() is not None:
            if state.get("pgadmin_error"):
                rows.append(("pgadmin", "failed", state["pgadmin_error"].splitlines()[0]))
            else:
                rows.append(("pgadmin", "off" if state.get("pids") else "stopped", ""))
        return rows

    def reset(self, progress: Progress = print) -> None:
        """Stop, then delete every piece of data the grade's runs left behind."""
        self.stop(progress)
        targets = [self.state_dir, self.grade.path / "generator_app_data"]
        targets += [self.grade.path / "airflow_data" / sub for sub in ("logs", "staging")]
        for target in targets:
            if target.exists():
                shutil.rmtree(target)
                progress(f"  ✓ removed {target}")


def airflow_health(url: str) -> dict[str, str] | None:
    """Component -> status from Airflow's health endpoint, or None if it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return {name: (info or {}).get("status") or "unknown" for name, info in body.items()}
