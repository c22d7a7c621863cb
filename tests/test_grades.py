"""The grades are exercises: starters differ from the reference only where the task is.

Copies made on purpose (newcomer DAGs, the self-test queries, G1's DAG code,
the solutions) are written by `make sync-grades`; tests/test_sync.py checks them.
"""

from __future__ import annotations

import os

import pytest
import yaml

from coursekit.grade import GRADES, Grade
from dwh.config import load_config, parse_config

G0 = Grade.named("G0_Trainee")
EXERCISES = ("G1_Intern", "G2_Junior", "G3_Middle", "G4_Senior")
# The DAG ids each grade's solution/dags must define: the tasks' DAGs plus what the starter has.
SOLUTION_DAG_IDS = {
    "G1_Intern": {"load_shops_to_dwh", "cleanup_staging", "hello_world", "taskflow_example"},
    "G2_Junior": {"load_shops_to_dwh", "cleanup_staging", "hello_world", "taskflow_example"},
    "G3_Middle": {"load_shops_to_dwh", "cleanup_staging", "hello_world", "taskflow_example"},
    "G4_Senior": {"load_shops_to_dwh_wap", "cleanup_staging"},
}


@pytest.mark.parametrize("grade", EXERCISES)
def test_every_exercise_has_a_runnable_solution_folder(airflow, grade, monkeypatch):
    """`make run GRADE=... SOLUTION=1` mounts solution/dags: it must parse and hold the grade's DAGs."""
    for name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
        monkeypatch.delenv(name)  # parsing must not need a connection
    bag = airflow.install(Grade.named(grade).path / "solution" / "dags")
    assert bag.import_errors == {}
    assert set(bag.dags) == SOLUTION_DAG_IDS[grade]
    load = next(dag for dag_id, dag in bag.dags.items() if dag_id.startswith("load_shops_to_dwh"))
    groups = {task_id.split(".")[0] for task_id in load.task_ids if "." in task_id}
    assert groups == {"customers", "products", "orders"}, "every table of both shops"
    extracts = {task_id.split(".")[1] for task_id in load.task_ids if ".extract_" in task_id}
    assert extracts == {"extract_new_york", "extract_istanbul"}
    bash = {type(task).__name__ for task in bag.dags["cleanup_staging"].tasks}
    assert bash == {"BashOperator"}, "G1's task 3: the cleanup DAG runs a BashOperator"


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
    solution = yaml.safe_load((Grade.named("G2_Junior").path / "solution" / "dags" / "pipeline.yaml").read_text())
    reference = yaml.safe_load((G0.dags_dir / "pipeline.yaml").read_text())
    config = parse_config(solution)
    assert all(not table.scd2 for table in config.tables.values())
    for name, table in reference["tables"].items():
        assert solution["tables"][name]["columns"] == table["columns"]
    assert solution["sources"] == reference["sources"]
    assert not (Grade.named("G2_Junior").path / "solution" / "pipeline.yaml").exists(), "one layout: solution/dags"


@pytest.mark.parametrize("grade", GRADES)
def test_every_grade_src_id_is_the_shop_city(grade):
    """The checker finds a shop's rows by src_id = CITY_NAME; configs must agree."""
    g = Grade.named(grade)
    cities = {g.generator_env(shop)["CITY_NAME"] for shop in ("shop-1", "shop-2")}
    config_file = g.dags_dir / "pipeline.yaml"
    if config_file.exists():
        assert {s.src_id for s in load_config(config_file).sources} <= cities
