"""`make check` through real GNU make: the verdict is the last line a learner sees, the exit code tells CI.

GNU make prints `make: *** [Makefile:NN: check] Error N` whenever a recipe fails, which after a
WAIT or NOT DONE reads as a crash. So on a terminal (CI unset) `make check` exits 0 whatever the
verdict; with CI set, or output to a pipe or file, anything but DONE fails make. A stack that is
not running gives the quickest non-DONE verdict: CANNOT CHECK.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

from coursekit.grade import REPO_ROOT
from coursekit.pg import free_port

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def make_check(tty: bool, ci: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MAKEFLAGS", "MAKELEVEL")}
    env.update({name: str(free_port()) for name in ("PG_SHOP_1_PORT", "PG_SHOP_2_PORT", "PG_DWH_PORT")})
    if ci is not None:
        env["CI"] = ci
    command = ["make", "--no-print-directory", "check", "GRADE=G2_Junior", "ARGS=--no-wait"]
    if not tty:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        return result.returncode, result.stdout + result.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    output, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: make and its children are done
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), ANSI.sub("", output.decode(errors="replace")).replace("\r", "")


def test_on_a_terminal_the_verdict_is_the_last_line_and_make_adds_no_error():
    code, output = make_check(tty=True, ci=None)
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].startswith("CANNOT CHECK: cannot reach pg-dwh"), output[-1500:]
    assert "make: ***" not in output and code == 0, output[-1500:]


def test_with_ci_set_or_into_a_pipe_make_check_fails_for_anything_but_done():
    for tty, ci in ((True, "true"), (False, None)):
        code, output = make_check(tty=tty, ci=ci)
        assert code != 0, (tty, ci, output[-1500:])
        assert re.search(r"^make: \*\*\* \[Makefile:\d+: check\] Error 2$", output, re.MULTILINE), output[-1500:]
        assert "CANNOT CHECK: cannot reach pg-dwh" in output
