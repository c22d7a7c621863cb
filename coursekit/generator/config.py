"""config.json: which tables the shop has and how their values are made.

Why validate so strictly (pydantic, `extra="forbid"` everywhere, strict types,
then a second pass that calls every Faker provider once): a config mistake must
stop the generator *before* it connects, with the file, the key path and what is
allowed, e.g.

    config.json: tables.orders.columns.quantity.provider: unknown Faker provider 'randint' ...

A typo that silently became a NULL column, or a tick that fails an hour later,
would teach the learner nothing. The shape, in short:

    {"tables": {"<table>": {"id_column": "<name>", "insert_rows_per_tick": 3,
                            "update_rows_per_tick": 2,
                            "columns": {"<column>": {"type": "text", "provider": "first_name"}}}}}

Every table also gets two implicit columns that are not listed in `columns`:
`<id_column> bigint generated always as identity primary key` and
`created_at timestamptz not null`.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError

from coursekit.generator.sqltypes import SqlType, misfit, parse_sql_type

IDENTIFIER_RULE = "a lowercase SQL identifier: a-z, 0-9 and _, not starting with a digit, at most 63 characters"
CREATED_AT = "created_at"
TRIAL_CALLS = 3  # values each provider makes during validation, each checked against the column type


def _identifier(name: str) -> str:
    """Table and column names: lowercase SQL identifiers, so they never need case-sensitive quoting."""
    if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) is None:
        raise ValueError(f"{name!r} is not {IDENTIFIER_RULE}")
    return name


def _sql_type(text: str) -> str:
    parse_sql_type(text)  # raises ValueError naming the allowed types
    return text


Identifier = Annotated[str, AfterValidator(_identifier)]
Count = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    """Unknown keys are errors, and "3" is not 3: configs are typed by hand."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ColumnSpec(_Strict):
    """One business column: its SQL type and where its values come from."""

    type: Annotated[str, AfterValidator(_sql_type)]
    provider: str | None = None
    references: str | None = None
    params: dict[str, JsonValue] = Field(default_factory=dict)
    null_share: Share = 0.0
    late_share: Share = 0.0
    invalid_share: Share = 0.0
    invalid_values: list[JsonValue] = Field(default_factory=list)
    updatable: bool | None = None

    @functools.cached_property
    def sql_type(self) -> SqlType:
        return parse_sql_type(self.type)

    @property
    def is_updatable(self) -> bool:
        """Provider columns change on update by default; references (foreign keys) do not."""
        return self.updatable if self.updatable is not None else self.references is None


class TableSpec(_Strict):
    """One table: its id column, how many rows each tick inserts and updates, its columns."""

    id_column: Identifier
    insert_rows_per_tick: Count
    update_rows_per_tick: Count
    columns: dict[Identifier, ColumnSpec]

    @property
    def updatable_columns(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.is_updatable]


class ShopConfig(_Strict):
    """The whole config.json; `order` lists the tables parents first."""

    tables: Annotated[dict[Identifier, TableSpec], Field(min_length=1)]

    @functools.cached_property
    def order(self) -> list[str]:
        """Tables in insert order: every table after the tables it references.

        Ties keep the config's order, so the order (and the seeded values) never
        depends on anything but the file. Only call on a checked config: a
        cycle would have been reported by `check_config`.
        """
        done: list[str] = []
        remaining = list(self.tables)
        while remaining:
            ready = next(t for t in remaining if all(p in done for p in _parents(self.tables[t])))
            done.append(ready)
            remaining.remove(ready)
        return done


class ConfigError(Exception):
    """The config is invalid; `issues` are (key path, message) pairs."""

    def __init__(self, source: str, issues: list[tuple[str, str]]) -> None:
        self.source = source
        self.issues = issues
        super().__init__("\n".join(f"{source}: {path or '(top level)'}: {message}" for path, message in issues))


def load_config(path: Path | str, locale: str | None) -> ShopConfig:
    """Read, parse and fully check a config file; ConfigError lists every problem found.

    `locale` is the shop's FAKER_LOCALE: providers are checked against it. With
    None (the locale itself is invalid) provider checks are skipped, so the
    other mistakes are still reported in the same run.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read the config file: {exc.strerror or exc}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    try:
        config = ShopConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(error) for error in exc.errors()]) from None
    issues = check_config(config, locale)
    if issues:
        raise ConfigError(source, issues)
    return config


def check_config(config: ShopConfig, locale: str | None) -> list[tuple[str, str]]:
    """The checks that need more than one field: names, references, shares, providers."""
    issues: list[tuple[str, str]] = []
    fake = _validation_faker(locale) if locale else None
    for table_name, table in config.tables.items():
        base = f"tables.{table_name}"
        if table.id_column == CREATED_AT:
            issues.append((f"{base}.id_column", f"{CREATED_AT!r} is the implicit insert timestamp column"))
        for column_name, column in table.columns.items():
            path = f"{base}.columns.{column_name}"
            if column_name in (table.id_column, CREATED_AT):
                issues.append((path, f"{column_name!r} is implicit (the id column and {CREATED_AT} are added for you)"))
            issues += _check_column(config, path, column, fake)
    issues += _check_cycles(config)
    return issues


def _check_column(config: ShopConfig, path: str, column: ColumnSpec, fake: Any) -> list[tuple[str, str]]:
    issues: list[tuple[str, str]] = []
    if (column.provider is None) == (column.references is None):
        issues.append((path, "give exactly one of 'provider' (a Faker method) or 'references' (a table)"))
        return issues
    if column.references is not None:
        if column.references not in config.tables:
            known = ", ".join(config.tables)
            issues.append((f"{path}.references", f"unknown table {column.references!r}; tables here: {known}"))
        if column.sql_type.kind != "int":
            issues.append((f"{path}.type", f"a reference holds ids: use bigint (or integer), not {column.type}"))
        if column.params:
            issues.append((f"{path}.params", "params are only for 'provider' columns"))
    elif column.late_share:
        issues.append((f"{path}.late_share", "late_share is only for 'references' columns"))
    total = column.null_share + column.invalid_share + column.late_share
    if total > 1:
        issues.append((path, f"null_share + invalid_share + late_share is {total:g}; it must be at most 1"))
    if column.invalid_share and not column.invalid_values:
        issues.append((f"{path}.invalid_values", "invalid_share > 0 needs at least one value in invalid_values"))
    for index, value in enumerate(column.invalid_values):
        problem = misfit(column.sql_type, value)
        if problem:
            issues.append((f"{path}.invalid_values[{index}]", problem))
    if column.provider is not None and fake is not None:
        issues += _check_provider(fake, path, column)
    return issues


def _check_provider(fake: Any, path: str, column: ColumnSpec) -> list[tuple[str, str]]:
    """The provider exists for the locale, accepts `params`, and makes values that fit the type."""
    assert column.provider is not None
    method = faker_method(fake, column.provider)
    if method is None:
        close = difflib.get_close_matches(column.provider, provider_names(fake), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return [
            (
                f"{path}.provider",
                f"unknown Faker provider {column.provider!r} for locale {fake.locales[0]}{hint} "
                "(allowed: a Faker method name, see https://faker.readthedocs.io/en/stable/providers.html)",
            )
        ]
    for _ in range(TRIAL_CALLS):
        try:
            value = method(**column.params)
        except Exception as exc:  # any failure of a trial call is a config mistake to report
            return [(f"{path}.params", f"faker.{column.provider}(**{column.params}) failed: {exc}")]
        problem = misfit(column.sql_type, value)
        if problem:
            return [(f"{path}.provider", f"{column.provider} makes values that do not fit: {problem}")]
    return []


def _check_cycles(config: ShopConfig) -> list[tuple[str, str]]:
    """Parents are inserted before children in a tick, so references must not loop."""
    issues: list[tuple[str, str]] = []
    state: dict[str, str] = {}  # table -> "visiting" | "done"

    def visit(table: str, trail: list[str]) -> None:
        if state.get(table) == "done" or table not in config.tables:
            return
        if state.get(table) == "visiting":
            loop = trail[trail.index(table) :] + [table]
            issues.append(("tables", f"reference cycle {' -> '.join(loop)}: parents must be inserted first"))
            return
        state[table] = "visiting"
        for parent in _parents(config.tables[table]):
            visit(parent, [*trail, table])
        state[table] = "done"

    for table in config.tables:
        visit(table, [])
    return issues


def _parents(table: TableSpec) -> Iterable[str]:
    return [c.references for c in table.columns.values() if c.references is not None]


# -- Faker -------------------------------------------------------------------------------------------------------


@functools.cache
def _validation_faker(locale: str) -> Any:
    """A separate, unseeded-by-the-shop Faker: trial calls must not shift the shop's seeded values."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(0)
    return fake


def faker_method(fake: Any, name: str) -> Callable[..., Any] | None:
    """The provider method `name` of `fake`, or None when it is not a public provider method.

    Only methods defined on Faker's provider classes count, so names like
    `seed_instance` or `add_provider` (methods of Faker itself) are rejected.
    """
    if not name.isidentifier() or name.startswith("_"):
        return None
    for provider in fake.get_providers():
        if callable(getattr(type(provider), name, None)):
            return getattr(provider, name)
    return None


def provider_names(fake: Any) -> list[str]:
    """Every public provider method name of `fake` (for "did you mean" hints)."""
    names = {
        name
        for provider in fake.get_providers()
        for name in dir(type(provider))
        if not name.startswith("_") and callable(getattr(type(provider), name))
    }
    return sorted(names)


# -- pydantic errors as key paths ---------------------------------------------------------------------------------


def _describe(error: Any) -> tuple[str, str]:
    """One pydantic error as (key path, message that says what is allowed)."""
    loc = list(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc.pop()
    path = _path(loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "none"
        message = f"unknown key {loc[-1]!r}; allowed keys here: {allowed}"
    elif kind == "missing":
        message = "required key is missing"
    elif is_key:
        message = f"bad name: {message}"
    elif loc and loc[-1] in _ALLOWED:
        shown = repr(error.get("input"))
        message = f"{message} (allowed: {_ALLOWED[loc[-1]]}; got {shown if len(shown) < 60 else shown[:57] + '...'})"
    return path, message


# What each key accepts, appended to pydantic's terse type messages.
_ALLOWED = {
    "tables": "an object of table name -> table",
    "id_column": IDENTIFIER_RULE,
    "insert_rows_per_tick": "a whole number >= 0, written without quotes",
    "update_rows_per_tick": "a whole number >= 0, written without quotes",
    "columns": "an object of column name -> column",
    "provider": "a Faker method name as text",
    "references": "the name of another table in this config",
    "params": "an object of the provider's keyword arguments",
    "null_share": "a number from 0 to 1",
    "late_share": "a number from 0 to 1",
    "invalid_share": "a number from 0 to 1",
    "invalid_values": "a list of JSON values",
    "updatable": "true or false",
}


def _path(loc: list[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    """Which model sits at a key path (for listing its allowed keys)."""
    shapes: dict[int, type[BaseModel]] = {0: ShopConfig, 2: TableSpec, 4: ColumnSpec}
    return shapes.get(len(loc))
