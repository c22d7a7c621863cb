"""The reference pipeline's steps: extract -> Parquet -> stg -> dds.

`load_shops_to_dwh.py` (one folder up) wires these into tasks. Each module
imports only modules above it in this list, so it reads top to bottom:

1. `contract.py`    what every load keeps: the open end, technical columns, rule names
2. `config.py`      what to load: `pipeline.yaml`, validated when the DAG is parsed
3. `connections.py` databases through Airflow's `PostgresHook` (psycopg 3)
4. `sqlfiles.py`    named statements of `sql/*.sql`, with names quoted safely
5. `staging.py`     the typed Parquet files between tasks
6. `warehouse.py`   the stg and dds tables (`sql/warehouse.sql`)
7. `extract.py`     new and recent rows of one shop -> a Parquet file (`sql/extract.sql`)
8. `load.py`        the Parquet file -> stg with COPY (`sql/load.sql`)
9. `merge.py`       stg -> dds, the SCD2 merge in one transaction (`sql/merge.sql`)
10. `rules.py`      the contract's rules asked of any warehouse (`sql/contract.sql`)

Each step takes plain psycopg 3 connections, so the same code runs in Airflow,
in the course's tests and in its benchmark. Every statement in `sql/` is whole:
only table and column names are filled in, values travel as parameters. This
folder is listed in `.airflowignore`: Airflow imports it from the DAG, it does
not parse it for DAGs.
"""
