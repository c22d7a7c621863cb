"""The checker's JSON report, `make progress` and the CI job summary, on real reports of every verdict.

CANNOT CHECK comes from the real command line (`python -m coursekit.checker --json`) against
ports where nothing listens. DONE, WAIT and NOT DONE come from the G3 checks run on a warehouse
the reference pipeline loaded with real Airflow runs (tests/test_checker.py's way): DONE with the
runs and a real re-run of the last one given to the checks, as the live checker gets them from
Airflow; WAIT without them (the run checks cannot decide); NOT DONE on a copy that lost a shop's
customers. Each report must validate against coursekit/checker/report.schema.json.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console
from test_checker import G0, big_lookback, check_results, copy_database, mutate, tick

from coursekit.checker import checks
from coursekit.checker.checks import Rerun, Run
from coursekit.checker.report import EXIT_CODES, verdict
from coursekit.checker.results_json import REPORTS_ENV, SCHEMA_PATH, build, keep, reports_dir, write
from coursekit.ci.summary import render
from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.pg import free_port
from coursekit.progress import main as progress_main
from coursekit.progress import progress
from coursekit.progress import render as render_progress

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def errors(report: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(report)]


def progress_table(reports_dir: Path) -> str:
    """`make progress`'s table as text, wide enough that no cell wraps."""
    console = Console(width=400, file=io.StringIO())
    render_progress(progress(reports_dir), console)
    return console.file.getvalue()


def test_the_schema_is_valid_and_rejects_a_report_that_contradicts_itself():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    done = {
        "schema_version": 1,
        "grade": "G3_Middle",
        "mode": "fast",
        "verdict": "DONE",
        "summary": "all 1 checks pass",
        "exit_code": 0,
        "started_at": "2026-01-01T00:00:00Z",
        "duration_sec": 1.0,
        "dags_dir": "G3_Middle/airflow_data/dags",
        "own_dags_dir": True,
        "load_dag": "load_shops_to_dwh",
        "commit": None,
        "counts": {"pass": 1, "fail": 0, "wait": 0, "cannot": 0},
        "checks": [
            {
                "item": "i",
                "name": "n",
                "status": "pass",
                "expected": "e",
                "found": "ok",
                "hint": "",
                "example_keys": [],
            }
        ],
    }
    assert errors(done) == []
    assert errors({**done, "exit_code": 1}), "DONE must exit 0"
    assert errors({**done, "counts": {"pass": 0, "fail": 1, "wait": 0, "cannot": 0}}), "DONE with a failing check"
    assert errors({**done, "verdict": "WAIT", "exit_code": 3}), "WAIT needs a waiting check"
    assert errors({**done, "verdict": "done"}), "verdicts are the terminal's words"
    assert errors({k: v for k, v in done.items() if k != "load_dag"}), "every field is required (null if unknown)"


def test_reports_are_kept_next_to_the_grades_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv(REPORTS_ENV, raising=False)
    assert reports_dir(REPO_ROOT) == REPO_ROOT / ".run" / "reports"
    assert reports_dir(tmp_path) == tmp_path / ".run" / "reports"  # --grades-root: a private copy's own
    monkeypatch.setenv(REPORTS_ENV, str(tmp_path / "elsewhere"))
    assert reports_dir(REPO_ROOT) == tmp_path / "elsewhere"


def test_cannot_check_from_the_command_line_writes_a_valid_report_kept_for_make_progress(tmp_path):
    """Nothing listens on the grade's ports: exit 2, CANNOT CHECK last, and the same in the JSON."""
    ports = {v: str(free_port()) for v in ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT")}
    env = {**os.environ, **ports, "COURSEKIT_REPORTS_DIR": str(tmp_path / "reports")}
    out = tmp_path / "out" / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.checker", "--grade", "G2_Junior", "--no-wait", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("CANNOT CHECK: cannot reach pg-dwh")
    report = json.loads(out.read_text(encoding="utf-8"))
    assert errors(report) == []
    assert (report["verdict"], report["exit_code"], report["mode"]) == ("CANNOT CHECK", 2, "live")
    assert report["summary"] == result.stdout.strip().splitlines()[-1].removeprefix("CANNOT CHECK: ")
    assert report["checks"] == [] and report["dags_dir"] == "G2_Junior/airflow_data/dags" and report["own_dags_dir"]
    kept = sorted((tmp_path / "reports" / "G2_Junior").glob("*.json"))
    assert [p.name for p in kept][-1] == "latest.json" and len(kept) == 2, kept
    assert json.loads(kept[0].read_text(encoding="utf-8")) == report

    markdown = render(report)
    assert markdown.startswith("## ⚠️ G2_Junior: CANNOT CHECK") and "cannot reach pg-dwh" in markdown
    assert "| Status |" not in markdown, "no table without checks"

    table = progress_table(tmp_path / "reports")
    row = next(line for line in table.splitlines() if "G2_Junior" in line)
    assert "CANNOT CHECK" in row and "live" in row and "cannot reach pg-dwh" in row
    for grade in GRADES:
        if grade != "G2_Junior":
            assert "never checked" in next(line for line in table.splitlines() if grade in line)

    # --no-keep: written where asked, not kept.
    subprocess.run(
        [sys.executable, "-m", "coursekit.checker", "--grade", "G3_Middle", "--no-wait", "--no-keep"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert not (tmp_path / "reports" / "G3_Middle").exists()


def report_of(results: list[checks.CheckResult], started: datetime) -> dict:
    word, _ = verdict(results)
    return build(
        grade=Grade.named("G3_Middle"),
        mode="live",
        results=results,
        exit_code=EXIT_CODES[word],
        why=None,
        started_at=started,
        duration_sec=1.5,
        dags_dir=Grade.named("G3_Middle").dags_dir,
        load_dag="load_shops_to_dwh",
    )


@pytest.mark.slow
def test_reports_of_done_wait_and_not_done_validate_and_render(airflow, g0_databases, tmp_path):
    dbs = g0_databases
    bag = airflow.install(G0.dags_dir, pipeline_edit=big_lookback)
    dag_runs = []
    for _ in range(2):
        tick(dbs, tmp_path)
        dag_runs.append(airflow.run(bag, "load_shops_to_dwh"))
        assert dag_runs[-1].state == "success"

    def as_airflow_reports_them(ctx: checks.Context) -> None:
        """What the live checker learns from Airflow's API: the runs, and a real re-run of the last one."""
        ctx.runs = [Run(r.run_id, str(r.state), r.start_date, r.end_date) for r in reversed(dag_runs)]
        ctx.max_active_runs = bag.get_dag("load_shops_to_dwh").max_active_runs
        before = checks.fingerprint(ctx)
        again = airflow.run(bag, "load_shops_to_dwh", again=dag_runs[-1])
        ctx.rerun = Rerun(again.run_id, str(again.state), checks.changed_keys(before, checks.fingerprint(ctx)))

    now = datetime.now(UTC)
    reports = {"DONE": report_of(check_results("G3_Middle", dbs, prepare=as_airflow_reports_them), now)}
    reports["WAIT"] = report_of(check_results("G3_Middle", dbs), now + timedelta(minutes=1))
    dwh = dbs["dwh"]
    database = copy_database(dwh, f"{dwh.name}_lost_shop")
    try:
        mutate(dwh, database, ["delete from dds.customers where src_id = 'Istanbul'"])
        reports["NOT DONE"] = report_of(check_results("G3_Middle", dbs, database), now + timedelta(minutes=2))
    finally:
        dwh.server.drop_database(database)

    for word, report in reports.items():
        assert report["verdict"] == word, f"{word}: got {report['verdict']}: {report['summary']}"
        assert errors(report) == [], f"{word}: {errors(report)}"
    assert reports["DONE"]["counts"]["fail"] == reports["DONE"]["counts"]["wait"] == 0
    waiting = {c["name"] for c in reports["WAIT"]["checks"] if c["status"] == "wait"}
    assert "re-running a finished run changes nothing" in waiting
    lost = next(c for c in reports["NOT DONE"]["checks"] if c["name"] == "dds.customers: every source row is loaded")
    assert lost["status"] == "fail" and lost["hint"]
    assert lost["example_keys"] and all(k.startswith("Istanbul:") for k in lost["example_keys"]), lost
    assert all(k in lost["found"] for k in lost["example_keys"])

    assert_the_job_summary_renders(reports)
    assert_make_progress_reads_what_was_kept(reports, tmp_path)


def assert_the_job_summary_renders(reports: dict[str, dict]) -> None:
    """The job summary: a verdict heading, failing rows first, cells that cannot break the table."""
    markdown = render(reports["NOT DONE"])
    assert markdown.startswith("## ❌ G3_Middle: NOT DONE")
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0] == "| Status | Check | Expected | Found | Hint |"
    assert len(table) == 2 + len(reports["NOT DONE"]["checks"])
    assert all(line.count(" | ") == 4 for line in table), "a pipe inside a cell split a row"
    assert table[2].startswith("| ❌ FAIL |") and table[-1].startswith("| ✅ PASS |")
    assert render(reports["WAIT"]).startswith("## ⏳ G3_Middle: WAIT")
    assert render(reports["DONE"]).startswith("## ✅ G3_Middle: DONE")


def assert_make_progress_reads_what_was_kept(reports: dict[str, dict], tmp_path: Path) -> None:
    """make progress reads what the checker kept: the newest check of the grade's own folder counts."""
    kept = tmp_path / "reports"
    for report in reports.values():
        keep(report, kept)
    solution = {**reports["DONE"], "own_dags_dir": False, "started_at": "2099-01-01T00:00:00Z"}
    keep(solution, kept)  # SOLUTION=1 graded later: not the learner's progress
    row = next(line for line in progress_table(kept).splitlines() if "G3_Middle" in line)
    assert "NOT DONE" in row and "fast" not in row and "live" in row, row
    assert "dds.customers: every source row is loaded" in progress_table(kept)
    assert "1 check(s) of another DAG folder" in progress_table(kept)
    assert json.loads((kept / "G3_Middle" / "latest.json").read_text(encoding="utf-8")) == solution
    done_at = datetime.fromisoformat(reports["DONE"]["started_at"].replace("Z", "+00:00"))
    assert f"{done_at:%Y-%m-%d %H:%M} UTC" in row, "the Last DONE column shows when G3 was done"

    # A broken file among them is skipped with a word, not a traceback.
    (kept / "G3_Middle" / "20000101T000000Z-live.json").write_text("{", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.progress", "--reports-dir", str(kept)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0 and "not a readable report" in result.stderr and "NOT DONE" in result.stdout
    assert progress_main(["--reports-dir", str(kept)]) == 0
    write(reports["DONE"], tmp_path / "done.json")  # the file the CI job uploads
    assert errors(json.loads((tmp_path / "done.json").read_text(encoding="utf-8"))) == []


def test_a_check_the_checker_could_not_run_is_a_cannot_row():
    """The fast mode's one row when it cannot tell which DAG is the load (verdict CANNOT CHECK)."""
    row = checks.CheckResult(
        "the load DAG is found", "the folder's load DAG is recognisable", "CANNOT CHECK", "", "two"
    )
    report = build(
        grade=Grade.named("G3_Middle"),
        mode="fast",
        results=[row],
        exit_code=EXIT_CODES["CANNOT CHECK"],
        why="two unrelated DAGs could be the load",
        started_at=datetime.now(UTC),
        duration_sec=3,
        dags_dir=None,
        load_dag=None,
    )
    assert errors(report) == [] and report["counts"]["cannot"] == 1 and report["checks"][0]["status"] == "cannot"
    assert "| ⚠️ CANNOT |" in render(report) and "1 cannot" in render(report)
