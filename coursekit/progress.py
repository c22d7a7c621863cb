"""`make progress`: where you are across the grades, from the checks you already ran.

Nothing is re-run: every `make check` keeps its JSON report under
`.run/reports/<grade>/` (coursekit/checker/results_json.py), and this reads
them. For each grade it shows the newest check of the grade's own DAG folder
(airflow_data/dags): its verdict, when, in which mode, and what is left (the
failing and waiting checks); and when that grade was last DONE. Checks of
another folder (SOLUTION=1, DAGS_DIR=...) are not your progress: they are
only counted in a note under the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from coursekit.checker.results_json import reports_dir
from coursekit.grade import GRADES, REPO_ROOT

COLOURS = {"DONE": "green", "NOT DONE": "red", "WAIT": "yellow", "CANNOT CHECK": "magenta"}
LEFT_SHOWN = 4  # check names listed in "what is left"; the rest are counted


@dataclass
class GradeProgress:
    grade: str
    last: dict[str, Any] | None  # the newest report of the grade's own DAG folder
    last_done: dict[str, Any] | None
    other_folders: int  # reports of other folders (SOLUTION=1, DAGS_DIR=...), not counted


def load_reports(folder: Path) -> list[dict[str, Any]]:
    """Every readable report in folder (latest.json is a copy of one of them); unreadable ones are skipped."""
    reports = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "latest.json":
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print(f"make progress: skipping {path}: not a readable report", file=sys.stderr)
            continue
        if isinstance(report, dict) and {"verdict", "started_at", "grade"} <= report.keys():
            reports.append(report)
    return sorted(reports, key=lambda r: r["started_at"])


def progress(reports_root: Path) -> list[GradeProgress]:
    rows = []
    for grade in GRADES:
        reports = load_reports(reports_root / grade)
        own = [r for r in reports if r.get("own_dags_dir") is not False]
        done = [r for r in own if r["verdict"] == "DONE"]
        rows.append(GradeProgress(grade, own[-1] if own else None, done[-1] if done else None, len(reports) - len(own)))
    return rows


def when(stamp: str, now: datetime) -> str:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    minutes = int((now - moment).total_seconds() // 60)
    ago = (
        "just now"
        if minutes < 1
        else f"{minutes} min ago"
        if minutes < 120
        else f"{minutes // 60} h ago"
        if minutes < 48 * 60
        else f"{minutes // 1440} days ago"
    )
    return f"{moment:%Y-%m-%d %H:%M} UTC ({ago})"


def left(report: dict[str, Any]) -> str:
    """What is left to do: the failing checks, then the waiting ones; the reason when nothing was checked."""
    if report["verdict"] == "DONE":
        return "nothing"
    if report["verdict"] == "CANNOT CHECK":
        return report.get("summary", "")
    checks = report.get("checks", [])
    parts = []
    for status, label in (("cannot", "cannot run"), ("fail", "fails"), ("wait", "waits")):
        names = [c["name"] for c in checks if c.get("status") == status]
        if names:
            more = f" and {len(names) - LEFT_SHOWN} more" if len(names) > LEFT_SHOWN else ""
            parts.append(f"{label}: " + "; ".join(names[:LEFT_SHOWN]) + more)
    return "\n".join(parts) or report.get("summary", "")


def render(rows: list[GradeProgress], console: Console, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    table = Table(title="Your progress (from the checks you ran; nothing is re-run)", show_lines=True)
    for column in ("Grade", "Last verdict", "When", "Mode", "What is left", "Last DONE"):
        table.add_column(column)
    for row in rows:
        if row.last is None:
            table.add_row(row.grade, "[dim]never checked[/dim]", "", "", f"make check GRADE={row.grade} FAST=1", "")
            continue
        word = row.last["verdict"]
        table.add_row(
            row.grade,
            f"[{COLOURS.get(word, 'white')}]{word}[/]",
            when(row.last["started_at"], now),
            row.last.get("mode", "?"),
            left(row.last),
            when(row.last_done["started_at"], now) if row.last_done else "never",
        )
    console.print(table)
    for row in rows:
        if row.other_folders:
            console.print(
                f"{row.grade}: {row.other_folders} check(s) of another DAG folder (SOLUTION=1 or DAGS_DIR) not counted",
                highlight=False,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make progress", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reports-dir",
        type=Path,
        default=reports_dir(REPO_ROOT),
        help="where make check keeps its reports (default: $COURSEKIT_REPORTS_DIR, else .run/reports)",
    )
    options = parser.parse_args(argv)
    render(progress(options.reports_dir), Console(width=160))
    return 0


if __name__ == "__main__":
    sys.exit(main())
