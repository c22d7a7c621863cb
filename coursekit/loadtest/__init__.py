"""`make loadtest`: how much can the pipeline carry before rows arrive late, and where does the time go?

The shops are driven at rising rates (inserts per one-second tick, updates at 60% of the
inserts), step by step, while the load DAG runs. During each step the backlog (rows the
shops hold that dds does not yet, and how old the oldest is) is sampled; the ramp stops at
the first step the pipeline does not keep up with (knee.py). Per step the report gives rows
landed in dds per 10 minutes, the latency of each new row (created_at in the shop ->
load_dttm of its first version in dds), the CPU and memory of Airflow and PostgreSQL, and
where each DAG run's time went, stage by stage and Airflow's own overhead (breakdown.py,
from the task instances' timings). A report folder with `report.md` and plots is written
at the end.
"""
