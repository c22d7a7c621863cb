"""The shop generator as learners run it: a real subprocess against a real Postgres.

Each test gets a fresh database (fixtures `shop1_db`, `shop2_db`) and runs
`python -m coursekit.generator` with an explicit environment, so what is
tested is exactly what a container runs: argument parsing, env parsing, exit
codes, log files and the rows in the database.

Ticks are 1 s apart (the minimum), windows a few seconds, so the whole file
runs in well under a minute. A database that fails under the generator:
tests/test_generator_outages.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coursekit.grade import Grade
from coursekit.hostile import HOSTILE_TEXT, LONG_TEXT
from coursekit.pg import free_port

G0 = Grade.named("G0_Trainee")
G0_CONFIG = json.loads(G0.generator_config.read_text(encoding="utf-8"))
INSERTS = {name: table["insert_rows_per_tick"] for name, table in G0_CONFIG["tables"].items()}


# -- helpers ------------------------------------------------------------------------------------------------------


def shop_env(port: int, database: str, shop: str = "shop-1", **overrides: str) -> dict[str, str]:
    """The grade's env for `shop`, pointed at a test database, 1-second ticks, updates and deletes off."""
    env = {
        **G0.generator_env(shop),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(port),
        "POSTGRES_DB": database,
        "TICK_INTERVAL_SEC": "1",
        "UPDATE_NOT_OLDER_THAN_SEC": "0",
        "DELETE_OLDER_THAN_SEC": "0",
        "STOP_GENERATOR_AFTER_SEC": "0",
        "DB_RETRY_TIMEOUT_SEC": "20",
    }
    env.update(overrides)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}


def db_env(db, shop: str = "shop-1", **overrides: str) -> dict[str, str]:
    return shop_env(db.port, db.name, shop, **overrides)


def command(log_dir: Path, *args: str, config: Path = G0.generator_config) -> list[str]:
    return [sys.executable, "-m", "coursekit.generator", "--config", str(config), "--log-dir", str(log_dir), *args]


def run(env: dict[str, str], log_dir: Path, *args: str, config: Path = G0.generator_config, timeout: float = 60):
    """Run the generator to completion; returns the CompletedProcess (text output)."""
    return subprocess.run(
        command(log_dir, *args, config=config),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=log_dir.parent,
    )


def start(env: dict[str, str], log_dir: Path, *args: str, config: Path = G0.generator_config) -> subprocess.Popen:
    return subprocess.Popen(
        command(log_dir, *args, config=config),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=log_dir.parent,
    )


def wait_for_log(log_dir: Path, pattern: str, timeout: float = 30, after: int = 0) -> None:
    """Wait until info.log (from character `after` on) matches `pattern`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = log_dir / "info.log"
        if path.exists() and re.search(pattern, path.read_text(encoding="utf-8")[after:]):
            return
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not in {log_dir / 'info.log'} after {timeout} s")


def write_config(tmp_path: Path, tables: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"tables": tables}, ensure_ascii=False), encoding="utf-8")
    return path


def rows(db, table: str, columns: str = "*") -> list[tuple]:
    return db.query(f"select {columns} from {table} order by 1")  # noqa: S608 - test-owned constant names


def business_rows(db, table: str) -> list[tuple]:
    """All columns except created_at (the only one that differs between identical runs)."""
    names = [c for (c,) in db.query(_COLUMNS_SQL, (table,)) if c != "created_at"]
    return rows(db, table, ", ".join(names))


_COLUMNS_SQL = "select column_name from information_schema.columns where table_name = %s order by ordinal_position"


def public_tables(db) -> list[str]:
    return [t for (t,) in db.query("select table_name from information_schema.tables where table_schema = 'public'")]


def assert_whole_ticks(db, inserts: dict[str, int]) -> None:
    """Each tick's rows share one created_at; a half-applied tick would leave a group of another size."""
    for table, per_tick in inserts.items():
        groups = db.query(f"select created_at, count(*) from {table} group by 1 order by 1")  # noqa: S608
        assert groups, table
        assert {count for _, count in groups} == {per_tick}, (table, groups)


# -- invalid configuration: exit 2, nothing written ---------------------------------------------------------------

BAD_CONFIGS = {
    "unknown provider": (("orders", "quantity", "provider", "randint"), "tables.orders.columns.quantity.provider"),
    "bad SQL type": (("customers", "email", "type", "string"), "tables.customers.columns.email.type"),
    "unknown key": (("customers", "email", "nullable", True), "tables.customers.columns.email.nullable"),
    "bad reference": (
        ("orders", "customer_id", "references", "clients"),
        "tables.orders.columns.customer_id.references",
    ),
}
BAD_ENVS = {
    "non-integer env": ({"TICK_INTERVAL_SEC": "10s"}, "TICK_INTERVAL_SEC"),
    "STOP <= DELETE": (
        {"STOP_GENERATOR_AFTER_SEC": "60", "DELETE_OLDER_THAN_SEC": "60", "UPDATE_NOT_OLDER_THAN_SEC": "3"},
        "STOP_GENERATOR_AFTER_SEC=60 must be greater than DELETE_OLDER_THAN_SEC=60",
    ),
    "bad locale": ({"FAKER_LOCALE": "xx_YY"}, "FAKER_LOCALE='xx_YY' is not a Faker locale"),
    "missing password": ({"POSTGRES_PASSWORD": ""}, "POSTGRES_PASSWORD is required"),
}


@pytest.mark.parametrize("case", [*BAD_CONFIGS, "negative count", *BAD_ENVS])
def test_invalid_configuration_exits_2_and_writes_nothing(shop1_db, tmp_path, case):
    data = json.loads(json.dumps(G0_CONFIG))
    env = db_env(shop1_db)
    if case in BAD_CONFIGS:
        (table, column, key, value), words = BAD_CONFIGS[case]
        data["tables"][table]["columns"][column][key] = value
    elif case == "negative count":
        data["tables"]["orders"]["insert_rows_per_tick"] = -1
        words = "tables.orders.insert_rows_per_tick"
    else:
        changes, words = BAD_ENVS[case]
        env.update(changes)
    config = write_config(tmp_path, data["tables"])
    result = run(env, tmp_path / "logs", "--max-ticks", "1", config=config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr
    if case in BAD_CONFIGS or case == "negative count":
        assert str(config) in result.stderr, "the message names the file"
    assert "nothing was written" in result.stderr
    assert public_tables(shop1_db) == []


def test_check_validates_without_a_database(tmp_path):
    env = shop_env(free_port(), "nowhere")  # nothing listens there: --check must not connect
    result = run(env, tmp_path / "logs", "--check")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


# -- ticks, windows, stopping -------------------------------------------------------------------------------------

_TICK_AT = re.compile(r"DEBUG tick (\d+) at (\S+): begin")
_CHANGED = re.compile(
    r"DEBUG tick (\d+) (updated|deleted) (\w+): (\d+) rows, ids \[([\d, ]*)\], (?:newest|oldest) created_at (\S+)"
)


def test_updates_and_deletes_respect_their_windows(shop1_db, tmp_path):
    update_window, delete_after = 3, 6
    env = db_env(shop1_db, UPDATE_NOT_OLDER_THAN_SEC=str(update_window), DELETE_OLDER_THAN_SEC=str(delete_after))
    log_dir = tmp_path / "logs"
    result = run(env, log_dir, "--max-ticks", "9")
    assert result.returncode == 0, result.stderr
    debug = (log_dir / "debug.log").read_text(encoding="utf-8")
    tick_at = {int(n): dt.datetime.fromisoformat(at) for n, at in _TICK_AT.findall(debug)}
    assert sorted(tick_at) == list(range(1, 10))
    created = {table: dict(rows(shop1_db, table, f"{table[:-1]}_id, created_at")) for table in INSERTS}
    seen = {"updated": 0, "deleted": 0}
    for number, action, table, count, ids, boundary in _CHANGED.findall(debug):
        at, boundary, ids = tick_at[int(number)], dt.datetime.fromisoformat(boundary), [int(i) for i in ids.split(", ")]
        assert len(ids) == int(count)
        seen[action] += len(ids)
        if action == "updated":
            # the oldest updated row was younger than the window when the tick ran ...
            assert (at - boundary).total_seconds() <= update_window, (number, table)
            assert len(ids) <= G0_CONFIG["tables"][table]["update_rows_per_tick"]
            # ... and the database agrees for the rows still there
            for row_id in ids:
                if row_id in created[table]:
                    assert (at - created[table][row_id]).total_seconds() <= update_window
        else:
            assert (at - boundary).total_seconds() > delete_after, (number, table)
            assert not set(ids) & set(created[table]), "deleted rows are gone"
    assert seen["updated"] > 0 and seen["deleted"] > 0
    last = tick_at[9]
    for table in INSERTS:
        oldest = min(created[table].values())
        assert (last - oldest).total_seconds() <= delete_after, f"{table}: a row older than the window survived"
        older_than_update_window = [c for c in created[table].values() if (last - c).total_seconds() > update_window]
        assert older_than_update_window, "the test must leave rows the update window excludes"


def test_updates_change_values_in_place(shop1_db, tmp_path):
    env = db_env(shop1_db)
    assert run(env, tmp_path / "logs", "--max-ticks", "2").returncode == 0
    before = {r[0]: r for r in business_rows(shop1_db, "orders")}
    env = db_env(shop1_db, UPDATE_NOT_OLDER_THAN_SEC="600")
    assert run(env, tmp_path / "logs", "--max-ticks", "1").returncode == 0
    after = {r[0]: r for r in business_rows(shop1_db, "orders")}
    changed = [row_id for row_id in before if before[row_id] != after[row_id]]
    assert 1 <= len(changed) <= G0_CONFIG["tables"]["orders"]["update_rows_per_tick"]
    for row_id in changed:  # references are not updatable by default: only business columns change
        assert before[row_id][1:3] == after[row_id][1:3]


def test_stops_after_stop_generator_after_sec(shop1_db, tmp_path):
    env = db_env(shop1_db, STOP_GENERATOR_AFTER_SEC="3")
    started = time.monotonic()
    result = run(env, tmp_path / "logs", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert 3 <= elapsed <= 6, elapsed
    assert "STOP_GENERATOR_AFTER_SEC=3 reached" in result.stdout
    assert len(re.findall(r"INFO tick \d+ New-York", result.stdout)) in (3, 4)


def test_sigterm_exits_0_after_a_whole_tick(shop1_db, tmp_path):
    log_dir = tmp_path / "logs"
    process = start(db_env(shop1_db), log_dir)
    try:
        wait_for_log(log_dir, r"INFO tick 2 ")
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=5)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "SIGTERM received" in stdout
    assert_whole_ticks(shop1_db, INSERTS)


# -- reproducible, restart-safe -----------------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows(shop1_db, shop2_db, tmp_path):
    runs = [
        start(db_env(db), tmp_path / f"logs-{index}", "--max-ticks", "3")
        for index, db in enumerate((shop1_db, shop2_db))
    ]
    for process in runs:
        process.communicate(timeout=60)
        assert process.returncode == 0
    for table in INSERTS:
        first, second = business_rows(shop1_db, table), business_rows(shop2_db, table)
        assert len(first) == 3 * INSERTS[table]
        assert first == second, f"{table}: same seed, different rows"
    env = db_env(shop1_db, GENERATOR_SEED="102")
    assert run(env, tmp_path / "logs-2", "--max-ticks", "3", "--reset").returncode == 0
    assert business_rows(shop1_db, "customers") != business_rows(shop2_db, "customers")


def test_restart_continues_and_reset_starts_over(shop1_db, tmp_path):
    log_dir = tmp_path / "logs"
    env = db_env(shop1_db)
    assert run(env, log_dir, "--max-ticks", "2").returncode == 0
    first = {table: business_rows(shop1_db, table) for table in INSERTS}

    # the config gains a column: the table gains it too, old rows keep theirs (NULL in the new one)
    data = json.loads(json.dumps(G0_CONFIG))
    data["tables"]["customers"]["columns"]["nickname"] = {"type": "varchar(12)", "provider": "user_name"}
    config = write_config(tmp_path, data["tables"])
    second = run(env, log_dir, "--max-ticks", "2", config=config)
    assert second.returncode == 0, second.stderr
    assert "added column nickname" in second.stdout
    assert "created" not in second.stdout and second.stderr == "", "a restart creates and warns about nothing"
    for table in INSERTS:
        now = business_rows(shop1_db, table)
        assert len(now) == 2 * len(first[table])
        old_ids = [r[0] for r in first[table]]
        assert [r[0] for r in now[: len(old_ids)]] == old_ids
        assert min(r[0] for r in now[len(old_ids) :]) > max(old_ids), "ids continue"
        if table != "customers":
            assert now[: len(old_ids)] == first[table], "old rows untouched"
    nicknames = rows(shop1_db, "customers", "customer_id, nickname")
    assert all(n is None for _, n in nicknames[:6]) and all(n for _, n in nicknames[6:])

    reset = run(env, log_dir, "--max-ticks", "1", "--reset", config=config)
    assert reset.returncode == 0
    assert "DROPPING tables customers, products, orders" in reset.stderr
    assert rows(shop1_db, "customers", "customer_id") == [(1,), (2,), (3,)]
    assert len(rows(shop1_db, "orders")) == INSERTS["orders"]


# -- values -------------------------------------------------------------------------------------------------------

HOSTILE = [*HOSTILE_TEXT, LONG_TEXT]


def test_hostile_strings_round_trip_byte_exact(shop1_db, tmp_path):
    tables = {
        "notes": {
            "id_column": "note_id",
            "insert_rows_per_tick": 120,
            "update_rows_per_tick": 40,
            "columns": {
                "body": {"type": "text", "provider": "random_element", "params": {"elements": HOSTILE}},
                "short": {"type": "varchar(3)", "provider": "random_element", "params": {"elements": ["İstanbul"]}},
                "score": {"type": "integer", "provider": "random_int", "params": {"min": 1, "max": 5}},
            },
        }
    }
    config = write_config(tmp_path, tables)
    env = db_env(shop1_db, UPDATE_NOT_OLDER_THAN_SEC="5")  # updates go through the other code path
    result = run(env, tmp_path / "logs", "--max-ticks", "3", config=config)
    assert result.returncode == 0, result.stderr
    assert "~40 updated" in result.stdout
    stored = rows(shop1_db, "notes", "body, short, octet_length(body)")
    assert {body for body, _, _ in stored} == set(HOSTILE)
    assert {short for _, short, _ in stored} == {"İst"}, "varchar(n) values are cut to n characters"
    assert all(size == len(body.encode("utf-8")) for body, _, size in stored)


def test_turkish_locale_makes_turkish_data(shop2_db, tmp_path):
    result = run(db_env(shop2_db, shop="shop-2"), tmp_path / "logs", "--max-ticks", "2")
    assert result.returncode == 0, result.stderr
    assert "Istanbul" in result.stdout
    text = " ".join(" ".join(r) for r in rows(shop2_db, "customers", "first_name, last_name, address"))
    assert any(ch in text for ch in "çğıöşüÇĞİÖŞÜ"), text[:200]


def test_late_arriving_references(shop1_db, tmp_path):
    tables = {
        "customers": {
            "id_column": "customer_id",
            "insert_rows_per_tick": 5,
            "update_rows_per_tick": 0,
            "columns": {"name": {"type": "text", "provider": "first_name"}},
        },
        "orders": {
            "id_column": "order_id",
            "insert_rows_per_tick": 100,
            "update_rows_per_tick": 0,
            "columns": {"customer_id": {"type": "bigint", "references": "customers", "late_share": 0.3}},
        },
    }
    config = write_config(tmp_path, tables)
    assert run(db_env(shop1_db), tmp_path / "logs", "--max-ticks", "5", config=config).returncode == 0
    # the parent's highest id when each order was inserted (parents of the same tick come first)
    refs = shop1_db.query(
        "select o.customer_id, (select max(c.customer_id) from customers c where c.created_at <= o.created_at) "
        "from orders o order by o.order_id"
    )
    late = [(ref, parent_max) for ref, parent_max in refs if ref > parent_max]
    assert len(refs) == 500
    assert 0.22 <= len(late) / len(refs) <= 0.38, len(late)
    assert all(ref <= parent_max + 5 * 3 for ref, parent_max in late), "late ids are only a few ticks ahead"
    existing = {c for (c,) in rows(shop1_db, "customers", "customer_id")}
    assert all(ref in existing for ref, parent_max in refs if ref <= parent_max), "normal refs point at real rows"
    caught_up = [ref for ref, _ in late if ref <= max(existing)]
    assert len(caught_up) > len(late) / 3
    assert all(ref in existing for ref in caught_up), "late parents arrive later"


# -- logs ---------------------------------------------------------------------------------------------------------


def test_logs_land_in_console_info_and_debug_files(shop1_db, tmp_path):
    log_dir = tmp_path / "logs"
    result = run(db_env(shop1_db), log_dir, "--max-ticks", "1")
    assert result.returncode == 0
    info = (log_dir / "info.log").read_text(encoding="utf-8")
    debug = (log_dir / "debug.log").read_text(encoding="utf-8")
    tick_line = re.compile(
        r"INFO tick 1 New-York: \+3 customers, \+1 products, \+10 orders; ~0 updated; -0 deleted \(\d+ ms\)"
    )
    for text in (result.stdout, info, debug):
        assert tick_line.search(text)
    assert " DEBUG " not in result.stdout + result.stderr + info
    assert re.search(r"DEBUG SQL: copy \"orders\" \(", debug)
    assert "DEBUG tick 1 inserted orders: 10 rows, ids 1..10" in debug
    assert "shop_local_only" not in info + debug + result.stdout, "the password is never logged"
