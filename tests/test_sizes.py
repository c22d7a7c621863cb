"""No room too big to read: functions up to 60 lines, modules up to 500, or a stated reason.

A maintainer who did not write the course reads it one function and one file at
a time. Past these sizes a function usually does several things and a module
holds several subjects, so each is split by meaning. Where a longer one reads
better whole (a table of data, a scenario told in order), a comment starting
with `# Longer than` says why: in the module's first lines (or its docstring)
for a module, directly above the `def` (or its decorators) for a function.

Checked: the Python of coursekit/, tests/ and the grades, except the copies
`make sync-grades` writes (they equal G0's files, which are checked).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from coursekit import sync
from coursekit.grade import GRADES, REPO_ROOT

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500
REASON = "# Longer than"


# Folders and files other branches of issue #22 are rewriting -> owner (most specific first).
@dataclass(frozen=True)
class Offender:
    path: str
    line: int
    what: str
    lines: int
    limit: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} has {self.lines} lines (limit {self.limit})"


def python_files() -> list[Path]:
    """coursekit/, tests/ and the grades' Python, without the generated copies."""
    generated = {copy.target for copy in sync.planned(REPO_ROOT)}
    folders = [REPO_ROOT / "coursekit", REPO_ROOT / "tests", *(REPO_ROOT / grade for grade in GRADES)]
    return sorted(
        path
        for folder in folders
        for path in folder.rglob("*.py")
        if path not in generated and "__pycache__" not in path.parts and ".venv" not in path.parts
    )


def _module_reason(tree: ast.Module, lines: list[str]) -> bool:
    """A `# Longer than` line before the module's first statement after its docstring."""
    body = tree.body
    has_docstring = bool(body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    first = body[1] if has_docstring and len(body) > 1 else (body[0] if body and not has_docstring else None)
    head = lines[: first.lineno - 1] if first is not None else lines
    return any(line.strip().startswith(REASON) for line in head)


def _function_reason(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    """A `# Longer than` line in the comment block directly above the def or its first decorator."""
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    index = top - 2
    while index >= 0 and lines[index].strip().startswith("#"):
        if lines[index].strip().startswith(REASON):
            return True
        index -= 1
    return False


def offenders_in(path: Path, root: Path = REPO_ROOT) -> list[Offender]:
    """Every function and the module of `path` over its limit without a stated reason."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    name = path.relative_to(root).as_posix()
    found = []
    if len(lines) > MAX_MODULE_LINES and not _module_reason(tree, lines):
        found.append(Offender(name, 1, "module", len(lines), MAX_MODULE_LINES))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not _function_reason(node, lines):
                found.append(Offender(name, node.lineno, f"function {node.name}", length, MAX_FUNCTION_LINES))
    return sorted(found, key=lambda o: o.line)


def test_no_function_or_module_over_the_limits():
    found = [o for path in python_files() for o in offenders_in(path)]
    for offender in found:
        print(offender)
    assert not found, "split by meaning, or state why above it with '# Longer than ...':\n" + "\n".join(map(str, found))


def test_the_check_sees_a_long_function_a_long_module_and_their_reasons(tmp_path):
    """The limits bite: over-long code is found with its line and length; a stated reason lets it be."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "long.py"
    path.write_text(f'"""Doc."""\n\n\ndef long():\n{body}\n', encoding="utf-8")
    [offender] = offenders_in(path, tmp_path)
    assert str(offender) == f"long.py:4: function long has {MAX_FUNCTION_LINES + 1} lines (limit {MAX_FUNCTION_LINES})"
    path.write_text(f'"""Doc."""\n\n\n# Longer than 60 lines: a table.\n@staticmethod\ndef long():\n{body}\n')
    assert offenders_in(path, tmp_path) == []
    path.write_text(f'"""Doc."""\n\n\n# Longer than 60 lines: a table.\n\ndef long():\n{body}\n')
    assert len(offenders_in(path, tmp_path)) == 1, "a reason must sit directly above the def"
    many = "x = 1\n" * MAX_MODULE_LINES
    path.write_text(f'"""Doc."""\n{many}', encoding="utf-8")
    assert [o.what for o in offenders_in(path, tmp_path)] == ["module"]
    path.write_text(f'"""Doc."""\n\n# Longer than 500 lines: data.\n{many}', encoding="utf-8")
    assert offenders_in(path, tmp_path) == []
    path.write_text(f'"""Doc."""\n{many}# Longer than 500 lines: too late.\n', encoding="utf-8")
    assert len(offenders_in(path, tmp_path)) == 1, "a module's reason belongs at its top"
