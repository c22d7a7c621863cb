"""Write the files every grade carries from one source: G0_Trainee.

Why copies at all: a learner opens one grade folder and finds everything it runs
there (compose file, env files, Airflow image, newcomer DAGs, the reference
solution), without following links into other grades. Why generated: copies made
by hand drift apart. So G0_Trainee holds the one source, this module writes the
copies, and `--check` (run by tests/test_sync.py) names every copy that differs.

    python -m coursekit.sync           write every copy            (make sync-grades)
    python -m coursekit.sync --check   list differing copies; exit 1 if there are any

The intended differences between grades are edits written down here, each with
its reason (`EDITS`); a grade's own files (G4's WAP DAG, its data-quality
generator config) are simply not listed. Edit G0's file, then run the sync.
One file of G0 is written too: the rule queries of `scripts/self-test.sql` come
from the warehouse contract (`dags/dwh/contract.py`), the same queries the checker runs.
"""

from __future__ import annotations

import argparse
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coursekit.grade import GRADES, REPO_ROOT

SOURCE = "G0_Trainee"
TARGETS = tuple(g for g in GRADES if g != SOURCE)
DAGS = "airflow_data/dags"
SOLUTION = "solution/dags"

# Files every grade has as G0 has them (the compose file with its own `name:`).
SHARED = (
    "deploy/docker-compose.yml",
    "deploy/env/airflow-db.env",
    "deploy/env/airflow.env",
    "deploy/env/pg-dwh.env",
    "deploy/env/pg-shop-1.env",
    "deploy/env/pg-shop-2.env",
    "deploy/env/pgadmin.env",
    "deploy/env/shop-1.env",
    "deploy/env/shop-2.env",
    "deploy/healthchecks/airflow_health.py",
    "deploy/healthchecks/generator_health.py",
    "deploy/initdb/01-readonly-role.sh",
    "deploy/pgadmin/README.md",
    "deploy/pgadmin/pgpass",
    "deploy/pgadmin/servers.json",
    "docker/airflow/Dockerfile",
    "docker/airflow/requirements.txt",
    "docker/generator/config.json",
    f"{DAGS}/hello_world.py",
    f"{DAGS}/taskflow_example.py",
    f"{DAGS}/scripts/self-test.sql",
)
# Files of one grade only, which the sync leaves alone (with the reason).
OWN: dict[str, set[str]] = {
    # G4's shops also write invalid values (the data-quality lessons): its own generator config.
    "G4_Senior": {"docker/generator/config.json"},
}
# Extra copies of G0 files in one grade: grade -> {target path: G0 path}.
EXTRA: dict[str, dict[str, str]] = {
    # G1's tasks are config edits and a new DAG: the reference DAG code runs unchanged.
    "G1_Intern": {
        f"{DAGS}/load_shops_to_dwh.py": f"{DAGS}/load_shops_to_dwh.py",
        f"{DAGS}/.airflowignore": f"{DAGS}/.airflowignore",
    },
    # G4's WAP solution (its own DAG, config and wap/ package) cleans staging files as G0 does.
    "G4_Senior": {f"{SOLUTION}/cleanup_staging.py": f"{DAGS}/cleanup_staging.py"},
}
# The reference pipeline's package (G0's dags/dwh/): G1 runs the reference DAG, G4's WAP
# solution builds on its extract, load and merge. Copied whole into these folders.
PACKAGE = "dwh"
PACKAGE_COPIES = {"G1_Intern": DAGS, "G4_Senior": SOLUTION}
# Grades whose solution/dags is G0's whole dags folder (with the edits below): the complete,
# runnable answer to the grade's tasks. G4's solution is its own (Write-Audit-Publish).
SOLVED_BY_G0 = ("G1_Intern", "G2_Junior", "G3_Middle")


class SyncError(Exception):
    """G0's file no longer has the shape an edit expects: update the edit in coursekit/sync.py."""


def _sub(pattern: str, replacement: str, *, expected: int | None = None) -> Callable[[str], str]:
    """A regex edit that fails loudly when G0's text no longer matches (instead of copying unedited)."""

    def edit(text: str) -> str:
        result, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count == 0 or (expected is not None and count != expected):
            raise SyncError(f"pattern {pattern!r} matched {count} times (expected {expected or 'some'})")
        return result

    return edit


G2_NO_UPDATES = (
    "# G2_Junior: 0. This grade's shops never change a row once written (config.json has\n"
    "# update_rows_per_tick 0 as well), so new rows are all a load has to bring.\n"
    "UPDATE_NOT_OLDER_THAN_SEC=0"
)
G2_SOLUTION_HEADER = (
    "# G2_Junior's reference solution: G0's pipeline with `scd2: false` on every table, so each\n"
    "# key keeps only its latest values (no history). Written by `make sync-grades` from\n"
    "# G0_Trainee/airflow_data/dags/pipeline.yaml.\n"
)


def g2_self_test(text: str) -> str:
    """G2's self-test: only the queries that fit a warehouse with one row per key (no history, stg not required).

    G0's first line and its freshness query are kept; the row counts read dds only; the
    contract rule is the one of tables without history (`duplicate_keys`), as the checker runs it.
    """
    from coursekit.reference import REFERENCE_DAGS, config, contract, rules

    freshness = re.search(r"^-- \d+\. (Freshness.*)\Z", text, flags=re.MULTILINE | re.DOTALL)
    if freshness is None:
        raise SyncError("the self-test's last query ('-- N. Freshness ...') is missing")
    table = config.load_config(REFERENCE_DAGS / "pipeline.yaml").tables["orders"].model_copy(update={"scd2": False})
    statement = rules.rule_statement("duplicate_keys", table).split("\n")
    rule = "\n".join(line for line in statement if not line.startswith("--"))
    return "\n".join(
        [
            text.splitlines()[0],
            "-- G2_Junior: one row per key and shop, no history. Written by `make sync-grades` from G0's self-test.",
            "",
            "-- 1. How much is there? Rows per table and shop in dds.",
            "select 'customers' as table_name, src_id, count(*) as row_count from dds.customers group by src_id",
            "union all select 'products', src_id, count(*) from dds.products group by src_id",
            "union all select 'orders', src_id, count(*) from dds.orders group by src_id",
            "order by table_name, src_id;",
            "",
            "-- 2. One key's row (put an id from the shop here): the values the shop has now.",
            "select * from dds.customers where customer_id = 1 and src_id = 'New-York';",
            "",
            "-- contract:start: queries from 3 (written by `make sync-grades` from dags/dwh/contract.py)",
            "",
            f"-- 3. Should return no rows: {contract.PLAIN_RULES['duplicate_keys']}.",
            rule,
            "",
            "-- contract:end",
            "",
            f"-- 4. {freshness.group(1)}",
        ]
    )


# (grade, path in that grade) -> edit of G0's text. Every intended difference between grades.
EDITS: dict[tuple[str, str], Callable[[str], str]] = {
    # G4's pipeline.yaml has audit rules, which only wap.config's loader knows (G0's rejects the key).
    ("G4_Senior", f"{SOLUTION}/cleanup_staging.py"): _sub(
        r"^from dwh\.config import load_config$", "from wap.config import load_config", expected=1
    ),
    # G2's tables keep no history: its self-test holds only the queries that fit them.
    ("G2_Junior", f"{DAGS}/scripts/self-test.sql"): g2_self_test,
    ("G2_Junior", f"{SOLUTION}/scripts/self-test.sql"): g2_self_test,
    # G2's shops never update rows: the load without history has nothing to overwrite-miss.
    ("G2_Junior", "deploy/env/shop-1.env"): _sub(r"^UPDATE_NOT_OLDER_THAN_SEC=.*$", G2_NO_UPDATES, expected=1),
    ("G2_Junior", "deploy/env/shop-2.env"): _sub(r"^UPDATE_NOT_OLDER_THAN_SEC=.*$", G2_NO_UPDATES, expected=1),
    ("G2_Junior", "docker/generator/config.json"): _sub(r'"update_rows_per_tick": \d+', '"update_rows_per_tick": 0'),
    # G2's task is an incremental load without history: G0's reference, configured so.
    # (One space fewer after `false`, so a trailing comment stays in its column.)
    ("G2_Junior", f"{SOLUTION}/pipeline.yaml"): lambda text: (
        G2_SOLUTION_HEADER + _sub(r"^(\s+)scd2: true(?: (?= *#))?", r"\1scd2: false")(text)
    ),
}


@dataclass(frozen=True)
class Copy:
    """One file as the sync writes it."""

    target: Path
    content: bytes
    executable: bool


def _project_name(grade: str) -> str:
    """`G1_Intern` -> `g1-intern`: each grade's own Compose project (containers, volumes)."""
    return grade.lower().replace("_", "-")


def _g0_dags_files(root: Path) -> list[str]:
    """Every file of G0's dags folder (paths relative to it), without Python caches."""
    base = root / SOURCE / DAGS
    return sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def planned(root: Path = REPO_ROOT) -> list[Copy]:
    """Every copy, as it should be: (target in a grade, content, executable bit)."""
    g0_self_test = self_test_sql((root / SOURCE / SELF_TEST).read_text(encoding="utf-8")).encode()
    copies = [Copy(root / SOURCE / SELF_TEST, g0_self_test, False)]
    for grade in TARGETS:
        sources = {path: path for path in SHARED if path not in OWN.get(grade, set())}
        sources |= EXTRA.get(grade, {})
        if grade in PACKAGE_COPIES:
            folder = PACKAGE_COPIES[grade]
            sources |= {
                f"{folder}/{name}": f"{DAGS}/{name}" for name in _g0_dags_files(root) if name.startswith(f"{PACKAGE}/")
            }
        if grade in SOLVED_BY_G0:
            sources |= {f"{SOLUTION}/{name}": f"{DAGS}/{name}" for name in _g0_dags_files(root)}
        for target, source in sorted(sources.items()):
            path = root / SOURCE / source
            content = g0_self_test if source == SELF_TEST else path.read_bytes()
            edit = EDITS.get((grade, target))
            if target == "deploy/docker-compose.yml":
                content = _sub(r"^name: .*$", f"name: {_project_name(grade)}", expected=1)(content.decode()).encode()
            if edit is not None:
                try:
                    content = edit(content.decode()).encode()
                except SyncError as exc:
                    raise SyncError(f"{grade}/{target}: {exc}; update EDITS in coursekit/sync.py") from exc
            executable = bool(path.stat().st_mode & stat.S_IXUSR)
            copies.append(Copy(root / grade / target, content, executable))
    return copies


def owned_folders(root: Path = REPO_ROOT) -> list[Path]:
    """Folders made entirely by the sync: a file there that the sync does not write is stale."""
    packages = [root / grade / folder / PACKAGE for grade, folder in PACKAGE_COPIES.items()]
    return [root / grade / SOLUTION for grade in SOLVED_BY_G0] + packages


SELF_TEST = f"{DAGS}/scripts/self-test.sql"
# The warehouse contract's rules the self-test shows a learner, run on dds.orders.
SELF_TEST_RULES = ("current_version_count", "interval_gaps", "interval_overlaps", "repeated_versions")
_RULES_BLOCK = re.compile(r"(-- contract:start[^\n]*\n).*?(-- contract:end)", re.DOTALL)


def self_test_sql(text: str) -> str:
    """G0's self-test with its rule queries written from the warehouse contract (dwh/contract.py).

    The rules a learner runs in pgAdmin are then the very queries the checker and the
    tests run: one definition, rendered here for dds.orders.
    """
    from coursekit.reference import REFERENCE_DAGS, config, contract, rules

    table = config.load_config(REFERENCE_DAGS / "pipeline.yaml").tables["orders"]
    first = int(re.search(r"-- contract:start: queries from (\d+)", text).group(1)) if "contract:start" in text else 0
    if not first:
        raise SyncError(f"{SELF_TEST}: the markers '-- contract:start: queries from N' / '-- contract:end' are missing")
    queries = []
    for number, rule in enumerate(SELF_TEST_RULES, start=first):
        statement = rules.rule_statement(rule, table).split("\n")
        body = "\n".join(line for line in statement if not line.startswith("--"))
        queries.append(f"-- {number}. Should return no rows: {contract.SCD2_RULES[rule]}.\n{body}\n")
    return _RULES_BLOCK.sub(lambda m: m.group(1) + "\n" + "\n".join(queries) + "\n" + m.group(2), text)


def differences(root: Path = REPO_ROOT) -> list[str]:
    """What `sync` would change, one line per file; empty when every copy is up to date."""
    found = []
    copies = planned(root)
    for copy in copies:
        name = copy.target.relative_to(root).as_posix()
        if not copy.target.is_file():
            found.append(f"missing: {name}")
        elif copy.target.read_bytes() != copy.content:
            found.append(f"differs: {name}")
        elif bool(copy.target.stat().st_mode & stat.S_IXUSR) != copy.executable:
            found.append(f"executable bit differs: {name}")
    written = {copy.target for copy in copies}
    for stale in _stale_files(root, written):
        found.append(f"not in G0: {stale.relative_to(root).as_posix()}")
    return found


def _stale_files(root: Path, written: set[Path]) -> list[Path]:
    stale = []
    for folder in owned_folders(root):
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path not in written:
                    stale.append(path)
    return stale


def sync(root: Path = REPO_ROOT) -> list[str]:
    """Write every copy that differs, remove stale files of owned folders; returns what changed."""
    changed = differences(root)
    copies = planned(root)
    for copy in copies:
        if not copy.target.is_file() or copy.target.read_bytes() != copy.content:
            copy.target.parent.mkdir(parents=True, exist_ok=True)
            copy.target.write_bytes(copy.content)
        mode = copy.target.stat().st_mode
        wanted = mode | 0o111 if copy.executable else mode & ~0o111
        if wanted != mode:
            copy.target.chmod(wanted)
    for stale in _stale_files(root, {copy.target for copy in copies}):
        stale.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a copy differs")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="folder holding the grade folders")
    args = parser.parse_args(argv)
    try:
        found = differences(args.root) if args.check else sync(args.root)
    except SyncError as exc:
        print(f"sync-grades: {exc}", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    if args.check and found:
        print(f"{len(found)} copies differ from {SOURCE}'s files: run make sync-grades", file=sys.stderr)
        return 1
    if not args.check:
        print(
            f"sync-grades: {len(found)} files written from {SOURCE}"
            if found
            else "sync-grades: every copy is up to date"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
