"""The SQL of the generator: tables, and the statements of one tick.

Rules every function here follows, and why:

* Values only ever travel as query parameters and identifiers only through
  `psycopg2.sql.Identifier`, so names like O'Brien or "a;b" are data, never SQL.
  The one piece of SQL text taken from the config is a column type, which
  `sqltypes` only accepts from a fixed whitelist.
* Set-based: a tick's inserts are one `COPY` per table and its updates one
  `UPDATE ... FROM (VALUES ...)` per table, whatever the row count, because
  per-row statements would make a 10,000-row tick take seconds.
* Time comes from the database: `created_at` is `now()`, the start of the
  tick's transaction (read once per tick and sent with the rows), and the
  update and delete windows are measured against the same `now()`. One clock
  (the database's) decides everything, so a container with a skewed clock
  cannot make rows look older or younger, and all rows of a tick share one
  timestamp (UTC, as every timestamptz).
* Functions take a cursor and never commit: the caller owns the transaction,
  which is what makes a tick all-or-nothing.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Sequence
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from coursekit.generator.config import CREATED_AT, TableSpec

log = logging.getLogger(__name__)

STATEMENT_LOG_BYTES = 2000  # debug.log shows this much of each statement; bulk statements run to megabytes

# How format_type() spells the config's types, to notice a column whose type changed in the config.
_CATALOG_SPELLING = {"varchar": "character varying", "char": "character", "timestamptz": "timestamp with time zone"}


def _name(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _log_statement(cur: Any) -> None:
    """Log the statement just run, with its parameters merged in (psycopg2 keeps it in `cur.query`)."""
    if not log.isEnabledFor(logging.DEBUG) or not cur.query:
        return
    query: bytes = cur.query
    text = query[:STATEMENT_LOG_BYTES].decode("utf-8", "replace")
    more = f" ... [{len(query)} bytes in all]" if len(query) > STATEMENT_LOG_BYTES else ""
    log.debug("SQL: %s%s", text, more)


def _execute(cur: Any, statement: sql.Composable, params: Sequence[Any] | None = None) -> None:
    cur.execute(statement, params)
    _log_statement(cur)


# -- tables --------------------------------------------------------------------------------------------------------


def ensure_table(cur: Any, name: str, table: TableSpec) -> None:
    """Create the table if missing; add columns the config gained. Never drops or rewrites anything.

    Why only additive: the shop's history is what the learners load. A restart
    must continue it (same rows, ids continuing), not start over.
    """
    existing = existing_columns(cur, name)
    if not existing:
        parts = [sql.SQL("{} bigint generated always as identity primary key").format(_name(table.id_column))]
        parts += [
            sql.SQL("{} {}").format(_name(column_name), sql.SQL(column.type))
            for column_name, column in table.columns.items()
        ]
        parts.append(sql.SQL("{} timestamptz not null").format(_name(CREATED_AT)))
        _execute(cur, sql.SQL("create table if not exists {} ({})").format(_name(name), sql.SQL(", ").join(parts)))
        log.info("table %s created", name)
    else:
        for column_name, column in table.columns.items():
            if column_name not in existing:
                _execute(
                    cur,
                    sql.SQL("alter table {} add column if not exists {} {}").format(
                        _name(name), _name(column_name), sql.SQL(column.type)
                    ),
                )
                log.info(
                    "table %s: added column %s %s (new in the config; older rows get NULL)",
                    name,
                    column_name,
                    column.type,
                )
            elif existing[column_name] != catalog_spelling(column.type):
                log.warning(
                    "table %s: column %s is %s in the database but %s in the config; keeping the database's "
                    "type (run with --reset to recreate the tables)",
                    name,
                    column_name,
                    existing[column_name],
                    column.type,
                )
    index = f"{name[:47]}_created_at_idx"  # the delete and update windows filter on created_at
    _execute(
        cur, sql.SQL("create index if not exists {} on {} ({})").format(_name(index), _name(name), _name(CREATED_AT))
    )


def existing_columns(cur: Any, name: str) -> dict[str, str]:
    """Column name -> type as Postgres spells it; empty when the table does not exist."""
    _execute(
        cur,
        sql.SQL(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
            "where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped order by a.attnum"
        ),
        (_quoted(name),),
    )
    return dict(cur.fetchall())


def catalog_spelling(sql_type: str) -> str:
    """`varchar(20)` -> `character varying(20)`, as format_type() prints it."""
    if "(" not in sql_type:
        return _CATALOG_SPELLING.get(sql_type, sql_type)
    head, _, rest = sql_type.replace(" ", "").partition("(")
    return f"{_CATALOG_SPELLING.get(head, head)}({rest}"


def drop_table(cur: Any, name: str) -> None:
    _execute(cur, sql.SQL("drop table if exists {}").format(_name(name)))


def _quoted(name: str) -> str:
    """A lowercase identifier as regclass text; quoted so reserved words like "order" work."""
    return f'"{name}"'


# -- one tick ------------------------------------------------------------------------------------------------------


def transaction_time(cur: Any) -> dt.datetime:
    """`now()`: the start of the current transaction, i.e. the tick's timestamp."""
    _execute(cur, sql.SQL("select now()"))
    return cur.fetchone()[0]


def delete_older_than(cur: Any, name: str, id_column: str, seconds: int) -> list[tuple[int, dt.datetime]]:
    """Delete rows created more than `seconds` before now(); returns (id, created_at) of each, by id."""
    _execute(
        cur,
        sql.SQL("delete from {} where {} < now() - make_interval(secs => %s) returning {}, {}").format(
            _name(name), _name(CREATED_AT), _name(id_column), _name(CREATED_AT)
        ),
        (seconds,),
    )
    return sorted(cur.fetchall())


def ids_created_within(cur: Any, name: str, id_column: str, seconds: int) -> Sequence[int]:
    """Ids of rows created at most `seconds` before now(), in id order (so picks from them are reproducible).

    Usually these ids are contiguous: ids grow with created_at and deletes
    remove whole old ticks. Then a `range` stands in for the list: the same
    sequence (`random.sample` picks the same ids from either) without shipping
    tens of thousands of ids per tick. After a rolled-back tick left a gap,
    the ids are read one by one.
    """
    window = sql.SQL("from {} where {} >= now() - make_interval(secs => %s)").format(_name(name), _name(CREATED_AT))
    _execute(
        cur,
        sql.SQL("select min({id}), max({id}), count(*) {window}").format(id=_name(id_column), window=window),
        (seconds,),
    )
    low, high, count = cur.fetchone()
    if not count:
        return []
    if high - low + 1 == count:
        return range(low, high + 1)
    _execute(cur, sql.SQL("select {id} {window} order by {id}").format(id=_name(id_column), window=window), (seconds,))
    return [row[0] for row in cur.fetchall()]


def update_rows(
    cur: Any, name: str, id_column: str, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]
) -> list[tuple[int, dt.datetime]]:
    """Update many rows, each in its own subset of columns, with one statement.

    `columns` is [(name, sql type)]; each row is (id, mask_1, value_1, mask_2,
    value_2, ...): a column changes only where its mask is true, otherwise it
    keeps its value (`CASE WHEN mask THEN new ELSE old END`). Returns the
    (id, created_at) of the updated rows, by id.
    """
    if not rows:
        return []
    aliases = [sql.Identifier("_id")]
    assignments = []
    template = [sql.SQL("(%s)::bigint")]
    for index, (column_name, column_type) in enumerate(columns):
        mask, value = sql.Identifier(f"_m{index}"), sql.Identifier(f"_v{index}")
        aliases += [mask, value]
        assignments.append(
            sql.SQL("{col} = case when v.{mask} then v.{value} else t.{col} end").format(
                col=_name(column_name), mask=mask, value=value
            )
        )
        template += [sql.SQL("(%s)::boolean"), sql.SQL("(%s)::{}").format(sql.SQL(column_type))]
    statement = sql.SQL(
        "update {table} as t set {assignments} from (values %s) as v({aliases}) "
        "where t.{id} = v._id returning t.{id}, t.{created}"
    ).format(
        table=_name(name),
        assignments=sql.SQL(", ").join(assignments),
        aliases=sql.SQL(", ").join(aliases),
        id=_name(id_column),
        created=_name(CREATED_AT),
    )
    returned = _execute_values(cur, statement, _template(cur, template), rows)
    return sorted(returned)


def copy_rows(cur: Any, name: str, columns: list[str], rows: list[tuple[Any, ...]], created_at: dt.datetime) -> None:
    """Insert rows with one COPY (created_at = the tick's `now()`); the identity numbers them in row order.

    Why COPY and not INSERT ... VALUES: for a 10,000-row tick it is about
    four times faster, because the server parses a data stream instead of
    a statement of 70,000 expressions. Values travel as COPY data, never as
    SQL, so quotes and semicolons are just characters; tabs, newlines and
    backslashes are escaped as COPY's text format requires.
    """
    if not rows:
        return
    names = sql.SQL(", ").join([_name(column) for column in columns] + [_name(CREATED_AT)])
    statement = sql.SQL("copy {} ({}) from stdin").format(_name(name), names)
    stamp = created_at.isoformat()
    data = io.StringIO("".join("\t".join([*map(_copy_field, row), stamp]) + "\n" for row in rows))
    cur.copy_expert(statement, data)
    if log.isEnabledFor(logging.DEBUG):
        shown = data.getvalue()[:STATEMENT_LOG_BYTES]
        log.debug("SQL: %s; %d rows of data, starting: %r", statement.as_string(cur), len(rows), shown)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    """One value in COPY's text format: NULL is \\N, backslash and control separators are escaped."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


def identity_high_water(cur: Any, name: str, id_column: str) -> int:
    """The last id the table's identity handed out (0 if none), including ids of rolled-back inserts."""
    _execute(
        cur,
        sql.SQL("select coalesce(pg_sequence_last_value(pg_get_serial_sequence(%s, %s)), 0)"),
        (_quoted(name), id_column),
    )
    return cur.fetchone()[0]


def parent_bounds(cur: Any, name: str, id_column: str) -> tuple[int | None, int | None, bool, int]:
    """(lowest id, highest id, whether every id between exists, last id the identity handed out).

    The last one is read from the identity's sequence, not max(id): ids lost to
    a rolled-back tick are never handed out again, and a late-arriving
    reference must point at an id the parent will really get.
    """
    _execute(
        cur,
        sql.SQL(
            "select min({id}), max({id}), count(*), "
            "coalesce(pg_sequence_last_value(pg_get_serial_sequence(%s, %s)), 0) from {table}"
        ).format(id=_name(id_column), table=_name(name)),
        (_quoted(name), id_column),
    )
    low, high, count, high_water = cur.fetchone()
    dense = low is not None and count == high - low + 1
    return low, high, dense, high_water


def next_existing_ids(cur: Any, name: str, id_column: str, guesses: list[int]) -> list[int]:
    """For each guessed id, the smallest existing id >= it (index lookups, one statement, order kept)."""
    _execute(
        cur,
        sql.SQL(
            "select (select p.{id} from {table} p where p.{id} >= x.v order by p.{id} limit 1) "
            "from unnest(%s::bigint[]) with ordinality as x(v, n) order by x.n"
        ).format(id=_name(id_column), table=_name(name)),
        (guesses,),
    )
    return [row[0] for row in cur.fetchall()]


def _template(cur: Any, parts: list[sql.Composable]) -> str:
    return sql.SQL("({})").format(sql.SQL(", ").join(parts)).as_string(cur)


def _execute_values(cur: Any, statement: sql.Composable, template: str, rows: list[tuple[Any, ...]]) -> list[Any]:
    # page_size = all rows: one statement per table and tick, whatever the batch size.
    returned = execute_values(cur, statement, rows, template=template, page_size=len(rows), fetch=True)
    _log_statement(cur)
    return returned
