"""Measurements: the warehouse's view (rows landed, latency) and the machine's (CPU, memory).

Only the stack's own processes are measured. Natively those are the process trees `make run`
recorded (its state file and the PostgreSQL data folders), memory as PSS where the system has it
(shared pages split among the processes that map them, so the figures add up), else RSS. With
Docker they are the containers of the grade's Compose project, one figure per container from
`docker stats` (memory without the page cache, what Docker compares with mem_limit); processes
inside a Docker Desktop VM are invisible to this machine's process table anyway.

CPU of short-lived processes (Airflow starts one per task) would be missed by
sampling live processes only. A process's `children_*` CPU times include its
reaped children, so a group's CPU is the sum over its live processes of their
own plus their reaped children's times: nothing is lost when a task ends.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import psutil
from psycopg2 import sql

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
BUCKET = "1 minute"  # one scheduled run per minute: smaller buckets only show the runs' rhythm


@cache
def _statements() -> dict[str, str]:
    text = (Path(__file__).with_name("sql") / "measure.sql").read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def statement(name: str, **parts: sql.Composable) -> sql.Composed:
    """A named statement of sql/measure.sql with its identifiers filled in."""
    return sql.SQL(_statements()[name]).format(**parts)


def query(conn, composed: sql.Composable, params: dict | None = None) -> list[tuple]:
    """Read-only: the transaction ends either way, so a failed read leaves the connection usable."""
    try:
        with conn.cursor() as cur:
            cur.execute(composed, params)
            return cur.fetchall()
    finally:
        conn.rollback()


def now(conn) -> datetime:
    """The database's clock: every window of the test is measured on it."""
    return query(conn, sql.SQL("select now()"))[0][0]


@dataclass
class Table:
    name: str
    key: str


def _first_versions(tables: list[Table]) -> sql.Composable:
    return sql.SQL(" union all ").join(
        statement(
            "first_versions",
            dds_table=sql.Identifier("dds", t.name),
            key=sql.Identifier(t.key),
            increment=sql.Identifier("created_at"),
        )
        for t in tables
    )


def rows_written(dwh) -> int:
    return query(dwh, statement("rows_written"))[0][0]


def lag_seconds(dwh, table: Table, src_ids: list[str], now: datetime) -> float | None:
    """How far dds.<table> is behind `now` (the newest row it holds, worst shop)."""
    newest = [
        query(
            dwh,
            statement(
                "newest_row", dds_table=sql.Identifier("dds", table.name), increment=sql.Identifier("created_at")
            ),
            {"src_id": src_id},
        )[0][0]
        for src_id in src_ids
    ]
    if any(n is None for n in newest):
        return None
    return (now - min(newest)).total_seconds()


def window_latency(dwh, tables: list[Table], start: datetime, end: datetime) -> tuple[int, float, float, float]:
    """(keys, p50, p95, max) seconds for keys created in [start, end) that have landed."""
    rows = query(
        dwh, statement("latency_of_window", first_versions=_first_versions(tables)), {"start": start, "end": end}
    )
    count, p50, p95, worst = rows[0]
    return count, p50 or 0.0, p95 or 0.0, worst or 0.0


def landed_in_window(dwh, tables: list[Table], start: datetime, end: datetime) -> int:
    return sum(
        query(
            dwh, statement("landed_in_window", dds_table=sql.Identifier("dds", t.name)), {"start": start, "end": end}
        )[0][0]
        for t in tables
    )


def source_rows(shop_conn, tables: list[Table], start: datetime, end: datetime) -> int:
    return sum(
        query(
            shop_conn,
            statement("source_rows", source_table=sql.Identifier(t.name), increment=sql.Identifier("created_at")),
            {"start": start, "end": end},
        )[0][0]
        for t in tables
    )


def caught_up(dwh, shops: dict[str, object], src_ids: dict[str, str], tables: list[Table]) -> bool:
    """dds holds each shop's newest row of every table (the last tick has arrived)."""
    for shop, conn in shops.items():
        for t in tables:
            newest_source = query(
                conn,
                statement(
                    "newest_source_row", source_table=sql.Identifier(t.name), increment=sql.Identifier("created_at")
                ),
            )[0][0]
            newest_dds = query(
                dwh,
                statement(
                    "newest_row", dds_table=sql.Identifier("dds", t.name), increment=sql.Identifier("created_at")
                ),
                {"src_id": src_ids[shop]},
            )[0][0]
            if newest_source is not None and (newest_dds is None or newest_dds < newest_source):
                return False
    return True


def backlog(
    dwh, shops: dict[str, object], src_ids: dict[str, str], tables: list[Table], now: datetime
) -> tuple[int, float | None, dict[str, float]]:
    """What the shops hold that dds does not yet: (rows, lag of the worst table and shop, lag per table).

    Rows = each shop's rows of each table newer than the newest row dds holds of that shop and
    table (new keys only: updates of old keys are not counted). Lag = how old the oldest of those
    rows is (0 when there is none). None until dds holds a row of every shop and table.
    """
    rows, lags, empty = 0, {}, False
    for t in tables:
        newest_row = statement(
            "newest_row", dds_table=sql.Identifier("dds", t.name), increment=sql.Identifier("created_at")
        )
        missing = statement("backlog_rows", source_table=sql.Identifier(t.name), increment=sql.Identifier("created_at"))
        for shop, conn in shops.items():
            newest = query(dwh, newest_row, {"src_id": src_ids[shop]})[0][0]
            count, oldest = query(conn, missing, {"since": newest})[0]
            rows += count
            if newest is None:
                empty = True  # dds has nothing of this shop yet: no lag to speak of
                continue
            lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
            lags[t.name] = max(lags.get(t.name, 0.0), lag)
    return rows, None if empty or not lags else max(lags.values()), lags


def series(dwh, tables: list[Table], since: datetime, until: datetime) -> dict[str, list]:
    """Per one-minute bucket: versions landed, and latency (p50, p95, max) of keys that arrived then."""
    params = {"bucket": BUCKET, "origin": since, "since": since, "start": since, "end": until}
    landed: dict[datetime, int] = {}
    for t in tables:
        for bucket, count in query(dwh, statement("landed", dds_table=sql.Identifier("dds", t.name)), params):
            landed[bucket] = landed.get(bucket, 0) + count
    latency = query(dwh, statement("latency_by_arrival", first_versions=_first_versions(tables)), params)
    return {"landed": sorted(landed.items()), "latency": latency}


@dataclass
class ResourceSample:
    at: float  # seconds since the test started
    cpu_cores: dict[str, float]  # unit (process group or container) -> cores busy since the previous sample
    memory_mib: dict[str, float]  # unit -> PSS (native) or container memory usage (Docker)


MACHINE = "machine (all processes)"


def memory_of(process: psutil.Process) -> int:
    """PSS where the system reports it (Linux), else RSS."""
    try:
        return process.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return process.memory_info().rss


@dataclass
class ResourceMonitor:
    """CPU and memory of process groups (airflow, postgres, generators), sampled on demand."""

    roots: Callable[[], dict[str, list[int]]]
    machine_wide: bool = False  # also the whole machine's busy cores (MACHINE): others' load shows there
    started: float = field(default_factory=time.monotonic)
    samples: list[ResourceSample] = field(default_factory=list)
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str = (
        "the stack's own process trees: CPU from their own and reaped children's CPU times, "
        "memory as PSS (RSS where PSS is unavailable)"
    )

    def sample(self) -> ResourceSample:
        now = time.monotonic()
        cpu, memory = {}, {}
        for group, pids in self.roots().items():
            total_cpu, total_memory = 0.0, 0
            for process in _trees(pids):
                try:
                    times = process.cpu_times()
                    total_cpu += times.user + times.system + times.children_user + times.children_system
                    total_memory += memory_of(process)
                except psutil.Error:
                    continue
            before = self._last.get(group)
            cpu[group] = max(0.0, (total_cpu - before[1]) / (now - before[0])) if before else 0.0
            memory[group] = total_memory / 2**20
            self._last[group] = (now, total_cpu)
        if self.machine_wide:
            times = psutil.cpu_times()
            busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
            before = self._last.get(MACHINE)
            cpu[MACHINE] = max(0.0, (busy - before[1]) / (now - before[0])) if before else 0.0
            self._last[MACHINE] = (now, busy)
        sample = ResourceSample(now - self.started, cpu, memory)
        self.samples.append(sample)
        return sample


def _trees(pids: list[int]) -> list[psutil.Process]:
    seen: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                seen[process.pid] = process
        except psutil.Error:
            continue
    return list(seen.values())


def native_roots(state_dir: Path) -> Callable[[], dict[str, list[int]]]:
    """The processes `make run` started for one grade (its state file, its postmasters), nothing else."""

    def roots() -> dict[str, list[int]]:
        state_file = state_dir / "state.json"
        pids = json.loads(state_file.read_text(encoding="utf-8")).get("pids", {}) if state_file.exists() else {}
        postmasters = []
        for pid_file in (state_dir / "pg").glob("*/postmaster.pid"):
            try:
                postmasters.append(int(pid_file.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
        return {
            "airflow": [pid for name, pid in pids.items() if name.startswith("airflow-")],
            "postgres": postmasters,
            "shops": [pid for name, pid in pids.items() if name.startswith("shop-")],
        }

    return roots


@dataclass
class ContainerUsage:
    cpu_cores: float
    memory_mib: float
    limit_mib: float | None


_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 1e3, "mb": 1e6, "gb": 1e9}


def _mib(text: str) -> float:
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]+)\s*", text)
    if match is None:
        raise ValueError(f"not a memory size: {text!r}")
    return float(match[1]) * _UNITS[match[2].lower()] / 2**20


def parse_docker_stats(lines: str, project: str) -> dict[str, ContainerUsage]:
    """`docker stats --no-stream --format '{{json .}}'` -> container (without the project prefix) -> usage."""
    usage = {}
    for line in lines.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        used, _, limit = row["MemUsage"].partition("/")
        name = row["Name"].removeprefix(project + "-")
        cpu = float(row["CPUPerc"].rstrip("%") or 0) / 100 if row["CPUPerc"] not in ("", "--") else 0.0
        usage[name] = ContainerUsage(cpu, _mib(used), _mib(limit) if limit.strip() else None)
    return usage


def docker_stats(project: str) -> dict[str, ContainerUsage]:
    """CPU and memory of every running container of a Compose project; {} without Docker."""
    try:
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
        if not ids:
            return {}
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_docker_stats(out, project)


class EngineAPI:
    """The Docker Engine's HTTP API on the endpoint `docker` itself uses (DOCKER_HOST or the current context).

    Why not `docker stats`: its CPU figure is a snapshot over about one second, so a sample every
    few seconds sees tasks that happen to run in that second and misses the rest. The Engine's
    stats carry the container's cumulative CPU time (cgroup), whose difference between two
    samples is the exact mean over the interval, like the native monitor's CPU times.
    """

    def __init__(self, host: str | None = None) -> None:
        self.host = host or _docker_host()

    def get(self, path: str):
        import http.client
        import socket

        if self.host.startswith("unix://"):
            sock_path = self.host.removeprefix("unix://")

            class UnixConnection(http.client.HTTPConnection):
                def connect(self) -> None:
                    self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self.sock.settimeout(30)
                    self.sock.connect(sock_path)

            conn = UnixConnection("localhost", timeout=30)
        elif self.host.startswith("tcp://"):
            conn = http.client.HTTPConnection(self.host.removeprefix("tcp://"), timeout=30)
        else:
            raise OSError(f"unsupported Docker endpoint {self.host!r}")
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise OSError(f"Docker Engine API {path}: HTTP {response.status}")
            return json.loads(body)
        finally:
            conn.close()

    def project_containers(self, project: str) -> dict[str, str]:
        """Running containers of a Compose project: name without the project prefix -> id."""
        filters = urllib.parse.quote(json.dumps({"label": [f"com.docker.compose.project={project}"]}))
        rows = self.get(f"/containers/json?filters={filters}")
        return {row["Names"][0].lstrip("/").removeprefix(project + "-"): row["Id"] for row in rows}

    def usage(self, container_id: str) -> tuple[float, float, float | None]:
        """(CPU seconds used so far, memory MiB as `docker stats` shows it, limit MiB)."""
        stats = self.get(f"/containers/{container_id}/stats?stream=false&one-shot=true")
        return parse_engine_stats(stats)


def parse_engine_stats(stats: dict) -> tuple[float, float, float | None]:
    """An Engine stats document -> (cumulative CPU seconds, memory MiB without the page cache, limit MiB)."""
    cpu_seconds = stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    # What the docker CLI subtracts: inactive_file (cgroup v2) or total_inactive_file (v1).
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    used = max(0, memory.get("usage", 0) - cache) / 2**20
    limit = memory.get("limit")
    return cpu_seconds, used, limit / 2**20 if limit else None


def _docker_host() -> str:
    import os

    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    try:
        out = subprocess.run(
            ["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "unix:///var/run/docker.sock"


@dataclass
class DockerMonitor:
    """The same samples as ResourceMonitor, one unit per container of a Compose project.

    CPU is the mean over the interval since the previous sample, from each container's cumulative
    CPU time (Engine API); memory is the container's usage without the page cache, as `docker stats`
    shows it and as Docker compares it with mem_limit. Without the Engine API (an endpoint this
    code cannot reach), it falls back to `docker stats` snapshots and says so in `method`.
    """

    project: str
    extra: ResourceMonitor | None = None  # processes outside the containers (the load generators)
    started: float = field(default_factory=time.monotonic)
    samples: list[ResourceSample] = field(default_factory=list)
    method: str = "per container: CPU from its cumulative CPU time (Docker Engine API), memory without the page cache"
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)
    _engine: EngineAPI | None = None

    def _engine_sample(self) -> tuple[dict[str, float], dict[str, float]]:
        self._engine = self._engine or EngineAPI()
        cpu, memory = {}, {}
        for name, container_id in self._engine.project_containers(self.project).items():
            try:
                cpu_seconds, used, _ = self._engine.usage(container_id)
            except (OSError, KeyError, ValueError):
                continue  # stopped between the listing and its stats
            now = time.monotonic()
            before = self._last.get(name)
            cpu[name] = max(0.0, (cpu_seconds - before[1]) / (now - before[0])) if before else 0.0
            memory[name] = used
            self._last[name] = (now, cpu_seconds)
        return cpu, memory

    def sample(self) -> ResourceSample:
        try:
            cpu, memory = self._engine_sample()
        except (OSError, ValueError, KeyError):
            usage = docker_stats(self.project)
            cpu = {name: u.cpu_cores for name, u in usage.items()}
            memory = {name: u.memory_mib for name, u in usage.items()}
            self.method = "per container, `docker stats` snapshots (memory without the page cache)"
        if self.extra is not None:
            outside = self.extra.sample()
            cpu.update(outside.cpu_cores)
            memory.update(outside.memory_mib)
        sample = ResourceSample(time.monotonic() - self.started, cpu, memory)
        self.samples.append(sample)
        return sample


def report_group(unit: str) -> str:
    """Which column of the report a unit counts in: containers are summed into airflow / postgres."""
    if unit.startswith(("pg-", "airflow-db")):
        return "postgres"
    if unit.startswith("airflow"):
        return "airflow"
    return unit


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    import platform

    return {
        "cpu cores (logical)": str(psutil.cpu_count()),
        "cpu cores (physical)": str(psutil.cpu_count(logical=False)),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": platform.processor() or platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
