"""Realistic wrong solutions, each a small edit of the independent correct one.

`MUTATIONS[name] = (mistake, replacements)`: `apply(name)` returns the source of
`independent/load_shops_to_dwh.py` with every `(old, new)` replaced, each `old`
found exactly once (so an edit of the correct solution that breaks a mutation
fails loudly instead of silently grading the correct file). Every wrong
solution parses and runs; only `crashes_on_some_batches` fails, and only on a
batch holding a quote. Names starting with `g2_` are G2 solutions
(`KEEP_HISTORY = False`); the others are G3.

`SYMPTOMS[name]` says which warehouse rule each one breaks and when it shows.
"""

from __future__ import annotations

from pathlib import Path

INDEPENDENT = Path(__file__).with_name("independent") / "load_shops_to_dwh.py"
Replacements = list[tuple[str, str]]

G2_SWITCH: Replacements = [("KEEP_HISTORY: bool = True", "KEEP_HISTORY: bool = False")]

_NO_LOOKBACK: Replacements = [
    (
        '" or created_at > %(watermark)s::timestamptz - make_interval(secs => %(lookback)s)"',
        '" or created_at > %(watermark)s::timestamptz"',
    )
]
_ONE_SHOP: Replacements = [('    "Istanbul": "shop_2_conn",\n', "")]
_STG_APPENDED: Replacements = [
    (
        """                cur.execute(
                    sql.SQL("delete from {} where src_id = %s").format(sql.Identifier("stg", table)), (batch["src_id"],)
                )
""",
        "",
    )
]
# Rows above the watermark the extract used are "new" without a look at dds.
_TRUST_WATERMARK: Replacements = [
    ("case when c.{key} is null then 'new'", "case when c.{key} is null or b.created_at > b.watermark then 'new'")
]
_DELETE_RETENTION: Replacements = [
    (
        "            rows = cur.fetchall()\n",
        "            rows = cur.fetchall()\n"
        '            oldest = cur.execute(sql.SQL("select min(created_at) from {}").format(sql.Identifier(table)))'
        ".fetchone()[0]\n",
    ),
    (
        '        "path": str(path),\n',
        '        "path": str(path),\n        "oldest": oldest.isoformat() if oldest else None,\n',
    ),
    (
        "                        copy.write_row((*row, *extra))\n",
        "                        copy.write_row((*row, *extra))\n"
        "                # mirror the shop: what it no longer has goes from dds too\n"
        "                cur.execute(\n"
        '                    sql.SQL("delete from {} where src_id = %s and created_at < %s::timestamptz").format(\n'
        '                        sql.Identifier("dds", table)\n'
        "                    ),\n"
        '                    (batch["src_id"], batch["oldest"]),\n'
        "                )\n",
    ),
]

MUTATIONS: dict[str, tuple[str, Replacements]] = {
    "overwrite_in_place": (
        "a changed row's current version is updated in place (SCD1): no history is kept",
        [
            (
                "            cur.execute(close.format(**parts))\n",
                "            cur.execute(overwrite.format(**parts))\n",
            ),
            ("where change in ('new', 'changed')", "where change = 'new'"),
        ],
    ),
    "version_per_reread": (
        "every re-read row of a known key opens a new version: no change detection",
        [("                    when ({b_values}) is not distinct from ({c_values}) then 'unchanged'\n", "")],
    ),
    "null_churn": (
        "change detection with = instead of IS NOT DISTINCT FROM: a row with a NULL is 'changed' on every run",
        [("is not distinct from", "=")],
    ),
    "no_lookback": (
        "reads only rows created after the watermark: later updates of loaded rows are missed",
        _NO_LOOKBACK,
    ),
    "one_shop_only": ("loads New-York only: Istanbul is missing from the sources", _ONE_SHOP),
    "float_and_timezone": (
        "price declared double precision, created_at declared timestamp and read in New York time (-5 h)",
        [
            ('"price": "numeric(10,2)"', '"price": "double precision"'),
            (
                '"birth_date": "date",\n            "created_at": "timestamptz"',
                '"birth_date": "date",\n            "created_at": "timestamp"',
            ),
            (
                '"description": "text",\n            "created_at": "timestamptz"',
                '"description": "text",\n            "created_at": "timestamp"',
            ),
            (
                '"comment": "text",\n            "created_at": "timestamptz"',
                '"comment": "text",\n            "created_at": "timestamp"',
            ),
            (
                "        src.isolation_level, src.read_only =",
                "        src.execute(\"set time zone 'America/New_York'\")  # the shop's local time\n"
                "        src.isolation_level, src.read_only =",
            ),
        ],
    ),
    "overlap_one_second": (
        "the replaced version ends AT the new version's start instead of 1 second before",
        [("set eff_to_dttm = b.eff_from_dttm - interval '1 second'", "set eff_to_dttm = b.eff_from_dttm")],
    ),
    "duplicates_on_rerun": (
        "stg is appended to, not replaced, and rows above the extract's watermark are inserted as new without"
        " looking at dds (and no unique index on current versions): a re-run merges its first attempt's batch"
        " again and opens a second current version of every row that attempt inserted",
        [
            *_STG_APPENDED,
            *_TRUST_WATERMARK,
            (
                """            if KEEP_HISTORY:  # the database itself refuses a second current version
                dwh.execute(
                    sql.SQL("create unique index if not exists {} on {} ({}, src_id) where eff_to_dttm = {}").format(
                        sql.Identifier(f"{table}_current_uq"),
                        sql.Identifier("dds", table),
                        sql.Identifier(key),
                        sql.Literal(OPEN_END),
                    )
                )
""",
                "",
            ),
        ],
    ),
    "deletes_retention_history": (
        "mirrors the shop's retention: deletes from dds every version older than the shop's oldest row",
        _DELETE_RETENTION,
    ),
    "one_watermark": (
        "one watermark, max(created_at) across both shops: the shop that is behind loses rows",
        [(" where src_id = %(src_id)s", "")],
    ),
    "crashes_on_some_batches": (
        "stg rows inserted with SQL built by an f-string: a value with a quote breaks the statement",
        [
            (
                """                with cur.copy(copy_sql) as copy:
                    for row in frame.itertuples(index=False, name=None):
                        copy.write_row((*row, *extra))
""",
                """                for row in frame.itertuples(index=False, name=None):
                    values = ", ".join("null" if v is None else f"'{v}'" for v in (*row, *extra))
                    cur.execute(f"insert into stg.{table} values ({values})")
""",
            )
        ],
    ),
    "non_atomic_merge": (
        "the merge runs in autocommit: closing old versions and inserting new ones commit separately",
        [
            (
                "with connect(DWH_CONN_ID) as dwh, dwh.transaction(), dwh.cursor() as cur:",
                "with connect(DWH_CONN_ID) as dwh, dwh.cursor() as cur:",
            ),
            ("create temp table batch on commit drop as", "create temp table batch as"),
        ],
    ),
    "g2_duplicates_on_rerun": (
        "G2: stg appended to, rows above the extract's watermark inserted as new, no primary key:"
        " a re-run inserts its first attempt's new rows again",
        [
            *G2_SWITCH,
            *_STG_APPENDED,
            *_TRUST_WATERMARK,
            ('pk=sql.SQL(", primary key ({})").format(names(pk)),', 'pk=sql.SQL(""),'),
        ],
    ),
    "g2_no_lookback": ("G2: reads only rows created after the watermark", [*G2_SWITCH, *_NO_LOOKBACK]),
    "g2_one_shop_only": ("G2: loads New-York only", [*G2_SWITCH, *_ONE_SHOP]),
    "g2_deletes_retention_history": (
        "G2: deletes from dds the rows the shop deleted by retention",
        [*G2_SWITCH, *_DELETE_RETENTION],
    ),
}

# What each one breaks, and the event that exposes it (tests/test_solutions_run.py asserts each).
SYMPTOMS: dict[str, str] = {
    "overwrite_in_place": "after updates: no key ever has a second version; every other rule and value holds",
    "version_per_reread": "on any second run: consecutive identical versions of every re-read key",
    "null_churn": "on any second run: consecutive identical versions, only on rows holding a NULL (seen only by a"
    " NULL-safe comparison); values still equal the source",
    "no_lookback": "after updates of loaded rows (or a late commit): current values differ from the source",
    "one_shop_only": "at once: every Istanbul row missing from dds",
    "float_and_timezone": "at once: price (double precision) and created_at (naive New York time, 5 h off) differ"
    " from the source in every table; inside dds everything is consistent",
    "overlap_one_second": "after updates: next eff_from_dttm = previous eff_to_dttm (overlap), nothing else",
    "duplicates_on_rerun": "only on a re-run of a finished run that inserted rows: a second current version of each;"
    " before the re-run every rule holds",
    "deletes_retention_history": "after a retention delete: those keys and all their versions are gone from dds",
    "one_watermark": "when one shop's created_at lags the other's by more than the lookback (clock skew):"
    " that shop's new rows and updates are lost",
    "crashes_on_some_batches": "when a batch holds a quote: load_stg fails, the run fails, every later run too",
    "non_atomic_merge": "only when a merge is killed between closing and inserting: keys without a current version,"
    " and every later run fails on the primary key; otherwise correct",
    "g2_duplicates_on_rerun": "only on a re-run of a finished run that inserted rows: two rows per key and src_id",
    "g2_no_lookback": "after a late commit (created_at below the watermark when it becomes visible): the row is lost",
    "g2_one_shop_only": "at once: every Istanbul row missing from dds",
    "g2_deletes_retention_history": "after a retention delete: those rows are gone from dds",
}


def variant(replacements: Replacements) -> str:
    """The independent solution with each (old, new) applied; each old must occur exactly once."""
    source = INDEPENDENT.read_text(encoding="utf-8")
    for old, new in replacements:
        count = source.count(old)
        assert count == 1, f"{old!r} occurs {count} times in {INDEPENDENT.name}, expected once"
        source = source.replace(old, new)
    return source


def apply(name: str) -> str:
    """The source of wrong solution `name`."""
    return variant(MUTATIONS[name][1])


def g2_correct() -> str:
    """The independent solution as a correct G2 load (no history)."""
    return variant(G2_SWITCH)
