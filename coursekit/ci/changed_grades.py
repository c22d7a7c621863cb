"""Which grades a push or pull request changed: the grades `.github/workflows/check.yml` grades.

A grade is selected when the change touches a file its fast check reads from
the learner's side of the grade (LEARNER_FILES):

* `airflow_data/dags/`          the DAG folder graded (the learner's solution);
* `deploy/env/`                 the services' env files (logins, Airflow's connections, shop settings);
* `deploy/docker-compose.yml`   the ports, DAGS_DIR and the init scripts it mounts;
* `deploy/initdb/`              the scripts the databases run on first start (the read-only role);
* `docker/generator/config.json` the shops' generator config.

Everything else selects no grade: the READMEs and the rest of the docs; the grade's
`solution/` (the course's reference, graded with SOLUTION=1, not the learner's
work); files only the Docker stack reads (`docker/airflow/`, `deploy/healthchecks/`,
`deploy/pgadmin/`); and the course's own toolkit (`coursekit/`, `tests/`, the
Makefile, constraints, `.github/`). A toolkit change is the course's, tested by its
own CI (ci.yml); in a fork it arrives by syncing with the course, and grading every
grade then would mark grades a learner has not started as failed. A learner who
wants a grade re-graded after such a sync runs the workflow by hand (Actions ->
check -> Run workflow), which grades the grades it is given (`--grades`).

Which commits: the changes since the point the new commits left the old ones
(`git diff base...head`), so a force push is graded on what its history changed.
A push with no usable base (a new branch or a first push: GitHub sends
`before` = 40 zeros; or a base the clone does not have, as after a force push
that dropped it) is compared with the default branch; on the default branch
itself (a head the default branch already holds), the head commit's own changes are graded.

Prints the grades as a JSON list (`["G3_Middle"]`) on stdout and why on stderr;
with --github-output also writes `grades=<list>` to that file ($GITHUB_OUTPUT).
Standard library only: the workflow runs it before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from coursekit.grade import GRADES, REPO_ROOT, Grade

ZEROS = re.compile(r"^0*$")


def learner_files(grade: Grade) -> list[PurePosixPath]:
    """The files and folders (relative to the repository) whose change selects the grade."""
    root = grade.path.parent
    paths = [
        grade.dags_dir,
        grade.env_dir,
        grade.deploy_dir / "docker-compose.yml",
        grade.deploy_dir / "initdb",
        grade.generator_config,
    ]
    return [PurePosixPath(p.relative_to(root).as_posix()) for p in paths]


def grades_of(paths: Iterable[str], root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """grade -> the changed paths that select it, in GRADES order."""
    selected: dict[str, list[str]] = {}
    owned = {name: learner_files(Grade.named(name, root)) for name in GRADES}
    for path in paths:
        changed = PurePosixPath(path)
        for name, files in owned.items():
            if any(changed == f or f in changed.parents for f in files):
                selected.setdefault(name, []).append(path)
    return {name: selected[name] for name in GRADES if name in selected}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def has_commit(repo: Path, ref: str) -> bool:
    return bool(ref) and git(repo, "cat-file", "-e", f"{ref}^{{commit}}").returncode == 0


def changed_paths(repo: Path, base: str | None, head: str, default_branch: str | None) -> tuple[list[str], str]:
    """The paths changed between the pushed commits, and how they were found (for the log)."""
    if base and not ZEROS.match(base) and has_commit(repo, base):
        how = f"changes since {base[:12]}"
    else:
        base = None
        for ref in (f"origin/{default_branch}", default_branch) if default_branch else ():
            # Unless the head is already on it (the default branch itself): then nothing is new to it.
            if has_commit(repo, ref) and git(repo, "merge-base", "--is-ancestor", head, ref).returncode != 0:
                base, how = ref, f"no usable base: changes since the branch left {ref}"
                break
    if base is None:
        # The default branch itself, or nothing to compare with: the head commit's own changes.
        listed = git(repo, "diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "--no-renames", head)
        how = f"no usable base: the changes of {head[:12]} itself"
    else:
        listed = git(repo, "diff", "--name-only", "--no-renames", f"{base}...{head}")
    if listed.returncode != 0:
        raise SystemExit(f"changed_grades: git could not list the changes ({how}): {listed.stderr.strip()}")
    return [line for line in listed.stdout.splitlines() if line], how


def requested(text: str) -> list[str]:
    """--grades: `all`, or grade names separated by spaces or commas."""
    words = [w for w in re.split(r"[\s,]+", text) if w]
    if words == ["all"]:
        return list(GRADES)
    unknown = [w for w in words if w not in GRADES]
    if unknown or not words:
        raise SystemExit(f"changed_grades: unknown grade(s) {unknown or text!r}; give `all` or some of {GRADES}")
    return [g for g in GRADES if g in words]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="changed_grades", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the git repository (default: this one)")
    parser.add_argument("--base", default="", help="the commit before the push (github.event.before), or PR base")
    parser.add_argument("--head", default="HEAD", help="the pushed commit (default HEAD)")
    parser.add_argument("--default-branch", default="main", help="compared with when there is no usable base")
    parser.add_argument("--grades", default="", help="grade these instead (a manual run): `all` or names")
    parser.add_argument("--github-output", type=Path, help="append grades=<JSON list> to this file ($GITHUB_OUTPUT)")
    options = parser.parse_args(argv)
    if options.grades.strip():
        grades = requested(options.grades)
        print(f"grading the requested grades: {', '.join(grades)}", file=sys.stderr)
    else:
        paths, how = changed_paths(options.repo, options.base, options.head, options.default_branch)
        selected = grades_of(paths, options.repo)
        grades = list(selected)
        print(f"{how}: {len(paths)} changed file(s)", file=sys.stderr)
        for name, why in selected.items():
            print(f"  {name}: {', '.join(why[:5])}{' ...' if len(why) > 5 else ''}", file=sys.stderr)
        if not grades:
            print("  no grade's learner files changed: nothing to grade", file=sys.stderr)
    listed = json.dumps(grades)
    print(listed)
    if options.github_output:
        with options.github_output.open("a", encoding="utf-8") as output:
            output.write(f"grades={listed}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
