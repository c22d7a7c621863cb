"""Every figure the docs quote, computed from the code or read from a measured file.

A count, duration, version or port typed by hand into a README drifts from the
code (the grade READMEs once promised 11, 28 and 66 checks where the checker ran
12, 29 and 67). So the pages carry each figure inside a marker:

    the checker runs <!--fact:checks.G1_Intern.fast-->12<!--/fact--> checks

and this module knows every key's true value. `tests/test_facts.py` fails when
a marker's text differs from the value here (naming file, line and key), when a
key is unknown, when the English and Russian page of a pair carry different
keys, and when a figure is written by hand outside a marker. Keys:

    checks.<grade>.live | .fast      checks the grade prints, live and with FAST=1
    checks.fast_only                 checks only the fast mode runs
    checks.recent_runs               "the last N runs succeeded"
    checks.commit_slack_sec, checks.history_margin_sec   the checker's margins (checks.py)
    live.timeout_sec / live.timeout_min   how long the live check waits for a fresh run by default
    reference.lookback_sec           lookback_sec of G0's pipeline.yaml
    fast.tick_sec.<grade>            seconds between the private shops' ticks with FAST=1
    fast.update_window_sec.<grade>   ... their update window, .delete_after_sec.<grade> their retention
    fast.clock_behind_min.<grade>    how far pg-shop-2's clock runs behind with FAST=1 (0: not skewed)
    fast.killed_run.<grade>          which run the fast mode kills in its merge (3, or 4 where shops never update)
    fast.late_parent_rows.<grade>    rows the fast mode adds to paused pg-shop-1 whose parents come next (G4)
    live.tick_sec.<grade>            the grade's shops (deploy/env/shop-1.env): TICK_INTERVAL_SEC
    live.update_window_sec.<grade>   UPDATE_NOT_OLDER_THAN_SEC (.update_window_min.<grade> in minutes)
    live.delete_after_sec.<grade>    DELETE_OLDER_THAN_SEC (.delete_after_h.<grade> in hours);
    live.stop_after_sec.<grade>      STOP_GENERATOR_AFTER_SEC (.stop_after_h.<grade> in hours)
    live.history_wait_min.<grade>    when the live check can decide "updated keys have more than one version"
    live.retention_wait_min.<grade>  when it can decide "rows the shops deleted are kept"
    exit.<VERDICT>                   the checker's exit code (exit.DONE, exit.NOT_DONE, exit.WAIT, exit.CANNOT_CHECK)
    version.airflow | version.python.min | version.python.max | version.postgres | version.postgres_image
    version.pgadmin | version.pkg.<name>   (any package pinned in constraints.txt, e.g. version.pkg.pandas)
    port.<VAR>                       a published port's default (port.AIRFLOW_PORT, port.PG_DWH_PORT, ...)
    measured.<name>                  a figure from coursekit/docs/measured.json (value, source, date)

    python -m coursekit.docs.facts                 # print every key and its value
    python -m coursekit.docs.facts --write         # rewrite every marker in the docs
    python -m coursekit.docs.facts --check         # exit 1 and name each stale marker
    python -m coursekit.docs.facts --record KEY=VALUE --source "how it was measured"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from coursekit.grade import GRADES, REPO_ROOT, Grade

MEASURED = Path(__file__).with_name("measured.json")
MARKER = re.compile(r"<!--fact:(?P<key>[^>\s]*?)-->(?P<value>.*?)<!--/fact-->")
PAGES = ("README*.md", "CHECKING*.md", "CONTRIBUTING*.md")
SKIPPED = {".venv", ".venv-pgadmin", ".run", "node_modules", ".git"}


def _makefile_value(root: Path, name: str) -> str | None:
    match = re.search(rf"^{name}\s*:?=\s*(.+)$", (root / "Makefile").read_text(encoding="utf-8"), re.M)
    return match[1].strip() if match else None


def _constraints_file(root: Path) -> Path:
    """constraints.txt, or (one file per Python, as Airflow publishes them) the Docker images' Python's."""
    single = root / "constraints.txt"
    if single.exists():
        return single
    per_python = sorted(root.glob("constraints-3.*.txt"), key=lambda p: int(p.stem.rsplit(".", 1)[1]))
    if not per_python:
        raise ValueError("no constraints.txt and no constraints-3.<minor>.txt")
    docker = _makefile_value(root, "DOCKER_PYTHON")
    chosen = [p for p in per_python if docker and p.name == f"constraints-{docker}.txt"]
    return (chosen or per_python)[0]


def _versions_pinned(root: Path) -> dict[str, str]:
    pins = {}
    for line in _constraints_file(root).read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.strip().lower()] = version.strip()
    return pins


def _python_range(root: Path) -> tuple[str, str]:
    """The oldest and newest Python the course runs on: the Makefile's PYTHON_VERSIONS if it lists them,
    else what pyproject.toml accepts (">=3.11,<3.13" gives 3.11 and 3.12)."""
    listed = (_makefile_value(root, "PYTHON_VERSIONS") or "").split()
    if listed:
        ordered = sorted(listed, key=lambda v: tuple(int(part) for part in v.split(".")))
        return ordered[0], ordered[-1]
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    spec = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, re.M)
    if spec is None:
        raise ValueError("pyproject.toml: no requires-python")
    low = re.search(r">=\s*3\.(\d+)", spec[1])
    high = re.search(r"<\s*3\.(\d+)", spec[1])
    high_inclusive = re.search(r"<=\s*3\.(\d+)", spec[1])
    if low is None or (high is None and high_inclusive is None):
        raise ValueError(f"pyproject.toml: cannot read the range {spec[1]!r}")
    newest = int(high_inclusive[1]) if high_inclusive else int(high[1]) - 1
    return f"3.{low[1]}", f"3.{newest}"


def _compose_facts(root: Path) -> dict[str, str]:
    text = (Grade.named("G0_Trainee", root).deploy_dir / "docker-compose.yml").read_text(encoding="utf-8")
    facts = {f"port.{name}": port for name, port in re.findall(r"\$\{(\w+_PORT):-(\d+)\}", text)}
    postgres = re.search(r"image:\s*postgres:(\S+)", text)
    pgadmin = re.search(r"image:\s*dpage/pgadmin4:(\S+)", text)
    if postgres is None or pgadmin is None:
        raise ValueError("G0_Trainee/deploy/docker-compose.yml: no postgres or pgadmin4 image")
    facts["version.postgres_image"] = f"postgres:{postgres[1]}"
    facts["version.postgres"] = postgres[1].split("-")[0]
    facts["version.pgadmin"] = pgadmin[1]
    return facts


def _reference_facts(root: Path) -> dict[str, str]:
    """G0's pipeline.yaml, and the live check's defaults the docs quote."""
    import yaml

    from coursekit.checker import checks

    config = yaml.safe_load((root / "G0_Trainee/airflow_data/dags/pipeline.yaml").read_text(encoding="utf-8"))
    out = {
        "reference.lookback_sec": str(config["lookback_sec"]),
        "checks.commit_slack_sec": str(checks.COMMIT_SLACK_SEC),
        "checks.history_margin_sec": str(checks.HISTORY_MARGIN_SEC),
    }
    # The live check's --timeout default, as its parser states it (a key that vanishes fails the docs test).
    main = (root / "coursekit/checker/__main__.py").read_text(encoding="utf-8")
    timeout = re.search(r'"--timeout",[^)]*?default=(\d+)', main, re.S)
    if timeout:
        out["live.timeout_sec"] = timeout[1]
        out["live.timeout_min"] = _minutes(int(timeout[1]))
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g}"


def _grade_facts(grade: str, root: Path) -> dict[str, str]:
    from coursekit.checker import checks, definition, registry
    from coursekit.checker.fast import settings_for
    from coursekit.checker.stack import GradeStack

    count = definition.counts(grade, root)  # from the checks' declarations (registry.py)
    fast = settings_for(registry.plan(grade, "fast"))
    stack = GradeStack(Grade.named(grade, root))
    shop = stack.shops[0].env
    update_window = max(s.update_window_sec for s in stack.shops)
    delete_after = max(s.delete_after_sec for s in stack.shops)
    # The fast scenario kills the run that loads its touched rows (run 3); where the shops never
    # update a row there is nothing to touch, and it kills run 4, one with new rows (fast.scenario).
    touches = any(t.updates for t in stack.tables) and update_window > 0
    return {
        f"checks.{grade}.fast": str(count["fast"]),
        f"checks.{grade}.live": str(count["live"]),
        f"fast.tick_sec.{grade}": str(fast.tick_interval),
        f"fast.update_window_sec.{grade}": str(fast.update_window if update_window else 0),
        f"fast.delete_after_sec.{grade}": str(fast.delete_after),
        f"fast.clock_behind_min.{grade}": _minutes(fast.shop_2_clock_behind),
        f"fast.killed_run.{grade}": "3" if touches else "4",
        f"fast.late_parent_rows.{grade}": str(fast.late_parent_rows),
        f"live.tick_sec.{grade}": shop["TICK_INTERVAL_SEC"],
        f"live.update_window_sec.{grade}": str(update_window),
        f"live.update_window_min.{grade}": _minutes(update_window),
        f"live.delete_after_sec.{grade}": str(delete_after),
        f"live.delete_after_h.{grade}": f"{delete_after / 3600:g}",
        f"live.stop_after_sec.{grade}": str(int(shop.get("STOP_GENERATOR_AFTER_SEC") or 0)),
        f"live.stop_after_h.{grade}": f"{int(shop.get('STOP_GENERATOR_AFTER_SEC') or 0) / 3600:g}",
        f"live.history_wait_min.{grade}": _minutes(update_window + checks.HISTORY_MARGIN_SEC),
        # check_deleted_rows_kept waits 120 s past the retention (checks.py; definition.words says the same)
        f"live.retention_wait_min.{grade}": _minutes(delete_after + 120),
    }


def measured(path: Path = MEASURED) -> dict[str, dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {key: entry for key, entry in data.items() if not key.startswith("_")}


def _render(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@cache
def _facts_cached(root: Path, measured_path: Path) -> dict[str, str]:
    from coursekit.checker import checks, definition
    from coursekit.checker.report import EXIT_CODES

    facts: dict[str, str] = {
        "checks.fast_only": str(len(definition.FAST_ONLY)),
        "checks.recent_runs": str(checks.RECENT_RUNS),
    }
    facts.update({f"exit.{word.replace(' ', '_')}": str(code) for word, code in EXIT_CODES.items()})
    pins = _versions_pinned(root)
    facts["version.airflow"] = pins["apache-airflow"]
    if _makefile_value(root, "AIRFLOW_VERSION") not in (None, pins["apache-airflow"]):
        raise ValueError("Makefile's AIRFLOW_VERSION and the pinned apache-airflow differ")
    facts["version.python.min"], facts["version.python.max"] = _python_range(root)
    facts.update({f"version.pkg.{name}": version for name, version in pins.items()})
    facts.update(_compose_facts(root))
    facts.update(_reference_facts(root))
    for grade in GRADES:
        facts.update(_grade_facts(grade, root))
    facts.update({f"measured.{key}": _render(entry["value"]) for key, entry in measured(measured_path).items()})
    return facts


def facts(root: Path = REPO_ROOT, measured_path: Path = MEASURED) -> dict[str, str]:
    """Every key a page may quote, with its value as the page prints it."""
    return dict(_facts_cached(root, measured_path))


def record_measured(key: str, value: object, source: str, path: Path = MEASURED) -> None:
    """A benchmark writes a figure it measured; `--write` then carries it into the pages."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data[key] = {"value": value, "source": source, "date": datetime.now(UTC).date().isoformat()}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _facts_cached.cache_clear()


def forget_measured(key: str, path: Path = MEASURED) -> None:
    """A figure the newest measurement no longer gives (a page quoting it then fails `make docs`)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.pop(key, None) is not None:
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _facts_cached.cache_clear()


# -- the pages ---------------------------------------------------------------------------------------------


def pages(root: Path = REPO_ROOT) -> list[Path]:
    """Every Markdown page that may carry markers: READMEs, CHECKING and CONTRIBUTING, both languages."""
    found = {p for pattern in PAGES for p in root.rglob(pattern) if not SKIPPED & set(p.relative_to(root).parts)}
    return sorted(found)


def counterpart(page: Path) -> Path:
    """README.md <-> README_ru.md."""
    if page.stem.endswith("_ru"):
        return page.with_name(page.stem[: -len("_ru")] + page.suffix)
    return page.with_name(page.stem + "_ru" + page.suffix)


@dataclass(frozen=True)
class Marker:
    path: Path
    line: int
    key: str
    value: str


def _code_spans(line: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"(`+)(?:(?!\1).)+?\1", line)]


def markers(path: Path) -> Iterator[Marker | tuple[Path, int, str]]:
    """Each marker of a page; a marker inside code (where it would show as text) comes as (path, line, problem)."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if re.match(r"^\s*(```|~~~)", line):
            in_fence = not in_fence
            continue
        for match in MARKER.finditer(line):
            inside_code = in_fence or any(a <= match.start() < b for a, b in _code_spans(line))
            if inside_code:
                yield path, number, f"marker {match['key']!r} inside code, where it shows as text: move it out"
            else:
                yield Marker(path, number, match["key"], match["value"])
        if "<!--fact:" in line and not MARKER.search(line):
            yield path, number, "a <!--fact:KEY--> without its <!--/fact--> on the same line"


def problems(root: Path = REPO_ROOT, known: dict[str, str] | None = None) -> list[str]:
    """Every stale value, unknown key, misplaced marker and key missing from a page's other language."""
    known = facts(root) if known is None else known
    out, keys_of = [], {}
    for page in pages(root):
        where = page.relative_to(root)
        keys = set()
        for item in markers(page):
            if not isinstance(item, Marker):
                out.append(f"{where}:{item[1]}: {item[2]}")
                continue
            keys.add(item.key)
            if item.key not in known:
                out.append(f"{where}:{item.line}: unknown fact key {item.key!r} (see python -m coursekit.docs.facts)")
            elif item.value != known[item.key]:
                out.append(
                    f"{where}:{item.line}: {item.key}: the text says {item.value!r}, the code says"
                    f" {known[item.key]!r}; run python -m coursekit.docs.facts --write"
                )
        keys_of[page] = keys
    for page, keys in keys_of.items():
        other = counterpart(page)
        if page.stem.endswith("_ru") or other not in keys_of:
            continue
        for key in sorted(keys ^ keys_of[other]):
            has, lacks = (page, other) if key in keys else (other, page)
            out.append(
                f"{lacks.relative_to(root)}: lacks fact {key!r} that {has.relative_to(root)} quotes"
                " (both languages state the same facts)"
            )
    return out


def rewrite(text: str, known: dict[str, str]) -> str:
    """The page with every known marker's value brought up to date (unknown keys are left for the test)."""

    def fresh(match: re.Match) -> str:
        key = match["key"]
        return f"<!--fact:{key}-->{known[key]}<!--/fact-->" if key in known else match[0]

    return MARKER.sub(fresh, text)


def write(root: Path = REPO_ROOT, known: dict[str, str] | None = None) -> list[Path]:
    """Rewrite every page's markers; returns the pages that changed."""
    known = facts(root) if known is None else known
    changed = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        new = rewrite(text, known)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


# -- hand-written figures ----------------------------------------------------------------------------------

# A number followed by a count of checks or a unit of time or size, in English or Russian, or "all N".
LOOSE = re.compile(
    r"(?<![\w.])(?:all\s+\d+|все\s+\d+"
    r"|\d+(?:[.,]\d+)*½?(?:\s*[–-]\s*\d+(?:[.,]\d+)*½?)?\s*(?:checks?|провер\w*"
    r"|s|sec|seconds?|min|minutes?|h|hours?|ms|GB|MB|GiB|MiB|KB"
    r"|с|сек|секунд\w*|мин|минут\w*|ч|час\w*|мс|ГБ|МБ|КБ))(?![\w])",
    re.I,
)
# What looks like a figure but is not one the code or a measurement gives.
ALLOWED = (
    re.compile(r"\b(?:1|one)\s+(?:s|sec|second|с|секунд\w*)\b", re.I),  # "to the second", a unit of precision
)
GENERATED = re.compile(r"<!-- definition-of-done:start -->.*?<!-- definition-of-done:end -->", re.S)


def loose_figures(path: Path) -> list[tuple[int, str]]:
    """(line, figure) for each count or duration written by hand: outside markers, code and generated blocks."""
    text = GENERATED.sub(lambda m: "\n" * m[0].count("\n"), path.read_text(encoding="utf-8"))
    found, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(r"^\s*(```|~~~)", line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = MARKER.sub("", line)
        line = re.sub(r"(`+)(?:(?!\1).)+?\1", "", line)  # code spans
        line = re.sub(r"<!--.*?-->", "", line)  # comments (walkthrough markers and the like)
        line = re.sub(r"\]\([^)]*\)|https?://\S+", "]", line)  # link targets
        for match in LOOSE.finditer(line):
            if not any(allowed.fullmatch(match[0]) for allowed in ALLOWED):
                found.append((number, match[0]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.docs.facts", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite every marker's value in the docs")
    parser.add_argument("--check", action="store_true", help="exit 1 and name every stale or unknown marker")
    parser.add_argument("--record", metavar="KEY=VALUE", help="write a measured figure into measured.json")
    parser.add_argument("--source", help="with --record: how it was measured")
    options = parser.parse_args(argv)
    if options.record:
        key, sep, value = options.record.partition("=")
        if not sep or not options.source:
            parser.error("--record needs KEY=VALUE and --source")
        number: object = value
        try:
            number = int(value) if value.isdigit() else float(value)
        except ValueError:
            pass
        record_measured(key.removeprefix("measured."), number, options.source)
        print(f"measured.{key.removeprefix('measured.')} = {value}")
        return 0
    if options.write:
        for page in write():
            print(f"rewrote {page.relative_to(REPO_ROOT)}")
        return 0
    if options.check:
        found = problems()
        print("\n".join(found) or "every fact in the docs agrees with the code")
        return 1 if found else 0
    for key, value in sorted(facts().items()):
        if not key.startswith("version.pkg."):
            print(f"{key} = {value}")
    print("version.pkg.<name> = any pin of constraints.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
