"""`make loadtest`: how much can the pipeline carry before rows arrive late?

The shops are driven at increasing rates (inserts per one-second tick, updates
at 60% of the inserts) while the load DAG runs. Per rate the test measures rows
landed in dds per 10 minutes, the latency of each new row (created_at in the
shop -> load_dttm of its first version in dds), and the CPU and memory of
Airflow and PostgreSQL; the highest rate whose p95 latency stays under five
minutes is the pipeline's capacity on this machine. A report folder with
`report.md` and plots is written at the end.
"""
