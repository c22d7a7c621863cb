"""
# cleanup_staging (your task 3)

`load_shops_to_dwh` leaves a Parquet file per table and shop in the staging
folder on every run: a few thousand files a day. Write a DAG that deletes the
ones older than a threshold, at least once a day, with a BashOperator.

Until you define a DAG in this file, Airflow shows nothing for it.
"""

# TODO: task 3 - write the DAG here. You will need:
#   - `from airflow.providers.standard.operators.bash import BashOperator`
#   - `from airflow.sdk import dag`
#   - a schedule that runs at least daily, e.g. "@daily" or "@hourly"
#   - a bash_command that deletes files under "$STAGING_DIR" (set in deploy/env/airflow.env)
#     older than your threshold, e.g. with `find ... -mmin +N -delete`
# The README's hints 3.1-3.3 walk you through it; G0_Trainee has a solution to compare with.
