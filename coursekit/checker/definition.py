"""Each grade's "Definition of done", written from the checks' own declarations.

A hand-written list drifts from what `make check` really runs (G3's README once
promised 33 checks while the checker printed 49). So the list in every grade's
README.md and README_ru.md, between the markers below, is generated here from
the declarations the checker's plans are read from (`registry.py`): one checkbox
line per check the checker runs, in the order it runs them, opening with the
name the report prints, in the words its declaration gives in each language.
`tests/test_definition.py` fails when a README's block is stale:

    python -m coursekit.checker.definition            # print every grade's list
    python -m coursekit.checker.definition --write    # rewrite the README blocks
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from coursekit.checker import checks, registry
from coursekit.checker.stack import GradeStack
from coursekit.grade import GRADES, REPO_ROOT, Grade

START = "<!-- definition-of-done:start -->"
END = "<!-- definition-of-done:end -->"
LANGUAGES = {"en": "README.md", "ru": "README_ru.md"}
# The report names of the rows only the fast mode makes (fast/grading.py's grade_variant, before the plan's).
FAST_ONLY = tuple(line.report for line in registry.only_in("fast"))


@dataclass(frozen=True)
class Facts:
    """What a grade's lines need to say: its tables, shops and windows, read the way the checker reads them."""

    grade: str
    scd2: bool
    tables: list[str]
    keys: list[str]
    updated: list[str]
    shops: list[str]
    update_window: int
    delete_after: int
    invalid: list[tuple[str, str, list]]  # (table, column, bad values)
    references: list[tuple[str, str, str]]  # (table, column, parent)
    bad_rows: bool  # the shops are told to write invalid values or late references (G4's config)

    @classmethod
    def of(cls, grade_name: str, root: Path = REPO_ROOT) -> Facts:
        grade = Grade.named(grade_name, root)
        stack = GradeStack(grade)
        config = json.loads(grade.generator_config.read_text(encoding="utf-8"))
        names = [t.name for t in stack.tables]
        invalid, references = [], []
        for table in names:
            for column, spec in config["tables"][table]["columns"].items():
                if spec.get("invalid_values"):
                    invalid.append((table, column, spec["invalid_values"]))
                if spec.get("references") in names:
                    references.append((table, column, spec["references"]))
        return cls(
            grade=grade_name,
            scd2=registry.history(grade_name),
            tables=names,
            keys=[t.key for t in stack.tables],
            updated=[t.name for t in stack.tables if t.updates],
            shops=[s.src_id for s in stack.shops],
            update_window=max(s.update_window_sec for s in stack.shops),
            delete_after=max(s.delete_after_sec for s in stack.shops),
            invalid=invalid,
            references=references,
            bad_rows=any(
                c.get("invalid_share") or c.get("late_share")
                for spec in config["tables"].values()
                for c in spec["columns"].values()
            ),
        )

    def words(self) -> dict[str, str]:
        """The placeholders of the declared lines' texts (registry.Line.en and .ru), in both languages."""
        slack, stable = checks.COMMIT_SLACK_SEC, self.update_window + checks.COMMIT_SLACK_SEC
        history = self.update_window + checks.HISTORY_MARGIN_SEC
        delete_wait = self.delete_after + 120  # check_deleted_rows_kept waits 120 s past the retention
        updated_all = self.updated == self.tables
        return {
            "keys": ", ".join(f"`{k}`" for k in self.keys),
            "technical": ", `src_id`, `eff_from_dttm` and `eff_to_dttm`" if self.scd2 else " and `src_id`",
            "technical_ru": ", `src_id`, `eff_from_dttm` и `eff_to_dttm`" if self.scd2 else " и `src_id`",
            "shops": _join([f"`{s}`" for s in self.shops], "and"),
            "shops_ru": _join([f"`{s}`" for s in self.shops], "и"),
            "tables": _join([f"`{t}`" for t in self.tables], "and"),
            "tables_ru": _join([f"`{t}`" for t in self.tables], "и"),
            "open_end": checks.OPEN_END,
            "slack": str(checks.COMMIT_SLACK_SEC),
            "stable": f"`UPDATE_NOT_OLDER_THAN_SEC` + {slack} s = {stable} s" if self.update_window else f"{slack} s",
            "stable_ru": f"`UPDATE_NOT_OLDER_THAN_SEC` + {slack} с = {stable} с"
            if self.update_window
            else f"{slack} с",
            "current": "the current version" if self.scd2 else "the row",
            "current_ru": "текущая версия" if self.scd2 else "строка",
            "current_rows": "current versions" if self.scd2 else "the rows",
            "current_rows_ru": "текущих версий" if self.scd2 else "строк",
            "history_margin": str(checks.HISTORY_MARGIN_SEC),
            "history": f"{history} s ({history / 60:g} min)",
            "history_ru": f"{history} с ({history / 60:g} мин)",
            "updated_tables": "" if updated_all else f" (for {_join([f'`{t}`' for t in self.updated], 'and')})",
            "updated_tables_ru": "" if updated_all else f" (для {_join([f'`{t}`' for t in self.updated], 'и')})",
            "delete": f"{self.delete_after} s ({self.delete_after / 3600:g} h)",
            "delete_ru": f"{self.delete_after} с ({self.delete_after / 3600:g} ч)",
            "delete_wait": _duration(delete_wait, "h", "min"),
            "delete_wait_ru": _duration(delete_wait, "ч", "мин"),
        }


def _join(items: list[str], conjunction: str) -> str:
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _duration(seconds: int, hours: str, minutes: str) -> str:
    whole, rest = divmod(seconds, 3600)
    return f"{whole} {hours} {rest // 60} {minutes}" if rest else f"{whole} {hours}"


@dataclass(frozen=True)
class Rendered:
    """One line as it goes into a README, and how many report rows it stands for on a finished grade."""

    report: str
    en: str
    ru: str
    rows: int


def lines(grade: str, root: Path = REPO_ROOT, mode: str = "fast") -> list[Rendered]:
    """The grade's Definition of done, in report order: the fast mode's own checks first, then the plan's.

    `mode="live"` leaves out what only the fast mode checks; each Rendered says how many report rows it is.
    """
    facts = Facts.of(grade, root)
    words = facts.words()
    out: list[Rendered] = []
    for line in registry.lines(grade, mode):
        en, ru = line.en.format(**words), line.ru.format(**words)
        if line.per == "invalid_column":
            out += [
                Rendered(line.name(t, c, bad=str(bad)), _fill(en, t, c), _fill(ru, t, c), 1)
                for t, c, bad in facts.invalid
            ]
        elif line.per == "reference":
            out += [
                Rendered(line.name(t, c, p), _fill(en, t, c, p), _fill(ru, t, c, p), 1) for t, c, p in facts.references
            ]
        else:
            rows = {
                "table": len(facts.tables),
                "updated_table": len(facts.updated) if facts.update_window else 0,
                "bad_tables": 1 if facts.bad_rows else 0,
                "once": 1,
            }[line.per]
            if rows:
                out.append(Rendered(line.report, en, ru, rows))
    return out


def counts(grade: str, root: Path = REPO_ROOT) -> dict[str, int]:
    """mode -> how many checks a finished grade prints: live, and with FAST=1 (the docs quote both)."""
    return {mode: sum(r.rows for r in lines(grade, root, mode)) for mode in ("live", "fast")}


def _fill(text: str, table: str, column: str, parent: str = "") -> str:
    return text.replace("<table>", table).replace("<column>", column).replace("<parent>", parent)


def block(grade: str, language: str, root: Path = REPO_ROOT) -> str:
    """The Markdown between the markers: a sentence on how to read the list, then one checkbox per check."""
    rendered = lines(grade, root)
    live, fast = counts(grade, root).values()
    facts = Facts.of(grade, root)
    words = facts.words()
    quarantine = any(r.report.startswith("quarantine.<table>") for r in rendered)
    also_en, also_ru = (" (or `quarantine.<table>`)", " (или `quarantine.<table>`)") if quarantine else ("", "")
    if language == "en":
        intro = (
            f"`make check GRADE={grade}` runs exactly these checks, in this order. Each line starts with the"
            f" check's name in the report; a name with `dds.<table>`{also_en} is checked once"
            f" for each of {words['tables']}. A finished grade prints {live} checks live and {fast} with"
            f" `FAST=1`, whose first {len(FAST_ONLY)} checks only the fast mode can run."
        )
    else:
        intro = (
            f"`make check GRADE={grade}` выполняет ровно эти проверки, в этом порядке. Каждая строка начинается"
            f" с имени проверки в отчёте; имя с `dds.<table>`{also_ru} проверяется для каждой"
            f" из таблиц {words['tables_ru']}. У сданного грейда вживую {live} проверок, а с `FAST=1` — {fast}:"
            f" первые {len(FAST_ONLY)} проверки делает только быстрый режим."
        )
    only = {"en": " (only with `FAST=1`)", "ru": " (только с `FAST=1`)"}[language]
    fast_only = set(FAST_ONLY)
    body = [
        _wrap(f"- [ ] `{r.report}`{only if r.report in fast_only else ''}: {getattr(r, language)}") for r in rendered
    ]
    return "\n".join([START, "", _wrap(intro, indent=""), "", *body, "", END])


def _wrap(text: str, indent: str = "      ") -> str:
    """Wrap at 80 columns as the hand-written READMEs do; a continuation lines up under the checkbox's text."""
    return textwrap.fill(text, width=80, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


MARKED = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)


def readme_blocks(root: Path = REPO_ROOT) -> Iterator[tuple[Path, str, str]]:
    """(README path, its current text, its text with a fresh block) for every grade and language."""
    for grade in GRADES:
        for language, name in LANGUAGES.items():
            path = root / grade / name
            text = path.read_text(encoding="utf-8")
            if len(MARKED.findall(text)) != 1:
                raise ValueError(f"{path}: needs exactly one {START} ... {END} block in its Definition of done")
            fresh = MARKED.sub(lambda _, g=grade, lang=language: block(g, lang, root), text)
            yield path, text, fresh


def stale(root: Path = REPO_ROOT) -> list[Path]:
    """READMEs whose block differs from what the checker runs."""
    return [path for path, text, fresh in readme_blocks(root) if text != fresh]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.checker.definition", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the blocks in every grade's README")
    parser.add_argument("--check", action="store_true", help="exit 1 if a README block is stale")
    parser.add_argument("--grade", choices=GRADES, help="print this grade's list only")
    parser.add_argument("--language", choices=list(LANGUAGES), default="en")
    options = parser.parse_args(argv)
    if options.write:
        for path, text, fresh in readme_blocks():
            if text != fresh:
                path.write_text(fresh, encoding="utf-8")
                print(f"rewrote {path.relative_to(REPO_ROOT)}")
        return 0
    if options.check:
        paths = stale()
        for path in paths:
            print(f"{path.relative_to(REPO_ROOT)}: stale; run python -m coursekit.checker.definition --write")
        return 1 if paths else 0
    for grade in [options.grade] if options.grade else GRADES:
        print(f"## {grade}\n\n{block(grade, options.language)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
