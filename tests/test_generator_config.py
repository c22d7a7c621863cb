"""The generator's config.json and environment checks, in-process (no database, fast).

The command-line behaviour of the same mistakes (exit 2, nothing written) is
tested against a real database in test_generator_run.py; here every rule gets
its own small case, so a broken rule names itself.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from coursekit.generator.config import ConfigError, load_config
from coursekit.generator.settings import SettingsError, settings_from_env
from coursekit.generator.sqltypes import misfit, parse_sql_type
from coursekit.grade import GRADES, SHOPS, Grade

G0 = Grade.named("G0_Trainee")
BASE = json.loads(G0.generator_config.read_text(encoding="utf-8"))


def issues_of(tmp_path: Path, data: object, locale: str | None = "en_US") -> list[tuple[str, str]]:
    """The (key path, message) pairs load_config reports for `data` (empty when valid)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        load_config(path, locale)
    except ConfigError as exc:
        assert str(path) in str(exc), "every message names the file"
        return exc.issues
    return []


def changed(edit) -> dict:
    """G0's config with one edit applied (edit receives the dict and changes it in place)."""
    data = copy.deepcopy(BASE)
    edit(data)
    return data


def test_every_grade_config_is_valid_for_both_shops():
    checked = 0
    for name in GRADES:
        grade = Grade.named(name)
        if not grade.generator_config.exists():
            continue  # grades are added one by one; each must be valid once it exists
        for shop in SHOPS:
            env = grade.generator_env(shop)
            settings_from_env({**env, "POSTGRES_HOST": env.get("POSTGRES_HOST", "x")})
            config = load_config(grade.generator_config, env["FAKER_LOCALE"])
            assert config.order.index("customers") < config.order.index("orders")
            checked += 1
    assert checked >= 2


CASES = {
    "unknown provider": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(provider="randint"),
        "tables.orders.columns.quantity.provider",
        "unknown Faker provider",
    ),
    "faker internals are not providers": (
        lambda d: d["tables"]["orders"]["columns"]["status"].update(provider="seed_instance", params={}),
        "tables.orders.columns.status.provider",
        "unknown Faker provider",
    ),
    "bad params": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(params={"minimum": 1}),
        "tables.orders.columns.quantity.params",
        "failed",
    ),
    "provider value does not fit type": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(provider="first_name", params={}),
        "tables.orders.columns.quantity.provider",
        "does not fit SQL type integer",
    ),
    "bad SQL type": (
        lambda d: d["tables"]["customers"]["columns"]["email"].update(type="string"),
        "tables.customers.columns.email.type",
        "allowed: text, varchar(n)",
    ),
    "SQL injection in type": (
        lambda d: d["tables"]["customers"]["columns"]["email"].update(type="text); drop table x; --"),
        "tables.customers.columns.email.type",
        "unsupported SQL type",
    ),
    "negative count": (
        lambda d: d["tables"]["orders"].update(insert_rows_per_tick=-1),
        "tables.orders.insert_rows_per_tick",
        "greater than or equal to 0",
    ),
    "count as text": (
        lambda d: d["tables"]["orders"].update(update_rows_per_tick="5"),
        "tables.orders.update_rows_per_tick",
        "valid integer",
    ),
    "unknown column key": (
        lambda d: d["tables"]["customers"]["columns"]["email"].update(nullable=True),
        "tables.customers.columns.email.nullable",
        "allowed keys here: type, provider, references",
    ),
    "unknown table key": (
        lambda d: d["tables"]["customers"].update(rows=3),
        "tables.customers.rows",
        "allowed keys here: id_column",
    ),
    "unknown top-level key": (lambda d: d.update(version=2), "version", "allowed keys here: tables"),
    "missing key": (lambda d: d["tables"]["customers"].pop("id_column"), "tables.customers.id_column", "missing"),
    "bad reference": (
        lambda d: d["tables"]["orders"]["columns"]["customer_id"].update(references="clients"),
        "tables.orders.columns.customer_id.references",
        "unknown table 'clients'",
    ),
    "both provider and references": (
        lambda d: d["tables"]["orders"]["columns"]["customer_id"].update(provider="random_int"),
        "tables.orders.columns.customer_id",
        "exactly one of",
    ),
    "reference of text type": (
        lambda d: d["tables"]["orders"]["columns"]["customer_id"].update(type="text"),
        "tables.orders.columns.customer_id.type",
        "bigint",
    ),
    "late share on a provider column": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(late_share=0.1),
        "tables.orders.columns.quantity.late_share",
        "only for 'references'",
    ),
    "share above 1": (
        lambda d: d["tables"]["customers"]["columns"]["phone"].update(null_share=1.5),
        "tables.customers.columns.phone.null_share",
        "less than or equal to 1",
    ),
    "shares adding up above 1": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(
            null_share=0.6, invalid_share=0.6, invalid_values=[0]
        ),
        "tables.orders.columns.quantity",
        "at most 1",
    ),
    "invalid share without values": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(invalid_share=0.1),
        "tables.orders.columns.quantity.invalid_values",
        "at least one value",
    ),
    "invalid value of the wrong type": (
        lambda d: d["tables"]["orders"]["columns"]["quantity"].update(invalid_share=0.1, invalid_values=[0, "many"]),
        "tables.orders.columns.quantity.invalid_values[1]",
        "does not fit SQL type integer",
    ),
    "uppercase table name": (
        lambda d: d["tables"].update(Customers=d["tables"].pop("customers")),
        "tables.Customers",
        "lowercase SQL identifier",
    ),
    "column named like the implicit ones": (
        lambda d: d["tables"]["customers"]["columns"].update(created_at={"type": "date", "provider": "date"}),
        "tables.customers.columns.created_at",
        "implicit",
    ),
    "reference cycle": (
        lambda d: d["tables"]["customers"]["columns"].update(last_order={"type": "bigint", "references": "orders"}),
        "tables",
        "reference cycle",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_mistakes_name_their_key_path(tmp_path, case):
    edit, path, words = CASES[case]
    issues = issues_of(tmp_path, changed(edit))
    assert issues, f"{case}: accepted"
    assert any(p == path and words in message for p, message in issues), issues


def test_the_valid_base_config_passes(tmp_path):
    assert issues_of(tmp_path, BASE) == []


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"tables": {\n  "customers": ,\n}}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.json: \(top level\): invalid JSON at line 2, column 16"):
        load_config(path, "en_US")


def test_providers_are_checked_against_the_shop_locale(tmp_path):
    # `ssn` exists for en_US; `nonexistent_provider` nowhere. Without a usable locale provider checks are skipped.
    data = changed(lambda d: d["tables"]["customers"]["columns"]["email"].update(provider="nonexistent_provider"))
    assert issues_of(tmp_path, data, locale=None) == []
    assert issues_of(tmp_path, data, locale="tr_TR")[0][0] == "tables.customers.columns.email.provider"


def test_tables_are_ordered_parents_first(tmp_path):
    data = {"tables": {name: BASE["tables"][name] for name in ("orders", "products", "customers")}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_config(path, "en_US").order == ["products", "customers", "orders"]


# -- sql types ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["text", "varchar(20)", "char(3)", "integer", "bigint", "smallint", "numeric(10,2)", "numeric(10, 2)"]
    + ["boolean", "date", "timestamptz", "double precision"],
)
def test_whitelisted_types_parse(text):
    assert parse_sql_type(text).sql == text


@pytest.mark.parametrize("text", ["TEXT", "varchar", "varchar(0)", "numeric(2,3)", "int", "json", "text[]", "jsonb"])
def test_other_types_are_refused(text):
    with pytest.raises(ValueError):
        parse_sql_type(text)


def test_value_fit_rules():
    assert misfit(parse_sql_type("smallint"), 40000) is not None
    assert misfit(parse_sql_type("integer"), True) is not None
    assert misfit(parse_sql_type("numeric(5,2)"), 999.99) is None
    assert misfit(parse_sql_type("numeric(5,2)"), 1000) is not None
    assert misfit(parse_sql_type("date"), "2024-02-29") is None
    assert misfit(parse_sql_type("date"), "yesterday") is not None
    assert misfit(parse_sql_type("text"), "nul\x00byte") is not None
    assert misfit(parse_sql_type("boolean"), None) is None


# -- environment --------------------------------------------------------------------------------------------------

GOOD_ENV = {
    **G0.generator_env("shop-1"),
    "POSTGRES_HOST": "127.0.0.1",
}


def problems_of(**changes: str | None) -> list[str]:
    env = {**GOOD_ENV}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    try:
        settings_from_env(env)
    except SettingsError as exc:
        return exc.problems
    return []


def test_the_grade_env_is_valid():
    settings = settings_from_env(GOOD_ENV)
    assert (settings.seed, settings.city, settings.locale, settings.tick_interval) == (101, "New-York", "en_US", 10)
    assert settings.database == "shop" and settings.retry_timeout == 120


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"TICK_INTERVAL_SEC": "10s"}, "TICK_INTERVAL_SEC='10s' is not a whole number"),
        ({"TICK_INTERVAL_SEC": "2.5"}, "TICK_INTERVAL_SEC='2.5'"),
        ({"TICK_INTERVAL_SEC": "0"}, "TICK_INTERVAL_SEC=0 is out of range"),
        ({"DELETE_OLDER_THAN_SEC": "-5"}, "DELETE_OLDER_THAN_SEC='-5'"),
        ({"GENERATOR_SEED": "abc"}, "GENERATOR_SEED='abc' is not an integer"),
        ({"GENERATOR_SEED": None}, "GENERATOR_SEED is required"),
        ({"POSTGRES_PASSWORD": None}, "POSTGRES_PASSWORD is required"),
        ({"POSTGRES_PASSWORD": ""}, "POSTGRES_PASSWORD is required"),
        ({"POSTGRES_PORT": "70000"}, "POSTGRES_PORT=70000 is out of range"),
        ({"FAKER_LOCALE": "tr-TR"}, "did you mean tr_TR"),
        ({"STOP_GENERATOR_AFTER_SEC": "7200"}, "STOP_GENERATOR_AFTER_SEC=7200 must be greater than DELETE_OLDER"),
        ({"UPDATE_NOT_OLDER_THAN_SEC": "5"}, "UPDATE_NOT_OLDER_THAN_SEC=5 must be greater than TICK_INTERVAL_SEC=10"),
    ],
)
def test_environment_mistakes_name_the_variable(changes, words):
    problems = problems_of(**changes)
    assert any(words in problem for problem in problems), problems


def test_timing_rule_skips_durations_that_are_off():
    assert problems_of(DELETE_OLDER_THAN_SEC="0", STOP_GENERATOR_AFTER_SEC="400") == []
    assert problems_of(UPDATE_NOT_OLDER_THAN_SEC="0", DELETE_OLDER_THAN_SEC="0", STOP_GENERATOR_AFTER_SEC="0") == []
    # with DELETE off, STOP is compared with UPDATE directly
    assert problems_of(DELETE_OLDER_THAN_SEC="0", STOP_GENERATOR_AFTER_SEC="300")


def test_all_environment_problems_are_reported_at_once():
    problems = problems_of(GENERATOR_SEED="x", TICK_INTERVAL_SEC="y", POSTGRES_USER=None)
    assert len(problems) == 3
