"""The pipeline's configuration: which sources and tables to load, and how.

A grade's DAG reads one YAML file next to it (`pipeline.yaml`). Adding a table
or a shop is a change to that file only. The file is validated when the DAG is
parsed, so a typo shows up as an import error naming the key in the Airflow UI
instead of a failed run at 3 a.m. Parsing touches no database.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dwh.contract import RESERVED

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
# The column types the pipeline knows how to carry through Parquet without loss.
SQL_TYPE = re.compile(
    r"^(bigint|integer|smallint|text|boolean|date|timestamptz|double precision"
    r"|varchar\(\d+\)|char\(\d+\)|numeric\(\d+,\s*\d+\))$"
)

Identifier = Annotated[str, Field(pattern=IDENTIFIER)]


class PipelineConfigError(ValueError):
    """The pipeline config file is missing or invalid; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """One shop database: the warehouse tags its rows with `src_id`."""

    src_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w][\w .-]*$")]
    conn_id: Annotated[str, Field(min_length=1)]

    @property
    def slug(self) -> str:
        """`src_id` made safe for task ids and file names (`New-York` -> `new_york`)."""
        return re.sub(r"[^a-z0-9]+", "_", self.src_id.lower()).strip("_")


class Table(_Strict):
    """One source table and how it lands in the warehouse.

    `name` is the table's key under `tables:` in `pipeline.yaml`, filled in when the
    config is loaded: the model knows its own name, so the steps take one argument
    (`table`) where they would otherwise need a name and a model that must agree.
    """

    name: Identifier
    key: Identifier
    increment_column: Identifier = "created_at"
    scd2: bool = True
    columns: dict[Identifier, str]

    @field_validator("columns")
    @classmethod
    def _known_types(cls, columns: dict[str, str]) -> dict[str, str]:
        for column, sql_type in columns.items():
            if not SQL_TYPE.match(sql_type):
                raise ValueError(
                    f"column {column!r} has type {sql_type!r}; allowed: bigint, integer, smallint, text, "
                    "boolean, date, timestamptz, double precision, varchar(n), char(n), numeric(p,s)"
                )
        return columns

    @model_validator(mode="after")
    def _key_columns_exist(self) -> Table:
        for role, column in (("key", self.key), ("increment_column", self.increment_column)):
            if column not in self.columns:
                raise ValueError(f"{role} {column!r} is not one of the columns")
        if self.columns[self.increment_column] not in ("timestamptz", "date"):
            raise ValueError(f"increment_column {self.increment_column!r} must be timestamptz or date")
        clash = RESERVED & set(self.columns)
        if clash:
            raise ValueError(f"columns {sorted(clash)} are reserved for the warehouse's technical columns")
        return self

    @property
    def value_columns(self) -> list[str]:
        """Columns compared to detect a change: all but the key."""
        return [c for c in self.columns if c != self.key]


class PipelineConfig(_Strict):
    """Everything a load DAG needs to know; see a grade's `pipeline.yaml`."""

    dwh_conn_id: str = "dwh_conn"
    schedule: str = "* * * * *"
    lookback_sec: Annotated[int, Field(ge=0)]
    staging_dir: str | None = None
    sources: Annotated[list[Source], Field(min_length=1)]
    tables: Annotated[dict[Identifier, Table], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _name_the_tables(cls, data: Any) -> Any:
        """Each table under `tables:` gets its key as its `name` (unless it states one)."""
        if isinstance(data, dict) and isinstance(data.get("tables"), dict):
            tables = {key: {"name": key, **t} if isinstance(t, dict) else t for key, t in data["tables"].items()}
            data = {**data, "tables": tables}
        return data

    @model_validator(mode="after")
    def _names_match_keys(self) -> PipelineConfig:
        for key, table in self.tables.items():
            if table.name != key:
                raise ValueError(f"tables.{key}.name: {table.name!r}; a table's name is its key under tables")
        return self

    @model_validator(mode="after")
    def _unique_sources(self) -> PipelineConfig:
        for attr in ("src_id", "conn_id", "slug"):
            values = [getattr(s, attr) for s in self.sources]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"sources must have unique {attr}; repeated: {dupes}")
        return self

    def source(self, src_id: str) -> Source:
        """The source with this `src_id` (a task gets the id, a plain string, as its argument)."""
        return next(source for source in self.sources if source.src_id == src_id)

    def staging_root(self) -> Path:
        """Where extract tasks write Parquet files: config, else $STAGING_DIR, else $AIRFLOW_HOME/staging."""
        if self.staging_dir:
            return Path(os.path.expandvars(self.staging_dir))
        if os.environ.get("STAGING_DIR"):
            return Path(os.environ["STAGING_DIR"])
        return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "staging"


Config = TypeVar("Config", bound=PipelineConfig)


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline config"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: Path | str = "<config>", model: type[Config] = PipelineConfig) -> Config:
    """Validate already-loaded YAML/JSON data as `model` (a grade may extend `PipelineConfig`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PipelineConfigError(_format_errors(Path(source), exc)) from None


def load_config(path: Path | str, model: type[Config] = PipelineConfig) -> Config:
    """Read and validate `pipeline.yaml`; every problem is reported with its key path."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: pipeline config not found") from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, path, model)
