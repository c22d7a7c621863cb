"""
# cleanup_staging

Every hour, delete staging files (the Parquet batches that `load_shops_to_dwh`
passes between its tasks) older than two hours, then remove empty folders.

The files are only needed while their run is going; keeping them for a while
helps debugging a failed run. Without cleanup they would fill the disk.

Concepts: BashOperator, `find -mmin`, templated params, env for operators.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from wap.config import load_config

STAGING_DIR = load_config(Path(__file__).with_name("pipeline.yaml")).staging_root()

# `find -mmin +N` matches files modified more than N minutes ago; -delete removes them.
CLEANUP_COMMAND = """
set -euo pipefail
dir="${STAGING_DIR:?STAGING_DIR is not set}"
if [ ! -d "$dir" ]; then echo "nothing to clean: $dir does not exist"; exit 0; fi
deleted=$(find "$dir" -type f -mmin +{{ params.max_age_minutes }} -print -delete | wc -l)
find "$dir" -mindepth 1 -type d -empty -delete
echo "deleted $deleted files older than {{ params.max_age_minutes }} minutes from $dir"
"""


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    params={"max_age_minutes": 120},
    doc_md=__doc__,
    tags=["maintenance"],
)
def cleanup_staging():
    BashOperator(
        task_id="delete_old_staging_files",
        bash_command=CLEANUP_COMMAND,
        env={"STAGING_DIR": str(STAGING_DIR)},
        append_env=True,
    )


cleanup_staging()
