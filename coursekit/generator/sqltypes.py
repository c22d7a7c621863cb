"""The SQL column types a config may use, and which Python values fit them.

Why a whitelist: a column's type goes into CREATE TABLE and into casts as SQL
text (a type cannot be a query parameter), so only the shapes one regex accepts
are allowed, and nothing else from a config file ever becomes SQL.

Why the "kind" of each type: config validation calls every Faker provider once
or twice and checks the values fit their column ("first_name returns text, which
does not fit integer"), so a learner hears about the mistake with the key path
before anything touches the database, instead of a failed tick later.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

ALLOWED_TYPES = (
    "text, varchar(n), char(n), integer, bigint, smallint, numeric(p,s), boolean, date, timestamptz, double precision"
)

_TYPE = re.compile(
    r"(?P<plain>text|smallint|integer|bigint|boolean|date|timestamptz|double precision)"
    r"|(?P<sized>varchar|char)\((?P<length>[1-9][0-9]{0,7})\)"
    r"|numeric\((?P<precision>[1-9][0-9]{0,3}), ?(?P<scale>[0-9]{1,4})\)"
)
_MAX_LENGTH = 10_485_760  # Postgres' limit for varchar(n) and char(n)
_MAX_PRECISION = 1000  # Postgres' limit for numeric(p,s)

_KIND_OF_PLAIN = {
    "text": "text",
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "boolean": "bool",
    "date": "date",
    "timestamptz": "timestamp",
    "double precision": "float",
}
_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True)
class SqlType:
    """One parsed column type.

    `sql` is the type exactly as the config wrote it (used verbatim in DDL and
    casts, safe because the regex accepted it); `kind` groups the types by the
    Python values that fit them.
    """

    sql: str
    kind: str  # text | int | numeric | float | bool | date | timestamp
    int_range: tuple[int, int] | None = None
    integer_digits: int | None = None  # numeric(p,s): at most p-s digits before the point
    length: int | None = None  # varchar(n), char(n): at most n characters


def parse_sql_type(text: str) -> SqlType:
    """Parse a config's `type`; ValueError says what is allowed."""
    match = _TYPE.fullmatch(text)
    if match is None:
        raise ValueError(f"unsupported SQL type {text!r}; allowed: {ALLOWED_TYPES} (lowercase)")
    if match["plain"]:
        return SqlType(text, _KIND_OF_PLAIN[text], int_range=_INT_RANGES.get(text))
    if match["sized"]:
        if int(match["length"]) > _MAX_LENGTH:
            raise ValueError(f"{text!r}: length must be 1..{_MAX_LENGTH}")
        return SqlType(text, "text", length=int(match["length"]))
    precision, scale = int(match["precision"]), int(match["scale"])
    if precision > _MAX_PRECISION or scale > precision:
        raise ValueError(f"{text!r}: numeric(p,s) needs 1 <= p <= {_MAX_PRECISION} and 0 <= s <= p")
    return SqlType(text, "numeric", integer_digits=precision - scale)


def misfit(sql_type: SqlType, value: object) -> str | None:
    """Why `value` cannot be stored in a column of `sql_type`, or None if it can.

    A string longer than varchar(n)/char(n) is not reported here: the
    generator cuts it to n characters, as Postgres' explicit casts do.
    """
    if value is None:
        return None
    kind = sql_type.kind
    is_number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if kind == "text":
        if isinstance(value, str):
            return "contains a NUL character, which Postgres text cannot store" if "\x00" in value else None
        return None if is_number else _wrong(value, sql_type)
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            return _wrong(value, sql_type)
        low, high = sql_type.int_range or (0, 0)
        return None if low <= value <= high else f"{value} is outside the range of {sql_type.sql} ({low}..{high})"
    if kind in ("numeric", "float"):
        if not is_number:
            return _wrong(value, sql_type)
        digits = sql_type.integer_digits
        if digits is not None and abs(value) >= 10**digits:
            return f"{value} needs more than {digits} digits before the decimal point of {sql_type.sql}"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else _wrong(value, sql_type)
    # date and timestamp: Python dates, or ISO 8601 text (JSON has no date type)
    if isinstance(value, dt.date):
        return None
    if isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not an ISO 8601 date/time, which {sql_type.sql} needs"
        return None
    return _wrong(value, sql_type)


def _wrong(value: object, sql_type: SqlType) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"a {type(value).__name__} ({shown}) does not fit SQL type {sql_type.sql}"
