"""The headline figures of a load-test report, read back from its report.md.

The G4 README quotes the committed report (images/loadtest-report.md) through
`measured.loadtest_*` facts. Publishing a report (`python -m coursekit.docs.images
--loadtest-only`) records them from this reader, and tests/test_facts.py holds
measured.json to the committed report, so the README cannot quote another run.
They are read from the Markdown because it is the one file every published
report has, the committed one included.
"""

from __future__ import annotations

import re

# the measured.json keys a report can give (the failed step's and the ceiling's only when it has them)
KEYS = (
    "loadtest_kept_rate",
    "loadtest_kept_p95_sec",
    "loadtest_kept_run_sec",
    "loadtest_kept_inserted_per_shop",
    "loadtest_failed_rate",
    "loadtest_failed_p95_sec",
    "loadtest_failed_run_sec",
    "loadtest_failed_inserted_per_shop",
    "loadtest_ceiling_rate",
    "loadtest_ceiling_copy_rows_per_sec",
)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(report: str, header_start: str) -> dict[int, dict[str, str]]:
    """rate -> {column: cell} of the Markdown table whose header starts with `header_start`."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header_start)), None)
    if start is None:
        raise ValueError(f"the report has no table starting {header_start!r}")
    header = _cells(lines[start])
    rows: dict[int, dict[str, str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        if cells[0].isdigit():  # a step's row; the breakdown also has one for the drain
            rows[int(cells[0])] = dict(zip(header, cells, strict=True))
    return rows


def started(report: str) -> str:
    """'2026-12-03 16:49:42 UTC, natively, ...': when and how the run was made."""
    found = re.search(r"^Started (.+?)\. ", report, re.MULTILINE)
    if not found:
        raise ValueError("not a load-test report: no 'Started ...' line")
    return found.group(1)


def load_before(report: str) -> str | None:
    """The machine's load average before the run, as the report's Machine section gives it."""
    found = re.search(r"^- load average before the test \(1, 5, 15 min\): (.+)$", report, re.MULTILINE)
    return found.group(1) if found else None


def read_figures(report: str) -> dict[str, int]:
    """The figures the docs quote: the knee (kept and failed step), and the machine's ceiling if it was measured."""
    kept = re.search(r"Highest rate that kept up .*?\*\*(\d+) inserts/s per shop\*\*", report)
    failed = re.search(r"First rate that did not keep up: \*\*(\d+) inserts/s per shop\*\*", report)
    if not kept:
        raise ValueError("the report names no rate that kept up")
    steps = _table(report, "| rate (inserts/s/shop) |")
    runs = _table(report, "| step (rate) | runs | run duration (s) |")
    rate = int(kept.group(1))
    figures = {
        "loadtest_kept_rate": rate,
        "loadtest_kept_p95_sec": round(_number(steps[rate]["p95 (s)"])),
        "loadtest_kept_run_sec": round(_number(runs[rate]["run duration (s)"])),
        "loadtest_kept_inserted_per_shop": round(_number(steps[rate]["inserted/s (both shops)"]) / 2),
    }
    if failed:
        rate = int(failed.group(1))
        figures |= {
            "loadtest_failed_rate": rate,
            "loadtest_failed_p95_sec": round(_number(steps[rate]["p95 (s)"])),
            "loadtest_failed_run_sec": round(_number(runs[rate]["run duration (s)"])),
            "loadtest_failed_inserted_per_shop": round(_number(steps[rate]["inserted/s (both shops)"]) / 2),
        }
    ceiling = re.search(r"sustained ([\d,]+) inserts/s per shop.*? at ([\d,]+) rows/s", report)
    if ceiling:
        figures["loadtest_ceiling_rate"] = round(_number(ceiling.group(1)))
        figures["loadtest_ceiling_copy_rows_per_sec"] = round(_number(ceiling.group(2)))
    return figures
