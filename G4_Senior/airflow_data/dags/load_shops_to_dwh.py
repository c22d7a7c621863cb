"""
# load_shops_to_dwh (your task)

Load `customers`, `products` and `orders` from both shops into the warehouse as
SCD2 history, and publish only rows that pass an audit: Write-Audit-Publish.
Bad rows (an order whose customer has not arrived yet, a quantity of 0, an
unknown status) must not reach `dds`; they wait on the side with the reason and
are published by a later run once they pass. Read this grade's README for the
exact Definition of done.

This file is a starting point only: it defines no DAG yet, so Airflow shows
nothing for it and the warehouse stays empty. Replace the TODOs with your
solution; keep the file name and the dag_id `load_shops_to_dwh`.
"""

# TODO: 1. Write: land each run's batch in stg as before (extract -> stage -> load).
# TODO: 2. Audit: declare the rules per table in config, not in code: keys not null,
#          quantity > 0 and price > 0, allowed statuses and currencies, no dates in the future,
#          no duplicates inside the batch, and every order's customer and product known.
# TODO: 3. Publish in ONE transaction: passing rows into dds (SCD2), failing rows into
#          quarantine.<table> with the rules they broke; a crash must leave neither half-done.
# TODO: 4. Re-audit open quarantine rows every run; publish and mark `released` those that pass.
# TODO: 5. Keep an audit summary per run (checked / published / quarantined / released per table
#          and shop) in quarantine.audit_log, and fail the run loudly when too much of a batch fails.
# TODO: 6. Publish dimensions (customers, products) before facts (orders).
# Connections shop_1_conn, shop_2_conn and dwh_conn already exist (deploy/env/airflow.env).
# Stuck? The reference solution is in ../../solution/dags (try first, then compare).
