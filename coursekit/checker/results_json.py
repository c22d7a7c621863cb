"""The checker's report as JSON: `make check ... JSON=report.json` (or ARGS="--json PATH").

The terminal report is for the learner; this file is for programs: the CI job
summary of a learner's fork (`coursekit.ci`), `make progress`, a mentor's
script. Its shape is `report.schema.json` beside this module (JSON Schema,
draft 2020-12), versioned by `schema_version`: a field is only ever added;
renaming or removing one, or changing what it means, raises the version.

Every check also keeps its report under `.run/reports/<grade>/` (one file per
check, named by its start time, and `latest.json`), so that `make progress`
can show where a learner is without re-running anything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coursekit.checker.checks import CheckResult
from coursekit.checker.report import EXIT_CODES, verdict
from coursekit.grade import SHOPS, Grade

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
KEEP_PER_GRADE = 100  # older reports of a grade are removed; each is a few KB
REPORTS_ENV = "COURSEKIT_REPORTS_DIR"
# A check's verdict -> its status in the report; "CANNOT CHECK" marks a row the checker could not run
# (e.g. it cannot tell which DAG is the load), which makes the verdict CANNOT CHECK.
STATUSES = {"PASS": "pass", "FAIL": "fail", "WAIT": "wait", "CANNOT CHECK": "cannot"}

# The load DAG each mode chose, by DAG folder name ("yours" in a fast check); None: none was found.
LOAD_DAGS: dict[str, str | None] = {}


def note_load_dag(dag_id: str | None, folder: str = "yours") -> None:
    """Called where the checker picks the load DAG, so that the report can name it."""
    LOAD_DAGS[folder] = dag_id


def reports_dir(grades_root: Path) -> Path:
    """Where reports are kept: $COURSEKIT_REPORTS_DIR, else `.run/reports` next to the grade folders."""
    return Path(os.environ.get(REPORTS_ENV) or grades_root / ".run" / "reports")


def src_ids(grade: Grade) -> list[str]:
    """The shops' names as the warehouse's src_id has them (CITY_NAME), to find example keys."""
    try:
        return [grade.generator_env(shop)["CITY_NAME"] for shop in SHOPS]
    except (OSError, KeyError, ValueError):
        return []


def example_keys(found: str, sources: Sequence[str]) -> list[str]:
    """The rows a check names as `src_id:key` in its `found` text, in order, without repeats."""
    if not sources:
        return []
    alternatives = "|".join(re.escape(s) for s in sorted(sources, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w-])(?:{alternatives}):[^\s,;]+")
    return list(dict.fromkeys(match.rstrip(".)") for match in pattern.findall(found)))


def check_record(result: CheckResult, sources: Sequence[str]) -> dict[str, Any]:
    return {
        "item": result.item,
        "name": result.name,
        "status": STATUSES.get(str(result.verdict), str(result.verdict).lower()),
        "expected": result.expected,
        "found": result.found,
        "hint": result.hint,
        "example_keys": example_keys(result.found, sources),
    }


def _commit(folder: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _shown(path: Path | None, root: Path) -> str | None:
    """A folder as the learner knows it: relative to the repository when inside it."""
    if path is None:
        return None
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def build(
    *,
    grade: Grade,
    mode: str,
    results: Sequence[CheckResult],
    exit_code: int,
    why: str | None,
    started_at: datetime,
    duration_sec: float,
    dags_dir: Path | None,
    load_dag: str | None,
) -> dict[str, Any]:
    """One report; `why` is the verdict line's explanation (computed from the results when None)."""
    word = next(w for w, code in EXIT_CODES.items() if code == exit_code)
    if why is None:
        why = verdict(results)[1]
    root = grade.path.parent
    sources = src_ids(grade)
    records = [check_record(r, sources) for r in results]
    own = None if dags_dir is None else dags_dir.resolve() == grade.dags_dir.resolve()
    return {
        "schema_version": SCHEMA_VERSION,
        "grade": grade.name,
        "mode": mode,
        "verdict": word,
        "summary": why,
        "exit_code": exit_code,
        "started_at": started_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "duration_sec": round(duration_sec, 1),
        "dags_dir": _shown(dags_dir, root),
        "own_dags_dir": own,
        "load_dag": load_dag,
        "commit": _commit(root),
        "counts": {status: sum(r["status"] == status for r in records) for status in STATUSES.values()},
        "checks": records,
    }


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)


def keep(report: dict[str, Any], folder: Path) -> Path:
    """Store a report under folder/<grade>/ by its start time, as latest.json too; prune the oldest."""
    grade_dir = folder / report["grade"]
    stamp = report["started_at"].replace("-", "").replace(":", "")
    path = grade_dir / f"{stamp}-{report['mode']}.json"
    write(report, path)
    write(report, grade_dir / "latest.json")
    kept = sorted(p for p in grade_dir.glob("*.json") if p.name != "latest.json")
    for old in kept[:-KEEP_PER_GRADE]:
        old.unlink(missing_ok=True)
    return path


class Recorder:
    """Times one `make check` and, at its end, writes the JSON report (--json) and keeps a copy.

    The verdict line stays the last line of stdout: a report that cannot be written is
    said on stderr, and the exit code stays the verdict's.
    """

    def __init__(self, json_path: Path | None, keep_dir: Path | None) -> None:
        self.json_path = json_path
        self.keep_dir = keep_dir
        self.started_at = datetime.now(UTC)
        self._clock = time.monotonic()

    def finish(
        self,
        exit_code: int,
        *,
        grade_name: str,
        grades_root: Path,
        fast: bool,
        dags_dir: Path | None,
        results: Sequence[CheckResult] = (),
        why: str | None = None,
    ) -> int:
        if self.json_path is None and self.keep_dir is None:
            return exit_code
        try:
            grade = Grade.named(grade_name, grades_root)
            if dags_dir is None:  # the grade's default in both modes: DAGS_DIR as compose resolves it
                dags_dir = _default_dags_dir(grade)
            report = build(
                grade=grade,
                mode="fast" if fast else "live",
                results=results,
                exit_code=exit_code,
                why=why,
                started_at=self.started_at,
                duration_sec=time.monotonic() - self._clock,
                dags_dir=dags_dir,
                load_dag=LOAD_DAGS.get("yours"),
            )
            if self.json_path is not None:
                write(report, self.json_path)
            if self.keep_dir is not None:
                keep(report, self.keep_dir)
        except OSError as exc:
            print(f"make check: the JSON report could not be written: {exc}", file=sys.stderr)
        return exit_code


def _default_dags_dir(grade: Grade) -> Path | None:
    """The folder a running stack serves (DAGS_DIR as compose resolves it); None if the config is broken."""
    from coursekit.checker.stack import GradeStack

    try:
        return GradeStack(grade).dags_dir
    except (OSError, ValueError, KeyError):
        return None
