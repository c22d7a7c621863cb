"""The shop generator when its database fails: a tick rolls back whole, the generator retries or gives up.

Real subprocesses against real Postgres servers that are stopped, restarted or
made to fail mid-tick. (The generator in normal operation:
tests/test_generator_run.py, whose helpers these tests share.)
"""

from __future__ import annotations

import re
import signal
import time
from types import SimpleNamespace

import pytest
from test_generator_run import G0, INSERTS, assert_whole_ticks, rows, run, shop_env, start, wait_for_log

from coursekit.pg import EmbeddedPostgres, free_port

# -- database trouble ---------------------------------------------------------------------------------------------


def test_a_failing_tick_leaves_nothing_behind(shop1_db, monkeypatch):
    """In-process: the connection dies after customers and products were inserted, before orders."""
    import psycopg2

    from coursekit.generator import db as generator_db
    from coursekit.generator.config import load_config
    from coursekit.generator.shop import Shop

    shop = Shop(load_config(G0.generator_config, "en_US"), seed=1, locale="en_US", update_window=600, delete_after=0)
    conn = shop1_db.connect()
    try:
        shop.prepare(conn)
        shop.tick(conn, 1)
        copy_rows = generator_db.copy_rows

        def dies_at_orders(cur, name, *args):
            if name == "orders":
                raise psycopg2.OperationalError("server closed the connection unexpectedly")
            copy_rows(cur, name, *args)

        monkeypatch.setattr(generator_db, "copy_rows", dies_at_orders)
        with pytest.raises(psycopg2.OperationalError):
            shop.tick(conn, 2)
        assert [len(rows(shop1_db, t)) for t in INSERTS] == list(INSERTS.values()), "tick 2 left rows behind"
        monkeypatch.setattr(generator_db, "copy_rows", copy_rows)
        shop.tick(conn, 2)  # the retry
        assert_whole_ticks(shop1_db, INSERTS)
        assert [len(rows(shop1_db, t)) for t in INSERTS] == [2 * n for n in INSERTS.values()]
        # the failed tick used up customer ids 4..6: later ticks must update and reference around the gap
        assert rows(shop1_db, "customers", "customer_id") == [(1,), (2,), (3,), (7,), (8,), (9,)]
        for number in (3, 4):
            result = shop.tick(conn, number)
            assert result.updated["customers"] == 2
        referenced = {c for (c,) in rows(shop1_db, "orders", "customer_id")}
        assert not referenced & {4, 5, 6}, "a reference points into the gap of the rolled-back tick"
    finally:
        conn.close()


def test_gives_up_when_the_database_stays_unreachable(tmp_path):
    env = shop_env(free_port(), "shop", DB_RETRY_TIMEOUT_SEC="2")
    started = time.monotonic()
    result = run(env, tmp_path / "logs", "--max-ticks", "1", timeout=30)
    assert result.returncode == 1
    assert time.monotonic() - started < 8
    assert "unreachable (attempt 1)" in result.stderr
    assert re.search(r"ERROR giving up: database shop on 127.0.0.1:\d+ as shop unreachable", result.stderr)
    assert "DB_RETRY_TIMEOUT_SEC=2" in result.stderr


def test_gives_up_when_every_tick_fails_although_connecting_works(shop1_db):
    """In-process: no tight retry loop when the server accepts connections but every tick fails."""
    import psycopg2

    from coursekit.generator.__main__ import EXIT_FAILED, Runner
    from coursekit.generator.settings import Settings

    class DoomedShop:
        config = SimpleNamespace(order=[])
        ticks = 0

        def prepare(self, conn, *, reset):
            pass

        def tick(self, conn, number):  # noqa: ARG002 - the Shop interface the runner calls
            DoomedShop.ticks += 1
            raise psycopg2.OperationalError("canceling statement due to statement timeout")

    spec = shop1_db.server.spec
    settings = Settings(
        1, "Test", "en_US", 1, 0, 0, 0, "127.0.0.1", spec.port, spec.user, spec.password, shop1_db.name, 2
    )
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        assert Runner(DoomedShop(), settings, max_ticks=None, reset=False).run() == EXIT_FAILED
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert 2 <= time.monotonic() - started < 5
    assert DoomedShop.ticks <= 5, "backs off between failing ticks"


def test_recovers_when_the_server_restarts_mid_run(g0, tmp_path):
    # durable: with the test servers' synchronous_commit=off a crash may lose the last commits, which is
    # the server's choice, not the generator's; here every commit the generator saw must survive
    server = EmbeddedPostgres(g0.postgres_spec("pg-shop-1", free_port()), tmp_path / "pg", durable=True)
    server.start()
    log_dir = tmp_path / "logs"
    env = shop_env(server.spec.port, server.spec.database, UPDATE_NOT_OLDER_THAN_SEC="3", DB_RETRY_TIMEOUT_SEC="30")
    process = start(env, log_dir)
    try:
        wait_for_log(log_dir, r"INFO tick 2 ")
        server.stop("immediate")  # a crash: connections drop, nothing is shut down politely
        time.sleep(2.5)
        server.start()
        wait_for_log(log_dir, r"database reachable again")
        size = (log_dir / "info.log").stat().st_size
        wait_for_log(log_dir, r"INFO tick \d+ New-York", after=size)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
        assert process.returncode == 0
        info = (log_dir / "info.log").read_text(encoding="utf-8")
        assert re.search(r"WARNING tick \d+ rolled back, the database connection failed", info)
        assert re.search(r"WARNING database shop on 127.0.0.1:\d+ as shop unreachable \(attempt 2\)", info)
        numbers = [int(n) for n in re.findall(r"INFO tick (\d+) New-York", info)]
        assert numbers == list(range(1, len(numbers) + 1)), "a failed tick is run again, none is skipped"
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                for table, per_tick in INSERTS.items():
                    cur.execute(f"select created_at, count(*) from {table} group by 1")  # noqa: S608
                    groups = cur.fetchall()
                    assert len(groups) == len(numbers), "every committed tick is there, once"
                    assert {count for _, count in groups} == {per_tick}, f"{table}: a tick was half-applied"
        finally:
            conn.close()
    finally:
        process.kill()
        server.stop("immediate")
