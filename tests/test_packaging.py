"""Every third-party package coursekit imports is declared in pyproject.toml.

An undeclared one works only while some other package happens to pull it in;
the next `make lock` may drop it and break a fresh clone. Versions stay in
constraints-<python>.txt: pyproject.toml names packages only.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from coursekit.grade import REPO_ROOT


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> dict[str, str]:
    """Third-party top-level module -> one coursekit file importing it (any depth, function-level too)."""
    found: dict[str, str] = {}
    for path in sorted((REPO_ROOT / "coursekit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("coursekit", "__future__"):
                    found.setdefault(top, str(path.relative_to(REPO_ROOT)))
    return found


def test_every_imported_package_is_declared():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {normalized(re.split(r"[\s<>=!~;\[]", d)[0]) for d in project["dependencies"]}
    owners = importlib.metadata.packages_distributions()
    missing = []
    for module, where in imported_top_level_modules().items():
        distributions = {normalized(d) for d in owners.get(module, [])}
        if not distributions:
            continue  # not installed in this virtualenv (e.g. a tool's own environment): nothing to declare here
        if module == "airflow":
            distributions = {"apache-airflow"}  # core, SDK and providers come with it and its extras
        if not distributions & declared:
            missing.append(f"{module} ({', '.join(sorted(distributions))}), imported by {where}")
    assert not missing, "declare in pyproject.toml [project] dependencies: " + "; ".join(missing)


def test_the_scan_sees_function_level_imports():
    modules = imported_top_level_modules()
    assert {"croniter", "jinja2", "psutil", "rich", "websockets", "yaml", "numpy"} <= set(modules)
