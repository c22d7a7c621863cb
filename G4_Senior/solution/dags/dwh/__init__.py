"""The reference pipeline's steps: extract -> Parquet -> stg -> dds.

`load_shops_to_dwh.py` (one folder up) wires these into tasks. Read them in the
order the data flows; each module is one import away from the DAG:

1. `config.py`      what to load: `pipeline.yaml`, validated when the DAG is parsed
2. `connections.py` databases through Airflow's `PostgresHook` (psycopg 3)
3. `warehouse.py`   the stg and dds tables (`sql/warehouse.sql`)
4. `extract.py`     new and recent rows of one shop -> a Parquet file (`sql/extract.sql`)
5. `staging.py`     the typed Parquet files between tasks
6. `load.py`        the Parquet file -> stg with COPY (`sql/load.sql`)
7. `merge.py`       stg -> dds, the SCD2 merge in one transaction (`sql/merge.sql`)
8. `contract.py`    the rules every load keeps, as queries (`sql/contract.sql`)

Each step takes plain psycopg 3 connections, so the same code runs in Airflow,
in the course's tests and in its benchmark. This folder is listed in
`.airflowignore`: Airflow imports it from the DAG, it does not parse it for DAGs.
"""
