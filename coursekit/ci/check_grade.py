"""One grade of a learner's fork graded on GitHub: what each job of check.yml runs.

`python -m coursekit.ci.check_grade --grade G3_Middle --json .run/ci/G3_Middle.json`

1. runs `make check GRADE=<grade> FAST=1 ARGS="--json <path>"`, its output streamed to the log;
2. appends the report as Markdown (coursekit.ci.summary) to $GITHUB_STEP_SUMMARY (--summary);
3. exits 1 on NOT DONE or CANNOT CHECK, 0 on DONE or WAIT: WAIT means nothing failed but some
   check cannot be decided yet, which is not the learner's mistake.

If the checker ends without a report (it crashed), the summary says so with the end of its
output, and the job fails as CANNOT CHECK. Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import json
import shlex
import subprocess
import sys
from pathlib import Path

from coursekit.ci.summary import render
from coursekit.grade import GRADES, REPO_ROOT

FAILING = ("NOT DONE", "CANNOT CHECK")
TAIL_LINES = 30


def job_fails(verdict: str) -> bool:
    """The job's status: only a verdict that asks the learner to act fails it."""
    return verdict in FAILING


def run_check(grade: str, json_path: Path, extra: str) -> tuple[int, list[str]]:
    """`make check` in the repository; returns its exit code and the last lines it printed."""
    args = f"--json {shlex.quote(str(json_path.resolve()))} {extra}".strip()
    command = ["make", "--no-print-directory", "check", f"GRADE={grade}", "FAST=1", f"ARGS={args}"]
    print("$ " + shlex.join(command), flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip("\n"))
    sys.stdout.flush()
    return process.returncode, list(tail)


def crashed(grade: str, code: int, tail: list[str]) -> str:
    """The summary when no report was written."""
    shown = "\n".join(tail) or "(no output)"
    return (
        f"## ⚠️ {grade}: CANNOT CHECK\n\n`make check` exited {code} without writing its JSON report;"
        f" the end of its output:\n\n```\n{shown}\n```\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_grade", description=__doc__.splitlines()[0])
    parser.add_argument("--grade", required=True, choices=GRADES)
    parser.add_argument("--json", type=Path, required=True, help="where the checker writes its JSON report")
    parser.add_argument("--summary", type=Path, help="append the Markdown here ($GITHUB_STEP_SUMMARY)")
    parser.add_argument("--checker-args", default="", help="more arguments for the checker (tests use --dags-dir)")
    options = parser.parse_args(argv)
    options.json.unlink(missing_ok=True)  # a report left from before must not stand for this run
    code, tail = run_check(options.grade, options.json, options.checker_args)
    try:
        report = json.loads(options.json.read_text(encoding="utf-8"))
        markdown, verdict = render(report), report["verdict"]
    except (OSError, ValueError, KeyError):
        markdown, verdict = crashed(options.grade, code, tail), "CANNOT CHECK"
    if options.summary:
        with options.summary.open("a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")
    else:
        print(markdown)
    fails = job_fails(verdict)
    print(f"check_grade: {options.grade}: {verdict}; the job {'fails' if fails else 'passes'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
