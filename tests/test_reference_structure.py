"""The reference pipeline (G0's dags/dwh) reads top to bottom.

A learner reads `dwh/` as the model of a pipeline, in the order
`dwh/__init__.py` gives. These tests hold that order to the code: no module
imports one listed after it (so there is no import circle), and every SQL
statement is whole -- its `{placeholders}` stand for names the config chooses
(and the contract's open end), never for a piece of SQL switched on in Python,
so each statement can be pasted into pgAdmin once the names are filled in.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from coursekit.grade import REPO_ROOT

DWH = REPO_ROOT / "G0_Trainee" / "airflow_data" / "dags" / "dwh"
# What a placeholder in dwh/sql may stand for: a table, a column or a list of them, an index
# or constraint name, a column's type from the validated config, and the contract's open end.
NAMES = {
    "batch_columns",
    "batch_values",
    "column",
    "column_defs",
    "column_type",
    "columns",
    "constraint",
    "current_index",
    "current_values",
    "dds_table",
    "increment",
    "key",
    "merge_values",
    "old_watermark_index",
    "open_end",
    "source_table",
    "stg_table",
    "value_columns",
    "warehouse_table",
    "watermark_index",
}


def runtime_imports(path: Path) -> set[str]:
    """The dwh modules `path` imports when it runs (at the top or inside a function), not for type checkers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(child) for child in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dwh."):
            found.add(node.module.removeprefix("dwh."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("dwh.") for a in node.names if a.name.startswith("dwh.")}
    return found


def reading_order() -> list[str]:
    """The modules in the order `dwh/__init__.py` lists them."""
    doc = ast.get_docstring(ast.parse((DWH / "__init__.py").read_text(encoding="utf-8"))) or ""
    return re.findall(r"^\d+\.\s+`(\w+)\.py`", doc, flags=re.MULTILINE)


def test_the_reading_order_lists_every_module_once():
    modules = sorted(p.stem for p in DWH.glob("*.py") if p.stem != "__init__")
    assert sorted(reading_order()) == modules, "dwh/__init__.py must list every module of dwh/ exactly once"


def test_each_module_imports_only_modules_listed_before_it():
    order = reading_order()
    for position, module in enumerate(order):
        later = runtime_imports(DWH / f"{module}.py") - set(order[:position])
        assert not later, f"dwh/{module}.py imports {sorted(later)}, listed after it in dwh/__init__.py (or itself)"


def test_importing_the_config_imports_no_module_that_imports_it_back():
    code = "import sys, dwh.config; print(' '.join(sorted(m for m in sys.modules if m.startswith('dwh.'))))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=DWH.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "dwh.config" in loaded
    for module in loaded:
        assert "config" not in runtime_imports(DWH / f"{module.removeprefix('dwh.')}.py") or module == "dwh.config", (
            f"{module} is imported by dwh.config and imports it back"
        )


def test_sql_placeholders_stand_for_names_only():
    for path in sorted((DWH / "sql").glob("*.sql")):
        code = "\n".join(line.split("--", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
        unknown = set(re.findall(r"\{(\w+)\}", code)) - NAMES
        assert not unknown, f"{path.name}: placeholders {sorted(unknown)} are not names; write whole statements"


def test_no_statement_is_composed_into_another():
    """A statement filled into another one's placeholder is a fragment: one name per whole statement instead."""
    for path in sorted(DWH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "compose":
                nested = [
                    n
                    for arg in [*node.args, *(k.value for k in node.keywords)]
                    for n in ast.walk(arg)
                    if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "compose"
                ]
                assert not nested, f"{path.name}:{node.lineno}: a composed statement used as a part of another"
