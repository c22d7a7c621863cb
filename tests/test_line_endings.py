"""Windows checkouts: line endings cannot break a start, and an init script that fails stops it.

Git for Windows checks files out with `core.autocrlf=true` by default. Before `.gitattributes`
such a clone had CRLF in the shops' init script: Docker logged `bash\\r: No such file or directory`
and still reported the shop healthy, without the read-only role Airflow logs in with; natively
bash skipped the broken lines and exited 0. These tests clone the repository that way and start
a shop from the clone natively (the Docker tier does the same in tests/docker/test_line_endings_docker.py);
then they break the init script on purpose and check that no start reports success.

The clone is made from HEAD: uncommitted changes to .gitattributes are not in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import reader_logs_in

from coursekit.grade import REPO_ROOT, Grade
from coursekit.native.stack import NativeStack, StackError
from coursekit.pg import EmbeddedPostgres, PostgresStartError, free_port

INIT_SCRIPT = "deploy/initdb/01-readonly-role.sh"
# What runs or is read inside Linux: these must be LF in every checkout.
LINUX_READ = (".sh", ".env", ".sql", ".py", ".yml", ".yaml", ".json", ".txt", ".toml", ".cfg", ".conf", ".ini")
LINUX_READ_NAMES = ("Dockerfile", "Makefile", "pgpass", ".airflowignore", "run")
RUNTIME = shutil.ignore_patterns("generator_app_data", "logs", "staging", "__pycache__", ".env")


def crlf_clone(destination: Path) -> Path:
    """`git -c core.autocrlf=true clone` of this repository's HEAD, as Git for Windows makes it."""
    subprocess.run(
        ["git", "-c", "core.autocrlf=true", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(destination)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return destination


def eol_report(repo: Path) -> list[tuple[str, str, str, str]]:
    """`git ls-files --eol`: (index eol, working-tree eol, attributes, path) per tracked file."""
    out = subprocess.run(
        ["git", "ls-files", "--eol"], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = []
    for line in out.splitlines():
        info, path = line.split("\t", 1)
        index, tree, *attributes = info.split()
        rows.append((index, tree, " ".join(attributes), path))
    return rows


def start_shop_natively(stack: NativeStack) -> tuple[EmbeddedPostgres, int]:
    """pg-shop-1 as `make run` starts it: init scripts from the compose mounts, then its healthcheck."""
    service = stack.services["pg-shop-1"]
    port = free_port()
    server = stack.postgres(service, port)
    server.durable = False
    server.start(stack.init_scripts(service), script_env=service.env())
    stack._check_postgres_health(service, port)
    return server, port


def test_gitattributes_keeps_lf_for_everything_linux_reads():
    rows = eol_report(REPO_ROOT)
    linux_read = [r for r in rows if r[3].endswith(LINUX_READ) or Path(r[3]).name in LINUX_READ_NAMES]
    assert len(linux_read) > 100, "the scan found the repository's scripts, env files, Dockerfiles, ..."
    assert any(r[3].endswith("initdb/01-readonly-role.sh") for r in linux_read)
    not_lf = [r[3] for r in linux_read if "eol=lf" not in r[2]]
    assert not not_lf, f"add these to .gitattributes' LF rule: {not_lf}"
    crlf_in_index = [r[3] for r in rows if r[0] == "i/crlf" and "-text" not in r[2]]
    assert not crlf_in_index, f"committed with CRLF: {crlf_in_index}"


def test_a_crlf_clone_has_lf_files_and_its_shop_gets_the_read_only_role(tmp_path):
    clone = crlf_clone(tmp_path / "clone")
    crlf = [r[3] for r in eol_report(clone) if r[1] == "w/crlf" and "-text" not in r[2]]
    assert not crlf, f"a core.autocrlf=true clone has CRLF files: {crlf}"
    assert b"\r\n" not in (clone / "G0_Trainee" / INIT_SCRIPT).read_bytes()
    assert b"\r\n" not in (clone / "G0_Trainee/deploy/env/pg-shop-1.env").read_bytes()

    grade = Grade.named("G0_Trainee", clone)
    stack = NativeStack(grade, tmp_path / ".run")
    server, port = start_shop_natively(stack)
    try:
        assert reader_logs_in(grade, port), "shop_reader cannot log in to a shop started from the CRLF clone"
    finally:
        server.stop()


def test_the_old_crlf_init_script_is_refused_natively_with_its_fix(tmp_path):
    """What a clone made before .gitattributes (or an editor saving CRLF) has: a clear error, no half-made shop."""
    grades = tmp_path / "grades"
    shutil.copytree(REPO_ROOT / "G0_Trainee", grades / "G0_Trainee", ignore=RUNTIME)
    script = grades / "G0_Trainee" / INIT_SCRIPT
    script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))
    stack = NativeStack(Grade.named("G0_Trainee", grades), tmp_path / ".run")
    with pytest.raises(PostgresStartError, match=r"Windows line endings \(CRLF\).*sed -i"):
        start_shop_natively(stack)
    data = tmp_path / ".run/G0_Trainee/pg/pg-shop-1"
    assert not stack.postgres(stack.services["pg-shop-1"], 0).is_running(), "the failed start left its server up"

    script.write_bytes(script.read_bytes().replace(b"\r\n", b"\n"))  # fixed: the next start makes the shop afresh
    server, port = start_shop_natively(stack)
    try:
        assert reader_logs_in(stack.grade, port)
        assert not (data / "coursekit-init-pending").exists()
    finally:
        server.stop()


def test_a_failing_init_script_fails_every_start_until_it_is_fixed(g0, tmp_path):
    """The postgres image would serve the half-made database on its restart; natively each start fails again."""
    script = tmp_path / "01-init.sh"
    script.write_text("set -e\npsql -v ON_ERROR_STOP=1 -c 'create table made_by_init (id int)'\nexit 3\n")
    server = EmbeddedPostgres(g0.postgres_spec("pg-shop-1", free_port()), tmp_path / "pg", durable=False)
    for _ in range(2):
        with pytest.raises(PostgresStartError, match=r"init script .*01-init.sh failed \(exit 3\)"):
            server.start(init_scripts=[script])
        assert not server.is_running()
    script.write_text("set -e\npsql -v ON_ERROR_STOP=1 -c 'create table made_by_init (id int)'\n")
    try:
        assert server.start(init_scripts=[script]) is True, "the unfinished data folder is made afresh"
        with server.connect() as conn, conn.cursor() as cur:  # it would fail on "already exists" otherwise
            cur.execute("select count(*) from made_by_init")
            assert cur.fetchone() == (0,)
        conn.close()
        server.stop()
        assert server.start(init_scripts=[script]) is False, "a finished data folder is kept"
    finally:
        server.stop()


def test_make_run_stops_when_a_shop_is_not_healthy_after_its_init(tmp_path):
    """A script that exits 0 but creates no role: compose's healthcheck, run natively, names the shop."""
    grades = tmp_path / "grades"
    shutil.copytree(REPO_ROOT / "G0_Trainee", grades / "G0_Trainee", ignore=RUNTIME)
    (grades / "G0_Trainee" / INIT_SCRIPT).write_text("echo 'creates nothing'\n")
    run_dir = tmp_path / ".run"
    env = {**os.environ, "PGADMIN": "0"}
    for variable in ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT"):
        env[variable] = str(free_port())
    args = ["--grade", "G0_Trainee", "--grades-root", str(grades), "--run-dir", str(run_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.native", "run", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pg-shop-1 started but is not healthy" in result.stderr, result.stderr
    assert "shop_reader" in result.stderr and "make reset GRADE=G0_Trainee" in result.stderr
    stack = NativeStack(Grade.named("G0_Trainee", grades), run_dir)
    assert all(state != "running" for _, state, _ in stack.status()), stack.status()


def test_the_native_healthcheck_is_compose_s(tmp_path):
    """The check `make run` runs is the compose file's own, so both worlds judge a shop alike."""
    stack = NativeStack(Grade.named("G0_Trainee"), tmp_path / ".run")
    test = stack.services["pg-shop-1"].healthcheck
    assert test[0] == "CMD-SHELL" and "psql" in test[1] and "${SHOP_READER_USER" in test[1]
    with pytest.raises(StackError, match="pg-dwh started but is not healthy"):
        stack._check_postgres_health(stack.services["pg-dwh"], free_port())  # nobody listens there
