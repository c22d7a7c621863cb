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

A manual step (needs `apt-get install graphviz chromium fonts-dejavu-core` and ~5 minutes); its output
is committed. tests/test_images.py only checks that what README.md lists exists and that the
diagram's source renders.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from coursekit.docs.chromium import Chromium, ChromiumError
from coursekit.grade import REPO_ROOT, Grade

GRADE = "G0_Trainee"
LOAD_DAG = "load_shops_to_dwh"
PORT_VARIABLES = ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT", "AIRFLOW_PORT", "PGADMIN_PORT")
RUNTIME_FOLDERS = ("generator_app_data", "logs", "staging", "__pycache__", ".run")
LOADTEST_REPORTS = REPO_ROOT / "loadtest-report"
LOADTEST_PLOTS = ("throughput.png", "latency.png", "backlog.png", "breakdown.png", "resources.png")
DIAGRAM_DPI = 110
MAX_PNG_BYTES = 400 * 1024


class ImagesError(RuntimeError):
    """A picture could not be made; the message says what to install or look at."""


@dataclass
class Picture:
    """One file of images/ and the line README.md gives it."""

    name: str
    shows: str
    made: str


def say(message: str) -> None:
    print(message, flush=True)


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


# -- 2. a private stack ----------------------------------------------------------------------------------------


class PrivateStack:
    """A copy of a grade started natively on free ports in a temporary folder; a context manager."""

    def __init__(self, grade: str = GRADE) -> None:
        from coursekit.pg import free_port

        self.grade_name = grade
        self.root = Path(tempfile.mkdtemp(prefix="coursekit-images-"))
        self.grade = Grade.named(grade, self.root)
        self.run_dir = self.root / ".run"
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.env = {**os.environ, **{name: str(port) for name, port in self.ports.items()}}
        self.log = self.root / "native.log"
        self.base_url = f"http://127.0.0.1:{self.ports['AIRFLOW_PORT']}"
        self._token: str | None = None

    def __enter__(self) -> PrivateStack:
        shutil.copytree(REPO_ROOT / self.grade_name, self.grade.path, ignore=shutil.ignore_patterns(*RUNTIME_FOLDERS))
        say(f"  … starting a private {self.grade_name} in {self.root} (Airflow on {self.base_url})")
        try:
            self.native("run", timeout=900)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        say("  … stopping the private stack")
        try:
            self.native("stop", timeout=300, check=False)
        finally:
            leftovers = self.live_processes()
            for pid in leftovers:  # started for this folder only: ours to end
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if leftovers:
                say(f"  ! `stop` left {len(leftovers)} processes; killed them: {leftovers}")
            shutil.rmtree(self.root, ignore_errors=True)
            say(f"  ✓ stopped; removed {self.root}")

    def live_processes(self) -> list[int]:
        """Processes whose command line names this stack's folder (zombies do not count)."""
        import psutil

        found = []
        for process in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if process.info["status"] != psutil.STATUS_ZOMBIE and str(self.root) in " ".join(
                    process.info["cmdline"] or []
                ):
                    found.append(process.info["pid"])
            except psutil.Error:
                continue
        return [pid for pid in found if pid != os.getpid()]

    def native(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """`python -m coursekit.native <command> --grade ... --grades-root <copy> --run-dir <copy>/.run ...`."""
        command = [sys.executable, "-m", "coursekit.native", args[0], "--grade", self.grade_name]
        command += ["--grades-root", str(self.root), "--run-dir", str(self.run_dir), *args[1:]]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if self.log.parent.exists():
            with open(self.log, "a", encoding="utf-8") as log:
                log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            raise ImagesError(f"`coursekit.native {' '.join(args)}` failed:\n{result.stdout[-2000:]}{result.stderr}")
        return result.stdout

    # -- Airflow's REST API ---------------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT of the grade's login (airflow.env: user airflow, AIRFLOW_LOGIN_PASSWORD)."""
        if self._token is None:
            env = self.grade.env("airflow")
            user = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "airflow:admin").split(":")[0]
            body = json.dumps({"username": user, "password": env.get("AIRFLOW_LOGIN_PASSWORD", "airflow")}).encode()
            request = urllib.request.Request(
                f"{self.base_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=15) as response:
                self._token = json.loads(response.read())["access_token"]
        return self._token

    def api(self, path: str) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/api/v2/{path}", headers={"Authorization": f"Bearer {self.token()}"}
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())

    def dag_runs(self, dag_id: str = LOAD_DAG) -> list[dict]:
        return self.api(f"dags/{dag_id}/dagRuns?order_by=-run_after&limit=50").get("dag_runs", [])

    # -- the warehouse ---------------------------------------------------------------------------------------------

    def dwh(self):
        import psycopg2

        env = self.grade.env("pg-dwh")
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.ports["PG_DWH_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=env["POSTGRES_DB"],
            options="-c timezone=UTC",
        )


def let_data_flow(stack: PrivateStack, minutes: float, min_runs: int = 3, min_versions: int = 3) -> list[dict]:
    """Unpause the load, wait `minutes` and until `min_runs` runs succeeded and a key has `min_versions`."""
    stack.native("airflow", "--", "dags", "unpause", LOAD_DAG)
    say(f"  … {LOAD_DAG} unpaused; letting data flow for {minutes:g} minutes or more")
    started = time.monotonic()
    deadline = started + minutes * 60 + 300
    while True:
        elapsed = time.monotonic() - started
        runs = stack.dag_runs()
        succeeded = [r for r in runs if r["state"] == "success"]
        failed = [r for r in runs if r["state"] == "failed"]
        if failed:
            raise ImagesError(f"{LOAD_DAG} run {failed[0]['dag_run_id']} failed; logs under {stack.root}")
        versions = most_versions(stack)
        if elapsed >= minutes * 60 and len(succeeded) >= min_runs and versions >= min_versions:
            break
        if time.monotonic() > deadline:
            if len(succeeded) >= 1:
                say(f"  ! only {len(succeeded)} successful runs, at most {versions} versions per key; going on")
                break
            raise ImagesError(f"no successful {LOAD_DAG} run within {deadline - started:.0f} s")
        say(f"    {elapsed:4.0f} s: {len(succeeded)} successful runs, at most {versions} versions of a customer")
        time.sleep(20)
    return wait_for_quiet_moment(stack)


def most_versions(stack: PrivateStack) -> int:
    with closing(stack.dwh()) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('dds.customers') is not null")
        if not cur.fetchone()[0]:
            return 0
        cur.execute(
            "select coalesce(max(n), 0) from (select count(*) n from dds.customers group by customer_id, src_id) v"
        )
        return cur.fetchone()[0]


def wait_for_quiet_moment(stack: PrivateStack, timeout: float = 180) -> list[dict]:
    """Until no run is queued or running and the next one is 35 s or more away, so the UI shows green runs.

    The load runs every minute on the minute (pipeline.yaml), and the screenshots take ~20 s.
    """
    deadline = time.monotonic() + timeout
    while True:
        runs = stack.dag_runs()
        finished = runs and all(r["state"] in ("success", "failed") for r in runs)
        if finished and datetime.now(UTC).second <= 25:
            return runs
        if time.monotonic() > deadline:
            say("  ! a run is still going; the pictures may show it")
            return runs
        time.sleep(1)


# -- 2a. Airflow UI screenshots --------------------------------------------------------------------------------

CLICK = (
    "(() => {{ const b = document.querySelector('button[aria-label=\"{label}\"]'); b && b.click(); return !!b; }})()"
)
GRID_WIDER_BY = 160  # CSS pixels
HAS_TEXT = "(() => {{ const t = document.body.innerText; return {names}.every(n => t.includes(n)); }})()"


def airflow_screenshots(stack: PrivateStack, out: Path, runs: list[dict]) -> list[Picture]:
    """The DAG list, the load DAG's graph (one successful run) and its grid, logged in with the JWT cookie."""
    pictures = []
    dag_ids = ["cleanup_staging", "hello_world", LOAD_DAG, "taskflow_example"]
    latest = next(r for r in runs if r["state"] == "success")
    succeeded = sum(r["state"] == "success" for r in runs)
    with Chromium(width=1440, height=900) as browser:
        # The UI sends the `_token` cookie with every API call (SimpleAuthManager sets it at login):
        # the token of POST /auth/token with the grade's login is exactly what a logged-in learner holds.
        browser.set_cookie("_token", stack.token(), stack.base_url)

        browser.goto(f"{stack.base_url}/dags")
        browser.wait_for(HAS_TEXT.format(names=json.dumps([*dag_ids, "Latest Run"])), what="the DAG list")
        browser.wait_for("document.querySelectorAll('a[href*=\"/runs/\"]').length > 0", what="the latest run")
        time.sleep(2)
        browser.screenshot(out / "airflow-dags.png")
        pictures.append(
            Picture(
                "airflow-dags.png",
                f"Airflow 3's DAG list: the grade's four DAGs, {LOAD_DAG} unpaused with its latest run, "
                "the others paused as they start.",
                "Headless Chromium on `/dags`",
            )
        )

        run_url = f"{stack.base_url}/dags/{LOAD_DAG}/runs/{urllib.parse.quote(latest['dag_run_id'], safe='')}"
        browser.resize(1440, 1000)  # room below the graph for React Flow's minimap
        browser.goto(run_url)
        browser.wait_for(CLICK.format(label="Show Graph (Press g)"), what="the graph button")
        browser.wait_for(CLICK.format(label="Expand all task groups"), what="the expand button")
        browser.wait_for("document.querySelectorAll('.react-flow__node').length >= 17", what="the graph's nodes")
        time.sleep(3)  # the graph fits itself into the panel
        browser.screenshot(out / "airflow-graph.png")
        pictures.append(
            Picture(
                "airflow-graph.png",
                f"Graph view of one successful {LOAD_DAG} run: create_schemas → create_tables, then a task group "
                "per table (customers, products, orders) with extract_new_york / extract_istanbul → load_stg → "
                "merge_dds.",
                f"Headless Chromium on `/dags/{LOAD_DAG}/runs/<run>`, Graph, task groups expanded",
            )
        )

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
        pictures.append(
            Picture(
                "airflow-grid.png",
                f"Grid view of {LOAD_DAG}: {succeeded} scheduled runs, one a minute, every task green; "
                "run durations and the dds.* asset events beside it.",
                f"Headless Chromium on `/dags/{LOAD_DAG}`, Grid, task groups expanded",
            )
        )
    return pictures


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


# -- 2b. one key's SCD2 history --------------------------------------------------------------------------------

SCD2_KEY_QUERY = """\
select customer_id, src_id, count(*) as versions
from dds.customers
group by customer_id, src_id
order by versions desc, src_id, customer_id
limit 1"""

SCD2_HISTORY_QUERY = """\
select customer_id, src_id, first_name, last_name, email, phone, address,
       eff_from_dttm, eff_to_dttm, load_run_id
from dds.customers
where customer_id = %(customer_id)s and src_id = %(src_id)s
order by eff_from_dttm"""

TABLE_CSS = """
body { margin: 0; background: #fff; font-family: 'DejaVu Sans', sans-serif; color: #1f2937; }
#shot { display: inline-block; padding: 22px 26px; }
h1 { font-size: 17px; margin: 0 0 4px; }
p.sub { font-size: 12.5px; color: #4b5563; margin: 0 0 12px; }
pre { font: 11.5px/1.45 'DejaVu Sans Mono', monospace; background: #f3f4f6; border-radius: 6px; padding: 8px 12px;
      margin: 0 0 14px; color: #374151; }
table { border-collapse: collapse; font-size: 12.5px; }
th { background: #1e3a5f; color: #fff; text-align: left; padding: 7px 10px; font-weight: 600; white-space: nowrap; }
td { border-bottom: 1px solid #e5e7eb; padding: 6px 10px; white-space: nowrap; vertical-align: top; }
td.mono { font-family: 'DejaVu Sans Mono', monospace; font-size: 11.5px; }
td.changed { background: #fff3bf; }
tr.current td { font-weight: 600; }
tr.current td.eff_to { color: #15803d; }
p.legend { font-size: 11.5px; color: #6b7280; margin: 10px 0 0; }
span.swatch { display: inline-block; width: 11px; height: 11px; background: #fff3bf; border: 1px solid #e9d98a;
              vertical-align: -1px; }
"""

SCD2_TRACKED = ("first_name", "last_name", "email", "phone", "address")
SCD2_TECHNICAL = ("eff_from_dttm", "eff_to_dttm", "load_run_id")


def query_scd2_history(stack: PrivateStack) -> tuple[dict, list[str], list[tuple]]:
    """The customer with the most versions in dds, and every version of it."""
    with closing(stack.dwh()) as conn, conn.cursor() as cur:
        cur.execute(SCD2_KEY_QUERY)
        customer_id, src_id, _ = cur.fetchone()
        key = {"customer_id": customer_id, "src_id": src_id}
        cur.execute(SCD2_HISTORY_QUERY, key)
        columns = [d[0] for d in cur.description]
        return key, columns, cur.fetchall()


def _cell(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if value is None:
        return "NULL"
    return str(value).replace("\n", ", ")


def _closing_rule(columns: list[str], rows: list[tuple]) -> str:
    """What the rows show about how versions follow each other (said only if every pair agrees)."""
    start, end = columns.index("eff_from_dttm"), columns.index("eff_to_dttm")
    gaps = {(later[start] - earlier[end]).total_seconds() for earlier, later in zip(rows, rows[1:], strict=False)}
    rule = "A new version opens at the change"
    if gaps == {1.0}:
        rule += "; the previous one closes one second before it"
    return rule + "; the current version ends at 9999-12-31 23:59:59."


def scd2_html(key: dict, columns: list[str], rows: list[tuple]) -> str:
    """A clean table of the versions; cells that changed from the previous version are highlighted."""
    query = SCD2_HISTORY_QUERY.replace("%(customer_id)s", str(key["customer_id"])).replace(
        "%(src_id)s", f"'{key['src_id']}'"
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    previous: tuple | None = None
    for row in rows:
        cells = []
        for index, (column, value) in enumerate(zip(columns, row, strict=True)):
            classes = []
            if column in SCD2_TECHNICAL:
                classes.append("mono")
            if column == "eff_to_dttm":
                classes.append("eff_to")
            if previous is not None and column in SCD2_TRACKED and previous[index] != value:
                classes.append("changed")
            cells.append(f"<td class='{' '.join(classes)}'>{html.escape(_cell(value))}</td>")
        current = row[columns.index("eff_to_dttm")].year == 9999
        body.append(f"<tr class='{'current' if current else ''}'>{''.join(cells)}</tr>")
        previous = row
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{TABLE_CSS}</style></head><body>
<div id="shot">
<h1>SCD2 history of one customer in dds.customers</h1>
<p class="sub">Customer {key["customer_id"]} of shop {html.escape(key["src_id"])}: {len(rows)} versions, \
one per load that saw a change. {_closing_rule(columns, rows)}</p>
<pre>{html.escape(query)};</pre>
<table><tr>{head}</tr>{"".join(body)}</table>
<p class="legend"><span class="swatch"></span> changed from the previous version &nbsp;·&nbsp; \
<b>bold</b>: the current version &nbsp;·&nbsp; times in UTC</p>
</div></body></html>"""


# -- 2c. generator logs ----------------------------------------------------------------------------------------

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")

TERMINAL_CSS = """
body { margin: 0; background: #fff; }
#shot { display: inline-block; padding: 14px; }
.window { background: #1e1f29; border-radius: 9px; box-shadow: 0 4px 14px rgba(0,0,0,.28); overflow: hidden; }
.bar { background: #2d2f3b; padding: 7px 12px; font: 12px 'DejaVu Sans', sans-serif; color: #b4b8c8; }
.bar i { display: inline-block; width: 11px; height: 11px; border-radius: 50%; margin-right: 6px;
        vertical-align: -1px; }
.bar span { margin-left: 10px; }
pre { margin: 0; padding: 10px 14px 12px; font: 12px/1.5 'DejaVu Sans Mono', monospace; color: #e6e6e6; }
.ts { color: #7f849c; } .INFO { color: #8bd17c; } .DEBUG { color: #7fb4f0; } .WARNING { color: #f5c46b; }
.ERROR, .CRITICAL { color: #f37f7f; } .cut { color: #7f849c; } .sql { color: #d7a8f5; }
"""


def info_excerpt(text: str, lines: int = 11) -> list[str]:
    """The first lines of info.log: the start line, the tables, the first ticks."""
    return text.splitlines()[:lines]


def debug_excerpt(text: str) -> tuple[int, list[str]]:
    """One whole tick of debug.log, `begin` to INFO summary: the last complete tick that updated customers."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.search(r" DEBUG tick \d+ at .*: begin$", line)]
    for first in reversed(starts):
        number = int(re.search(r"tick (\d+) at", lines[first]).group(1))
        summary = re.compile(rf" INFO tick {number} ")
        end = next((i for i in range(first, len(lines)) if summary.search(lines[i])), None)
        if end is not None and any(" updated customers: " in line for line in lines[first:end]):
            return number, lines[first : end + 1]
    raise ImagesError("debug.log has no complete tick that updated customers yet")


def terminal_html(title: str, lines: list[str], width: int, wrap: bool = False) -> str:
    """Log lines as a dark terminal window; lines longer than `width` wrap, or are cut (like `less -S`)."""
    rendered = []
    for line in lines:
        cut = len(line) > width and not wrap
        shown = line[: width - 1] if cut else line[:width]
        rest = [line[i : i + width] for i in range(width, len(line), width)] if wrap else []
        match = TIMESTAMP.match(shown)
        if match:
            stamp, level = shown[:20], match.group(1)
            message = html.escape(shown[len(match.group(0)) :])
            if message.startswith("SQL:"):
                message = f"<span class='sql'>SQL:</span>{message[4:]}"
            text = f"<span class='ts'>{stamp}</span> <span class='{level}'>{level}</span> {message}"
        else:
            text = html.escape(shown)
        rendered.append(text + ("<span class='cut'>…</span>" if cut else ""))
        rendered += [html.escape(part) for part in rest]
    dots = "".join(f"<i style='background:{c}'></i>" for c in ("#ff5f57", "#febc2e", "#28c840"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{TERMINAL_CSS}</style></head><body>
<div id="shot"><div class="window"><div class="bar">{dots}<span>{html.escape(title)}</span></div>
<pre>{chr(10).join(rendered)}</pre></div></div></body></html>"""


def render_html(browser: Chromium, page: str, target: Path, folder: Path) -> None:
    source = folder / f"{target.stem}.html"
    source.write_text(page, encoding="utf-8")
    browser.goto(source.as_uri())
    browser.wait_for("document.fonts.status === 'loaded'", what="fonts")
    width = browser.evaluate("Math.ceil(document.querySelector('#shot').getBoundingClientRect().width)")
    if width > browser.width:
        browser.resize(width + 20, browser.height)
    browser.screenshot_element(target, "#shot")


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


def copy_loadtest_plots(out: Path, reports: Path = LOADTEST_REPORTS) -> list[Picture]:
    """The newest `python -m coursekit.loadtest` report into images/: its plots as loadtest-<plot>.png,
    report.md as loadtest-report.md (links to the renamed files) and backlog.csv as loadtest-backlog.csv."""
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
    pictures = []
    report = (newest / "report.md").read_text(encoding="utf-8") if (newest / "report.md").exists() else None
    for name in (*LOADTEST_PLOTS, "backlog.csv"):
        source = newest / name
        if source.exists():
            target = out / f"loadtest-{name}"
            shutil.copyfile(source, target)
            say(f"  ✓ {target} (from {source})")
            if report is not None:
                report = report.replace(f"]({name})", f"](loadtest-{name})").replace(f"[{name}]", f"[loadtest-{name}]")
            if name.endswith(".png"):
                what = name.removesuffix(".png")
                made = f"`python -m coursekit.loadtest` (matplotlib), report {newest.name}"
                pictures.append(Picture(target.name, f"Load test: {what} over time, phase by phase.", made))
    if report is not None:
        (out / "loadtest-report.md").write_text(report, encoding="utf-8")
        say(f"  ✓ {out / 'loadtest-report.md'} (from {newest / 'report.md'})")
    return pictures


# -- 4. README.md ----------------------------------------------------------------------------------------------


def write_readme(out: Path, pictures: list[Picture], run_date: str) -> Path:
    rows = "\n".join(f"| [{p.name}]({p.name}) | {p.shows} | {p.made} |" for p in pictures if (out / p.name).exists())
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
            copy_loadtest_plots(out, options.loadtest_report)
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
