"""Every distribution the Airflow side of the course can import, with the virtualenv's versions.

"Can import" = what the DAGs and the coursekit code they use import (tests/test_docker_images.py
finds those by reading the imports), plus everything those distributions depend on, extras
included (the postgres provider's `psycopg[binary]` brings psycopg-binary). Natively and in the
Docker image these must be the same name==version pairs, or a DAG tested here can behave
differently in a learner's container.
"""

from __future__ import annotations

import importlib.metadata

from packaging.requirements import Requirement
from test_docker_images import GRADE_OBJECTS, NEEDED_WITHOUT_IMPORT, imported_distributions, normalized


def closure(roots: set[str]) -> dict[str, str]:
    """name -> venv version of `roots` and all their requirements (markers evaluated for this Python)."""
    versions: dict[str, str] = {}
    todo = [(name, frozenset()) for name in roots]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = (normalized(name), extras)
        if key in done:
            continue
        done.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency this environment does not install
        versions[normalized(name)] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            )
            if wanted:
                todo.append((requirement.name, frozenset(requirement.extras)))
    return versions


def airflow_side_closure() -> dict[str, str]:
    roots = set().union(*(imported_distributions(g) for g in GRADE_OBJECTS if g.dags_dir.is_dir()))
    return closure(roots | NEEDED_WITHOUT_IMPORT)
