"""A badge per grade: each grade's last verdict on the default branch, for a learner's README.

GitHub's own workflow badge shows one status for a whole workflow run, and check.yml grades
only the grades a push changed: it cannot say "G3 DONE, G4 NOT DONE". So the `badges` job of
check.yml (opt-in: the repository variable GRADE_BADGES=true) writes one small JSON file per
graded grade, in the format of shields.io's endpoint badge, to a branch of the fork's own
(`badges`, nothing else on it), and a README shows it through

    https://img.shields.io/endpoint?url=https://raw.githubusercontent.com/OWNER/REPO/badges/G3_Middle.json

`python -m coursekit.ci.badges --reports DIR [--push]` writes `<grade>.json` for every report in
DIR (the reports the check jobs uploaded) on top of what the branch holds (grades not graded this
time keep their badge), commits, and with --push pushes the branch to origin, retrying when a
concurrent push got there first. It works in a temporary git worktree: the checkout it runs in
is not touched. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from coursekit.grade import GRADES, REPO_ROOT

COLOURS = {"DONE": "brightgreen", "NOT DONE": "red", "WAIT": "yellow", "CANNOT CHECK": "lightgrey"}
BOT = ["-c", "user.name=github-actions[bot]", "-c", "user.email=41898282+github-actions[bot]@users.noreply.github.com"]
README = """# Grade badges

Written by the `badges` job of `.github/workflows/check.yml`: one file per grade, each grade's
last verdict on the default branch, in the format of shields.io's endpoint badge. Nothing else
belongs on this branch.
"""


def endpoint(report: dict[str, Any]) -> dict[str, Any]:
    """shields.io's endpoint badge JSON (schemaVersion 1) for one report."""
    word = report["verdict"]
    return {
        "schemaVersion": 1,
        "label": report["grade"],
        "message": word,
        "color": COLOURS.get(word, "lightgrey"),
        "cacheSeconds": 300,
    }


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"badges: git {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def read_reports(folder: Path) -> dict[str, dict[str, Any]]:
    """grade -> its report, from every *.json in folder (subfolders too: one artifact per grade)."""
    reports = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print(f"badges: skipping {path}: not a readable report", file=sys.stderr)
            continue
        if isinstance(report, dict) and report.get("grade") in GRADES and "verdict" in report:
            reports[report["grade"]] = report
    return reports


def write_badges(worktree: Path, reports: dict[str, dict[str, Any]]) -> None:
    (worktree / "README.md").write_text(README, encoding="utf-8")
    for grade, report in reports.items():
        (worktree / f"{grade}.json").write_text(json.dumps(endpoint(report), indent=2) + "\n", encoding="utf-8")


def checkout_branch(repo: Path, worktree: Path, branch: str, remote: str) -> None:
    """The branch as the remote has it, in a new worktree; an empty orphan if it has none yet."""
    if (
        git(
            repo, "fetch", "--quiet", "--depth", "1", remote, f"+{branch}:refs/remotes/{remote}/{branch}", check=False
        ).returncode
        == 0
    ):
        git(repo, "worktree", "add", "--quiet", "--detach", str(worktree), f"refs/remotes/{remote}/{branch}")
    else:
        git(repo, "worktree", "add", "--quiet", "--detach", str(worktree))
        git(worktree, "checkout", "--quiet", "--orphan", f"new-{branch}")
        git(worktree, "rm", "-r", "-q", "-f", "--cached", ".")
        git(worktree, "clean", "-q", "-f", "-d", "-x")


def publish(
    repo: Path, reports: dict[str, dict[str, Any]], branch: str, remote: str, push: bool, tries: int = 3
) -> str:
    """Commit the badges onto the branch (and push it); returns the new commit, or '' if nothing changed."""
    for attempt in range(1, tries + 1):
        worktree = Path(tempfile.mkdtemp(prefix="badges-")) / "tree"
        try:
            checkout_branch(repo, worktree, branch, remote)
            write_badges(worktree, reports)
            git(worktree, "add", "-A")
            if git(worktree, "diff", "--cached", "--quiet", check=False).returncode == 0:
                print("badges: nothing changed", file=sys.stderr)
                return ""
            graded = ", ".join(f"{g} {r['verdict']}" for g, r in reports.items())
            git(worktree, *BOT, "commit", "--quiet", "-m", f"badges: {graded}")
            commit = git(worktree, "rev-parse", "HEAD").stdout.strip()
            if not push:
                return commit
            pushed = git(worktree, "push", "--quiet", remote, f"HEAD:refs/heads/{branch}", check=False)
            if pushed.returncode == 0:
                print(f"badges: pushed {commit[:12]} to {branch}: {graded}", file=sys.stderr)
                return commit
            print(f"badges: push {attempt} of {tries} rejected: {pushed.stderr.strip()}", file=sys.stderr)
        finally:
            git(repo, "worktree", "remove", "--force", str(worktree), check=False)
            shutil.rmtree(worktree.parent, ignore_errors=True)
    raise SystemExit(f"badges: could not push {branch} after {tries} tries")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="badges", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, required=True, help="folder of the check jobs' JSON reports")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the git repository (default: this one)")
    parser.add_argument("--branch", default="badges")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--push", action="store_true", help="push the branch (the workflow does)")
    options = parser.parse_args(argv)
    reports = read_reports(options.reports)
    if not reports:
        print(f"badges: no report in {options.reports}: nothing to write", file=sys.stderr)
        return 0
    publish(options.repo, reports, options.branch, options.remote, options.push)
    return 0


if __name__ == "__main__":
    sys.exit(main())
