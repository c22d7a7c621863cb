"""The machine's own ceiling: what the shops and raw COPY manage here with no pipeline running.

A knee means little without the ceiling beside it: on a small machine the load generators
and the warehouse's Postgres share the same cores, so "keeps up at 4,000/s" could be the
pipeline's limit or the machine's. After the ramp and the drain, the test pauses the load
DAGs, lets the generators run flat out (asked for far more than they can do) and counts
what they inserted; then it moves exactly those rows from the shops into scratch tables in
the warehouse with plain COPY, the fastest way Postgres knows to move rows, and times it.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime

from psycopg2 import sql

from coursekit.checker.airflow_api import AirflowClient
from coursekit.loadtest import measure

QUIET_WAIT_SEC = 180  # the paused DAGs' last runs finish within this (the drain has just emptied the queue)


@dataclass
class Ceiling:
    asked: int  # inserts/s per shop asked of the generators
    seconds: float  # how long they ran
    rows: int  # rows they inserted in that time (all tables, both shops)
    shops: int
    copy_out_sec: float  # COPY ... TO STDOUT of those rows from the shops
    copy_in_sec: float  # COPY ... FROM STDIN of the same rows into the warehouse

    @property
    def rate(self) -> float:
        """Inserts/s per shop the generators sustained."""
        return self.rows / self.seconds / self.shops if self.seconds and self.shops else 0.0

    @property
    def reached_asked(self) -> bool:
        """They did all they were asked: the machine's limit is higher than this measured."""
        return self.rate >= 0.97 * self.asked

    @property
    def copy_rows_per_sec(self) -> float:
        """Rows/s raw COPY moves from the shops into the warehouse (out and in, one after the other)."""
        spent = self.copy_out_sec + self.copy_in_sec
        return self.rows / spent if spent else 0.0

    def line(self) -> str:
        return (
            f"with no pipeline running, the load generators sustained {self.rate:,.0f} inserts/s per shop "
            f"(asked for {self.asked:,}, {self.rows:,} rows in {self.seconds:.0f} s); raw COPY moved the same rows "
            f"from the shops into the warehouse at {self.copy_rows_per_sec:,.0f} rows/s "
            f"({self.copy_out_sec:.1f} s out, {self.copy_in_sec:.1f} s in)"
        )


def pause_pipeline(client: AirflowClient, dwh, *, stop_runs: bool, timeout: float = QUIET_WAIT_SEC) -> list[str]:
    """Pause every unpaused DAG and wait until none of them runs; returns the DAGs paused.

    After a step the pipeline did not keep up with, a run can take minutes. The private copy
    (`stop_runs`) is thrown away afterwards, so its runs are marked failed and their statements
    in the warehouse ended; a stack the learner runs (`--attach`) is waited for instead.
    """
    paused = client.unpaused_dags()
    for dag_id in paused:
        client.set_paused(dag_id, True)
    if stop_runs:
        for dag_id in paused:
            for run in client.active_runs(dag_id):
                client.fail_run(dag_id, run["dag_run_id"])
        _end_other_sessions(dwh)
    deadline = time.monotonic() + timeout
    while any(client.active_runs(dag_id) for dag_id in paused):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the paused DAGs still run after {timeout:.0f} s; no ceiling measured")
        time.sleep(5)
    return paused


def _end_other_sessions(dwh) -> None:
    """End the stopped tasks' statements: a killed task's query runs on until Postgres notices."""
    with dwh.cursor() as cur:
        cur.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'"
        )
    dwh.commit()


def copy_rows(shops: dict[str, object], dwh, tables: list[measure.Table], start: datetime, end: datetime):
    """(seconds out, seconds in): the window's rows of every shop table, COPY out, then COPY into dwh."""
    out_sec = in_sec = 0.0
    for table in tables:
        columns = None
        for conn in shops.values():
            if columns is None:
                columns = _columns(conn, table.name)
                _scratch(dwh, table.name, columns)
            buffer = io.BytesIO()
            began = time.monotonic()
            with conn.cursor() as cur:
                # COPY takes no bound parameters: the window's ends go in as quoted literals.
                select = sql.SQL("copy (select * from {} where created_at >= {} and created_at < {}) to stdout").format(
                    sql.Identifier(table.name), sql.Literal(start), sql.Literal(end)
                )
                cur.copy_expert(select, buffer)
            conn.rollback()
            out_sec += time.monotonic() - began
            buffer.seek(0)
            began = time.monotonic()
            with dwh.cursor() as cur:
                cur.copy_expert(sql.SQL("copy {} from stdin").format(sql.Identifier(_scratch_name(table.name))), buffer)
            dwh.commit()
            in_sec += time.monotonic() - began
        _drop(dwh, table.name)
    return out_sec, in_sec


def _scratch_name(table: str) -> str:
    return f"loadtest_ceiling_{table}"


def _columns(conn, table: str) -> list[tuple[str, str]]:
    """(name, type) of a shop table's columns, in order, as the catalog spells the types."""
    with conn.cursor() as cur:
        cur.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute"
            " where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum",
            (table,),
        )
        columns = cur.fetchall()
    conn.rollback()
    return columns


def _scratch(dwh, table: str, columns: list[tuple[str, str]]) -> None:
    """An unindexed scratch table in the warehouse's public schema: where raw COPY lands."""
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns
    )
    _drop(dwh, table)
    with dwh.cursor() as cur:
        cur.execute(sql.SQL("create table {} ({})").format(sql.Identifier(_scratch_name(table)), definition))
    dwh.commit()


def _drop(dwh, table: str) -> None:
    with dwh.cursor() as cur:
        cur.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(_scratch_name(table))))
    dwh.commit()
