"""Named SQL statements kept in `.sql` files, composed safely with psycopg2.sql.

Each file under `sql/` holds statements headed by `-- name: <statement>`. Names
of tables and columns are `{placeholders}` filled with `psycopg2.sql.Identifier`
(quoted, so a hostile name cannot break out); values stay `%(param)s` and travel
separately from the SQL text. No value is ever formatted into a statement.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from psycopg2 import sql

SQL_DIR = Path(__file__).with_name("sql")
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def statements(file: str) -> dict[str, str]:
    """All named statements of `sql/<file>.sql`."""
    text = (SQL_DIR / f"{file}.sql").read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def compose(file: str, name: str, **parts: sql.Composable) -> sql.Composed:
    """Statement `name` of `file` with its placeholders filled by `parts`."""
    return sql.SQL(statements(file)[name]).format(**parts)


def ident_list(names: list[str], prefix: str | None = None) -> sql.Composed:
    """`"a", "b"` or, with a table alias, `m."a", m."b"`."""
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
