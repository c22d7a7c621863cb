"""Step 3's kill: a run killed at its first write to dds, the warehouse inspected right then, the run resumed."""

from __future__ import annotations

from contextlib import ExitStack, closing
from datetime import UTC, datetime

from psycopg2 import sql

from coursekit.checker import checks
from coursekit.checker.checks import FAIL, Run
from coursekit.checker.fast.grading import connect_all, context
from coursekit.checker.fast.run import FastRun
from coursekit.checker.fast.runners import Variant
from coursekit.hostile import kill_at_first_write

KILL_WAIT_SEC = 120  # how long the run may go without writing to dds before the lock is let go


def kill_in_merge(fast: FastRun, variant: Variant, scd2: bool, name: str) -> dict:
    """Run once, holding every dds table in SHARE mode: the run's first write to dds waits, then the run dies.

    SHARE lets the run read dds (watermarks) but not write it (`hostile.kill_at_first_write`).
    The same run is then resumed (run again with its logical date, as Airflow's retry
    would), by the spare runner started ahead, and must finish the work with no
    duplicates and no losses. Returns the reply of the resumed run (or of the run, if
    it never wrote to dds while it waited).
    """
    variant.start_spare(fast.airflow_env(variant))
    with closing(fast.servers.connect("pg-dwh", variant.dwh_database)) as dwh, dwh.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'dds' order by 1")
        tables = [f"dds.{row[0]}" for row in cur.fetchall()]
    # The run's dates are chosen here, so that the same run can be resumed after the kill.
    when = {"logical_date": datetime.now(UTC).isoformat(), "run_after": datetime.now(UTC).isoformat()}
    killed = kill_at_first_write(
        lambda: fast.servers.connect("pg-dwh", variant.dwh_database),
        tables,
        start=lambda: variant.send(variant.command("rerun", **when)),
        kill=variant.kill,
        finished=variant.has_reply,
        timeout=KILL_WAIT_SEC,
        settle_timeout=30,  # then inspected as it is
    )
    if killed is None:
        reply = variant.next_reply(fast.settings.run_timeout)
        return fast.record(variant, f"{name}, never wrote to dds", reply)
    fast.say(f"{name} waited on dds ({killed.statement!r}): killed", variant)
    variant.scenario.after_kill = half_written(fast, variant, scd2)
    fast.say(f"{name}: the warehouse inspected right after the kill", variant)
    variant.scenario.runs.insert(0, Run("killed in its merge", "failed", None, None, ["killed"], True))
    variant.take_spare()
    fast.say("Airflow restarted", variant)
    return fast.record(variant, f"{name} resumed after the kill", variant.run(fast.settings.run_timeout, **when))


def half_written(fast: FastRun, variant: Variant, scd2: bool) -> list[str]:
    """What a killed run left broken, seen before anything else runs: the rules, and the rows loaded before."""
    stack = fast.stack(variant)
    broken: list[str] = []
    with ExitStack() as exit_stack:
        ctx = context(stack, variant.scenario, scd2, connect_all(stack, exit_stack))
        plan = [checks.check_unique_keys] + ([checks.check_scd2_rules] if scd2 else [])
        broken += [f"{r.name} ({r.found})" for check in plan for r in check(ctx) if r.verdict == FAIL]
        observed = variant.scenario.observed
        for table in checks._present(ctx) if observed else []:
            held = checks._held(ctx, table)  # a WAP load (G4) rightly keeps some rows out of dds
            kept = set(
                ctx.query(
                    sql.SQL("select distinct src_id, {} from {}").format(
                        sql.Identifier(table.key), sql.Identifier("dds", table.name)
                    )
                )
            )
            gone = [
                f"{src}:{key}"
                for src, keys in observed.loaded[table.name].items()
                for key in keys
                if (src, key) not in kept and (src, key) not in held
            ]
            if gone:
                broken.append(f"dds.{table.name}: {len(gone)} rows loaded before are gone, e.g. {', '.join(gone[:5])}")
    return broken
