"""Pictures of data, drawn as small HTML pages: one key's SCD2 history, the generators' logs.

`images.py` has Chromium screenshot each page; the pages are plain HTML and CSS,
made from what the private stack's warehouse and log files hold.
"""

from __future__ import annotations

import html
import re
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from coursekit.docs.chromium import Chromium
from coursekit.docs.private_stack import ImagesError, PrivateStack

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
