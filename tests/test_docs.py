"""The READMEs tell the truth: links resolve, both languages match, commands run.

Every shell block in a README carries a marker on the line before it:
`<!-- walkthrough -->` blocks are executed here, in order, as a newcomer would
run them; `<!-- docker-only -->` blocks need a Docker engine (CI has none);
`<!-- not-run: why -->` blocks are covered elsewhere (the reason says where).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from coursekit.grade import GRADES, REPO_ROOT
from coursekit.pg import free_port

PAIRS = [REPO_ROOT, *(REPO_ROOT / g for g in GRADES)]
SHARED_PAGES = ("CHECKING", "CONTRIBUTING")  # the root's pages besides README, in both languages
MARKER = re.compile(r"^\s*<!-- (walkthrough|docker-only|not-run: .+) -->\s*$")
FENCE = re.compile(r"^\s*```(\w*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def readmes() -> list[Path]:
    skipped = {".venv", ".venv-pgadmin", ".venv-dbt", ".run", "node_modules"}
    found = [p for p in REPO_ROOT.rglob("README*.md") if not skipped & set(p.parts)]
    found += [p for name in SHARED_PAGES for p in REPO_ROOT.glob(f"{name}*.md")]
    return sorted(found)


def parse(path: Path) -> tuple[list[str], list[tuple[str | None, str]]]:
    """Heading levels (outside code) and shell blocks with the marker before each."""
    headings: list[str] = []
    blocks: list[tuple[str | None, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    in_code, language, body, marker = False, "", [], None
    previous = ""
    for line in lines:
        fence = FENCE.match(line)
        if fence and not in_code:
            in_code, language, body = True, fence.group(1), []
            found = MARKER.match(previous)
            marker = found.group(1) if found else None
        elif fence and in_code:
            in_code = False
            if language in ("bash", "sh", "shell", "console"):
                blocks.append((marker, "\n".join(body)))
        elif in_code:
            body.append(line)
        elif line.startswith("#"):
            headings.append(line.split(" ", 1)[0])
        if line.strip():
            previous = line
    return headings, blocks


@pytest.mark.parametrize("folder", PAIRS, ids=lambda p: p.name if p != REPO_ROOT else "root")
def test_english_and_russian_readmes_have_the_same_structure(folder: Path):
    english, russian = folder / "README.md", folder / "README_ru.md"
    assert english.exists() and russian.exists(), f"{folder.name}: both README.md and README_ru.md are needed"
    assert parse(english)[0] == parse(russian)[0], f"{folder.name}: headings differ between the two languages"


@pytest.mark.parametrize("name", SHARED_PAGES)
def test_the_shared_pages_exist_in_both_languages_with_the_same_structure(name: str):
    english, russian = REPO_ROOT / f"{name}.md", REPO_ROOT / f"{name}_ru.md"
    assert english.exists() and russian.exists(), f"both {name}.md and {name}_ru.md are needed"
    assert parse(english)[0] == parse(russian)[0], f"{name}: headings differ between the two languages"


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_and_images_resolve(readme: Path):
    text = re.sub(r"```.*?```", "", readme.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        assert (readme.parent / target.split("#")[0]).exists(), f"{readme}: broken link {target}"


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_shell_block_is_run_or_marked(readme: Path):
    unmarked = [body for marker, body in parse(readme)[1] if marker is None]
    assert not unmarked, f"{readme}: mark these blocks (walkthrough / docker-only / not-run: why): {unmarked}"


@pytest.mark.slow
def test_the_root_readme_walkthrough_works_on_a_fresh_copy(tmp_path):
    """TL;DR as a newcomer runs it: make run, unpause, make check passes, make stop."""
    blocks = [body for marker, body in parse(REPO_ROOT / "README.md")[1] if marker == "walkthrough"]
    assert any("make run" in b for b in blocks) and any("make check" in b for b in blocks)
    for grade in GRADES:
        shutil.copytree(
            REPO_ROOT / grade,
            tmp_path / grade,
            ignore=shutil.ignore_patterns("generator_app_data", "logs", "staging", "__pycache__"),
        )
    env = {
        **os.environ,
        "COURSEKIT_GRADES_ROOT": str(tmp_path),
        "COURSEKIT_RUN_DIR": str(tmp_path / ".run"),
        **{
            name: str(free_port())
            for name in ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
        },
    }
    try:
        for block in blocks:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert result.returncode == 0, f"`{block}` failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
            if "make check" in block:
                assert "\nDONE: all " in result.stdout, result.stdout[-2000:]
    finally:
        subprocess.run(["make", "stop"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
