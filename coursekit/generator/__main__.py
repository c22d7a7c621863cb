"""`python -m coursekit.generator`: the command line and the tick loop.

Reading order: `main` checks everything it can without a database (env files,
environment, config.json) and exits 2 on any mistake, so a broken config never
writes a row. `Runner.run` then connects (retrying while the database is not
there yet), prepares the tables and runs ticks until the time is up, the tick
budget is spent or a signal asks it to stop.

Exit codes: 0 done or stopped by SIGTERM/SIGINT; 1 the database stayed
unreachable for DB_RETRY_TIMEOUT_SEC or a tick failed for a reason retrying
cannot fix; 2 invalid configuration (nothing was written).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2

from coursekit.envfiles import EnvFileError, read_env_files
from coursekit.generator.config import ConfigError, load_config
from coursekit.generator.logs import LOGGER_NAME, setup_logging
from coursekit.generator.settings import ENV_VARIABLES, Settings, SettingsError, settings_from_env
from coursekit.generator.shop import Shop

log = logging.getLogger(LOGGER_NAME)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
BACKOFF_FIRST_SEC, BACKOFF_CAP_SEC = 0.5, 10.0
# psycopg2 raises these when the server is gone or not (yet) reachable; anything else is a real error.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


def epilog() -> str:
    """The manual below `--help`'s options: the environment, what a tick does, logs, exit codes."""
    variables = "\n".join(
        f"  {name:<27} {'required' if default is None else 'default ' + default}\n  {'':<27} {effect}"
        for name, default, effect in ENV_VARIABLES
    )
    return f"""\
environment variables (from the process environment; --env-file values are used where it has none):
{variables}

  The durations that are set (non-zero) must satisfy
  STOP_GENERATOR_AFTER_SEC > DELETE_OLDER_THAN_SEC > UPDATE_NOT_OLDER_THAN_SEC > TICK_INTERVAL_SEC.

each tick, in ONE transaction (all of it is committed, or none of it):
  1. delete rows whose created_at is older than DELETE_OLDER_THAN_SEC;
  2. update update_rows_per_tick random rows per table created within UPDATE_NOT_OLDER_THAN_SEC,
     each in a random subset of its updatable columns;
  3. insert insert_rows_per_tick rows per table (referenced tables first), created_at = the database's now().
  Then wait for the next tick (ticks start every TICK_INTERVAL_SEC seconds).

the database:
  Tables are created if missing and gain columns the config gained; nothing is ever dropped or
  truncated except with --reset. If the database is unreachable (at start or mid-run) the
  generator retries with exponential backoff (up to {BACKOFF_CAP_SEC:g} s between tries); a failed tick is
  rolled back and run again after reconnecting.

logs (under --log-dir): INFO on stdout (warnings and errors on stderr) and in info.log; everything,
  including each statement with its parameters and the ids updated and deleted, in debug.log.
  Both files rotate at 10 MB, keeping 5 old files.

exit codes: 0 finished or stopped by SIGTERM/SIGINT, 1 database unreachable for DB_RETRY_TIMEOUT_SEC
  or a tick failed in a way retrying cannot fix, 2 invalid configuration (nothing was written).

example:
  python -m coursekit.generator --config G0_Trainee/docker/generator/config.json \\
      --env-file G0_Trainee/deploy/env/pg-shop-1.env --env-file G0_Trainee/deploy/env/shop-1.env --check
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.generator",
        description=(
            "Simulate the backend database of a shop selling exotic fruits: every tick deletes old rows, "
            "updates recent ones and inserts new ones, reproducibly from GENERATOR_SEED."
        ),
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("config.json"),
        help="the grade's config.json: tables, columns, Faker providers, rows per tick (default: ./config.json)",
    )
    parser.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="PATH",
        help="read KEY=VALUE lines from PATH before starting; repeatable, later files win; "
        "variables already in the process environment win over files",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="folder for info.log and debug.log (default: $GENERATOR_LOG_DIR, else ./logs)",
    )
    parser.add_argument(
        "--max-ticks",
        type=_positive_int,
        default=None,
        metavar="N",
        help="exit 0 after N committed ticks (for tests and one-off runs; default: no limit)",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="DROP the configured tables first and start over (ids restart at 1); without it, "
        "restarts continue the existing data",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the environment and config.json, then exit (0 valid, 2 invalid); no database needed",
    )
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def gather_environment(env_files: list[str]) -> dict[str, str]:
    """The env files merged (later wins), overridden by the real environment, as Compose and dotenv do."""
    return {**read_env_files(*env_files), **os.environ}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env = gather_environment(args.env_file)
    except EnvFileError as exc:
        print(f"shop-generator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log_dir = args.log_dir or Path(env.get("GENERATOR_LOG_DIR") or "logs")
    try:
        setup_logging(log_dir)
    except OSError as exc:
        print(f"shop-generator: cannot write logs to {log_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG

    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = settings_from_env(env)
    except SettingsError as exc:
        problems += [f"environment: {problem}" for problem in exc.problems]
    locale = settings.locale if settings else _usable_locale(env.get("FAKER_LOCALE", ""))
    try:
        config = load_config(args.config, locale)
    except ConfigError as exc:
        problems += str(exc).splitlines()
    if problems or settings is None:
        log.error("invalid configuration, nothing was written to the database:")
        for problem in problems:
            log.error("  %s", problem)
        return EXIT_CONFIG

    tables = ", ".join(
        f"{name} (+{config.tables[name].insert_rows_per_tick}/~{config.tables[name].update_rows_per_tick} per tick)"
        for name in config.order
    )
    log.info(
        "shop %s: seed %d, locale %s, tables %s; tick every %d s, %s, %s, %s; database %s",
        settings.city,
        settings.seed,
        settings.locale,
        tables,
        settings.tick_interval,
        _window(settings.update_window, "update rows younger than {} s", "no updates"),
        _window(settings.delete_after, "delete rows older than {} s", "no deletes"),
        _window(settings.stop_after, "stop after {} s", "run until stopped"),
        settings.describe_database(),
    )
    if args.check:
        log.info("configuration OK (%s)", args.config)
        return EXIT_OK
    shop = Shop(
        config,
        seed=settings.seed,
        locale=settings.locale,
        update_window=settings.update_window,
        delete_after=settings.delete_after,
    )
    return Runner(shop, settings, max_ticks=args.max_ticks, reset=args.reset).run()


def _usable_locale(value: str) -> str | None:
    """The locale for provider checks when the environment has other mistakes (None if it is bad too)."""
    from faker.config import AVAILABLE_LOCALES

    return value.strip() if value.strip() in AVAILABLE_LOCALES else None


def _window(seconds: int, text: str, off: str) -> str:
    return text.format(seconds) if seconds else off


class GiveUp(Exception):
    """The database stayed unreachable for DB_RETRY_TIMEOUT_SEC."""


class Runner:
    """The tick loop around a `Shop`: timing, reconnects, signals."""

    def __init__(self, shop: Shop, settings: Settings, *, max_ticks: int | None, reset: bool) -> None:
        self.shop = shop
        self.settings = settings
        self.max_ticks = max_ticks
        self.reset_pending = reset
        self.stop = threading.Event()
        self.signal_name = ""
        self.outage_started: float | None = None  # monotonic time of the first failure of the current outage
        self.failures = 0  # failed attempts in the current outage
        self.started = time.monotonic()
        self.deadline = self.started + settings.stop_after if settings.stop_after else None

    def run(self) -> int:
        self._install_signal_handlers()
        conn = None
        number = 1
        try:
            conn = self._connect()
            while conn is not None and not self._should_stop():
                tick_started = time.monotonic()
                try:
                    result = self.shop.tick(conn, number)
                except CONNECTION_ERRORS as exc:
                    log.warning("tick %d rolled back, the database connection failed: %s", number, _reason(exc))
                    _close(conn)
                    conn = self._connect() if self._back_off(exc) else None
                    continue  # the same tick number again, from scratch
                self._outage_over()
                log.info(result.summary(self.settings.city))
                if self.max_ticks and number >= self.max_ticks:
                    log.info("%d ticks done (--max-ticks), exiting", number)
                    break
                number += 1
                # Ticks start TICK_INTERVAL_SEC apart however long each took; after an outage the
                # retried tick simply starts the rhythm again (no burst of catch-up ticks).
                self._wait_until(tick_started + self.settings.tick_interval)
            return EXIT_OK
        except GiveUp as exc:
            log.error("giving up: %s", exc)
            return EXIT_FAILED
        except psycopg2.Error as exc:
            log.error(
                "database error at tick %d; the open transaction was rolled back and retrying would not help: %s",
                number,
                _reason(exc),
            )
            return EXIT_FAILED
        except KeyboardInterrupt:
            log.warning("aborted by a second %s; the open tick (if any) was rolled back", self.signal_name or "signal")
            return EXIT_OK
        finally:
            if conn is not None:
                _close(conn)

    # -- stopping ----------------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # in-process callers on other threads stop via `self.stop`
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """First signal: finish (or roll back) the current tick, then exit 0. Second one: abort now."""
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.stop.set()  # only a flag: the loop logs it, a signal handler should not

    def _should_stop(self) -> bool:
        if self.stop.is_set():
            log.info("%s received, exiting after a whole tick", self.signal_name)
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            log.info("STOP_GENERATOR_AFTER_SEC=%d reached, exiting", self.settings.stop_after)
            return True
        return False

    def _wait_until(self, moment: float) -> None:
        """Sleep until `moment` (or the stop deadline), waking at once on SIGTERM/SIGINT."""
        if self.deadline is not None:
            moment = min(moment, self.deadline)
        self.stop.wait(max(0.0, moment - time.monotonic()))

    # -- connecting --------------------------------------------------------------------------------------------------

    def _connect(self) -> Any | None:
        """Connect and prepare the tables, retrying with backoff; None when asked to stop meanwhile.

        Raises GiveUp once the outage has lasted DB_RETRY_TIMEOUT_SEC. `--reset`
        runs with the first successful preparation only, never on reconnects.
        """
        while True:
            conn = None
            try:
                conn = psycopg2.connect(
                    **self.settings.connect_kwargs(),
                    connect_timeout=max(2, min(10, int(self._retry_budget_left()))),  # never outlast the budget
                    client_encoding="UTF8",  # text round-trips byte-exact whatever the server's default
                    application_name="shop-generator",
                    keepalives=1,  # notice a vanished server mid-tick within ~30 s instead of hanging
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
                if self.reset_pending:
                    log.warning(
                        "--reset: DROPPING tables %s in %s and starting over",
                        ", ".join(self.shop.config.order),
                        self.settings.describe_database(),
                    )
                self.shop.prepare(conn, reset=self.reset_pending)
                self.reset_pending = False
                if self.failures:
                    log.info("database reachable again after %d failed attempts", self.failures)
                return conn
            except CONNECTION_ERRORS as exc:
                if conn is not None:
                    _close(conn)
                if not self._back_off(exc):
                    return None

    def _back_off(self, exc: BaseException) -> bool:
        """Log a failed attempt and wait before the next; False when asked to stop meanwhile.

        The outage starts at the first failure and ends only with a committed
        tick, so a database that accepts connections but fails every tick also
        runs out of DB_RETRY_TIMEOUT_SEC, with growing pauses, instead of being
        hammered in a loop.
        """
        if self.outage_started is None:
            self.outage_started = time.monotonic()
        self.failures += 1
        left = self._retry_budget_left()
        if left <= 0:
            raise GiveUp(
                f"database {self.settings.describe_database()} unreachable for "
                f"{time.monotonic() - self.outage_started:.1f} s (DB_RETRY_TIMEOUT_SEC={self.settings.retry_timeout}); "
                f"last error: {_reason(exc)}"
            )
        delay = min(BACKOFF_CAP_SEC, BACKOFF_FIRST_SEC * 2 ** (self.failures - 1), left)
        log.warning(
            "database %s unreachable (attempt %d): %s; retrying in %.1f s, giving up in %.0f s",
            self.settings.describe_database(),
            self.failures,
            _reason(exc),
            delay,
            left,
        )
        self._wait_until(time.monotonic() + delay)
        return not self._should_stop()

    def _retry_budget_left(self) -> float:
        if self.outage_started is None:
            return float(self.settings.retry_timeout)
        return self.settings.retry_timeout - (time.monotonic() - self.outage_started)

    def _outage_over(self) -> None:
        self.outage_started = None
        self.failures = 0


def _reason(exc: BaseException) -> str:
    """The first line of a driver error: enough to say why, without a multi-line dump per retry.

    When rolling back on a dead connection fails too ("connection already
    closed"), the error that killed the tick is more telling: that one is shown.
    """
    if isinstance(exc, psycopg2.InterfaceError) and isinstance(exc.__context__, psycopg2.Error):
        exc = exc.__context__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _close(conn: Any) -> None:
    try:
        conn.close()
    except psycopg2.Error:
        pass  # closing a dead connection is allowed to fail


if __name__ == "__main__":
    sys.exit(main())
