"""dbt's `snapshot` beside the course's SCD2 merge, on the same database and batch (part of scd2_bench).

dbt snapshots are what most learners would reach for instead of a hand-written
merge, so `make bench` measures one: dbt-core with dbt-postgres, from PyPI, in
its own virtualenv (`.venv-dbt`, created on first use from constraints-dbt.txt,
as `.venv-pgadmin` is: its pins never meet Airflow's).

The snapshot is configured to keep the course's contract as far as dbt can:

* the `check` strategy over the table's value columns (every column but the
  key; dbt's own NULL-safe comparison), `unique_key` = the key and `src_id`;
* `updated_at` = the time the batch was read, to the second (the course's
  timestamps are whole seconds), so a changed key's new version starts when it
  was seen, as the course's merge starts it; current versions end at the
  course's open end (`dbt_valid_to_current`);
* `hard_deletes: ignore`: a key missing from the batch keeps its current
  version (the course's retention rule; the batch is a window, not the table).

The snapshot table starts as dbt itself builds it: a first `dbt snapshot` over
dds's current versions (updated_at = their eff_from_dttm), so it holds the same
versions as dds, in dbt's own layout (no index: dbt creates none). Then each
measured round runs, on one fresh copy of that database: the course's merge task
in a fresh Python process, and `dbt snapshot` over the same stg batch. Both are
timed as a whole process (`*_command_s`) and by their SQL alone (ours: the
merge's statements and commit; dbt's: the snapshot node's `execute` phase in
target/run_results.json). Afterwards dbt's history is mapped to the course's
closed intervals ([dbt_valid_from, dbt_valid_to - 1 s], the open end as it is)
and must describe exactly the versions dds holds; if not, the benchmark fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from coursekit.grade import REPO_ROOT

if TYPE_CHECKING:
    from coursekit.pg import EmbeddedPostgres

CONSTRAINTS = REPO_ROOT / "constraints-dbt.txt"


def pinned(name: str) -> str:
    """`name==version` as constraints-dbt.txt pins it (the one place the versions are written)."""
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.strip()
    raise LookupError(f"{CONSTRAINTS.name} pins no {name}")


DBT_CORE = pinned("dbt-core")
DBT_POSTGRES = pinned("dbt-postgres")
VENV = REPO_ROOT / ".venv-dbt"
SCHEMA = "snapshots"
SNAPSHOT = "orders_snapshot"


class DbtUnavailable(RuntimeError):
    """dbt cannot be installed here (no PyPI); the message says why and where the log is."""


def ensure_venv(venv: Path = VENV, say=print) -> Path:
    """The dbt executable, installing `.venv-dbt` first if it is missing or its pins changed.

    A lock file serialises two benchmarks (or tests) that would install at the same time.
    """
    marker = venv / ".installed"
    wanted = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    dbt = venv / "bin" / "dbt"
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == wanted and dbt.exists():
            return dbt
        say(f"installing {DBT_CORE} and {DBT_POSTGRES} into {venv.name} (once; ~1 min)")
        log_path = venv.parent / f"{venv.name}.log"
        with open(log_path, "wb") as log:
            python = venv / "bin" / "python"
            steps = [] if python.exists() else [[sys.executable, "-m", "venv", str(venv)]]
            steps.append(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
                + ["-c", str(CONSTRAINTS), DBT_CORE, DBT_POSTGRES]
            )
            for step in steps:
                if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise DbtUnavailable(f"installing dbt into {venv} failed (needs PyPI); see {log_path}:\n{tail}")
        marker.write_text(wanted)
    return dbt


# -- the dbt project ---------------------------------------------------------------------------

PROJECT = """\
name: scd2_bench
version: "1.0"
config-version: 2
profile: scd2_bench
snapshot-paths: ["snapshots"]
"""

PROFILE = """\
scd2_bench:
  target: bench
  outputs:
    bench:
      type: postgres
      host: 127.0.0.1
      port: {port}
      user: {user}
      password: "{password}"
      dbname: {database}
      schema: {schema}
      threads: 1
"""

# The first run snapshots dds's current versions (each seen at its eff_from_dttm);
# later runs snapshot the batch in stg, seen when it was read, to the second.
SNAPSHOT_SQL = """\
{{% snapshot {snapshot} %}}
{{{{ config(
    target_schema="{schema}",
    unique_key={unique_key},
    strategy="check",
    check_cols={check_cols},
    updated_at="seen_at",
    dbt_valid_to_current="'{open_end}'::timestamptz",
    hard_deletes="ignore",
) }}}}
{{% if var("prefill", false) %}}
select {columns}, src_id, eff_from_dttm as seen_at
from dds.{table}
where eff_to_dttm = '{open_end}'
{{% else %}}
select {columns}, src_id, date_trunc('second', extracted_dttm) as seen_at
from stg.{table}
where load_run_id = '{{{{ var("run_id") }}}}'
{{% endif %}}
{{% endsnapshot %}}
"""


@dataclass(frozen=True)
class Project:
    """A dbt project on one database of the benchmark's server (a temp folder of its own)."""

    root: Path
    dbt: Path

    @classmethod
    def write(
        cls,
        root: Path,
        dbt: Path,
        server: EmbeddedPostgres,
        database: str,
        table: str,
        key: str,
        columns: list[str],
        open_end: str,
    ) -> Project:
        (root / "snapshots").mkdir(parents=True, exist_ok=True)
        (root / "dbt_project.yml").write_text(PROJECT)
        spec = server.spec
        profile = PROFILE.format(
            port=spec.port, user=spec.user, password=spec.password, database=database, schema=SCHEMA
        )
        (root / "profiles.yml").write_text(profile)
        values = [c for c in columns if c != key]
        (root / "snapshots" / f"{SNAPSHOT}.sql").write_text(
            SNAPSHOT_SQL.format(
                snapshot=SNAPSHOT,
                schema=SCHEMA,
                unique_key=json.dumps([key, "src_id"]),
                check_cols=json.dumps(values),
                open_end=open_end,
                columns=", ".join(columns),
                table=table,
            )
        )
        return cls(root, dbt)

    def retarget(self, server: EmbeddedPostgres, database: str) -> None:
        """Point the profile at another database (each round works on a fresh copy)."""
        spec = server.spec
        (self.root / "profiles.yml").write_text(
            PROFILE.format(port=spec.port, user=spec.user, password=spec.password, database=database, schema=SCHEMA)
        )

    def snapshot(self, variables: dict[str, object]) -> tuple[float, float]:
        """Run `dbt snapshot`; (the whole command's seconds, the snapshot node's execute seconds)."""
        env = {
            **os.environ,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_VERSION_CHECK": "false",
            "DBT_PROFILES_DIR": str(self.root),
        }
        command = [
            str(self.dbt),
            "--no-use-colors",
            "snapshot",
            "--project-dir",
            str(self.root),
            "--target-path",
            str(self.root / "target"),
            "--log-path",
            str(self.root / "logs"),
            "--vars",
            json.dumps(variables),
        ]
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=self.root)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(
                f"dbt snapshot failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
            )
        return seconds, execute_seconds(self.root / "target" / "run_results.json")


def execute_seconds(run_results: Path) -> float:
    """The snapshot node's `execute` phase from dbt's run_results.json: its SQL, without parsing or compiling."""
    results = json.loads(run_results.read_text())["results"]
    (node,) = results
    if node["status"] != "success":
        raise RuntimeError(f"dbt snapshot: {node['status']}: {node.get('message')}")
    (phase,) = [t for t in node["timing"] if t["name"] == "execute"]
    started, completed = (
        datetime.fromisoformat(phase[k].replace("Z", "+00:00")) for k in ("started_at", "completed_at")
    )
    return (completed - started).total_seconds()


# -- the comparison -------------------------------------------------------------------------------

# Each side's versions in the course's convention: [from, to] closed, whole seconds,
# the current one ending at the open end. dbt's intervals are half-open: a closed
# version's dbt_valid_to is its successor's dbt_valid_from.
HISTORY_DIFFERENCE = """
with ours as (
    select {key}, src_id, {values}, eff_from_dttm, eff_to_dttm from {dds}
), theirs as (
    select {key}, src_id, {values}, dbt_valid_from as eff_from_dttm,
        case when dbt_valid_to = %(open_end)s then dbt_valid_to
             else dbt_valid_to - interval '1 second' end as eff_to_dttm
    from {snapshot}
)
select
    (select count(*) from ours),
    (select count(*) from theirs),
    (select count(*) from (select * from ours except all select * from theirs) as only_ours),
    (select count(*) from (select * from theirs except all select * from ours) as only_theirs)
"""


def history_difference(conn, table: str, key: str, columns: list[str], open_end: str) -> tuple[int, int, int, int]:
    """(our versions, dbt's versions, versions only we hold, versions only dbt holds)."""
    values = [c for c in columns if c != key]
    statement = sql.SQL(HISTORY_DIFFERENCE).format(
        key=sql.Identifier(key),
        values=sql.SQL(", ").join(map(sql.Identifier, values)),
        dds=sql.Identifier("dds", table),
        snapshot=sql.Identifier(SCHEMA, SNAPSHOT),
    )
    return tuple(conn.execute(statement, {"open_end": open_end}).fetchone())
