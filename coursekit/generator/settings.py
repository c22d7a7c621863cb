"""The generator's environment variables, parsed strictly.

Why strictly: these values come from hand-edited env files. `os.getenv("X", 20)`
would hand back the text "20s" or "" and fail later in arithmetic, or silently
use a default the learner did not ask for. Here every integer must be digits,
every required variable must be present and non-empty, and the timing rule
of the course must hold; all problems are reported together, by variable name,
before the generator connects anywhere.

`ENV_VARIABLES` is the single description of the variables: `--help` prints it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

# name, default (None = required), effect. The order is the order of `--help`.
ENV_VARIABLES: tuple[tuple[str, str | None, str], ...] = (
    ("GENERATOR_SEED", None, "integer seed: the same seed, config and empty database give the same rows"),
    ("CITY_NAME", None, "the shop's name, shown in every tick's log line"),
    ("FAKER_LOCALE", None, "Faker locale of the values, e.g. en_US or tr_TR"),
    ("TICK_INTERVAL_SEC", None, "seconds from one tick's start to the next; at least 1"),
    ("UPDATE_NOT_OLDER_THAN_SEC", "0", "only rows created within this many seconds are updated; 0 = never update"),
    ("DELETE_OLDER_THAN_SEC", "0", "rows created longer ago than this are deleted; 0 = never delete"),
    ("STOP_GENERATOR_AFTER_SEC", "0", "exit 0 after this many seconds; 0 = run until SIGTERM/SIGINT"),
    ("POSTGRES_HOST", None, "host of the shop database"),
    ("POSTGRES_PORT", "5432", "port of the shop database"),
    ("POSTGRES_USER", None, "role the generator writes as (it creates the tables)"),
    ("POSTGRES_PASSWORD", None, "password of POSTGRES_USER"),
    ("POSTGRES_DB", "POSTGRES_USER", "database name; defaults to the user name, as in the postgres image"),
    ("DB_RETRY_TIMEOUT_SEC", "120", "give up (exit 1) after the database is unreachable this long; 0 = at once"),
    ("GENERATOR_LOG_DIR", "./logs", "folder of info.log and debug.log when --log-dir is not given"),
)
TIMING_RULE = "STOP_GENERATOR_AFTER_SEC > DELETE_OLDER_THAN_SEC > UPDATE_NOT_OLDER_THAN_SEC > TICK_INTERVAL_SEC"


class SettingsError(Exception):
    """The environment is invalid; `problems` has one message per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Settings:
    """Everything the environment says, as typed values. Durations are whole seconds."""

    seed: int
    city: str
    locale: str
    tick_interval: int
    update_window: int
    delete_after: int
    stop_after: int
    host: str
    port: int
    user: str
    password: str
    database: str
    retry_timeout: int

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments of psycopg2.connect (without timeouts, which the caller sets)."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
        }

    def describe_database(self) -> str:
        """Where the data goes, for logs; never includes the password."""
        return f"{self.database} on {self.host}:{self.port} as {self.user}"


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Parse the environment; SettingsError lists every problem at once."""
    reader = _Reader(env)
    seed = reader.integer("GENERATOR_SEED", signed=True)
    city = reader.text("CITY_NAME")
    locale = reader.locale("FAKER_LOCALE")
    tick = reader.integer("TICK_INTERVAL_SEC", minimum=1)
    update = reader.integer("UPDATE_NOT_OLDER_THAN_SEC", default=0)
    delete = reader.integer("DELETE_OLDER_THAN_SEC", default=0)
    stop = reader.integer("STOP_GENERATOR_AFTER_SEC", default=0)
    host = reader.text("POSTGRES_HOST")
    port = reader.integer("POSTGRES_PORT", default=5432, minimum=1, maximum=65535)
    user = reader.text("POSTGRES_USER")
    password = reader.text("POSTGRES_PASSWORD")
    database = reader.text("POSTGRES_DB", default=user)
    retry = reader.integer("DB_RETRY_TIMEOUT_SEC", default=120)
    if not reader.problems:
        reader.problems += timing_problems(stop=stop, delete=delete, update=update, tick=tick)
    if reader.problems:
        raise SettingsError(reader.problems)
    return Settings(seed, city, locale, tick, update, delete, stop, host, port, user, password, database, retry)


def timing_problems(*, stop: int, delete: int, update: int, tick: int) -> list[str]:
    """The course's rule among the durations that are set (non-zero): STOP > DELETE > UPDATE > TICK.

    Why: a row must be able to be updated before it is deleted, a tick must fit
    in the update window, and the generator must live long enough to delete.
    """
    chain = [
        (name, value)
        for name, value in (
            ("STOP_GENERATOR_AFTER_SEC", stop),
            ("DELETE_OLDER_THAN_SEC", delete),
            ("UPDATE_NOT_OLDER_THAN_SEC", update),
            ("TICK_INTERVAL_SEC", tick),
        )
        if value
    ]
    problems = []
    for (big, big_value), (small, small_value) in zip(chain, chain[1:], strict=False):
        if big_value <= small_value:
            problems.append(
                f"{big}={big_value} must be greater than {small}={small_value} "
                f"(rule among the non-zero ones: {TIMING_RULE})"
            )
    return problems


class _Reader:
    """Reads variables one by one and collects problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None  # empty counts as unset: Compose passes "" for unset substitutions

    def text(self, name: str, default: str | None = None) -> str:
        value = self._raw(name)
        if value is None:
            if default is None:
                self.problems.append(f"{name} is required but not set")
                return ""
            return default
        return value

    def integer(
        self,
        name: str,
        *,
        default: int | None = None,
        signed: bool = False,
        minimum: int = 0,
        maximum: int | None = None,
    ) -> int:
        value = self._raw(name)
        if value is None:
            if default is None:
                self.problems.append(f"{name} is required but not set")
                return 0
            return default
        pattern = r"-?[0-9]+" if signed else r"[0-9]+"
        if re.fullmatch(pattern, value) is None:
            kind = "an integer" if signed else "a whole number of seconds (digits only, e.g. 10)"
            self.problems.append(f"{name}={value!r} is not {kind}")
            return 0
        number = int(value)
        if not signed and (number < minimum or (maximum is not None and number > maximum)):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            self.problems.append(f"{name}={number} is out of range (allowed: {bounds})")
        return number

    def locale(self, name: str) -> str:
        value = self.text(name)
        if not value:
            return value
        from faker.config import AVAILABLE_LOCALES

        if value not in AVAILABLE_LOCALES:
            close = difflib.get_close_matches(value.replace("-", "_"), AVAILABLE_LOCALES, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            self.problems.append(f"{name}={value!r} is not a Faker locale{hint} (e.g. en_US, tr_TR, de_DE)")
            return ""
        return value
