"""The files every grade carries are G0_Trainee's, written by `make sync-grades`.

coursekit/sync.py is the one list of what is copied, and of every intended
difference between grades; these tests fail when a copy was edited by hand or
G0 was edited without running the sync.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from coursekit import sync
from coursekit.grade import GRADES, REPO_ROOT


def test_every_copy_is_what_make_sync_grades_writes():
    found = sync.differences()
    assert not found, "copies differ from G0_Trainee's files: run make sync-grades\n" + "\n".join(found)


def test_the_copies_cover_what_the_grades_share():
    written = {copy.target.relative_to(REPO_ROOT).as_posix() for copy in sync.planned()}
    for grade in sync.TARGETS:
        assert f"{grade}/deploy/docker-compose.yml" in written
        assert f"{grade}/docker/airflow/Dockerfile" in written
        assert f"{grade}/airflow_data/dags/hello_world.py" in written
        assert f"{grade}/solution/dags/cleanup_staging.py" in written
    for grade in sync.SOLVED_BY_G0:
        assert f"{grade}/solution/dags/load_shops_to_dwh.py" in written
    assert "G4_Senior/docker/generator/config.json" not in written, "G4's shops write invalid values: its own"
    assert "G4_Senior/solution/dags/load_shops_to_dwh_wap.py" not in written


@pytest.fixture
def grades_copy(tmp_path):
    """The grade folders, without runtime data: the sync may write there freely."""
    for grade in GRADES:
        shutil.copytree(
            REPO_ROOT / grade,
            tmp_path / grade,
            ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging", "__pycache__"),
        )
    return tmp_path


def test_sync_repairs_drifted_copies_and_removes_stale_ones(grades_copy):
    root = grades_copy
    compose = root / "G1_Intern/deploy/docker-compose.yml"
    compose.write_text(compose.read_text().replace("mem_limit: 2g", "mem_limit: 4g"))
    (root / "G3_Middle/solution/dags/hello_world.py").unlink()
    (root / "G2_Junior/solution/dags/my_old_try.py").write_text("x = 1\n")
    (root / "G4_Senior/deploy/initdb/01-readonly-role.sh").chmod(0o644)
    (root / "G4_Senior/solution/dags/load_shops_to_dwh_wap.py").write_text("# the grade's own file\n")

    assert sorted(sync.differences(root)) == [
        "differs: G1_Intern/deploy/docker-compose.yml",
        "executable bit differs: G4_Senior/deploy/initdb/01-readonly-role.sh",
        "missing: G3_Middle/solution/dags/hello_world.py",
        "not in G0: G2_Junior/solution/dags/my_old_try.py",
    ]
    check = subprocess.run(
        [sys.executable, "-m", "coursekit.sync", "--check", "--root", str(root)], capture_output=True, text=True
    )
    assert check.returncode == 1 and "run make sync-grades" in check.stderr

    assert len(sync.sync(root)) == 4
    assert sync.differences(root) == []
    assert sync.sync(root) == [], "a second run changes nothing"
    assert "name: g1-intern\n" in compose.read_text() and "mem_limit: 2g" in compose.read_text()
    assert os.access(root / "G4_Senior/deploy/initdb/01-readonly-role.sh", os.X_OK)
    assert (root / "G4_Senior/solution/dags/load_shops_to_dwh_wap.py").read_text() == "# the grade's own file\n"


def test_the_intended_differences_are_edits_of_g0s_text(grades_copy):
    root = grades_copy
    g0_config = json.loads((root / "G0_Trainee/docker/generator/config.json").read_text())
    g2_config = json.loads((root / "G2_Junior/docker/generator/config.json").read_text())
    for table in g0_config["tables"].values():
        table["update_rows_per_tick"] = 0
    assert g2_config == g0_config, "G2's shops never update a row; nothing else differs"
    # G0 edits flow through, edits included.
    g0_env = root / "G0_Trainee/deploy/env/shop-1.env"
    g0_env.write_text(g0_env.read_text() + "# a new comment\n")
    sync.sync(root)
    g2_env = (root / "G2_Junior/deploy/env/shop-1.env").read_text()
    assert g2_env.endswith("# a new comment\n") and "\nUPDATE_NOT_OLDER_THAN_SEC=0\n" in g2_env


def test_an_edit_that_no_longer_fits_g0_fails_loudly(grades_copy):
    g0_env = grades_copy / "G0_Trainee/deploy/env/shop-2.env"
    g0_env.write_text(g0_env.read_text().replace("UPDATE_NOT_OLDER_THAN_SEC=", "RENAMED="))
    with pytest.raises(sync.SyncError, match="G2_Junior/deploy/env/shop-2.env"):
        sync.differences(grades_copy)
    before = (grades_copy / "G2_Junior/deploy/env/shop-2.env").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.sync", "--root", str(grades_copy)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "update EDITS in coursekit/sync.py" in result.stderr
    assert (grades_copy / "G2_Junior/deploy/env/shop-2.env").read_text() == before, "nothing half-written"


def test_g2s_self_test_holds_only_queries_that_fit_a_warehouse_without_history():
    import re

    for folder in ("airflow_data/dags", "solution/dags"):
        text = (REPO_ROOT / "G2_Junior" / folder / "scripts/self-test.sql").read_text(encoding="utf-8")
        for absent in ("stg.", "eff_from_dttm", "eff_to_dttm", "load_run_id", "versions"):
            assert absent not in text, f"G2's self-test reads {absent!r}, which G2's tables do not have"
        numbers = [int(n) for n in re.findall(r"^-- (\d+)\. ", text, flags=re.MULTILINE)]
        assert numbers == [1, 2, 3, 4], numbers
        assert 'group by "order_id", src_id having count(*) > 1' in text, "the checker's duplicate_keys rule"
    g0 = (REPO_ROOT / "G0_Trainee/airflow_data/dags/scripts/self-test.sql").read_text(encoding="utf-8")
    assert re.findall(r"^-- (\d+)\. ", g0, flags=re.MULTILINE) == [str(n) for n in range(1, 9)]
