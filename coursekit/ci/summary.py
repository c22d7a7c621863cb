"""A `make check` JSON report as Markdown: the job summary of a learner's fork (check.yml).

`python -m coursekit.ci.summary report.json [...]` prints one section per report:
the verdict line, what was graded, and the table of checks (failing first, then
waiting, then passing), as GitHub renders Markdown in $GITHUB_STEP_SUMMARY.
Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ICONS = {"DONE": "✅", "NOT DONE": "❌", "WAIT": "⏳", "CANNOT CHECK": "⚠️"}
STATUS = {"cannot": "⚠️ CANNOT", "fail": "❌ FAIL", "wait": "⏳ WAIT", "pass": "✅ PASS"}
ORDER = {status: number for number, status in enumerate(STATUS)}


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: pipes escaped, lines joined with <br>."""
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return "<br>".join(line.strip() for line in escaped.splitlines()) or " "


def shown(status: str, counts: dict[str, int]) -> bool:
    """pass, fail and wait always; cannot (a check the checker could not run) only when there is one."""
    return status != "cannot" or counts.get(status, 0) > 0


def render(report: dict[str, Any]) -> str:
    word = report["verdict"]
    counts = report.get("counts", {})
    lines = [
        f"## {ICONS.get(word, '')} {report['grade']}: {word}",
        "",
        f"**{word}**: {cell(report.get('summary', ''))}",
        "",
        f"- mode: `{report['mode']}`; started {report['started_at']}, took {report['duration_sec']:.0f} s",
        f"- DAG folder: `{report.get('dags_dir') or 'unknown'}`; load DAG: `{report.get('load_dag') or 'none found'}`",
        "- checks: "
        + ", ".join(
            f"{counts.get(s, 0)} {s}" for s in ("pass", "fail", "wait", "cannot") if counts.get(s) or s != "cannot"
        ),
        "",
    ]
    checks = sorted(report.get("checks", []), key=lambda c: ORDER.get(c["status"], 3))
    if checks:
        lines += ["| Status | Check | Expected | Found | Hint |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {STATUS.get(c['status'], c['status'])} | {cell(c['name'])} | {cell(c['expected'])}"
            f" | {cell(c['found'])} | {cell(c['hint'])} |"
            for c in checks
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m coursekit.ci.summary REPORT.json [...]", file=sys.stderr)
        return 2
    for path in paths:
        print(render(json.loads(path.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
