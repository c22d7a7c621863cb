"""Docker and Windows checkouts: a CRLF clone's shop gets its read-only role; a broken init script is unhealthy.

Before .gitattributes, a `git -c core.autocrlf=true clone` (Git for Windows' default) gave the shops'
init script CRLF endings: the postgres image logged `bash\\r: No such file or directory`, exited,
restarted and then reported **healthy** without the role `shop_reader` that Airflow logs in with.
Now the clone has LF files, and the shops' healthcheck checks that the role logs in - so the same
broken script (put back on purpose) keeps the service unhealthy and `up --wait` fails.
Only pg-shop-1 starts (`up -d --wait pg-shop-1`): nothing to build, about a minute per test.
"""

from __future__ import annotations

import re
import time

import pytest
from dockerstack import DockerStack
from support import reader_logs_in
from test_line_endings import INIT_SCRIPT, crlf_clone

pytestmark = pytest.mark.docker
# env prints the interpreter's name escaped, in the locale's quotes: /usr/bin/env: ‘bash\r’: No such file or directory
BASH_CR = re.compile(r"/usr/bin/env: \W?bash\\r\W?: No such file or directory")


def health(stack: DockerStack) -> tuple[str, str]:
    (row,) = [r for r in stack.containers() if r["Service"] == "pg-shop-1"]
    return row["State"], row["Health"]


@pytest.mark.usefixtures("docker_engine")
def test_a_crlf_clone_starts_its_shop_healthy_with_the_read_only_role(tmp_path):
    clone = crlf_clone(tmp_path / "clone")
    stack = DockerStack("G0_Trainee", source=clone)
    try:
        assert b"\r\n" not in (stack.grade.path / INIT_SCRIPT).read_bytes()
        stack.compose("up", "-d", "--wait", "--wait-timeout", "300", "pg-shop-1", timeout=360)
        assert health(stack) == ("running", "healthy")
        assert reader_logs_in(stack.grade, stack.ports["PG_SHOP_1_PORT"]), stack.logs("pg-shop-1")
        assert not BASH_CR.search(stack.logs("pg-shop-1", 100000))
    finally:
        stack.destroy()


@pytest.mark.usefixtures("docker_engine")
def test_a_broken_init_script_keeps_its_shop_unhealthy():
    """The script as the old CRLF clone had it: `up --wait` fails and the service stays unhealthy."""
    stack = DockerStack("G0_Trainee")
    try:
        script = stack.grade.path / INIT_SCRIPT
        script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))
        result = stack.compose("up", "-d", "--wait", "--wait-timeout", "300", "pg-shop-1", timeout=360, check=False)
        assert result.returncode != 0, "up --wait succeeded with a broken init script:\n" + stack.diagnose()
        # The container restarts after its failed init, so its health may read "starting" for a while
        # (as CI's busy machine saw): it must settle on "unhealthy" and never read "healthy" on the way.
        seen = [health(stack)[1]]
        deadline = time.monotonic() + 120
        while seen[-1] != "unhealthy" and time.monotonic() < deadline:
            time.sleep(2)
            seen.append(health(stack)[1])
        assert "healthy" not in seen and seen[-1] == "unhealthy", f"health seen: {seen}\n{stack.diagnose()}"
        assert BASH_CR.search(stack.logs("pg-shop-1", 100000)), "the init script fails as the old CRLF clone's did"
        assert not reader_logs_in(stack.grade, stack.ports["PG_SHOP_1_PORT"])
    finally:
        stack.destroy()
