"""The grades are exercises: starters differ from the reference only where the task is.

Copies made on purpose (newcomer DAGs, the self-test queries, G1's DAG code)
are held equal to G0's here, so they cannot drift apart.
"""

from __future__ import annotations

import pytest
import yaml

from coursekit.grade import GRADES, Grade
from coursekit.pipeline import load_config
from coursekit.pipeline.config import parse_config

G0 = Grade.named("G0_Trainee")
EXERCISES = ("G1_Intern", "G2_Junior", "G3_Middle", "G4_Senior")
SHARED_FILES = ("hello_world.py", "taskflow_example.py", "scripts/self-test.sql")


@pytest.mark.parametrize("grade", [g for g in EXERCISES if Grade.named(g).dags_dir.is_dir()])
@pytest.mark.parametrize("name", SHARED_FILES)
def test_newcomer_files_are_the_same_in_every_grade(grade, name):
    copy = Grade.named(grade).dags_dir / name
    assert copy.read_bytes() == (G0.dags_dir / name).read_bytes(), f"{copy} drifted from G0's; copy it again"


def test_g1_runs_the_reference_dag_code_unchanged():
    g1 = Grade.named("G1_Intern").dags_dir
    assert (g1 / "load_shops_to_dwh.py").read_bytes() == (G0.dags_dir / "load_shops_to_dwh.py").read_bytes()


def test_g1_starts_with_orders_of_shop_1_and_marks_the_edit_points():
    path = Grade.named("G1_Intern").dags_dir / "pipeline.yaml"
    config = load_config(path)
    assert list(config.tables) == ["orders"]
    assert [s.src_id for s in config.sources] == ["New-York"]
    text = path.read_text()
    assert "# TODO: task 1" in text and "# TODO: task 2" in text
    assert config.tables["orders"] == load_config(G0.dags_dir / "pipeline.yaml").tables["orders"]
    cleanup = (Grade.named("G1_Intern").dags_dir / "cleanup_staging.py").read_text()
    assert "# TODO: task 3" in cleanup and "BashOperator(" not in cleanup


@pytest.mark.parametrize("grade", ["G2_Junior", "G3_Middle"])
def test_g2_g3_starters_define_no_load_yet(grade):
    starter = (Grade.named(grade).dags_dir / "load_shops_to_dwh.py").read_text()
    assert "# TODO:" in starter and "@dag" not in starter


def test_g2_solution_is_g0s_config_without_history():
    solution = yaml.safe_load((Grade.named("G2_Junior").path / "solution" / "pipeline.yaml").read_text())
    reference = yaml.safe_load((G0.dags_dir / "pipeline.yaml").read_text())
    config = parse_config(solution)
    assert all(not table.scd2 for table in config.tables.values())
    for name, table in reference["tables"].items():
        assert solution["tables"][name]["columns"] == table["columns"]
    assert solution["sources"] == reference["sources"]


@pytest.mark.parametrize("grade", GRADES)
def test_every_grade_src_id_is_the_shop_city(grade):
    """The checker finds a shop's rows by src_id = CITY_NAME; configs must agree."""
    g = Grade.named(grade)
    cities = {g.generator_env(shop)["CITY_NAME"] for shop in ("shop-1", "shop-2")}
    config_file = g.dags_dir / "pipeline.yaml"
    if config_file.exists():
        assert {s.src_id for s in load_config(config_file).sources} <= cities
