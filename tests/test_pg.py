"""The embedded Postgres starter behaves like the postgres Docker image."""

from __future__ import annotations

import psutil
import psycopg2
import pytest

from coursekit.pg import EmbeddedPostgres, PostgresStartError, free_port


def test_servers_use_the_env_file_credentials(pg_servers, g0):
    for service, server in pg_servers.items():
        env = g0.env(service)
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=server.spec.port,
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=env["POSTGRES_DB"],
        )
        with conn, conn.cursor() as cur:
            cur.execute("select current_user, current_database(), current_setting('TimeZone')")
            assert cur.fetchone() == (env["POSTGRES_USER"], env["POSTGRES_DB"], "UTC")
        conn.close()


def test_wrong_password_is_rejected(pg_servers):
    server = pg_servers["pg-dwh"]
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(server.dsn(password="not-the-password"))


def test_listens_on_loopback_only(pg_servers):
    server = pg_servers["pg-shop-1"]
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("select current_setting('listen_addresses'), current_setting('unix_socket_directories')")
        assert cur.fetchone() == ("127.0.0.1", "")


def test_restart_keeps_data_and_stop_leaves_no_process(g0, tmp_path):
    spec = g0.postgres_spec("pg-dwh", free_port())
    server = EmbeddedPostgres(spec, tmp_path / "pg-dwh", durable=False)
    assert server.start() is True  # new data folder
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("create table kept (v text); insert into kept values ('still here')")
    conn.close()
    pid = int((tmp_path / "pg-dwh" / "postmaster.pid").read_text().split()[0])
    server.stop()
    assert not server.is_running()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert server.start() is False  # existing data folder: no initdb, no init scripts
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("select v from kept")
        assert cur.fetchall() == [("still here",)]
    conn.close()
    server.stop()


def test_port_in_use_is_a_clear_error(pg_servers, g0, tmp_path):
    taken = pg_servers["pg-dwh"].spec.port
    server = EmbeddedPostgres(g0.postgres_spec("pg-dwh", taken), tmp_path / "other", durable=False)
    with pytest.raises(PostgresStartError, match=f"port 127.0.0.1:{taken} is already in use"):
        server.start()
    assert not (tmp_path / "other" / "PG_VERSION").exists()


def test_init_scripts_run_once_on_a_new_data_folder(g0, tmp_path):
    script = tmp_path / "01-init.sql"
    script.write_text("create table created_by_init (id int); insert into created_by_init values (1);")
    server = EmbeddedPostgres(g0.postgres_spec("pg-shop-1", free_port()), tmp_path / "pg", durable=False)
    try:
        assert server.start(init_scripts=[script]) is True
        server.stop()
        assert server.start(init_scripts=[script]) is False  # would fail on "already exists"
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("select count(*) from created_by_init")
            assert cur.fetchone() == (1,)
        conn.close()
    finally:
        server.stop()
