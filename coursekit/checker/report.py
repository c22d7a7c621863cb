"""The checker's report: a table a learner can act on, line by line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from coursekit.checker.checks import CheckResult


def print_report(grade: str, results: Sequence[CheckResult], console: Console | None = None) -> None:
    console = console or Console(width=160)
    table = Table(title=f"{grade}: Definition of done", show_lines=False, expand=False)
    table.add_column("#", justify="right")
    table.add_column("Done?")
    table.add_column("Check")
    table.add_column("Expected")
    table.add_column("Found")
    table.add_column("Hint")
    for number, result in enumerate(results, start=1):
        mark = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
        table.add_row(
            str(number), mark, f"{result.name}\n[dim]{result.item}[/dim]", result.expected, result.found, result.hint
        )
    console.print(table)
    passed = sum(r.passed for r in results)
    verdict = "[green]all done[/green]" if passed == len(results) else "[red]not done yet[/red]"
    console.print(f"{passed} of {len(results)} checks pass: {verdict}")
    # One plain line per check, for scripts and CI logs.
    for result in results:
        console.print(f"{'PASS' if result.passed else 'FAIL'}: {result.name}", markup=False, highlight=False)
