"""What a real Docker run found in the grade's compose files, held in place without an engine.

* G4's load-test override must start on a 2-core laptop: a fixed `cpus: 4` is refused there
  ("Range of CPUs is from 0.01 to 2.00"), so the limit is opt-in via LOADTEST_CPUS.
* The Celery components' limits leave headroom over the peaks measured with the course's image
  (tests/docker/test_g4_docker.py measures them), because the official image loads far more code.
* The first task attempt after a restart must not time out while the API server is still cold.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from test_compose import compose_binary, memory_bytes

from coursekit.envfiles import read_env_file
from coursekit.grade import GRADES, Grade

G4_DEPLOY = Grade.named("G4_Senior").deploy_dir
# Peaks measured by `make test-docker` (tests/docker/test_g4_docker.py, stand-in images, 2 cores).
# The triggerer's 443 MiB is the figure (the highest seen; 412 MiB in our run).
CELERY_PEAK_MIB = {
    "airflow-scheduler": 312,
    "airflow-dag-processor": 332,
    "airflow-triggerer": 443,
    "airflow-worker": 905,
}
HEADROOM = 2.0  # the official image: ~35 providers instead of 3, more memory per process


def config(*files: str, env: dict[str, str] | None = None) -> dict:
    """`docker compose config` of G4's files (the Compose binary of the dev extras; no engine)."""
    args = [str(compose_binary()), *(a for f in files for a in ("-f", f)), "config", "--format", "json"]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(G4_DEPLOY), **(env or {})}
    result = subprocess.run(args, cwd=G4_DEPLOY, env=clean, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_loadtest_override_sets_no_cpu_limit_unless_asked():
    files = ("docker-compose.yml", "docker-compose.loadtest.yml")
    airflow = config(*files)["services"]["airflow"]
    assert not airflow.get("cpus"), f"cpus {airflow.get('cpus')} is refused on machines with fewer cores"
    assert memory_bytes(str(airflow["mem_limit"])) == 4 * 2**30
    assert float(config(*files, env={"LOADTEST_CPUS": "4"})["services"]["airflow"]["cpus"]) == 4.0


def test_every_celery_component_has_a_limit_with_headroom():
    services = config("docker-compose.yml", "docker-compose.celery.yml")["services"]
    for name, service in services.items():
        assert service.get("mem_limit"), f"{name} has no mem_limit"
    for name, peak in CELERY_PEAK_MIB.items():
        limit_mib = memory_bytes(str(services[name]["mem_limit"])) / 2**20
        assert limit_mib >= peak * HEADROOM, f"{name}: limit {limit_mib:.0f} MiB, measured peak {peak} MiB"


@pytest.mark.parametrize("grade", GRADES)
def test_a_task_waits_for_a_cold_api_server(grade, monkeypatch):
    """The task SDK's execution-API calls outlast an API server that starts after the scheduler.

    Measured: the scheduler queued a task 33 s before the API server listened; Airflow's defaults
    (5 attempts, waits from 1 s, 5 s timeout) gave up after ~20 s and failed the attempt.
    """
    env = read_env_file(Grade.named(grade).env_dir / "airflow.env")
    for key in ("TIMEOUT", "RETRIES", "RETRY_WAIT_MIN"):
        name = f"AIRFLOW__WORKERS__EXECUTION_API_{key}"
        monkeypatch.setenv(name, env[name])
    from airflow.configuration import conf

    retries = conf.getint("workers", "execution_api_retries")
    assert conf.getfloat("workers", "execution_api_timeout") >= 30
    assert (retries - 1) * conf.getfloat("workers", "execution_api_retry_wait_min") >= 90
