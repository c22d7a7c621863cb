"""Where every check is declared, once; the plans and the Definition of done are read from here.

A check is a function yielding report rows, declared by a decorator right above it:

    SHOPS = Line(
        "dds.<table> has rows of every shop",         # the report's name; <table> stands for each table
        item="rows from both shops",                  # the Definition-of-done item the row grades
        en="rows with `src_id` {shops} (each shop's `CITY_NAME`)",   # its Definition-of-done line, English
        ru="есть строки с `src_id` {shops_ru} (`CITY_NAME` каждого магазина)",  # ... and Russian
        hint="src_id must be the shop's CITY_NAME ...",   # what to do when it fails (a check may say more)
    )

    @check(SHOPS, order=30, grades=EVERY_GRADE)      # where it prints, which grades run it (modes: all)
    def check_shops_loaded(ctx: Context) -> Iterable[CheckResult]:
        ...
        yield SHOPS.result(verdict, expected, found, table=table.name)

Everything else is derived from the declarations:

* `plan(grade, mode)`: the checks a grade runs, in report order (`__main__.PLANS`, `wap_checks.g4_plan()`,
  the fast mode's and the load test's plan);
* `lines(grade, mode)`: the Definition-of-done lines `definition.py` writes into every grade's README
  (`make docs`), and from them the check counts `coursekit/docs/facts.py` quotes in the pages.

Adding a check is one declaration in one of CHECK_MODULES (plus, for a warehouse-contract rule, its SQL
in G0's `dwh/sql/contract.sql` and its name in `dwh/contract.py`), then `make docs`;
`tests/test_registry.py` proves it with a dummy check in a copy of the repository.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from coursekit.checker.context import Check, CheckResult
from coursekit.grade import GRADES

# The modules holding declarations, imported (in this order) before a plan is read.
CHECK_MODULES = (
    "coursekit.checker.load_checks",
    "coursekit.checker.history_checks",
    "coursekit.checker.wap_checks",
    "coursekit.checker.run_checks",
    "coursekit.checker.cleanup",
)
MODES = ("live", "fast", "loadtest")  # make check; make check FAST=1; the load test's verdict on G4
EVERY_GRADE = GRADES
GRADED_LOADS = tuple(g for g in GRADES if g != "G1_Intern")  # G1 is graded on its tables, shops and cleanup DAG
SCD2_LOADS = ("G0_Trainee", "G3_Middle", "G4_Senior")  # the loads that keep history (G2's overwrites rows)
WITHOUT_HISTORY = ("G2_Junior",)  # grades whose dds keeps one row per key, no eff_from_dttm/eff_to_dttm
# How many Definition-of-done rows a line stands for: one per table, per table the shops update, once,
# one per column with invalid values or per reference (G4's generator config), once if the shops write bad rows.
PER = ("table", "updated_table", "once", "invalid_column", "reference", "bad_tables")
PLACEHOLDERS = ("<table>", "<column>", "<parent>", "<bad>")


@dataclass(frozen=True)
class Line:
    """One row of the report (per table, column, ... as `per` says) and its line in the Definition of done.

    `report` is the report's name, with <table>, <column>, <parent> and <bad> standing for the real
    ones; `en` and `ru` may use the placeholders of `definition.Facts.words` ({shops}, {stable}, ...).
    `history` limits the line to grades whose warehouse keeps history (True) or does not (False).
    `rule` names the warehouse-contract rule (`dwh/contract.py`, `sql/contract.sql`) the line reports.
    """

    report: str
    item: str
    en: str
    ru: str
    hint: str = ""
    per: str = "table"
    history: bool | None = None
    rule: str = ""

    def name(self, table: str = "", column: str = "", parent: str = "", bad: str = "") -> str:
        """The report's name for one row: the placeholders filled in."""
        filled = self.report
        for placeholder, value in zip(PLACEHOLDERS, (table, column, parent, bad), strict=True):
            filled = filled.replace(placeholder, value)
        return filled

    def matches(self, name: str) -> bool:
        """Whether a report row's name is one this line stands for (any table, column, ...)."""
        pattern = re.escape(self.report)
        for placeholder in PLACEHOLDERS:
            pattern = pattern.replace(re.escape(placeholder), ".+")
        return re.fullmatch(pattern, name) is not None

    def result(
        self, verdict: bool | str, expected: str, found: str, hint: str | None = None, **names: str
    ) -> CheckResult:
        """One report row of this line; the hint is the declared one unless the check says more."""
        return CheckResult(self.item, self.name(**names), verdict, expected, found, self.hint if hint is None else hint)


@dataclass(frozen=True)
class Declaration:
    """A check: its function (None for rows another module makes), its lines, its place and its grades."""

    name: str
    function: Check | None
    lines: tuple[Line, ...]
    order: int
    grades: frozenset[str]
    modes: frozenset[str]


_DECLARED: dict[str, Declaration] = {}


def declare(
    name: str,
    *lines: Line,
    order: int,
    grades: Iterable[str],
    modes: Iterable[str] = MODES,
    function: Check | None = None,
) -> Declaration:
    """Register a check; a mistake in the declaration is an error here, not a silent gap in a plan."""
    declaration = Declaration(name, function, tuple(lines), order, frozenset(grades), frozenset(modes))
    problems = []
    if name in _DECLARED and _DECLARED[name].function is not function:
        problems.append(f"{name} is declared twice")
    if not lines:
        problems.append("it declares no line")
    problems += [f"unknown grade {g!r} (one of {', '.join(GRADES)})" for g in sorted(declaration.grades - set(GRADES))]
    problems += [f"unknown mode {m!r} (one of {', '.join(MODES)})" for m in sorted(declaration.modes - set(MODES))]
    problems += [f"unknown per={line.per!r} (one of {', '.join(PER)})" for line in lines if line.per not in PER]
    taken = [d.name for d in _DECLARED.values() if d.order == order and d.name != name]
    if taken:
        problems.append(f"order {order} is taken by {taken[0]}: every check has its own place in the report")
    if problems:
        raise ValueError(f"check {name}: " + "; ".join(problems))
    _DECLARED[name] = declaration
    return declaration


def check(*lines: Line, order: int, grades: Iterable[str], modes: Iterable[str] = MODES) -> Callable[[Check], Check]:
    """Decorator: declare the function below as a check with these lines (see the module's docstring)."""

    def register(function: Check) -> Check:
        declare(function.__name__, *lines, order=order, grades=grades, modes=modes, function=function)
        return function

    return register


def declarations() -> list[Declaration]:
    """Every declared check, in report order."""
    for module in CHECK_MODULES:
        importlib.import_module(module)
    return sorted(_DECLARED.values(), key=lambda d: d.order)


def history(grade: str) -> bool:
    """Whether the grade's warehouse keeps history (SCD2): its checks read eff_from_dttm and eff_to_dttm."""
    return grade not in WITHOUT_HISTORY


def applies(declaration: Declaration, grade: str, mode: str) -> bool:
    if grade not in GRADES or mode not in MODES:
        raise ValueError(f"unknown grade {grade!r} or mode {mode!r}")
    return grade in declaration.grades and mode in declaration.modes


def plan(grade: str, mode: str = "live") -> list[Check]:
    """The check functions a grade runs in a mode, in report order (rows another module makes excluded)."""
    return [d.function for d in declarations() if d.function is not None and applies(d, grade, mode)]


def lines(grade: str, mode: str = "fast") -> list[Line]:
    """Every line a grade's report can show in a mode, in report order: its Definition of done."""
    scd2 = history(grade)
    return [line for d in declarations() if applies(d, grade, mode) for line in d.lines if line.history in (None, scd2)]


def undeclared(grade: str, mode: str, results: Iterable[CheckResult]) -> list[str]:
    """The rows of a report that no line declared for the grade and mode stands for (a check's name or
    item drifted from its declaration); a CANNOT CHECK row, which says why nothing was graded, is no check."""
    declared = lines(grade, mode)
    return [
        f"{r.name} ({r.item})"
        for r in results
        if r.verdict != "CANNOT CHECK" and not any(line.item == r.item and line.matches(r.name) for line in declared)
    ]


def only_in(mode: str) -> list[Line]:
    """The lines of checks only this mode runs (the fast mode's own two)."""
    return [line for d in declarations() if d.modes == {mode} for line in d.lines]


# The fast mode's own rows: `fast.py` makes them (grade_variant) before the plan's, from what its
# scenario saw; declared here so that they have their place in the Definition of done.
# psycopg 3 (PostgresHook in provider 7.x): `with conn:` commits AND closes the connection, and
# `conn.transaction()` inside an implicit transaction is only a savepoint. G0's dwh/ does the first form.
ONE_TRANSACTION_HINT = (
    "do each table's whole merge in one transaction, so that a crash rolls back all of it: one"
    " `with conn.transaction():` block on an autocommit connection (as G0's dwh/merge.py does), or"
    " autocommit off and one conn.commit() at the end; statements committed one by one (autocommit without"
    " a transaction block) stick on their own. Not `with conn:`: in psycopg 3 it commits and closes the connection"
)
FAST_IMPORTS = Line(
    "every DAG file imports without errors",
    item="the DAG folder loads",
    en="every file of the graded DAG folder imports, as Airflow parses it",
    ru="каждый файл проверяемой папки DAG-ов импортируется так, как его разбирает Airflow",
    hint="open the file's import error in the Airflow UI (or run python on the file)",
    per="once",
)
FAST_KILLED = Line(
    "a run killed in the middle of its merge leaves no half-written table",
    item="loads are atomic",
    en="right after a run is killed at its first write to `dds` (a run with changed rows to load; where the"
    " shops never update rows, one with new rows), the warehouse still keeps its rules: one current version"
    " (or row) per key, and every row loaded before is still there",
    ru="сразу после того, как запуск убит на первой записи в `dds` (запуск, которому есть что обновить; где"
    " магазины никогда не меняют строки, запуск с новыми строками), хранилище всё ещё соблюдает свои правила:"
    " одна текущая версия (или строка) на ключ, и всё загруженное раньше на месте",
    hint=ONE_TRANSACTION_HINT,
    per="once",
)
declare("fast:imports", FAST_IMPORTS, order=1, grades=EVERY_GRADE, modes=("fast",))
declare("fast:killed", FAST_KILLED, order=2, grades=EVERY_GRADE, modes=("fast",))
