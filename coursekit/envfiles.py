"""Read the grades' `deploy/env/*.env` files the way Docker Compose reads `env_file:`.

The env files are the single configuration of a grade: Compose hands them to the
containers, and the native runner, the tests and the checkers read the same files
with this module. The format is Compose's: `KEY=VALUE` per line, `#` comments,
blank lines, optional single or double quotes around the value. Anything else is
a mistake a learner should hear about with the file and line, not a silent skip.
"""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"^(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*)$")


class EnvFileError(ValueError):
    """An env file is missing or has a line that is not `KEY=VALUE`."""


def parse_env_text(text: str, source: str = "<text>") -> dict[str, str]:
    """Parse env-file text; `source` names the file in error messages."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise EnvFileError(f"{source}:{number}: expected KEY=VALUE, got {raw!r}")
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[match["key"]] = value
    return values


def read_env_file(path: Path | str) -> dict[str, str]:
    """Read one env file; a missing file is an error naming the path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(f"{path}: env file not found") from None
    return parse_env_text(text, str(path))


def read_env_files(*paths: Path | str) -> dict[str, str]:
    """Merge several env files; later files win, as in Compose's `env_file:` list."""
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(read_env_file(path))
    return merged
