"""A new check is one declaration: proven by adding one to a copy of the repository.

The copy gets a dummy check (its function, its report name, its Definition-of-done
line in English and Russian, its grades) appended to one module and nothing else.
Then `make docs` does what it does (`coursekit.checker.definition --write`,
`coursekit.docs.facts --write`), and the copy must show the check in the right
grades' plans, at its place, in both languages of those grades' Definition of done
and in their check counts; the repository's own consistency tests must pass there;
and the only files that changed are that module and generated pages.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.checker.stack import GradeStack
from coursekit.grade import GRADES, REPO_ROOT, Grade

MODULE = "coursekit/checker/load_checks.py"
GRADED = ("G2_Junior", "G3_Middle")
DUMMY = """

DUMMY = Line(
    "dds.<table>: the dummy rule holds",
    item="a dummy rule",
    en="the dummy rule holds, in English",
    ru="фиктивное правило, по-русски",
)


@check(DUMMY, order=65, grades=("G2_Junior", "G3_Middle"))
def check_dummy(ctx: Context) -> Iterable[CheckResult]:
    for table in ctx.stack.tables:
        yield DUMMY.result(True, "the dummy rule", "ok", table=table.name)
"""
# What the copy reports: every grade's plan per mode, and the check counts the pages quote.
REPORT = """
import json, coursekit
from coursekit.checker import registry
from coursekit.docs import facts
known = facts.facts()
print(json.dumps({
    "package": coursekit.__file__,
    "plans": {g: {m: [c.__name__ for c in registry.plan(g, m)] for m in registry.MODES} for g in registry.GRADES},
    "counts": {k: v for k, v in known.items() if k.startswith("checks.")},
}))
"""
SKIPPED = shutil.ignore_patterns(
    ".git", ".venv*", ".run", ".ruff_cache", "node_modules", "__pycache__", "*.egg-info", "generator_app_data", "logs"
)


def run(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A Python of this venv, run in the copy: `-m` and `-c` put the copy's coursekit first on the path."""
    return subprocess.run([sys.executable, *args], cwd=copy, capture_output=True, text=True, timeout=300)


def state(copy: Path) -> dict:
    done = run(copy, "-c", REPORT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and not {"__pycache__", ".run"} & set(p.relative_to(root).parts)
    }


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for entry in REPO_ROOT.iterdir():
        if SKIPPED(str(REPO_ROOT), [entry.name]):
            continue
        if entry.is_dir():
            shutil.copytree(entry, root / entry.name, ignore=SKIPPED)
        else:
            shutil.copy2(entry, root / entry.name)
    return root


def test_a_new_check_is_one_declaration(copy):
    before_state, before_files = state(copy), digests(copy)
    assert Path(before_state["package"]).is_relative_to(copy), "the copy must run its own coursekit"
    assert not any("check_dummy" in plan for modes in before_state["plans"].values() for plan in modes.values())
    module = copy / MODULE
    module.write_text(module.read_text(encoding="utf-8") + DUMMY, encoding="utf-8")

    for tool in ("coursekit.checker.definition", "coursekit.docs.facts"):  # what `make docs` runs
        written = run(copy, "-m", tool, "--write")
        assert written.returncode == 0, written.stderr
    after = state(copy)

    # The plans: in the declared grades and every mode, right after the check it follows by `order`.
    for grade in GRADES:
        for mode, plan in after["plans"][grade].items():
            old = before_state["plans"][grade][mode]
            if grade in GRADED:
                at = old.index("check_ids_monotonic") + 1
                assert plan == [*old[:at], "check_dummy", *old[at:]], (grade, mode)
            else:
                assert plan == old, (grade, mode)
    # The counts the pages quote: one more row per table, live and with FAST=1, for those grades only.
    expected = dict(before_state["counts"])
    for grade in GRADED:
        tables = len(GradeStack(Grade.named(grade, copy)).tables)
        for mode in ("live", "fast"):
            expected[f"checks.{grade}.{mode}"] = str(int(expected[f"checks.{grade}.{mode}"]) + tables)
    assert after["counts"] == expected

    # The Definition of done, in both languages, of those grades only.
    for grade in GRADES:
        for page, text in (
            ("README.md", "the dummy rule holds, in English"),
            ("README_ru.md", "фиктивное правило, по-русски"),
        ):
            readme = (copy / grade / page).read_text(encoding="utf-8")
            line = f"- [ ] `dds.<table>: the dummy rule holds`: {text}\n"
            assert (line in readme) == (grade in GRADED), (grade, page)

    # Nothing else needed an edit: the checks that the generated pages agree with the code pass in the
    # copy, and only the module and generated Markdown pages changed.
    for tool in ("coursekit.checker.definition", "coursekit.docs.facts"):
        checked = run(copy, "-m", tool, "--check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
    consistency = run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_definition.py")
    assert consistency.returncode == 0, consistency.stdout[-3000:]
    after_files = digests(copy)
    changed = sorted(
        name for name in after_files.keys() | before_files.keys() if after_files.get(name) != before_files.get(name)
    )
    assert MODULE in changed
    others = [name for name in changed if name != MODULE]
    assert others and all(name.endswith(".md") for name in others), changed
    for grade in GRADED:
        assert {f"{grade}/README.md", f"{grade}/README_ru.md"} <= set(others)
