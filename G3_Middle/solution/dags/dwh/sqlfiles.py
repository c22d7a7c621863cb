"""Named SQL statements kept in `.sql` files, composed safely with `psycopg.sql`.

Each `.sql` file holds statements headed by `-- name: <statement>`. Names of
tables and columns are `{placeholders}` filled with `sql.Identifier` (quoted, so
a hostile name cannot break out); values stay `%(param)s` and travel separately
from the SQL text. `{open_end}`, the end of a current version, is filled in
everywhere from `contract.OPEN_END`, so no statement spells it out.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from psycopg import sql

from dwh.contract import OPEN_END

SQL_DIR = Path(__file__).with_name("sql")
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def statements(file: str | Path) -> dict[str, str]:
    """All named statements of `dwh/sql/<file>.sql`, or of the `.sql` file at a path."""
    path = Path(file) if str(file).endswith(".sql") else SQL_DIR / f"{file}.sql"
    parts = _HEADER.split(path.read_text(encoding="utf-8"))
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def compose(file: str | Path, name: str, **parts: sql.Composable) -> sql.Composed:
    """Statement `name` of `file` with its placeholders filled by `parts`."""
    return sql.SQL(statements(file)[name]).format(open_end=sql.Literal(OPEN_END), **parts)


def ident_list(names: list[str], prefix: str | None = None) -> sql.Composed:
    """`"a", "b"` or, with a table alias, `m."a", m."b"`."""
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
