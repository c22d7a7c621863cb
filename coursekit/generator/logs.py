"""Where the generator's log lines go.

* console: INFO to stdout (one line per tick), WARNING and above to stderr, so
  `docker logs` shows what the shop does and a learner's terminal shows trouble;
* `info.log`: the same INFO-and-above lines, kept on disk for later;
* `debug.log`: everything, including every statement with its parameters and
  the ids each tick updated and deleted, for when a learner asks "why is my
  row gone?".

Both files rotate (`MAX_BYTES` x `BACKUPS`) so a generator left running for
days cannot fill a disk. Times are UTC, like the database's `created_at`.
"""

from __future__ import annotations

import logging
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOGGER_NAME = "coursekit.generator"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _BelowWarning(logging.Filter):
    """Keeps stdout for the normal story; warnings and errors go to stderr only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def setup_logging(log_dir: Path | str) -> logging.Logger:
    """Configure the generator's logger; calling it again replaces the handlers (tests, benchmark).

    Raises OSError when the folder cannot be created or written, which the
    command line reports as a configuration error.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime

    def handler(target: logging.Handler, level: int) -> logging.Handler:
        target.setLevel(level)
        target.setFormatter(formatter)
        return target

    stdout = handler(logging.StreamHandler(sys.stdout), logging.INFO)
    stdout.addFilter(_BelowWarning())
    handlers = [
        stdout,
        handler(logging.StreamHandler(sys.stderr), logging.WARNING),
        handler(
            RotatingFileHandler(log_dir / "info.log", maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"),
            logging.INFO,
        ),
        handler(
            RotatingFileHandler(log_dir / "debug.log", maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"),
            logging.DEBUG,
        ),
    ]
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the generator owns its output; no duplicates through the root logger
    for new in handlers:
        logger.addHandler(new)
    return logger
