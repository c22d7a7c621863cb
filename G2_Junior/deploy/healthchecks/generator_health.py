"""Docker healthcheck of a shop generator: healthy while its ticks commit.

Usage: python generator_health.py /app/logs/info.log   (exit 0 healthy, 1 unhealthy)

The generator writes one INFO line per committed tick to info.log, and WARNING lines while its
database is unreachable. So the container is healthy when that file was written within the last
three tick intervals (at least a minute) and its last line is not a warning or an error. Reading
the file's tail costs a few milliseconds, and it checks the real thing (rows are being written),
which a process or port check would not. TICK_INTERVAL_SEC comes from the container's env.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MIN_SILENCE_SEC = 60
TAIL_BYTES = 4096


def check(log_file: Path, tick_interval: int, now: float | None = None) -> tuple[bool, str]:
    """(healthy, reason) for one generator's info.log."""
    try:
        age = (time.time() if now is None else now) - log_file.stat().st_mtime
        with log_file.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        return False, f"cannot read {log_file}: {exc.strerror or exc}"
    allowed = max(MIN_SILENCE_SEC, 3 * tick_interval)
    if age > allowed:
        return False, f"{log_file} not written for {age:.0f} s (more than {allowed} s): no tick is committing"
    last = lines[-1] if lines else ""
    level = last.split(" ", 2)[1] if last.count(" ") >= 2 else ""
    if level != "INFO":
        return False, f"last log line is not a committed tick: {last!r}"
    return True, last


def main(argv: list[str]) -> int:
    log_file = Path(argv[1] if len(argv) > 1 else "/app/logs/info.log")
    raw_interval = os.environ.get("TICK_INTERVAL_SEC", "").strip()
    tick_interval = int(raw_interval) if raw_interval.isdigit() else 10
    healthy, reason = check(log_file, tick_interval)
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
