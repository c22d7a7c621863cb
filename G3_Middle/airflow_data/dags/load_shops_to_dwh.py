"""
# load_shops_to_dwh (your task)

Load `customers`, `orders` and `products` from both shops into the warehouse,
incrementally, keeping the history of every row (SCD2). Read this grade's
README for the exact Definition of done.

This file is a starting point only: it defines no DAG yet, so Airflow shows
nothing for it. Replace the TODOs with your solution; keep the file name and
the dag_id `load_shops_to_dwh` (file name = dag_id).
"""

# TODO: 1. Describe what to load in a config (tables, columns, keys, sources) instead of
#          hard-coding it, so a new table or shop is a config change.
# TODO: 2. Extract: for each source and table, read only what is new since the last load
#          (a watermark from the warehouse), plus a lookback window if rows can change.
# TODO: 3. Stage: pass data between tasks in files or tables, never in XComs (they are small).
# TODO: 4. Load into schema dds of pg-dwh as SCD2 history (eff_from_dttm, eff_to_dttm), tagging
#          every row with src_id = the shop's CITY_NAME (deploy/env/shop-N.env).
#          Re-running a run must change nothing.
# TODO: 5. Schedule it (e.g. every minute), max_active_runs=1, retries.
# Connections shop_1_conn, shop_2_conn and dwh_conn already exist (deploy/env/airflow.env).
