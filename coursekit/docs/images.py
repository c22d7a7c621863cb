"""`make images`: regenerate the course's pictures in images/ from the real running system.

    python -m coursekit.docs.images [--out images] [--diagram-only] [--minutes 3.5]

1. images/architecture.dot (committed source text) -> architecture.svg and .png with Graphviz `dot`.
2. A PRIVATE native copy of G0_Trainee (temporary folder, free ports, its own run dir; a learner's
   `make run` is never touched) runs with load_shops_to_dwh unpaused for a few minutes; then:
   screenshots of the Airflow 3 UI (headless Chromium), one customer's SCD2 history queried from
   dds, and excerpts of the generators' info.log and debug.log, rendered as images. The stack is
   stopped and the temporary folder removed, whatever happens.
3. The newest load-test plots from loadtest-report/ (`python -m coursekit.loadtest`), if any.
4. images/README.md: every picture, what it shows, how and when it was made.

The private stack is `private_stack.py`; the SCD2 table and the log excerpts are HTML pages drawn
by `html_pictures.py`. A manual step (needs `apt-get install graphviz chromium fonts-dejavu-core` and
~5 minutes); its output is committed. tests/test_images.py only checks that what README.md lists exists and that the
diagram's source renders.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coursekit.docs import facts
from coursekit.docs.chromium import Chromium, ChromiumError
from coursekit.docs.html_pictures import (
    debug_excerpt,
    info_excerpt,
    query_scd2_history,
    render_html,
    scd2_html,
    terminal_html,
)
from coursekit.docs.private_stack import GRADE, LOAD_DAG, ImagesError, PrivateStack, let_data_flow, say
from coursekit.grade import REPO_ROOT
from coursekit.loadtest.figures import KEYS, load_before, read_figures, started

LOADTEST_REPORTS = REPO_ROOT / "loadtest-report"
LOADTEST_PLOTS = ("throughput.png", "latency.png", "backlog.png", "breakdown.png", "resources.png")
DIAGRAM_DPI = 110
MAX_PNG_BYTES = 400 * 1024


@dataclass
class Picture:
    """One file of images/ and the line README.md gives it."""

    name: str
    shows: str
    made: str


# -- 1. the architecture diagram -------------------------------------------------------------------------------


def render_architecture(out: Path) -> list[Picture]:
    """architecture.dot -> .svg and .png (Graphviz)."""
    source = out / "architecture.dot"
    if not source.exists():
        raise ImagesError(f"{source} is missing: it is the diagram's committed source")
    dot = shutil.which("dot")
    if dot is None:
        raise ImagesError("Graphviz `dot` not found: `apt-get install graphviz`")
    for fmt, extra in (("svg", []), ("png", [f"-Gdpi={DIAGRAM_DPI}"])):
        target = out / f"architecture.{fmt}"
        result = subprocess.run([dot, f"-T{fmt}", *extra, str(source), "-o", str(target)], capture_output=True)
        if result.returncode != 0:
            raise ImagesError(f"dot -T{fmt} {source} failed:\n{result.stderr.decode(errors='replace')}")
        say(f"  ✓ {target}")
    made = f"`dot -Tsvg` / `dot -Tpng -Gdpi={DIAGRAM_DPI}` from [architecture.dot](architecture.dot) (Graphviz)"
    shows = (
        "One grade's stack: the two shops (generator + source database), Airflow with the steps of "
        "load_shops_to_dwh (extract → staging → load_stg → merge_dds) and cleanup_staging, pg-dwh with its "
        "schemas stg and dds, pgAdmin connected to all three databases, and the ports published on 127.0.0.1."
    )
    return [Picture("architecture.svg", shows, made), Picture("architecture.png", "The same, as PNG.", made)]


# -- 2a. Airflow UI screenshots --------------------------------------------------------------------------------

CLICK = (
    "(() => {{ const b = document.querySelector('button[aria-label=\"{label}\"]'); b && b.click(); return !!b; }})()"
)
GRID_WIDER_BY = 160  # CSS pixels
HAS_TEXT = "(() => {{ const t = document.body.innerText; return {names}.every(n => t.includes(n)); }})()"


def airflow_screenshots(stack: PrivateStack, out: Path, runs: list[dict]) -> list[Picture]:
    """The DAG list, the load DAG's graph (one successful run) and its grid, logged in with the JWT cookie."""
    with Chromium(width=1440, height=900) as browser:
        # The UI sends the `_token` cookie with every API call (SimpleAuthManager sets it at login):
        # the token of POST /auth/token with the grade's login is exactly what a logged-in learner holds.
        browser.set_cookie("_token", stack.token(), stack.base_url)
        return [
            dag_list(browser, stack, out),
            graph_of_a_run(browser, stack, out, next(r for r in runs if r["state"] == "success")),
            grid(browser, stack, out, sum(r["state"] == "success" for r in runs)),
        ]


def dag_list(browser: Chromium, stack: PrivateStack, out: Path) -> Picture:
    dag_ids = ["cleanup_staging", "hello_world", LOAD_DAG, "taskflow_example"]
    browser.goto(f"{stack.base_url}/dags")
    browser.wait_for(HAS_TEXT.format(names=json.dumps([*dag_ids, "Latest Run"])), what="the DAG list")
    browser.wait_for("document.querySelectorAll('a[href*=\"/runs/\"]').length > 0", what="the latest run")
    time.sleep(2)
    browser.screenshot(out / "airflow-dags.png")
    return Picture(
        "airflow-dags.png",
        f"Airflow 3's DAG list: the grade's four DAGs, {LOAD_DAG} unpaused with its latest run, "
        "the others paused as they start.",
        "Headless Chromium on `/dags`",
    )


def graph_of_a_run(browser: Chromium, stack: PrivateStack, out: Path, run: dict) -> Picture:
    run_url = f"{stack.base_url}/dags/{LOAD_DAG}/runs/{urllib.parse.quote(run['dag_run_id'], safe='')}"
    browser.resize(1440, 1000)  # room below the graph for React Flow's minimap
    browser.goto(run_url)
    browser.wait_for(CLICK.format(label="Show Graph (Press g)"), what="the graph button")
    browser.wait_for(CLICK.format(label="Expand all task groups"), what="the expand button")
    browser.wait_for("document.querySelectorAll('.react-flow__node').length >= 17", what="the graph's nodes")
    time.sleep(3)  # the graph fits itself into the panel
    browser.screenshot(out / "airflow-graph.png")
    return Picture(
        "airflow-graph.png",
        f"Graph view of one successful {LOAD_DAG} run: create_schemas → create_tables, then a task group "
        "per table (customers, products, orders) with extract_new_york / extract_istanbul → load_stg → "
        "merge_dds.",
        f"Headless Chromium on `/dags/{LOAD_DAG}/runs/<run>`, Graph, task groups expanded",
    )


def grid(browser: Chromium, stack: PrivateStack, out: Path, succeeded: int) -> Picture:
    browser.resize(1440, 900)
    browser.goto(f"{stack.base_url}/dags/{LOAD_DAG}")
    browser.wait_for(CLICK.format(label="Show Grid (Press g)"), what="the grid button")
    # The grid panel is 20 % of the width by default, too narrow for a few runs: drag its border, as a user would.
    browser.wait_for("document.querySelector('[data-resize-handle]') !== null", what="the panels' border")
    x, y = browser.center_of("[data-resize-handle]")
    browser.drag((x, y), (x + GRID_WIDER_BY, y))
    browser.wait_for(CLICK.format(label="Expand all task groups"), what="the expand button")
    browser.wait_for(HAS_TEXT.format(names=json.dumps(["extract_istanbul", "merge_dds", "Failed Runs"])))
    time.sleep(3)
    browser.screenshot(out / "airflow-grid.png")
    return Picture(
        "airflow-grid.png",
        f"Grid view of {LOAD_DAG}: {succeeded} scheduled runs, one a minute, every task green; "
        "run durations and the dds.* asset events beside it.",
        f"Headless Chromium on `/dags/{LOAD_DAG}`, Grid, task groups expanded",
    )


# -- 2a'. pgAdmin: the registered servers, one key's SCD2 history in the query tool -------------------------------

PGADMIN_SCD2_QUERY = """\
select customer_id, src_id, first_name, last_name, address, eff_from_dttm, eff_to_dttm
from dds.customers
where (customer_id, src_id) = (select customer_id, src_id from dds.customers
                               group by 1, 2 order by count(*) desc, 2, 1 limit 1)
order by eff_from_dttm;"""
TREE_LABEL = """(() => {{ const e = [...document.querySelectorAll('.file-name')]
  .find(e => e.textContent.trim() === {label} && e.getBoundingClientRect().width > 0);
  if (!e) return null; const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"""
QUERY_TOOL = "[...document.querySelectorAll('iframe')].find(f => f.getBoundingClientRect().width > 0)"


def _click(browser: Chromium, x: float, y: float, count: int = 1) -> None:
    browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    for click in range(1, count + 1):
        for kind in ("mousePressed", "mouseReleased"):
            browser.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=click)


def _open_in_tree(browser: Chromium, label: str, count: int = 2) -> None:
    """Double-click a node of pgAdmin's object explorer, as a learner does (a server connects)."""
    _click(browser, *browser.wait_for(TREE_LABEL.format(label=json.dumps(label)), what=f"{label} in the tree"), count)


def pgadmin_screenshots(stack: PrivateStack, out: Path) -> list[Picture]:
    """pgAdmin of `make run`: the three servers opened without a password, then a query tool on dwh."""
    base = f"http://127.0.0.1:{stack.ports['PGADMIN_PORT']}"
    with Chromium(width=1600, height=900) as browser:
        browser.goto(f"{base}/browser/")
        browser.wait_for(TREE_LABEL.format(label=json.dumps("Course")), what="the group Course")
        time.sleep(2)  # the tree takes clicks once the page has settled
        _open_in_tree(browser, "Course")  # a fresh pgAdmin: every node starts collapsed
        for server in ("pg-shop-1", "pg-shop-2", "pg-dwh"):
            _open_in_tree(browser, server)  # no password dialog: the passfile answers
            browser.wait_for(HAS_TEXT.format(names=json.dumps(["Login/Group Roles"])), what=f"{server} connected")
            time.sleep(1.5)
        _open_in_tree(browser, "Databases")
        _open_in_tree(browser, "dwh")
        _open_in_tree(browser, "Schemas")
        _open_in_tree(browser, "pg-dwh", count=1)
        time.sleep(8)  # the dashboard's graphs fill in
        browser.screenshot(out / "pgadmin-servers.png")

        _open_in_tree(browser, "dwh", count=1)
        _click(browser, *browser.center_of('button[aria-label="Query Tool"]'))
        editor = f"""(() => {{ const f = {QUERY_TOOL}; const e = f && f.contentDocument
          && f.contentDocument.querySelector('.cm-content'); if (!e) return null;
          const o = f.getBoundingClientRect(), r = e.getBoundingClientRect();
          return [o.x + r.x + 60, o.y + r.y + 8]; }})()"""
        _click(browser, *browser.wait_for(editor, what="the query tool's editor"))
        browser.send("Input.insertText", text=PGADMIN_SCD2_QUERY)
        for kind in ("keyDown", "keyUp"):
            browser.send("Input.dispatchKeyEvent", type=kind, key="F5", code="F5", windowsVirtualKeyCode=116)
        browser.wait_for(
            f"{QUERY_TOOL}.contentDocument.querySelectorAll('.rdg-row').length > 1", what="the query's rows"
        )
        time.sleep(2)
        browser.screenshot(out / "pgadmin-query-tool.png")
    return [
        Picture(
            "pgadmin-servers.png",
            "pgAdmin4 of `make run` (no Docker): pg-shop-1, pg-shop-2 and pg-dwh registered in the group Course from "
            "the grade's servers.json, each opened with a double-click and no password; pg-dwh's dwh schemas.",
            "Headless Chromium on the private stack's pgAdmin, tree nodes double-clicked as a learner does",
        ),
        Picture(
            "pgadmin-query-tool.png",
            "pgAdmin's query tool on pg-dwh: the SCD2 history of the customer with the most versions in "
            "dds.customers (eff_from_dttm / eff_to_dttm).",
            "Headless Chromium: Query Tool button, the query typed into the editor, F5",
        ),
    ]


def data_pictures(stack: PrivateStack, out: Path) -> list[Picture]:
    """The SCD2 table and the two log excerpts, rendered by Chromium from small HTML pages."""
    key, columns, rows = query_scd2_history(stack)
    logs = stack.grade.generator_logs_dir / "shop-1"
    info = info_excerpt((logs / "info.log").read_text(encoding="utf-8"))
    tick, debug = debug_excerpt((logs / "debug.log").read_text(encoding="utf-8"))
    folder = Path(tempfile.mkdtemp(prefix="coursekit-images-html-"))
    try:
        with Chromium(width=1400, height=900, scale=1.25) as browser:
            render_html(browser, scd2_html(key, columns, rows), out / "scd2-history.png", folder)
            render_html(
                browser,
                terminal_html(
                    f"shop-1 · generator_app_data/logs/shop-1/info.log (first {len(info)} lines)", info, 150, wrap=True
                ),
                out / "generator-info-log.png",
                folder,
            )
            render_html(
                browser,
                terminal_html(
                    f"shop-1 · generator_app_data/logs/shop-1/debug.log · tick {tick} (long lines cut at 150 columns)",
                    debug,
                    150,
                ),
                out / "generator-debug-log.png",
                folder,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [
        Picture(
            "scd2-history.png",
            f"Every version of customer {key['customer_id']} ({key['src_id']}) in dds.customers, with "
            "eff_from_dttm / eff_to_dttm and the run that loaded it; changed cells highlighted.",
            "The query shown in the picture, on the private stack's pg-dwh; HTML table → headless Chromium",
        ),
        Picture(
            "generator-info-log.png",
            "The first lines of shop-1's info.log: the generator's settings, the tables it created, "
            "one line per tick (inserted, updated, deleted, duration).",
            "The real file, rendered as a terminal (HTML → headless Chromium)",
        ),
        Picture(
            "generator-debug-log.png",
            f"One whole tick ({tick}) of shop-1's debug.log: every statement with its parameters, and the ids "
            "each step updated and inserted.",
            "The real file, rendered as a terminal (HTML → headless Chromium); lines longer than 150 columns cut",
        ),
    ]


# -- 3. load-test plots ----------------------------------------------------------------------------------------


def copy_loadtest_plots(out: Path, reports: Path = LOADTEST_REPORTS, measured: Path = facts.MEASURED) -> list[Picture]:
    """The newest `python -m coursekit.loadtest` report into images/: its plots as loadtest-<plot>.png,
    report.md as loadtest-report.md (links to the renamed files) and backlog.csv as loadtest-backlog.csv;
    its headline figures into measured.json."""
    folders = sorted((p for p in reports.glob("*") if p.is_dir() and any(p.glob("*.png"))), reverse=True)
    if not folders:
        kept = sorted(out.glob("loadtest-*.png"))
        say(f"  - no load-test report in {reports} (`python -m coursekit.loadtest`): skipped")
        if kept:
            say(f"    keeping the earlier copies: {', '.join(p.name for p in kept)}")
        return [
            Picture(p.name, "A load-test plot (kept from an earlier run).", "Copied from loadtest-report/")
            for p in kept
        ]
    newest = folders[0]
    report = (newest / "report.md").read_text(encoding="utf-8") if (newest / "report.md").exists() else None
    for name in (*LOADTEST_PLOTS, "backlog.csv"):
        source = newest / name
        if source.exists():
            target = out / f"loadtest-{name}"
            shutil.copyfile(source, target)
            say(f"  ✓ {target} (from {source})")
            if report is not None:
                report = report.replace(f"]({name})", f"](loadtest-{name})").replace(f"[{name}]", f"[loadtest-{name}]")
    if report is None:
        return loadtest_pictures(out, f"report {newest.name}", "the ramp")
    (out / "loadtest-report.md").write_text(report, encoding="utf-8")
    say(f"  ✓ {out / 'loadtest-report.md'} (from {newest / 'report.md'})")
    figures = record_loadtest_figures(report, measured)
    knee = (
        f"{figures['loadtest_kept_rate']} inserts/s per shop kept up, {figures['loadtest_failed_rate']} did not"
        if "loadtest_failed_rate" in figures
        else f"every step kept up, to {figures['loadtest_kept_rate']} inserts/s per shop"
    )
    return loadtest_pictures(out, f"started {started(report).split(',')[0]}", knee)


# what each plot shows; the first names the run and its knee
LOADTEST_SHOWS = {
    "throughput.png": "rows landed in dds per minute, step by step; a red line marks the knee, if the ramp reached "
    "one.",
    "latency.png": "latency from a row's created_at in the shop to its arrival in dds (p50, p95, max per minute) "
    "against the latency target.",
    "backlog.png": "rows the shops hold that dds does not yet, and how old the oldest is (the lag the ramp judges "
    "each step on).",
    "breakdown.png": "each DAG run's critical path, stage by stage with Airflow's queued and scheduling time, "
    "against the schedule.",
    "resources.png": "CPU and memory of Airflow, PostgreSQL and the load generators, and the whole machine's busy "
    "cores.",
}


def loadtest_pictures(out: Path, run: str, knee: str) -> list[Picture]:
    """images/README.md's rows of the published plots, saying which run they come from and its knee."""
    pictures = []
    for name, shows in LOADTEST_SHOWS.items():
        if not (out / f"loadtest-{name}").exists():
            continue
        if not pictures:
            shows = f"G4_Senior's reference under the load test's ramp ({knee}): {shows}"
            made = f"`make loadtest GRADE=G4_Senior SOLUTION=1` ({run}), matplotlib; "
            made += "[loadtest-report.md](loadtest-report.md)"
        else:
            shows = f"The same run: {shows}"
            made = "same run" + (
                "; samples in [loadtest-backlog.csv](loadtest-backlog.csv)" if name == "backlog.png" else ""
            )
        pictures.append(Picture(f"loadtest-{name}", shows, made))
    return pictures


def replace_loadtest_rows(out: Path, pictures: list[Picture]) -> None:
    """--loadtest-only: the load-test rows of images/README.md, rewritten for the newly published run."""
    readme = out / "README.md"
    if not readme.exists():
        return
    lines = readme.read_text(encoding="utf-8").splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("| [loadtest-")), len(lines))
    kept = [line for line in lines if not line.startswith("| [loadtest-")]
    kept[at:at] = [picture_row(p) for p in pictures]
    readme.write_text("\n".join(kept) + "\n", encoding="utf-8")
    say(f"  ✓ {readme} (the load-test rows)")


def record_loadtest_figures(report: str, measured: Path = facts.MEASURED) -> dict[str, int]:
    """The report's headline figures into measured.json (the G4 README quotes them); `make docs` carries them."""
    try:
        figures = read_figures(report)
    except ValueError as error:
        raise ImagesError(f"the newest load-test report.md cannot be read ({error}); measured.json unchanged") from None
    source = f"make loadtest GRADE=G4_Senior SOLUTION=1, images/loadtest-report.md: started {started(report)}"
    if load := load_before(report):
        source += f"; load average before (1, 5, 15 min): {load}"
    for key in KEYS:
        if key in figures:
            facts.record_measured(key, figures[key], source, measured)
        else:
            facts.forget_measured(key, measured)
    say(f"  ✓ {measured}: {', '.join(f'{k}={v}' for k, v in figures.items())}; run make docs")
    return figures


# -- 4. README.md ----------------------------------------------------------------------------------------------


def picture_row(picture: Picture) -> str:
    return f"| [{picture.name}]({picture.name}) | {picture.shows} | {picture.made} |"


def write_readme(out: Path, pictures: list[Picture], run_date: str) -> Path:
    rows = "\n".join(picture_row(p) for p in pictures if (out / p.name).exists())
    text = f"""# Pictures of the course

Every picture here is generated, not drawn by hand: `make images` (that is,
`.venv/bin/python -m coursekit.docs.images`) renders the architecture diagram from its
source text, starts a **private** native copy of G0_Trainee (temporary folder, free ports,
its own run dir; your `make run` is not touched), unpauses `load_shops_to_dwh`, lets data
flow for a few minutes, photographs the real Airflow UI, queries the real warehouse, reads
the real generator logs, then stops the copy and deletes it.

The pictures below come from a real run on **{run_date}**. Regenerating them is a manual
step (about 5 minutes); commit what it writes. It needs Graphviz and Chromium:
`apt-get install graphviz chromium fonts-dejavu-core`.
The diagram alone: `.venv/bin/python -m coursekit.docs.images --diagram-only`.

| picture | what it shows | how it was made |
| --- | --- | --- |
{rows}

Source of the diagram: [architecture.dot](architecture.dot) (Graphviz). Edit it, then
re-render; `tests/test_images.py` checks that it renders, that its ports match
`G0_Trainee/deploy/docker-compose.yml`, and that every picture listed here exists.
"""
    target = out / "README.md"
    target.write_text(text, encoding="utf-8")
    say(f"  ✓ {target}")
    return target


def check_sizes(out: Path) -> None:
    for png in sorted(out.glob("*.png")):
        size = png.stat().st_size
        say(f"    {png.name:<28} {size / 1024:7.0f} KB")
        if size > MAX_PNG_BYTES:
            say(f"  ! {png.name} is over {MAX_PNG_BYTES // 1024} KB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.docs.images", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "images", help="folder of the pictures (images/)")
    parser.add_argument("--diagram-only", action="store_true", help="only render architecture.dot (no stack)")
    parser.add_argument(
        "--loadtest-only", action="store_true", help="only copy the newest load-test report and plots (no stack)"
    )
    parser.add_argument("--minutes", type=float, default=3.5, help="minutes of data flow before the pictures")
    parser.add_argument("--loadtest-report", type=Path, default=LOADTEST_REPORTS, help="where load-test reports are")
    options = parser.parse_args(argv)
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if options.loadtest_only:
            say("load-test report and plots")
            replace_loadtest_rows(out, copy_loadtest_plots(out, options.loadtest_report))
            return 0
        say("1. architecture diagram")
        pictures = render_architecture(out)
        if options.diagram_only:
            return 0
        say(f"2. a private {GRADE} stack")
        with PrivateStack(GRADE) as stack:
            runs = let_data_flow(stack, options.minutes)
            say("  … screenshots of the Airflow UI")
            pictures += airflow_screenshots(stack, out, runs)
            say("  … screenshots of pgAdmin")
            pictures += pgadmin_screenshots(stack, out)
            say("  … SCD2 history and generator logs")
            pictures += data_pictures(stack, out)
        say("3. load-test plots")
        pictures += copy_loadtest_plots(out, options.loadtest_report)
        say("4. README.md")
        write_readme(out, pictures, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        check_sizes(out)
    except (ImagesError, ChromiumError, urllib.error.URLError) as exc:
        print(f"\n✗ {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
