"""Every figure in the docs is the code's (or a measurement's), in both languages.

The pages quote counts, durations, versions and ports through
`<!--fact:KEY-->VALUE<!--/fact-->` markers; coursekit/docs/facts.py knows each
key's true value. These tests fail with the file, line, key and both values, and
say how to fix it; the proof tests below change a real README and see the change
reported.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from coursekit.docs import facts as docs_facts
from coursekit.grade import GRADES, REPO_ROOT

KNOWN = docs_facts.facts()
# Learner pages the hand-written-figure guard holds. A page still being rewritten is PENDING;
# whoever converts it to markers removes it from here (then the guard holds it too).
PENDING = {}
LEARNER_PAGES = [
    p
    for p in docs_facts.pages()
    if p.name.startswith(("README", "CHECKING")) and p.parent in (REPO_ROOT, *(REPO_ROOT / g for g in GRADES))
]


def test_every_fact_in_the_docs_agrees_with_the_code():
    found = docs_facts.problems(REPO_ROOT, KNOWN)
    assert not found, "\n".join(found)


def test_the_facts_are_the_codes():
    """Spot checks against the sources the facts are read from, so a wrong reader cannot pass unnoticed."""
    from coursekit.checker import definition
    from coursekit.checker.report import EXIT_CODES

    assert KNOWN["version.airflow"] in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"image: dpage/pgadmin4:{KNOWN['version.pgadmin']}" in (
        REPO_ROOT / "G0_Trainee/deploy/docker-compose.yml"
    ).read_text(encoding="utf-8")
    assert KNOWN["port.AIRFLOW_PORT"] == "8080" and KNOWN["port.PG_DWH_PORT"] == "5435"
    assert KNOWN["exit.NOT_DONE"] == str(EXIT_CODES["NOT DONE"])
    for grade in GRADES:
        block = " ".join(definition.block(grade, "en").split())
        live, fast = KNOWN[f"checks.{grade}.live"], KNOWN[f"checks.{grade}.fast"]
        assert f"prints {live} checks live and {fast} with" in block, block[:400]
    assert KNOWN["fast.tick_sec.G4_Senior"] == "3" and KNOWN["fast.tick_sec.G3_Middle"] == "1"
    assert KNOWN["fast.killed_run.G2_Junior"] == "4" and KNOWN["fast.killed_run.G3_Middle"] == "3"


CHECK_COUNT = re.compile(r"checks\.\w+\.(live|fast)")
DURATION = re.compile(r"(measured|live|fast)\.\w*_(sec|min|h)\b.*")


def _page_with_a_count_and_a_duration() -> Path:
    """The first real page that quotes a check count and a duration through markers."""
    for page in docs_facts.pages():
        keys = {m.key for m in docs_facts.markers(page) if isinstance(m, docs_facts.Marker)}
        if any(CHECK_COUNT.fullmatch(k) for k in keys) and any(DURATION.fullmatch(k) for k in keys):
            return page
    raise AssertionError("no page quotes both a check count and a duration through markers")


def _changed_copy(tmp_path: Path, source: Path) -> tuple[Path, list[tuple[int, str]]]:
    """A copy of a real page with its first check count and its first duration changed."""
    lines = source.read_text(encoding="utf-8").splitlines()
    changed: list[tuple[int, str]] = []
    for pattern in (CHECK_COUNT, DURATION):
        for number, line in enumerate(lines, start=1):
            match = next((m for m in docs_facts.MARKER.finditer(line) if pattern.fullmatch(m["key"])), None)
            if match is not None:
                wrong = str(int(re.sub(r"\D.*", "", match["value"]) or 0) + 7)
                lines[number - 1] = line.replace(match[0], f"<!--fact:{match['key']}-->{wrong}<!--/fact-->", 1)
                changed.append((number, match["key"]))
                break
    copy = tmp_path / source.name
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copy, changed


def test_a_changed_check_count_and_duration_are_reported_with_their_place(tmp_path):
    source = _page_with_a_count_and_a_duration()
    copy, changed = _changed_copy(tmp_path, source)
    assert len(changed) == 2, changed
    found = docs_facts.problems(tmp_path, KNOWN)
    for line, key in changed:
        hits = [p for p in found if p.startswith(f"{source.name}:{line}: {key}: the text says")]
        assert hits, f"{source.name}:{line} {key} not reported; got {found}"
        assert f"the code says {KNOWN[key]!r}" in hits[0]
        assert "run python -m coursekit.docs.facts --write" in hits[0]
    assert len(found) == 2, found
    # --write brings the copy back to the code's values
    copy.write_text(docs_facts.rewrite(copy.read_text(encoding="utf-8"), KNOWN), encoding="utf-8")
    assert docs_facts.problems(tmp_path, KNOWN) == []


def test_an_unknown_key_a_marker_in_code_and_a_missing_translation_are_reported(tmp_path):
    (tmp_path / "README.md").write_text(
        "Runs <!--fact:checks.G1_Intern.fast-->12<!--/fact--> checks, in"
        " <!--fact:measured.no_such_figure-->3<!--/fact--> s.\n"
        "`<!--fact:version.airflow-->3.3.2<!--/fact-->`\n",
        encoding="utf-8",
    )
    (tmp_path / "README_ru.md").write_text(
        f"Airflow <!--fact:version.airflow-->{KNOWN['version.airflow']}<!--/fact-->.\n", encoding="utf-8"
    )
    found = "\n".join(docs_facts.problems(tmp_path, KNOWN))
    assert "README.md:1: unknown fact key 'measured.no_such_figure'" in found
    assert "README.md:2: marker 'version.airflow' inside code" in found
    assert "README_ru.md: lacks fact 'checks.G1_Intern.fast' that README.md quotes" in found


def test_write_rewrites_every_marker(tmp_path):
    page = tmp_path / "CHECKING.md"
    page.write_text("G4's shops tick every <!--fact:fast.tick_sec.G4_Senior-->1<!--/fact--> s.\n", encoding="utf-8")
    assert docs_facts.write(tmp_path, KNOWN) == [page]
    assert f"<!--fact:fast.tick_sec.G4_Senior-->{KNOWN['fast.tick_sec.G4_Senior']}<!--/fact-->" in page.read_text(
        encoding="utf-8"
    )


def test_a_benchmark_can_record_a_measured_figure(tmp_path):
    measured = tmp_path / "measured.json"
    shutil.copy(docs_facts.MEASURED, measured)
    docs_facts.record_measured("fast_verdict_sec.G3_Middle", 101, "a test", measured)
    entry = json.loads(measured.read_text(encoding="utf-8"))["fast_verdict_sec.G3_Middle"]
    assert entry["value"] == 101 and entry["source"] == "a test" and entry["date"]
    assert docs_facts.facts(REPO_ROOT, measured)["measured.fast_verdict_sec.G3_Middle"] == "101"


def test_every_measured_figure_says_where_it_came_from():
    for key, entry in docs_facts.measured().items():
        assert set(entry) == {"value", "source", "date"}, f"measured.json: {key} needs value, source and date"
        assert entry["source"].strip() and re.fullmatch(r"\d{4}-\d\d-\d\d", entry["date"]), key


def test_the_load_test_figures_are_the_committed_reports():
    """The G4 README quotes images/loadtest-report.md through measured.json: both must be the same run."""
    from coursekit.loadtest.figures import KEYS, read_figures

    report = read_figures((REPO_ROOT / "images" / "loadtest-report.md").read_text(encoding="utf-8"))
    recorded = {k: v["value"] for k, v in docs_facts.measured().items() if k in KEYS}
    assert recorded == report, (
        "measured.json's loadtest_* are not the committed report's: publish the report with "
        "`.venv/bin/python -m coursekit.docs.images --loadtest-only` (it records them), then `make docs`"
    )


def test_the_guard_catches_hand_written_figures(tmp_path):
    page = tmp_path / "README.md"
    page.write_text(
        "DONE: all 11 checks pass, in about 3½ minutes (or 90 s); 0.9 GB of RAM.\n"
        "Готово за 3 минуты, 29 проверок.\n"
        "Fine: <!--fact:checks.G1_Intern.fast-->12<!--/fact--> checks, `sleep 5 s`, times to the second.\n",
        encoding="utf-8",
    )
    found = [text for _, text in docs_facts.loose_figures(page)]
    assert found == ["all 11", "3½ minutes", "90 s", "0.9 GB", "3 минуты", "29 проверок"], found


@pytest.mark.parametrize("page", LEARNER_PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_hand_written_figures(page: Path):
    name = str(page.relative_to(REPO_ROOT))
    if name in PENDING:
        pytest.skip(f"{name} is being rewritten (PENDING in tests/test_facts.py)")
    found = docs_facts.loose_figures(page)
    assert not found, (
        f"{name}: figures written by hand; quote them through <!--fact:KEY--> markers"
        f" (python -m coursekit.docs.facts lists the keys): "
        + "; ".join(f"line {line}: {text!r}" for line, text in found)
    )


def test_versions_come_from_one_constraints_file_per_python_too(tmp_path):
    """Airflow publishes one constraints file per Python; the docs then quote the Docker images' Python's pins."""
    (tmp_path / "Makefile").write_text("PYTHON_VERSIONS := 3.13 3.12 3.11\nDOCKER_PYTHON := 3.12\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('requires-python = ">=3.11,<3.14"\n', encoding="utf-8")
    for minor, pandas in ((11, "3.1.0"), (12, "3.1.1"), (13, "3.1.2")):
        (tmp_path / f"constraints-3.{minor}.txt").write_text(f"# pins\npandas=={pandas}\n", encoding="utf-8")
    assert docs_facts._python_range(tmp_path) == ("3.11", "3.13")
    assert docs_facts._versions_pinned(tmp_path)["pandas"] == "3.1.1"
    (tmp_path / "Makefile").write_text("", encoding="utf-8")
    assert docs_facts._python_range(tmp_path) == ("3.11", "3.13")  # pyproject's range
    assert docs_facts._versions_pinned(tmp_path)["pandas"] == "3.1.0"  # the oldest Python's
