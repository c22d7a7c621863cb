"""Each grade's "Definition of done", written from the checker's own plan.

A hand-written list drifts from what `make check` really runs (G3's README once
promised 33 checks while the checker printed 49). So the list in every grade's
README.md and README_ru.md, between the markers below, is generated here from
`PLANS` in `coursekit/checker/__main__.py`: one checkbox line per check the
checker runs, in the order it runs them, opening with the name the report
prints. `tests/test_definition.py` fails when a plan's check has no line here,
when a line here belongs to no plan, or when a README's block is stale:

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

from coursekit.checker import checks, wap_checks
from coursekit.checker.__main__ import PLANS
from coursekit.checker.stack import GradeStack
from coursekit.grade import GRADES, REPO_ROOT, Grade

START = "<!-- definition-of-done:start -->"
END = "<!-- definition-of-done:end -->"
LANGUAGES = {"en": "README.md", "ru": "README_ru.md"}
FAST_ONLY = ("fast:imports", "fast:killed")  # grade_variant in fast.py adds these rows before the plan's


@dataclass(frozen=True)
class Line:
    """One line of the Definition of done: the report's name for the check, and what it means."""

    report: str  # the check's name in the report; <table>, <column>, <parent>, <bad> stand for the real ones
    en: str
    ru: str
    per: str = "table"  # table | updated_table | once | invalid_column | reference | bad_tables


# Keyed by the check function's name; "function:part" where one function reports several checks.
LINES: dict[str, Line] = {
    "fast:imports": Line(
        "every DAG file imports without errors",
        "every file of the graded DAG folder imports, as Airflow parses it",
        "каждый файл проверяемой папки DAG-ов импортируется так, как его разбирает Airflow",
        per="once",
    ),
    "fast:killed": Line(
        "a run killed in the middle of its merge leaves no half-written table",
        "right after a run is killed at its first write to `dds` (a run with changed rows to load; where the"
        " shops never update rows, one with new rows), the warehouse still keeps its rules: one current version"
        " (or row) per key, and every row loaded before is still there",
        "сразу после того, как запуск убит на первой записи в `dds` (запуск, которому есть что обновить; где"
        " магазины никогда не меняют строки, запуск с новыми строками), хранилище всё ещё соблюдает свои правила:"
        " одна текущая версия (или строка) на ключ, и всё загруженное раньше на месте",
        per="once",
    ),
    "check_tables_exist": Line(
        "dds.<table> exists",
        "the table is in `pg-dwh` with its key ({keys}){technical}",
        "таблица есть в `pg-dwh`, в ней есть ключ ({keys}){technical_ru}",
    ),
    "check_column_types": Line(
        "dds.<table>: every source column, with the source's type",
        "every column of the shop's table is in `dds`, with a type that holds the same values: `numeric(10,2)`"
        " stays `numeric(10,2)` (or plain `numeric`), `timestamptz` stays `timestamptz`; `varchar` and `text`"
        " are interchangeable, and the key may be `integer` or `bigint`",
        "каждая колонка таблицы магазина есть в `dds`, и её тип хранит те же значения: `numeric(10,2)` остаётся"
        " `numeric(10,2)` (или просто `numeric`), `timestamptz` остаётся `timestamptz`; `varchar` и `text`"
        " взаимозаменяемы, ключ может быть `integer` или `bigint`",
    ),
    "check_shops_loaded": Line(
        "dds.<table> has rows of every shop",
        "rows with `src_id` {shops} (each shop's `CITY_NAME`)",
        "есть строки с `src_id` {shops_ru} (`CITY_NAME` каждого магазина)",
    ),
    "check_unique_keys:scd2": Line(
        "dds.<table>: exactly one current version per key",
        "every key and `src_id` has exactly one version with `eff_to_dttm = '{open_end}'`",
        "у каждого ключа и `src_id` ровно одна версия с `eff_to_dttm = '{open_end}'`",
    ),
    "check_unique_keys:no_history": Line(
        "dds.<table>: no duplicate keys",
        "one row per key and `src_id`",
        "одна строка на ключ и `src_id`",
    ),
    "check_against_source:loaded": Line(
        "dds.<table>: every source row is loaded",
        "every row a shop created more than {slack} s before the graded run started is in `dds` with that"
        " shop's `src_id` (with `FAST=1`: every row the shops hold at the end)",
        "каждая строка, созданная магазином больше чем за {slack} с до начала проверяемого запуска, есть в `dds`"
        " с `src_id` этого магазина (с `FAST=1`: каждая строка, которая есть в магазинах в конце)",
    ),
    "check_against_source:values": Line(
        "dds.<table>: current values equal the source",
        "for every row created more than {stable} before the graded run started, {current} has the source's value"
        " in every column `dds` shares with the source, NULLs"
        " included (with `FAST=1`: every row, once the shops have stopped)",
        "для каждой строки, созданной больше чем за {stable_ru} до начала проверяемого запуска,"
        " {current_ru} совпадает с источником в каждой колонке, которая есть и в `dds`, и в источнике,"
        " включая NULL (с `FAST=1`: каждая строка, после того как магазины остановились)",
    ),
    "check_ids_monotonic": Line(
        "dds.<table>: ids grow with created_at within each shop",
        "among {current_rows} of one shop a later id never has an earlier `created_at` (checked when"
        " `dds.<table>` has `created_at`)",
        "среди {current_rows_ru} одного магазина у большего id никогда не бывает более раннего `created_at`"
        " (проверяется, если в `dds.<table>` есть `created_at`)",
    ),
    "check_scd2_rules:interval_order": Line(
        "", "a version never ends before it starts", "версия никогда не кончается раньше, чем начинается"
    ),
    "check_scd2_rules:interval_gaps": Line(
        "",
        "there is no moment between two versions of a key in which the key has no version",
        "между двумя версиями ключа нет момента, когда у ключа нет ни одной версии",
    ),
    "check_scd2_rules:interval_overlaps": Line(
        "",
        "no moment has two versions of one key",
        "ни в какой момент у ключа нет двух версий сразу",
    ),
    "check_scd2_rules:repeated_versions": Line(
        "",
        "a new version opens only when a value changed, NULLs compared as values (`IS DISTINCT FROM`)",
        "новая версия открывается, только если значение изменилось; NULL сравниваются как значения"
        " (`IS DISTINCT FROM`)",
    ),
    "check_scd2_rules:sub_second": Line(
        "", "no fractions of a second in any version", "ни в одной версии нет долей секунды"
    ),
    "check_scd2_rules:first_version_start": Line(
        "",
        "the first version's `eff_from_dttm` is `date_trunc('second', created_at)`",
        "`eff_from_dttm` первой версии равен `date_trunc('second', created_at)`",
    ),
    "check_history_kept": Line(
        "dds.<table>: updated keys have more than one version",
        "the shops update rows, so keys get new versions: live, some key has 2 or more versions, decidable once"
        " your oldest version is older than `UPDATE_NOT_OLDER_THAN_SEC` + {history_margin} s = {history}"
        " (WAIT before); with `FAST=1`, every key the shops updated after it was loaded{updated_tables}",
        "магазины обновляют строки, поэтому у ключей появляются новые версии: вживую хотя бы у одного ключа 2"
        " версии или больше, это решается, когда самой старой вашей версии больше `UPDATE_NOT_OLDER_THAN_SEC` +"
        " {history_margin} с = {history_ru} (до этого WAIT); с `FAST=1` — у каждого ключа, который магазины"
        " обновили после загрузки{updated_tables_ru}",
        per="updated_table",
    ),
    "check_deleted_rows_kept": Line(
        "dds.<table>: rows the shops deleted are kept",
        "rows your DAG loaded stay in `dds` after the shops delete them (`DELETE_OLDER_THAN_SEC` = {delete});"
        " live, this WAITs until rows your DAG loaded are that old: {delete_wait} after the first successful"
        " load run; `FAST=1` checks every loaded key it saw deleted",
        "строки, которые загрузил ваш DAG, остаются в `dds` после того, как магазины их удалили"
        " (`DELETE_OLDER_THAN_SEC` = {delete_ru}); вживую это WAIT, пока загруженным строкам не станет столько:"
        " {delete_wait_ru} после первого успешного запуска загрузки; `FAST=1` проверяет каждый загруженный"
        " ключ, удаление которого видел",
    ),
    "check_runs_succeeded": Line(
        f"the last {checks.RECENT_RUNS} runs of the load DAG succeeded",
        f"none of the load DAG's latest {checks.RECENT_RUNS} finished runs failed; a failure is named with its"
        " task (`FAST=1` leaves out the run it failed on purpose by taking a shop down)",
        f"ни один из последних {checks.RECENT_RUNS} завершённых запусков DAG-а загрузки не упал; упавший"
        " назван вместе с задачей (`FAST=1` не считает запуск, который сам уронил, выключив магазин)",
        per="once",
    ),
    "check_runs_never_overlap": Line(
        "runs of the load DAG never overlap",
        "the DAG has `max_active_runs=1`, and no two of its recent runs were active at once",
        "у DAG-а `max_active_runs=1`, и никакие два его недавних запуска не шли одновременно",
        per="once",
    ),
    "check_rerun_changes_nothing": Line(
        "re-running a finished run changes nothing",
        "the checker re-runs a finished load run (Airflow's Clear); after it, every row the shops can no longer"
        " change is in `dds` exactly as before (WAIT with `--no-rerun`)",
        "проверка перезапускает завершённый запуск загрузки (Clear в Airflow); после него у каждой строки,"
        " которую магазины уже не меняют, `dds` хранит то же, что и до него (WAIT с `--no-rerun`)",
        per="once",
    ),
    "check_cleanup_dag:exists": Line(
        "a DAG with a BashOperator task exists",
        "a DAG in the DAG folder (`airflow_data/dags/`) has a `BashOperator` task",
        "у какого-то DAG-а в папке DAG-ов (`airflow_data/dags/`) есть задача `BashOperator`",
        per="once",
    ),
    "check_cleanup_dag:daily": Line(
        "it runs at least daily",
        "that DAG is scheduled at least once every 24 hours",
        "этот DAG запускается по расписанию хотя бы раз в 24 часа",
        per="once",
    ),
    "check_cleanup_dag:deletes": Line(
        "its command deletes only files older than the threshold",
        "its command, run with `STAGING_DIR` pointing at a test folder, deletes a 90-day-old file and keeps a"
        " fresh one",
        "его команда, запущенная с `STAGING_DIR`, указывающим на тестовую папку, удаляет файл 90-дневной"
        " давности и оставляет свежий",
        per="once",
    ),
    "check_published_or_held:loaded": Line(
        "dds.<table>: every stable source row is published or quarantined",
        "every row created more than {stable} before the graded run started is in `dds`"
        " or waits in `quarantine.<table>`",
        "каждая строка, созданная больше чем за {stable_ru} до начала проверяемого запуска,"
        " есть в `dds` или ждёт в `quarantine.<table>`",
    ),
    "check_published_or_held:values": Line(
        "dds.<table>: current values equal the source, or the newer version is held",
        "the current version has the source's values, unless the source's newer version waits in quarantine",
        "текущая версия совпадает с источником, если только более новая версия из источника не ждёт в карантине",
    ),
    "check_quarantine_tables": Line(
        "quarantine.<table> exists",
        "with the key, `src_id` and a reason column (`failed_rules`, `reason`, `rule`, `error` or their plurals);"
        " a status column is optional",
        "с ключом, `src_id` и колонкой причины (`failed_rules`, `reason`, `rule`, `error` или их множественное"
        " число); колонка статуса необязательна",
    ),
    "check_bad_rows_held_with_reasons:reasons": Line(
        "quarantine.<table>: every held row says why",
        "no held row has an empty reason",
        "ни у одной задержанной строки причина не пуста",
    ),
    "check_bad_rows_held_with_reasons:held": Line(
        "the shops' bad rows are held in quarantine",
        "some rows are held: the shops write invalid values and late references on purpose",
        "какие-то строки задержаны: магазины нарочно пишут неверные значения и ссылки на ещё не пришедшие строки",
        per="bad_tables",
    ),
    "check_bad_values_not_published": Line(
        "dds.<table>.<column> has none of <bad>",
        "no version in `dds` holds a value the audit must stop",
        "ни одна версия в `dds` не содержит значения, которое аудит должен остановить",
        per="invalid_column",
    ),
    "check_references_published": Line(
        "dds.<table>.<column>: every value is in dds.<parent>",
        "every published row's `<column>` has its `dds.<parent>` row (any version), from the same shop",
        "у каждого `<column>` опубликованной строки есть строка в `dds.<parent>` (любая версия) того же магазина",
        per="reference",
    ),
    "check_audit_log": Line(
        "quarantine.audit_log has a summary per run for every table",
        "with `run_id`, `table_name`, `src_id`, `checked` and `quarantined`, for {tables}",
        "с `run_id`, `table_name`, `src_id`, `checked` и `quarantined`, для {tables_ru}",
        per="once",
    ),
    "check_latency": Line(
        f"dds.<table>: p95 latency under {wap_checks.LATENCY_LIMIT_SEC // 60} minutes",
        f"95% of the rows created in the last {wap_checks.LATENCY_WINDOW} (after the first load) reach `dds`"
        f" within {wap_checks.LATENCY_LIMIT_SEC} s of their `created_at` (`load_dttm` stamps the arrival)",
        f"95% строк, созданных за последний час (после первой загрузки), попадают в `dds` не позже"
        f" {wap_checks.LATENCY_LIMIT_SEC} с после их `created_at` (время прихода — `load_dttm`)",
    ),
    "check_released": Line(
        "quarantine rows were released",
        "some held row passed a later audit (its customer arrived) and was published, with status `released` (or"
        " `published`, `replayed`, `resolved`); the report calls it a bonus, but it counts towards DONE",
        "какая-то задержанная строка прошла более поздний аудит (пришёл её покупатель) и была опубликована со"
        " статусом `released` (или `published`, `replayed`, `resolved`); в отчёте это бонус, но без него DONE не будет",
        per="once",
    ),
}


def entry_keys(check: checks.Check, scd2: bool) -> list[str]:
    """The LINES keys one check function of a plan reports, in the order the report shows them."""
    name = check.__name__
    if name == "check_scd2_rules":
        return [f"{name}:{rule}" for rule in checks.SCD2_CHECKS]
    if name == "check_unique_keys":
        return [f"{name}:{'scd2' if scd2 else 'no_history'}"]
    parts = [key for key in LINES if key.startswith(f"{name}:")]
    return parts or [name]


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
            scd2=PLANS[grade_name][1],
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
        """The placeholders of LINES, in both languages."""
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


def lines(grade: str, root: Path = REPO_ROOT) -> list[Rendered]:
    """The grade's Definition of done, in report order: the fast mode's own checks first, then the plan."""
    facts = Facts.of(grade, root)
    words = facts.words()
    plan, scd2 = PLANS[grade]
    out: list[Rendered] = []
    for key in [*FAST_ONLY, *(k for check in plan for k in entry_keys(check, scd2))]:
        line = LINES[key]
        report = line.report or f"dds.<table>: {checks.SCD2_CHECKS[key.split(':', 1)[1]][0]}"
        en, ru = line.en.format(**words), line.ru.format(**words)
        if line.per == "invalid_column":
            out += [
                Rendered(_fill(report, t, c, bad=str(bad)), _fill(en, t, c), _fill(ru, t, c), 1)
                for t, c, bad in facts.invalid
            ]
        elif line.per == "reference":
            out += [
                Rendered(_fill(report, t, c, p), _fill(en, t, c, p), _fill(ru, t, c, p), 1)
                for t, c, p in facts.references
            ]
        else:
            rows = {
                "table": len(facts.tables),
                "updated_table": len(facts.updated) if facts.update_window else 0,
                "bad_tables": 1 if facts.bad_rows else 0,
                "once": 1,
            }[line.per]
            if rows:
                out.append(Rendered(report, en, ru, rows))
    return out


def _fill(text: str, table: str, column: str, parent: str = "", bad: str = "") -> str:
    return text.replace("<table>", table).replace("<column>", column).replace("<parent>", parent).replace("<bad>", bad)


def block(grade: str, language: str, root: Path = REPO_ROOT) -> str:
    """The Markdown between the markers: a sentence on how to read the list, then one checkbox per check."""
    rendered = lines(grade, root)
    fast = sum(r.rows for r in rendered)
    live = fast - len(FAST_ONLY)
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
    fast_only = {LINES[key].report for key in FAST_ONLY}
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
