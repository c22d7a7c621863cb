"""Docker healthcheck of the `airflow standalone` container.

Usage: python airflow_health.py http://127.0.0.1:8080/api/v2/monitor/health   (exit 0 healthy)

Airflow 3's health endpoint answers 200 as soon as the API server runs, whatever the state of
the other components; its body says whether each is healthy. One container runs all of them, so
it is healthy only when the API answers and the metadata database, scheduler, dag-processor and
triggerer all report "healthy" (a heartbeat within the last ~30 s). Standard library only.
"""

from __future__ import annotations

import json
import sys
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/api/v2/monitor/health"
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


def check(url: str, timeout: float = 5) -> tuple[bool, str]:
    """(healthy, reason) from the health endpoint at `url`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return False, f"{url} did not answer with JSON: {exc}"
    states = {name: ((body.get(name) or {}).get("status") or "missing") for name in COMPONENTS}
    summary = ", ".join(f"{name} {state}" for name, state in states.items())
    return all(state == "healthy" for state in states.values()), summary


def main(argv: list[str]) -> int:
    healthy, reason = check(argv[1] if len(argv) > 1 else DEFAULT_URL)
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
