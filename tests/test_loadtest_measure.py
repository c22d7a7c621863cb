"""`make loadtest --attach` measures the stack it attaches to, and nothing else on the machine.

It used to add up every process whose command line contained "airflow" or "postgres" (4,853 MiB
reported for a 1.4 GiB container; nothing at all with Docker Desktop, whose processes live in a
VM). Natively it now follows the process trees `make run` recorded, memory as PSS; with Docker
it reads each container of the grade's Compose project (tests/docker/test_g4_docker.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil

from coursekit.loadtest import measure

SLEEPER = "import time; time.sleep(120)"
# 200 MiB written (so resident), then sleep: a decoy that must not be counted.
HOG = "import sys, time; block = bytearray(200 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(120)"


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args])


def test_native_attach_counts_only_the_stacks_own_process_trees(tmp_path):
    parent_code = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]); {SLEEPER}"
    scheduler = spawn(parent_code, "airflow-scheduler")  # a recorded process with a child
    postmaster = spawn(SLEEPER, "postgres")
    decoy = spawn(HOG, "airflow", "postgres")  # someone else's: its name matches, its tree is not ours
    try:
        state_dir = tmp_path / "G4_Senior"
        (state_dir / "pg" / "pg-dwh").mkdir(parents=True)
        (state_dir / "pg" / "pg-dwh" / "postmaster.pid").write_text(f"{postmaster.pid}\n/data\n")
        (state_dir / "state.json").write_text(json.dumps({"pids": {"airflow-scheduler": scheduler.pid}}))
        roots = measure.native_roots(state_dir)
        assert roots() == {"airflow": [scheduler.pid], "postgres": [postmaster.pid], "shops": []}
        psutil.Process(decoy.pid).memory_info()  # the decoy is alive and big while we measure
        monitor = measure.ResourceMonitor(roots=roots)
        for _ in range(50):  # until the scheduler's child has started
            if psutil.Process(scheduler.pid).children():
                break
            time.sleep(0.1)
        sample = monitor.sample()
        assert 0 < sample.memory_mib["airflow"] < 100, sample.memory_mib
        assert 0 < sample.memory_mib["postgres"] < 100, sample.memory_mib
        pss = sum(
            measure.memory_of(p) for p in [psutil.Process(scheduler.pid), *psutil.Process(scheduler.pid).children()]
        )
        assert abs(sample.memory_mib["airflow"] - pss / 2**20) < 5
    finally:
        for process in (scheduler, postmaster, decoy):
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            process.wait()


def test_docker_stats_lines_become_one_figure_per_container():
    lines = "\n".join(
        json.dumps(row)
        for row in (
            {"Name": "g4-senior-airflow-1", "CPUPerc": "12.50%", "MemUsage": "1.2GiB / 2GiB"},
            {"Name": "g4-senior-airflow-worker-2", "CPUPerc": "0.00%", "MemUsage": "310.5MiB / 2GiB"},
            {"Name": "g4-senior-pg-dwh-1", "CPUPerc": "150.00%", "MemUsage": "512KiB / 256MiB"},
        )
    )
    usage = measure.parse_docker_stats(lines, "g4-senior")
    assert set(usage) == {"airflow-1", "airflow-worker-2", "pg-dwh-1"}
    assert usage["airflow-1"].memory_mib == 1.2 * 1024 and usage["airflow-1"].limit_mib == 2048
    assert usage["pg-dwh-1"].cpu_cores == 1.5 and usage["pg-dwh-1"].memory_mib == 0.5
    assert {measure.report_group(n) for n in usage} == {"airflow", "postgres"}


# Burns one CPU-second (process time, so a busy machine only makes it slower), then exits.
BURN = "import time\nwhile time.process_time() < 1.0: pass"


def test_native_cpu_counts_a_task_process_that_ended_between_two_samples():
    # A root that starts a short-lived child and reaps it, like a LocalExecutor worker runs a task.
    root_code = (
        f"import subprocess, sys, time; time.sleep(2); subprocess.run([sys.executable, '-c', {BURN!r}]); time.sleep(60)"
    )
    root = spawn(root_code)
    try:
        monitor = measure.ResourceMonitor(roots=lambda: {"airflow": [root.pid]}, machine_wide=True)
        monitor.sample()  # before the child starts
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not psutil.Process(root.pid).children():
            time.sleep(0.1)
        while time.monotonic() < deadline and psutil.Process(root.pid).children():
            time.sleep(0.2)  # until the child has burnt its second and was reaped
        second = monitor.sample()
        busy = second.cpu_cores["airflow"] * second.at
        assert 0.9 < busy < 1.6, f"{busy:.2f} CPU-seconds, the child burnt 1.0 (+ interpreter start-ups)"
        # The whole machine was at least as busy as our child (other people's load only adds).
        assert second.cpu_cores[measure.MACHINE] * second.at >= 0.9 * busy
        assert measure.MACHINE not in second.memory_mib
    finally:
        root.kill()
        root.wait()


def test_engine_stats_give_cumulative_cpu_and_memory_without_the_page_cache():
    # The shape of GET /containers/{id}/stats?stream=false&one-shot=true on a cgroup v2 host.
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 12_500_000_000}, "online_cpus": 2},
        "memory_stats": {"usage": 600 * 2**20, "limit": 1024 * 2**20, "stats": {"inactive_file": 88 * 2**20}},
    }
    assert measure.parse_engine_stats(stats) == (12.5, 512.0, 1024.0)
    v1 = {**stats, "memory_stats": {"usage": 300 * 2**20, "stats": {"total_inactive_file": 44 * 2**20}}}
    assert measure.parse_engine_stats(v1) == (12.5, 256.0, None)
