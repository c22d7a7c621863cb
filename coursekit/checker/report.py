"""The checker's report: a table a learner can act on, and one verdict line last.

The last line starts with exactly one of four words, so scripts, CI and the
learner read the same thing:

=============  =====  =====================================================
verdict        exit   meaning
=============  =====  =====================================================
DONE           0      every check passed, none is waiting
NOT DONE       1      at least one check failed
WAIT           3      nothing failed, but some check cannot be decided yet
CANNOT CHECK   2      the stack is unreachable, no DAG ran, or a config broke
=============  =====  =====================================================
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from coursekit.checker.checks import CANNOT, FAIL, PASS, WAIT, CheckResult

EXIT_CODES = {"DONE": 0, "NOT DONE": 1, "CANNOT CHECK": 2, "WAIT": 3}
MARKS = {PASS: "[green]PASS[/green]", FAIL: "[red]FAIL[/red]", WAIT: "[yellow]WAIT[/yellow]"}
MARKS[CANNOT] = "[red]CANNOT[/red]"


def verdict(results: Sequence[CheckResult]) -> tuple[str, str]:
    """(DONE | NOT DONE | WAIT | CANNOT CHECK, a short explanation)."""
    cannot = [r for r in results if r.verdict == CANNOT]
    if cannot:  # nothing else can be trusted: e.g. which DAG is the load is unclear
        return "CANNOT CHECK", cannot[0].found
    failed = [r for r in results if r.verdict == FAIL]
    waiting = [r for r in results if r.verdict == WAIT]
    if failed:
        names = "; ".join(r.name for r in failed[:3]) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else "")
        return "NOT DONE", f"{len(failed)} of {len(results)} checks fail: {names}"
    if waiting:
        first = waiting[0]
        return "WAIT", (
            f"nothing failed, {len(waiting)} of {len(results)} checks cannot be decided yet"
            f" (e.g. {first.name}: {first.hint or first.found}); check again later, or run make check FAST=1"
        )
    return "DONE", f"all {len(results)} checks pass"


def print_report(grade: str, results: Sequence[CheckResult], console: Console | None = None) -> int:
    """Print the table and the verdict line; return the exit code."""
    console = console or Console(width=160)
    table = Table(title=f"{grade}: Definition of done", show_lines=False, expand=False)
    table.add_column("#", justify="right")
    table.add_column("Done?")
    table.add_column("Check")
    table.add_column("Expected")
    table.add_column("Found")
    table.add_column("Hint")
    for number, result in enumerate(results, start=1):
        table.add_row(
            str(number),
            MARKS[str(result.verdict)],
            f"{result.name}\n[dim]{result.item}[/dim]",
            result.expected,
            result.found,
            result.hint,
        )
    console.print(table)
    # One plain line per check, for scripts and CI logs.
    for result in results:
        console.print(f"{result.verdict}: {result.name}", markup=False, highlight=False, soft_wrap=True)
    word, why = verdict(results)
    print_verdict(word, why, console)
    return EXIT_CODES[word]


def print_verdict(word: str, why: str, console: Console) -> int:
    """The last line of every check, whatever happened."""
    console.print(f"{word}: {why}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_CODES[word]
