"""The reference pipeline's building blocks: extract -> Parquet -> stg -> dds.

A load DAG wires these functions into tasks; each takes plain DB-API
connections, so the same code runs under Airflow, in tests and in benchmarks.
"""

from coursekit.pipeline.config import OPEN_END, PipelineConfig, PipelineConfigError, Source, Table, load_config

__all__ = ["OPEN_END", "PipelineConfig", "PipelineConfigError", "Source", "Table", "load_config"]
