"""coursekit: the shared toolkit of the course.

One copy of everything the grades share: the shop data generator, the embedded
Postgres starter, the native runner, the checkers, benchmarks and the load test.
The reference pipeline itself lives with its DAG, in G0_Trainee/airflow_data/dags/dwh
(`coursekit.reference` imports it from there).
"""
