"""G4_Senior with the Celery override: the reference solution on two workers, checked by the checker.

    docker compose -f docker-compose.yml -f docker-compose.celery.yml up -d --build --wait \
        --scale airflow-worker=2          (DAGS_DIR=../solution/dags in deploy/.env)

It also measures every container's peak memory against its mem_limit (the Celery limits are
sized from these figures plus headroom for the official image), and `make loadtest --attach`'s
way of measuring: one figure per container of this very project, nothing else on the machine.
"""

from __future__ import annotations

import time

import pytest
from dockerstack import DockerStack, MemoryWatch, checker_verdict, record_figures, wait_for
from test_g0_docker import shops_in

from coursekit.grade import SHOPS
from coursekit.loadtest import measure
from coursekit.loadtest.__main__ import attached_stack

pytestmark = pytest.mark.docker

CELERY = {"airflow", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "redis"}
BASE = {"pg-shop-1", "pg-shop-2", "pg-dwh", "airflow-db", "shop-1", "shop-2", "pgadmin"}


@pytest.fixture(scope="module")
def g4(docker_engine):
    files = ("docker-compose.yml", "docker-compose.celery.yml")
    stack = DockerStack("G4_Senior", files=files, dags_dir="../solution/dags")
    began = time.monotonic()
    try:
        with MemoryWatch(stack.project) as watch:
            stack.watch = watch
            stack.timings["first up --wait (s)"] = stack.up("--scale", "airflow-worker=2")
            yield stack
    finally:
        stack.timings["module (s)"] = round(time.monotonic() - began)
        figures = {"timings": stack.timings, "peak_mib": watch.peak, "limit_mib": watch.limit, "engine": docker_engine}
        record_figures("G4_Senior celery", figures)
        stack.destroy()


def test_two_workers_and_every_component_are_healthy(g4):
    rows = g4.containers()
    running = [r for r in rows if r["State"] == "running"]
    assert {r["Service"] for r in running} == CELERY | BASE, g4.diagnose()
    assert all(r["Health"] == "healthy" for r in running), g4.diagnose()
    assert len([r for r in running if r["Service"] == "airflow-worker"]) == 2
    done = {r["Service"]: r["ExitCode"] for r in rows if r["State"] == "exited"}
    assert done == {"init-dirs": 0, "airflow-init": 0}


def test_the_reference_loads_both_shops_on_the_workers_and_the_checker_passes(g4):
    token = g4.airflow_token()
    dags = g4.airflow("GET", "/api/v2/dags?limit=100", token=token)["dags"]
    for dag in dags:
        g4.airflow("PATCH", f"/api/v2/dags/{dag['dag_id']}", {"is_paused": False}, token=token)
    cities = {g4.grade.generator_env(shop)["CITY_NAME"] for shop in SHOPS}
    began = time.monotonic()
    wait_for("both shops' rows in dds", lambda: shops_in(g4, "dds") == cities, 900, every=10)
    g4.timings["unpause to both shops in dds (s)"] = round(time.monotonic() - began)
    began = time.monotonic()
    result = g4.checker()
    g4.timings["make check (s)"] = round(time.monotonic() - began)
    verdict = checker_verdict(result.stdout)
    assert verdict in ("DONE", "WAIT"), f"exit {result.returncode}, {verdict}:\n{result.stdout[-4000:]}"
    # The tasks ran on the Celery workers (task instances record the host they ran on).
    workers = {g4.inspect(r["ID"])["Config"]["Hostname"] for r in g4.containers() if r["Service"] == "airflow-worker"}
    assert len(workers) == 2
    hosts = set()
    for dag in dags:
        runs = g4.airflow("GET", f"/api/v2/dags/{dag['dag_id']}/dagRuns?state=success&limit=5", token=token)
        for run in runs["dag_runs"]:
            path = f"/api/v2/dags/{dag['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances"
            hosts |= {t["hostname"] for t in g4.airflow("GET", path, token=token)["task_instances"] if t["hostname"]}
    assert hosts and hosts <= workers, (hosts, workers)


def test_loadtest_attach_measures_exactly_this_projects_containers(g4, monkeypatch):
    # The project name as Compose resolves it: the shell's COMPOSE_PROJECT_NAME (set for this copy) wins.
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", g4.project)
    assert attached_stack(g4.grade) == g4.project
    sample = measure.DockerMonitor(g4.project).sample()
    names = {r["Name"].removeprefix(g4.project + "-") for r in g4.containers() if r["State"] == "running"}
    assert set(sample.memory_mib) == names
    limits = {name: usage.limit_mib for name, usage in measure.docker_stats(g4.project).items()}
    assert all(sample.memory_mib[n] < limits[n] for n in names), (sample.memory_mib, limits)


def test_peak_memory_of_every_container_stays_under_its_limit(g4):
    over = {name: (round(peak), g4.watch.limit.get(name)) for name, peak in g4.watch.peak.items()}
    over = {name: v for name, v in over.items() if v[1] is None or v[0] >= v[1]}
    assert not over, f"peak MiB >= mem_limit MiB (or no limit): {over}"
    for row in g4.containers():
        assert not g4.inspect(row["ID"])["State"]["OOMKilled"], f"{row['Service']} was OOM-killed"
