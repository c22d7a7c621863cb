"""`make loadtest --attach` on Docker counts a container's CPU over the whole interval, not a snapshot.

`docker stats` reports the CPU of about the last second: a task that burnt its CPU between two
samples of the load test was invisible. The monitor now reads the container's cumulative CPU time
through the Docker Engine API; one container burns exactly three CPU-seconds between two samples.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from coursekit.loadtest import measure

IMAGE = "python:3.11.14-slim-bookworm"  # the generator's base image: there wherever the course's stacks ran
BURN = "import time\ntime.sleep(2)\nwhile time.process_time() < 3.0: pass\nprint('burnt', flush=True)\ntime.sleep(120)"


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")  # skips without an engine
def test_a_containers_cpu_between_two_samples_is_counted_in_full():
    project = f"lt-probe-{uuid.uuid4().hex[:6]}"
    name = f"{project}-burner-1"
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "--label", f"com.docker.compose.project={project}", "--name", name, IMAGE]
        + ["python", "-c", BURN],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        pytest.skip(f"cannot start {IMAGE}: {started.stderr.strip()[-300:]}")
    try:
        monitor = measure.DockerMonitor(project)
        first = monitor.sample()  # while the container still sleeps
        assert set(first.memory_mib) == {"burner-1"}, first
        deadline = time.monotonic() + 120  # three CPU-seconds take longer on a busy machine
        while "burnt" not in subprocess.run(["docker", "logs", name], capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "the container did not burn its CPU in two minutes"
            time.sleep(1)
        time.sleep(3)  # asleep again: `docker stats` sees nothing from now on
        second = monitor.sample()
        burnt = second.cpu_cores["burner-1"] * (second.at - first.at)
        assert "Engine API" in monitor.method
        assert 2.8 < burnt < 3.6, f"{burnt:.2f} CPU-seconds counted, the container burnt 3.0"
        # What `docker stats` sees now, after the burn: next to nothing; it was what the load test used.
        assert measure.docker_stats(project)["burner-1"].cpu_cores < 0.5
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)
