"""
# hello_world

The smallest useful DAG: one task that says hello, run by hand.
Unpause it, press ▶ (Trigger), open the task's log and find the greeting.

Concepts: a DAG file, `@dag`, `@task`, manual runs, task logs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    schedule=None,  # runs only when triggered
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["newcomer"],
)
def hello_world():
    @task
    def say_hello() -> str:
        """Print to the task log and return a value (stored as an XCom)."""
        greeting = "Hello from Airflow 3!"
        print(greeting)
        return greeting

    say_hello()


hello_world()
