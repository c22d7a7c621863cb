"""What a warehouse meets that a happy path never shows, in one place for the checker and the tests.

* `HOSTILE_TEXT`: values a real shop's text holds (quotes, semicolons, SQL
  comments, newlines, tabs, COPY's escapes, emoji, Turkish letters, spaces at
  the ends, the empty string); each must come back from the warehouse exactly
  as it went in. `LONG_TEXT` is one value far longer than a line.
* `kill_at_first_write`: a run killed in the middle of its merge. The
  warehouse tables are held in SHARE mode (reads pass, writes wait); once one
  of the run's statements waits on that lock, the run dies (SIGKILL, as on an
  OOM kill), the lock is let go and the killed run's backends end. A statement
  already sent runs to its end, as on a real crash, and commits only if it was
  not inside a transaction. The fast mode's scenario (`checker/fast/kill.py`)
  and the tests that kill a run use it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg2 import sql

HOSTILE_TEXT = [
    "O'Brien",
    "O'Brien; DROP TABLE customers; --",
    'say "hello", then\ttab',
    'quote " and -- comment',
    "first line\nsecond line\r\nthird",
    "back\\slash \\N \\. and 100%",
    "İstanbul, Şişli: ığüşöç ĞÜŞİÖÇ",
    "🍍 pineapple 🥭 mango 🐉",
    "   leading and trailing spaces   ",
    "",
]
LONG_TEXT = "x" * 10_000

# One whole DAG run in a child process (dag.test(), retries off), parsed as the dag processor does.
_RUN_DAG = """
from airflow.dag_processing.dagbag import BundleDagBag
dag = BundleDagBag(dag_folder={dags!r}, bundle_path={dags!r}).get_dag({dag_id!r})
for task in dag.tasks:
    task.retries = 0
dag.test()
"""


def run_dag_in_child(dags_dir: Path, dag_id: str) -> subprocess.Popen:
    """Start one run of `dag_id` in a child process with its own process group (so a kill takes all of it)."""
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_DAG.format(dags=str(dags_dir), dag_id=dag_id)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_child(child: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group and reap it."""
    with suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


@dataclass
class Killed:
    statement: str  # the first 80 characters of the statement that waited on the lock
    settled: bool  # the killed run's backends ended in time (their statements finished or rolled back)


def kill_at_first_write(
    connect: Callable[[], Any],
    tables: Sequence[str],
    start: Callable[[], object],
    kill: Callable[[], object],
    *,
    finished: Callable[[], bool],
    timeout: float,
    like: str | None = None,
    before_kill: Callable[[], object] | None = None,
    settle_timeout: float = 60,
) -> Killed | None:
    """Hold `tables` ("schema.table") in SHARE mode, `start()` a run, and `kill()` it once it waits on the lock.

    `like` narrows the waiting statement (and the backends waited for after the
    kill) to queries matching that LIKE pattern. Returns None, with the lock let
    go, when `finished()` comes true or `timeout` passes before any statement
    waits: the run never wrote to those tables meanwhile.
    """
    with closing(connect()) as conn, conn.cursor() as cur:
        if tables:
            names = [sql.Identifier(*name.split(".", 1)) for name in tables]
            cur.execute(sql.SQL("lock table {} in share mode").format(sql.SQL(", ").join(names)))
        start()
        deadline = time.monotonic() + (timeout if tables else 0)
        while time.monotonic() < deadline and not finished():
            waiting = _waiting_on_lock(cur, like)
            if waiting is not None:
                if before_kill is not None:
                    before_kill()
                kill()
                conn.rollback()
                return Killed(waiting, _backends_end(cur, like, settle_timeout))
            time.sleep(0.2)
        conn.rollback()
    return None


def _waiting_on_lock(cur: Any, like: str | None) -> str | None:
    """The first statement of another session of this database that waits on a lock, if any."""
    cur.execute("select pg_stat_clear_snapshot()")  # statistics views are cached per transaction
    cur.execute(
        "select left(query, 80) from pg_stat_activity where wait_event_type = 'Lock'"
        " and pid <> pg_backend_pid() and datname = current_database() and query like %s",
        (like or "%",),
    )
    row = cur.fetchone()
    return " ".join(row[0].split()) if row else None


def _backends_end(cur: Any, like: str | None, timeout: float) -> bool:
    """Wait until the killed run's backends (every other client of this database, or those running `like`) end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur.execute("select pg_stat_clear_snapshot()")
        cur.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
            " and backend_type = 'client backend' and query like %s",
            (like or "%",),
        )
        if not cur.fetchone()[0]:
            cur.connection.rollback()
            return True
        time.sleep(0.2)
    cur.connection.rollback()
    return False


def kill_dag_at_first_write(
    connect: Callable[[], Any],
    tables: Sequence[str],
    dags_dir: Path,
    dag_id: str,
    *,
    timeout: float,
    like: str | None = None,
    before_kill: Callable[[], object] | None = None,
) -> Killed | None:
    """`kill_at_first_write` of one whole run of `dag_id` in a child process (the tests' way to crash a run)."""
    children: list[subprocess.Popen] = []
    try:
        return kill_at_first_write(
            connect,
            tables,
            start=lambda: children.append(run_dag_in_child(dags_dir, dag_id)),
            kill=lambda: kill_child(children[0]),
            finished=lambda: children[0].poll() is not None,
            timeout=timeout,
            like=like,
            before_kill=before_kill,
        )
    finally:
        for child in children:
            if child.poll() is None:
                kill_child(child)
