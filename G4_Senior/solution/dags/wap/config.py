"""G4's `pipeline.yaml`: G0's config plus each table's `audit:` rules (Write-Audit-Publish).

G0's `dwh/config.py` describes what to load; this module adds what may be
published, as config rather than code. The file is validated as G0's is, when
the DAG is parsed: a rule naming an unknown column or table is an import error
naming its key, not a failed run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dwh import config as dwh_config
from dwh.config import Identifier, PipelineConfig, Table


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Rules):
    """Bounds a value must respect; each given bound is one audit rule (`quantity > 0`)."""

    gt: int | float | str | None = None
    gte: int | float | str | None = None
    lt: int | float | str | None = None
    lte: int | float | str | None = None

    def bounds(self) -> dict[str, int | float | str]:
        """Operator name -> bound, only those set."""
        return {op: value for op, value in self.model_dump().items() if value is not None}


class Audit(_Rules):
    """Write-Audit-Publish rules of one table: rows that break one are quarantined, not published."""

    not_null: list[Identifier] = Field(default_factory=list)
    ranges: dict[Identifier, Range] = Field(default_factory=dict)
    allowed: dict[Identifier, Annotated[list[str], Field(min_length=1)]] = Field(default_factory=dict)
    not_in_future: list[Identifier] = Field(default_factory=list)
    unique_in_batch: list[Annotated[list[Identifier], Field(min_length=1)]] = Field(default_factory=list)
    references: dict[Identifier, Identifier] = Field(default_factory=dict)  # column -> referenced table
    # The run stops (nothing of the table is published) when more of a shop's fresh batch fails than this.
    max_quarantine_share: Annotated[float, Field(ge=0, le=1)] = 0.25
    # ...but only for batches of at least this many rows: 1 bad row of 3 is no outage.
    min_rows_for_share: Annotated[int, Field(ge=1)] = 20

    def columns(self) -> set[str]:
        """Every column a rule names."""
        grouped = {column for group in self.unique_in_batch for column in group}
        return {*self.not_null, *self.ranges, *self.allowed, *self.not_in_future, *self.references} | grouped


class AuditedTable(Table):
    """G0's table with its audit rules; a table without `audit:` is published as extracted."""

    audit: Audit = Field(default_factory=Audit)

    @model_validator(mode="after")
    def _audit_columns_exist(self) -> AuditedTable:
        unknown = sorted(self.audit.columns() - set(self.columns))
        if unknown:
            raise ValueError(f"audit names columns {unknown} that are not among the columns")
        for column in self.audit.not_in_future:
            if self.columns[column] not in ("timestamptz", "date"):
                raise ValueError(f"audit.not_in_future: {column!r} must be timestamptz or date")
        return self


class WapConfig(PipelineConfig):
    """G0's pipeline config whose tables carry audit rules."""

    tables: Annotated[dict[Identifier, AuditedTable], Field(min_length=1)]

    @model_validator(mode="after")
    def _audit_references_known(self) -> WapConfig:
        for table in self.tables.values():
            for column, parent in table.audit.references.items():
                if parent not in self.tables or parent == table.name:
                    raise ValueError(
                        f"tables.{table.name}.audit.references.{column}: {parent!r} is not another table here"
                    )
        return self


def parse_config(data: Any, source: Path | str = "<config>") -> WapConfig:
    """Validate already-loaded YAML/JSON data; errors name the key (`dwh.config.PipelineConfigError`)."""
    return dwh_config.parse_config(data, source, WapConfig)


def load_config(path: Path | str) -> WapConfig:
    """Read and validate G4's `pipeline.yaml`, audit rules included."""
    return dwh_config.load_config(path, WapConfig)
