"""
# taskflow_example

Three TaskFlow tasks pass data to each other: extract -> transform -> load.
Return values travel between tasks as XComs; Airflow works out the order from
how the functions are called, no `>>` needed.

Concepts: TaskFlow API, XComs, `logical_date` from the run context.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["newcomer"],
)
def taskflow_example():
    @task
    def extract() -> dict[str, int]:
        """Pretend to read orders: fruit -> quantity."""
        return {"mango": 3, "papaya": 1, "durian": 2}

    @task
    def transform(order: dict[str, int]) -> int:
        """Sum the quantities."""
        return sum(order.values())

    @task
    def load(total: int) -> None:
        """Print the result with the run's logical date."""
        logical_date = get_current_context()["logical_date"]
        print(f"{total} fruits ordered in the run of {logical_date}")

    load(transform(extract()))


taskflow_example()
