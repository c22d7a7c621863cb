"""G1-G3 with Docker: the stack comes up healthy and the grade's dags folder parses in the container.

G0 (test_g0_docker.py) and G4 (test_g4_docker.py, with Celery) are covered in depth; these grades
share G0's compose file, so what can differ is their env files, generator config and DAGs.
"""

from __future__ import annotations

import time

import pytest
from dockerstack import DockerStack, MemoryWatch, record_figures
from test_g0_docker import LONG_RUNNING, assert_dags_parse

pytestmark = pytest.mark.docker


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("grade", ["G1_Intern", "G2_Junior", "G3_Middle"])
def test_the_grade_starts_healthy_and_its_dags_parse(grade):
    stack = DockerStack(grade)
    try:
        with MemoryWatch(stack.project) as watch:
            seconds = stack.up()
            rows = {row["Service"]: row for row in stack.containers()}
            for name in LONG_RUNNING:
                assert (rows[name]["State"], rows[name]["Health"]) == ("running", "healthy"), stack.diagnose()
            began = time.monotonic()
            dags = assert_dags_parse(stack)
        record_figures(
            grade,
            {
                "timings": {"first up --wait (s)": round(seconds), "dag parse (s)": round(time.monotonic() - began)},
                "dags": sorted(dags),
                "peak_mib": watch.peak,
                "limit_mib": watch.limit,
            },
        )
    finally:
        stack.destroy()
