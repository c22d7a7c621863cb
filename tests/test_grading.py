"""The grader proven both ways, through its fast mode (`make check FAST=1`).

As rustlings proves its exercises: every grade's reference solution and an
independently written correct solution must end DONE; the untouched starter and
a set of realistic wrong solutions (each one small change of a correct one,
`tests/solutions/mutations.py`) must end NOT DONE, with the check that names
the mistake among the failures. One private stack per grade grades all its DAG
folders side by side against the same shops, each with its own warehouse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rich.console import Console
from solutions.mutations import INDEPENDENT, apply, g2_correct

from coursekit.checker import definition, registry
from coursekit.checker.__main__ import PLANS
from coursekit.checker.checks import FAIL, CheckResult
from coursekit.checker.fast import FastSettings, grade_many
from coursekit.checker.report import verdict
from coursekit.grade import Grade

# The settings `make check FAST=1` grades a learner's folder with, so every mistake below is shown to
# be caught at the speed a learner gets. A dozen folders side by side make each step longer, not the
# windows: the rows the scenario updates are measured from the shops' pause (fast/sources.py).
SETTINGS = FastSettings()

# wrong solution -> checks (any of them) that must fail, by the start of their name in the report
G3_WRONG = {
    "overwrite_in_place": ["dds.orders: updated keys have more than one version"],
    "version_per_reread": ["dds.orders: no two consecutive identical versions"],
    "null_churn": ["dds.orders: no two consecutive identical versions"],
    "no_lookback": ["dds.orders: current values equal the source"],
    "one_shop_only": ["dds.orders has rows of every shop"],
    "float_and_timezone": ["dds.products: every source column, with the source's type"],
    "overlap_one_second": ["dds.orders: no overlap"],
    # The kill's resume is a re-run too: the duplicates may already break the later runs.
    "duplicates_on_rerun": [
        "re-running a finished run changes nothing",
        "the last 10 runs of the load DAG succeeded",
        "dds.orders: exactly one current version per key",
    ],
    "deletes_retention_history": ["dds.orders: rows the shops deleted are kept"],
    # Killed between closing versions and inserting their successors (the killed run has rows
    # to close: the fast mode changes loaded rows right before it).
    "non_atomic_merge": ["a run killed in the middle of its merge leaves no half-written table"],
    "one_watermark": ["dds.orders: every source row is loaded"],
    "crashes_on_some_batches": ["the last 10 runs of the load DAG succeeded"],
}
G2_WRONG = {
    "g2_duplicates_on_rerun": ["re-running a finished run changes nothing", "dds.orders: no duplicate keys"],
    # g2_no_lookback is graded in G3 (no_lookback): G2's shops never update rows and commit each tick at
    # once, so in G2's world a load without lookback loses nothing the fast mode can show.
    "g2_one_shop_only": ["dds.orders has rows of every shop"],
    "g2_deletes_retention_history": ["dds.orders: rows the shops deleted are kept"],
}


def write(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "load_shops_to_dwh.py").write_text(source, encoding="utf-8")
    return folder


def grade(name: str, folders: dict[str, Path]) -> dict[str, list[CheckResult]]:
    plan, scd2 = PLANS[name]
    results = grade_many(Grade.named(name), plan, scd2, folders, Console(width=160), SETTINGS)
    drifted = {folder: registry.undeclared(name, "fast", rows) for folder, rows in results.items()}
    assert not any(drifted.values()), f"rows no declaration names (registry.py): {drifted}"
    for done in {"reference", "solution"} & set(results):  # a finished grade prints the count its DoD states
        assert len(results[done]) == definition.counts(name)["fast"], [r.name for r in results[done]]
    return results


def failed(results: list[CheckResult]) -> list[str]:
    return [r.name for r in results if r.verdict == FAIL]


def assert_done(name: str, results: list[CheckResult]) -> None:
    word, why = verdict(results)
    assert word == "DONE", f"{name}: {word}: {why}; failing {failed(results)}"


def assert_names_mistake(name: str, results: list[CheckResult], expected: list[str]) -> None:
    word, why = verdict(results)
    assert word == "NOT DONE", f"{name} must not pass: {word}: {why}"
    hits = [f for f in failed(results) if any(f.startswith(e) for e in expected)]
    assert hits, f"{name}: expected one of {expected} to fail; failing: {failed(results)}"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_g3_fast_mode_passes_correct_loads_and_names_every_wrong_one(tmp_path):
    g3 = Grade.named("G3_Middle")
    folders = {
        "reference": g3.path / "solution" / "dags",
        "independent": write(tmp_path / "independent", INDEPENDENT.read_text(encoding="utf-8")),
        "starter": g3.dags_dir,
        **{name: write(tmp_path / name, apply(name)) for name in G3_WRONG},
    }
    results = grade("G3_Middle", folders)
    assert_done("reference", results["reference"])
    assert_done("independent", results["independent"])
    assert_names_mistake("starter", results["starter"], ["dds.orders exists"])
    for name, expected in G3_WRONG.items():
        assert_names_mistake(name, results[name], expected)
    # The hints speak of the mistake, not of something else.
    lost = next(r for r in results["one_watermark"] if r.name == "dds.orders: every source row is loaded")
    assert "Istanbul" in lost.found and "per src_id" in lost.hint, lost
    types = next(r for r in results["float_and_timezone"] if r.name.startswith("dds.products: every source column"))
    assert "price is double precision" in types.found, types
    different = next(r for r in results["no_lookback"] if r.name == "dds.orders: current values equal the source")
    assert "source=" in different.found and "dds=" in different.found, different


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_g2_fast_mode_passes_correct_loads_and_names_every_wrong_one(tmp_path):
    g2 = Grade.named("G2_Junior")
    folders = {
        "reference": g2.path / "solution" / "dags",
        "independent": write(tmp_path / "independent", g2_correct()),
        "starter": g2.dags_dir,
        **{name: write(tmp_path / name, apply(name)) for name in G2_WRONG},
    }
    results = grade("G2_Junior", folders)
    assert_done("reference", results["reference"])
    assert_done("independent", results["independent"])
    assert_names_mistake("starter", results["starter"], ["dds.orders exists"])
    for name, expected in G2_WRONG.items():
        assert_names_mistake(name, results[name], expected)


def g4_variant(tmp_path: Path, name: str, edit) -> Path:
    """G4's reference with one edit of its pipeline.yaml."""
    import shutil

    folder = tmp_path / name
    shutil.copytree(Grade.named("G4_Senior").path / "solution" / "dags", folder)
    config = yaml.safe_load((folder / "pipeline.yaml").read_text(encoding="utf-8"))
    edit(config)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return folder


def other_quarantine_design(tmp_path: Path) -> Path:
    """G4's reference with the quarantine another learner might design: a `reason` column, a
    `quarantine_status` column with the words HELD / Published / replaced. Same verdict: DONE."""
    import re
    import shutil

    folder = tmp_path / "other_quarantine"
    shutil.copytree(Grade.named("G4_Senior").path / "solution" / "dags", folder)
    audit_sql = folder / "wap" / "sql" / "audit.sql"
    text = audit_sql.read_text(encoding="utf-8")
    for old, new in (
        ("    failed_rules text[] not null,\n    status text", "    reason text[] not null,\n    status text"),
        ("q.failed_rules <@", "q.reason <@"),
        ("source_row, failed_rules, status,", "source_row, reason, status,"),
        ("    failed_rules = excluded.failed_rules,\n    last", "    reason = excluded.reason,\n    last"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    text = re.sub(r"\bstatus\b", "quarantine_status", text)
    words = {"'open'": "'HELD'", "'released'": "'Published'", "'superseded'": "'replaced'"}
    for old, new in words.items():
        text = text.replace(old, new)
    audit_sql.write_text(text, encoding="utf-8")
    audit_py = folder / "wap" / "audit.py"
    code = audit_py.read_text(encoding="utf-8")
    for old, new in (('"released")', '"Published")'), ('"superseded")', '"replaced")')):
        code = code.replace(old, new)
    code = code.replace('status == "released"', 'status == "Published"')
    code = code.replace('status == "superseded"', 'status == "replaced"')
    audit_py.write_text(code, encoding="utf-8")
    return folder


def no_audit_of_orders(config: dict) -> None:
    """Publishes whatever the shops send: no rules for orders."""
    config["tables"]["orders"]["audit"] = {"not_null": ["order_id", "created_at"]}


def no_lookback(config: dict) -> None:
    config["lookback_sec"] = 0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_g4_fast_mode_passes_the_reference_and_catches_unaudited_and_stale_loads(tmp_path):
    g4 = Grade.named("G4_Senior")
    folders = {
        "reference": g4.path / "solution" / "dags",
        "starter": g4.dags_dir,
        "no_audit": g4_variant(tmp_path, "no_audit", no_audit_of_orders),
        "no_lookback": g4_variant(tmp_path, "no_lookback", no_lookback),
        "other_quarantine": other_quarantine_design(tmp_path),
    }
    results = grade("G4_Senior", folders)
    assert_done("reference", results["reference"])
    assert_done("other_quarantine", results["other_quarantine"])
    assert_names_mistake("starter", results["starter"], ["dds.orders exists"])
    # Bad orders published into dds, or (when none of them is yet stable in dds) bad shop rows not held.
    assert_names_mistake(
        "no_audit",
        results["no_audit"],
        ["dds.orders.quantity has none of", "dds.orders.status", "the shops' bad rows are held in quarantine"],
    )
    # A load without lookback misses updates: stale current values, or (when the updated rows are not yet
    # stable at grading time) keys that never got their second version. Either names the mistake.
    missed = [
        f"dds.{table}: {rule}"
        for table in ("customers", "products", "orders")
        for rule in ("current values equal the source, or the newer", "updated keys have more than one version")
    ]
    assert_names_mistake("no_lookback", results["no_lookback"], missed)


def cleanup_variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    import shutil

    folder = tmp_path / name
    shutil.copytree(Grade.named("G1_Intern").path / "solution" / "dags", folder)
    dag = folder / "cleanup_staging.py"
    source = dag.read_text(encoding="utf-8")
    assert source.count(old) == 1, old
    dag.write_text(source.replace(old, new), encoding="utf-8")
    return folder


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_g1_fast_mode_passes_the_solution_and_catches_wrong_cleanup_dags(tmp_path):
    g1 = Grade.named("G1_Intern")
    folders = {
        "solution": g1.path / "solution" / "dags",
        "starter": g1.dags_dir,
        "deletes_everything": cleanup_variant(
            tmp_path, "all", "-type f -mmin +{{ params.max_age_minutes }} ", "-type f "
        ),
        "weekly": cleanup_variant(tmp_path, "weekly", 'schedule="@hourly"', 'schedule="@weekly"'),
    }
    results = grade("G1_Intern", folders)
    assert_done("solution", results["solution"])
    assert_names_mistake("starter", results["starter"], ["a DAG with a BashOperator task exists"])
    assert_names_mistake("deletes_everything", results["deletes_everything"], ["its command deletes only files older"])
    assert_names_mistake("weekly", results["weekly"], ["it runs at least daily"])


TWO_DAGS = Path(__file__).parent / "solutions" / "two_dags"
UNRELATED_DAGS = """
import pendulum
from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def daily_report():
    @task
    def report() -> None:
        print("report")

    report()


@dag(schedule="* * * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def shop_sync():
    @task
    def sync() -> None:
        print("sync")

    sync()


daily_report()
shop_sync()
"""


def two_dags(tmp_path: Path, link: str) -> Path:
    """G0's reference load split in two DAGs (stage_shops -> merge_to_dds), linked by an asset or a trigger."""
    import shutil

    folder = tmp_path / f"two_dags_{link}"
    shutil.copytree(Grade.named("G3_Middle").path / "solution" / "dags", folder)
    (folder / "load_shops_to_dwh.py").unlink()
    for dag_file in TWO_DAGS.glob("*.py"):
        source = dag_file.read_text(encoding="utf-8")
        assert source.count('LINK = "asset"') == 1
        (folder / dag_file.name).write_text(source.replace('LINK = "asset"', f'LINK = "{link}"'), encoding="utf-8")
    return folder


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a shared CI machine may be slow; a verdict never hangs
def test_a_load_split_in_linked_dags_is_graded_as_one_and_an_unclear_load_cannot_be_checked(tmp_path):
    choices: dict = {}
    folders = {
        "assets": two_dags(tmp_path, "asset"),
        "trigger": two_dags(tmp_path, "trigger"),
        "unrelated": write(tmp_path / "unrelated", UNRELATED_DAGS),
    }
    plan, scd2 = PLANS["G3_Middle"]
    results = grade_many(Grade.named("G3_Middle"), plan, scd2, folders, Console(width=160), SETTINGS, choices=choices)
    for name in ("assets", "trigger"):
        assert choices[name].pipeline == ["stage_shops", "merge_to_dds"], choices[name]
        assert "pipeline of 2 DAGs" in choices[name].line()
        assert_done(name, results[name])
    word, why = verdict(results["unrelated"])
    assert word == "CANNOT CHECK", (word, why)
    assert "daily_report" in why and "shop_sync" in why and "load_shops_to_dwh" in why, why
