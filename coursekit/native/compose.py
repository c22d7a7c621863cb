"""Read a grade's docker-compose.yml the way `make run` needs it.

The compose file and its env files are the grade's single configuration. This
module extracts what a native run needs from them: which services exist, the
ports they publish on 127.0.0.1, their env files, and where their mounted
folders live on this machine. Variables are interpolated as Compose does
(`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`), and resolved by Compose's
rule: the shell environment first, then the `.env` file next to the compose
file, then the file's own defaults. `compose_variables` is that rule, the one
place every tool (make run, make check, make loadtest) takes variables from, so
`PG_DWH_PORT=15435` in the shell or in `deploy/.env` moves a port in both worlds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coursekit.envfiles import EnvFileError, parse_env_text, read_env_files

VARIABLE_PATTERN = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class ComposeError(ValueError):
    """The compose file cannot be read or lacks something the native run needs."""


def interpolate(text: str, env: Mapping[str, str], where: str = "compose file") -> str:
    """Substitute Compose variables in `text` from `env`."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise ComposeError(f"{where}: variable {name} is required: {arg}")
        if value is None:
            raise ComposeError(f"{where}: variable {name} is not set and has no default")
        return value

    return VARIABLE_PATTERN.sub(substitute, text)


def compose_variables(deploy_dir: Path, shell: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables as `docker compose` sees them in `deploy_dir`: the shell wins over `.env` there.

    Compose reads `.env` from the project folder (the compose file's folder) by itself; a learner
    who moves a port there must find every other tool of the course on the moved port too.
    """
    shell = os.environ if shell is None else shell
    dotenv = deploy_dir / ".env"
    try:
        from_file = parse_env_text(dotenv.read_text(encoding="utf-8"), str(dotenv))
    except FileNotFoundError:
        from_file = {}
    except EnvFileError as exc:
        raise ComposeError(str(exc)) from None
    return {**from_file, **shell}


def port_variable(text: str) -> str | None:
    """The variable that sets the host part of "127.0.0.1:${VAR:-5435}:5432", e.g. VAR."""
    names = [m["name"] for m in VARIABLE_PATTERN.finditer(text) if m["name"]]
    return names[0] if names else None


@dataclass
class Mount:
    host: Path
    target: str
    read_only: bool


@dataclass
class Service:
    name: str
    image: str | None
    env_files: list[Path]
    published: dict[int, int] = field(default_factory=dict)  # container port -> host port
    port_variables: dict[int, str | None] = field(default_factory=dict)  # container port -> env var
    mounts: list[Mount] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] = field(default_factory=list)  # its `test:`, variables interpolated ("$$" -> "$")

    def env(self) -> dict[str, str]:
        """What the container sees: its env files in order, then `environment:`."""
        return {**read_env_files(*self.env_files), **self.environment}

    def host_path(self, target: str) -> Path | None:
        """Where a path inside the container lives on this machine (via its bind mounts)."""
        best: Mount | None = None
        for mount in self.mounts:
            if (target == mount.target or target.startswith(mount.target.rstrip("/") + "/")) and (
                best is None or len(mount.target) > len(best.target)
            ):
                best = mount
        if best is None:
            return None
        return best.host / target[len(best.target) :].lstrip("/")

    @property
    def host_port(self) -> int:
        """The one port this service publishes on 127.0.0.1."""
        if len(self.published) != 1:
            raise ComposeError(f"service {self.name} publishes {len(self.published)} ports; expected one")
        return next(iter(self.published.values()))


def _ports(service: str, entries: list[Any], env: Mapping[str, str]) -> tuple[dict[int, int], dict[int, str | None]]:
    published: dict[int, int] = {}
    variables: dict[int, str | None] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise ComposeError(f'service {service}: write ports as "127.0.0.1:HOST:CONTAINER" strings')
        parts = interpolate(entry, env, f"service {service} ports").split(":")
        if len(parts) != 3 or parts[0] != "127.0.0.1":
            raise ComposeError(f'service {service}: port {entry!r} must bind to 127.0.0.1 ("127.0.0.1:HOST:CONTAINER")')
        container = int(parts[2].split("/")[0])
        published[container] = int(parts[1])
        variables[container] = port_variable(entry)
    return published, variables


def _mounts(service: str, entries: list[Any], base: Path, env: Mapping[str, str]) -> list[Mount]:
    mounts = []
    for entry in entries:
        if isinstance(entry, dict):
            if entry.get("type") != "bind":
                continue
            source, target, read_only = entry["source"], entry["target"], bool(entry.get("read_only"))
        else:
            parts = interpolate(str(entry), env, f"service {service} volumes").split(":")
            if len(parts) < 2:
                continue
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        if not (source.startswith((".", "/", "~"))):
            continue  # a named volume: natively the data lives under .run/
        mounts.append(Mount((base / os.path.expanduser(source)).resolve(), target, read_only))
    return mounts


def _healthcheck(service: str, spec: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    test = spec.get("test") or []
    test = ["CMD-SHELL", test] if isinstance(test, str) else test
    return [interpolate(str(part), env, f"service {service} healthcheck") for part in test]


def load_compose(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Service]:
    """Services of a compose file, with ports, env files and bind mounts resolved.

    `env` stands for the shell environment (default: this process's); the `.env` file next to the
    compose file fills in what it does not set, as in Compose (`compose_variables`).
    """
    import yaml

    env = compose_variables(path.parent, env)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComposeError(f"{path}: compose file not found") from None
    base = path.parent
    services: dict[str, Service] = {}
    for name, spec in (data.get("services") or {}).items():
        env_files = spec.get("env_file") or []
        env_files = [env_files] if isinstance(env_files, str | dict) else env_files
        files = [base / (f["path"] if isinstance(f, dict) else f) for f in env_files]
        environment = spec.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        published, variables = _ports(name, spec.get("ports") or [], env)
        services[name] = Service(
            name=name,
            image=spec.get("image"),
            env_files=files,
            published=published,
            port_variables=variables,
            mounts=_mounts(name, spec.get("volumes") or [], base, env),
            environment={k: interpolate(str(v), env, f"service {name}") for k, v in environment.items()},
            healthcheck=_healthcheck(name, spec.get("healthcheck") or {}, env),
        )
    return services
