"""docker-compose.yml, the Dockerfiles and .env.example, checked statically against the code they deploy.

The product this replaces silently ignored ORDER_TYPE and TIME_IN_FORCE because compose never passed
them: here every variable a service reads (tests/support/deployment.py, derived from ENV_VARIABLES)
must reach its container, and the checks are shown to fail on doctored copies.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import tomllib
from typing import Any

import pytest
import yaml

from event_broker import healthcheck as broker_healthcheck
from event_processor import healthcheck as processor_healthcheck
from rebalancer_shared.config import CONFIG_FILE_VARIABLE, ENV_VARIABLES, ProcessingSettings
from rebalancer_shared.heartbeats import Heartbeat, instance_name
from tests.support.deployment import (
    COMPOSE_DECIDES,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    GATEWAY_ONLY,
    ROOT,
    SERVICE_MODULES,
    container_environment,
    load_compose,
    missing_variables,
    required_variables,
    unexpected_variables,
)

SERVICES = sorted(SERVICE_MODULES)
STORES = ("redis", "postgres")
# Read by the compose file (not by a service) and so documented in .env.example as well.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "VNC_PASSWORD", *GATEWAY_ONLY}
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")
PASS_THROUGH = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):-\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def dockerfile(service: str) -> str:
    return (ROOT / service / "Dockerfile").read_text(encoding="utf-8")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def runtime_stage(text: str) -> list[tuple[str, str]]:
    """The instructions of the last stage: what the running container is made of."""
    steps = instructions(text)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def module_exists(module: str) -> bool:
    """`python -m module` would find it in one of the workspace members' src/ folders."""
    parts = module.split(".")
    for src in ROOT.glob("*/src"):
        base = src.joinpath(*parts)
        if (base / "__main__.py").is_file() or base.with_suffix(".py").is_file():
            return True
    return False


def python_module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


def strings_in(data: Any) -> list[str]:
    """Every string (key or value) of parsed YAML: what compose interpolates, comments left out."""
    if isinstance(data, dict):
        return [s for key, value in data.items() for s in (*strings_in(key), *strings_in(value))]
    if isinstance(data, list):
        return [s for item in data for s in strings_in(item)]
    return [data] if isinstance(data, str) else []


def secret_name(name: str) -> bool:
    return name.endswith("_KEY") or name.endswith("PASSWORD")


def hard_coded_secrets(compose: dict[str, Any]) -> list[str]:
    """`service.VAR` of every secret variable or URL password written out instead of interpolated."""
    found = []
    for service in compose["services"]:
        for name, value in container_environment(compose, service).items():
            match = INTERPOLATION.fullmatch(value)
            literal_secret = secret_name(name) and (
                match is None or (match["op"] in {"-", ":-"} and match["default"] != "")
            )
            # A URL's password must be one interpolation: with each `${...}` reduced to `${}`, that is
            # all the text between the user's colon and the `@`.
            url = re.search(r"://[^/@:]*:(?P<password>[^/@]*)@", INTERPOLATION.sub("${}", value))
            literal_url_password = url is not None and url["password"] != "${}"
            if literal_secret or literal_url_password:
                found.append(f"{service}.{name}")
    return found


def env_example_assignments() -> dict[str, tuple[str, str]]:
    """NAME -> (value, the line above) of every `NAME=value` or commented-out `# NAME=value` line."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found = {}
    for index, line in enumerate(lines):
        match = re.fullmatch(r"#?\s*(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)", line)
        if match:
            found[match["name"]] = (match["value"], lines[index - 1] if index else "")
    return found


def shadows_config_yaml(name: str, value: str) -> bool:
    """True when compose gives `name` a value of its own instead of passing .env's through."""
    if name in COMPOSE_DECIDES:
        return False
    match = PASS_THROUGH.fullmatch(value)
    return match is None or match["name"] != name


def seconds(value: str) -> float:
    match = re.fullmatch(r"(?P<n>\d+)(?P<unit>[sm])", value)
    assert match, value
    return int(match["n"]) * (60 if match["unit"] == "m" else 1)


# -- every variable reaches its container ----------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_a_service_reads_is_passed_to_its_container(
    compose: dict[str, Any], service: str
) -> None:
    assert missing_variables(compose, service) == set()


@pytest.mark.parametrize("service", SERVICES)
def test_no_container_is_handed_variables_its_service_does_not_read(
    compose: dict[str, Any], service: str
) -> None:
    assert unexpected_variables(compose, service) == set()


def test_checker_reports_order_settings_that_compose_forgets_to_pass(compose: dict[str, Any]) -> None:
    doctored = copy.deepcopy(compose)
    environment = doctored["services"]["event-processor"]["environment"]
    del environment["ORDER_TYPE"], environment["TIME_IN_FORCE"]
    assert missing_variables(doctored, "event-processor") == {"ORDER_TYPE", "TIME_IN_FORCE"}


def test_a_variable_added_to_the_config_table_is_required_from_compose(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ENV_VARIABLES, "ORDER_OUTSIDE_RTH", ("orders", "outside_rth"))
    assert missing_variables(compose, "event-processor") == {"ORDER_OUTSIDE_RTH"}
    assert missing_variables(compose, "event-broker") == set()


def test_every_service_reads_its_config_and_accounts_files() -> None:
    for service in SERVICES:
        assert {CONFIG_FILE_VARIABLE, "ACCOUNTS_FILE"} <= required_variables(service)
    assert {"ORDER_TYPE", "TIME_IN_FORCE", "IB_HOST"} <= required_variables("event-processor")
    assert "ABLY_API_KEY" in required_variables("event-broker")
    assert "MANAGEMENT_API_KEY" in required_variables("management-service")


@pytest.mark.parametrize("service", SERVICES)
def test_variables_compose_does_not_decide_fall_back_to_config_yaml(
    compose: dict[str, Any], service: str
) -> None:
    # `${NAME:-}` is empty when .env leaves NAME out, and load_settings treats empty as unset, so
    # config.yaml keeps its say. A non-empty default here would silently override config.yaml.
    environment = container_environment(compose, service)
    shadowing = {name: value for name, value in environment.items() if shadows_config_yaml(name, value)}
    assert shadowing == {}


def test_processor_and_gateway_use_the_same_trading_mode(compose: dict[str, Any]) -> None:
    processor = container_environment(compose, "event-processor")
    gateway = container_environment(compose, "ib-gateway")
    assert processor["TRADING_MODE"] == gateway["TRADING_MODE"] == "${TRADING_MODE:-paper}"
    assert processor["IB_HOST"] == "ib-gateway"
    assert gateway["TWS_USERID"] == "${IB_USERNAME:-}"
    assert gateway["TWS_PASSWORD"] == "${IB_PASSWORD:-}"
    assert gateway["VNC_SERVER_PASSWORD"] == "${VNC_PASSWORD:-}"
    assert gateway["TWS_MASTER_CLIENT_ID"] == "${IB_CLIENT_ID:-}"


@pytest.mark.parametrize("service", SERVICES)
def test_services_reach_redis_and_postgres_by_their_compose_names(
    compose: dict[str, Any], service: str
) -> None:
    environment = container_environment(compose, service)
    assert re.fullmatch(r"\$\{REDIS_URL:-redis://redis:6379/\d+\}", environment["REDIS_URL"])
    assert re.fullmatch(
        r"postgresql\+psycopg://\$\{[^}]+\}:\$\{[^}]+\}@postgres:5432/rebalancer", environment["DATABASE_URL"]
    )
    postgres = container_environment(compose, "postgres")
    assert postgres["POSTGRES_DB"] == "rebalancer"


# -- .env.example -----------------------------------------------------------------------------------------


def test_env_example_documents_every_variable() -> None:
    documented = set(env_example_assignments())
    expected = set(ENV_VARIABLES) | {CONFIG_FILE_VARIABLE} | COMPOSE_ONLY_VARIABLES
    assert expected - documented == set()


def test_env_example_documents_every_variable_compose_interpolates(compose: dict[str, Any]) -> None:
    interpolated = {m["name"] for value in strings_in(compose) for m in INTERPOLATION.finditer(value)}
    assert interpolated - set(env_example_assignments()) == set()


def test_env_example_explains_each_line_and_holds_no_secret() -> None:
    for name, (value, above) in env_example_assignments().items():
        assert above.startswith("#"), name
        assert not re.match(r"#?\s*[A-Z][A-Z0-9_]*=", above), name
        if secret_name(name) or name == "IB_USERNAME":
            assert value == "", name


# -- services: commands, dependencies, restarts, files ------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_compose_command_and_dockerfile_cmd_run_a_module_that_exists(
    compose: dict[str, Any], service: str
) -> None:
    module = python_module_of(compose["services"][service]["command"])
    cmd = [args for op, args in instructions(dockerfile(service)) if op == "CMD"][-1]
    assert module == SERVICE_MODULES[service]
    assert python_module_of(json.loads(cmd)) == module
    assert module_exists(module)
    assert not module_exists("event_processor_typo")


@pytest.mark.parametrize("service", SERVICES)
def test_services_start_after_healthy_stores_restart_and_read_dotenv(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    for store in STORES:
        assert spec["depends_on"][store] == {"condition": "service_healthy"}
    assert spec["restart"] == "unless-stopped"
    assert spec["env_file"] == ".env"
    assert spec["build"] == {"context": ".", "dockerfile": f"{service}/Dockerfile"}


def test_processor_starts_only_once_the_gateway_is_logged_in(compose: dict[str, Any]) -> None:
    assert compose["services"]["event-processor"]["depends_on"]["ib-gateway"] == {
        "condition": "service_healthy"
    }
    assert "bash" in compose["services"]["ib-gateway"]["healthcheck"]["test"]


@pytest.mark.parametrize("dependency", [*STORES, "ib-gateway"])
def test_every_dependency_reports_its_health(compose: dict[str, Any], dependency: str) -> None:
    spec = compose["services"][dependency]
    assert spec["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert spec["restart"] == "unless-stopped"


@pytest.mark.parametrize("service", SERVICES)
def test_config_and_accounts_are_mounted_read_only_where_the_service_looks(
    compose: dict[str, Any], service: str
) -> None:
    environment = container_environment(compose, service)
    volumes = compose["services"][service]["volumes"]
    assert f"./config.yaml:{environment[CONFIG_FILE_VARIABLE]}:ro" in volumes
    assert f"./accounts.yaml:{environment['ACCOUNTS_FILE']}:ro" in volumes


def test_init_sql_creates_the_schema_on_postgres_first_start(compose: dict[str, Any]) -> None:
    mounts = [v.split(":") for v in compose["services"]["postgres"]["volumes"]]
    assert any(
        src == "./init.sql" and dst.startswith("/docker-entrypoint-initdb.d/") for src, dst, *_ in mounts
    )
    assert (ROOT / "init.sql").is_file()


def test_redis_writes_an_append_only_file_to_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.split(":")[0] in compose["volumes"] and v.endswith(":/data") for v in redis["volumes"])


def test_postgres_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["postgres"]["volumes"]
    assert any(
        v.split(":")[0] in compose["volumes"] and v.endswith(":/var/lib/postgresql/data") for v in volumes
    )


def test_processor_gets_more_stop_time_than_its_shutdown_grace(compose: dict[str, Any]) -> None:
    grace = seconds(compose["services"]["event-processor"]["stop_grace_period"])
    assert grace > ProcessingSettings().shutdown_grace_seconds + 30


# -- exposure and secrets ---------------------------------------------------------------------------------


def test_only_loopback_ports_are_published_and_the_gateway_api_stays_inside(compose: dict[str, Any]) -> None:
    for service, spec in compose["services"].items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (service, port)
    gateway = compose["services"]["ib-gateway"]
    published = {str(p).rsplit(":", 1)[-1] for p in gateway.get("ports", [])}
    assert published.isdisjoint({"4001", "4002", "4003", "4004"})
    assert {"4003", "4004"} <= set(gateway["expose"])
    assert compose["services"]["management-service"]["ports"] == ["127.0.0.1:${MANAGEMENT_PORT:-8000}:8000"]
    management = container_environment(compose, "management-service")
    assert (management["MANAGEMENT_HOST"], management["MANAGEMENT_PORT"]) == ("0.0.0.0", "8000")


def test_no_secret_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    assert hard_coded_secrets(compose) == []
    assert "POSTGRES_PASSWORD" in container_environment(compose, "event-processor")["DATABASE_URL"]


def test_secret_check_catches_a_written_out_key_a_default_password_and_a_url_password(
    compose: dict[str, Any],
) -> None:
    doctored = copy.deepcopy(compose)
    doctored["services"]["event-broker"]["environment"]["ABLY_API_KEY"] = "abc.def:123"
    doctored["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "${POSTGRES_PASSWORD:-hunter2}"
    doctored["services"]["management-service"]["environment"]["DATABASE_URL"] = (
        "postgresql+psycopg://${POSTGRES_USER:-rebalancer}:hunter2@postgres:5432/rebalancer"
    )
    assert sorted(hard_coded_secrets(doctored)) == [
        "event-broker.ABLY_API_KEY",
        "management-service.DATABASE_URL",
        "postgres.POSTGRES_PASSWORD",
    ]


# -- Dockerfiles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_with_uv_and_runs_as_a_non_root_user_with_a_health_check(service: str) -> None:
    text = dockerfile(service)
    steps = instructions(text)
    runs = [args for op, args in steps if op == "RUN"]
    assert any(re.search(r"pip install .*\buv==\d+\.\d+\.\d+", run) for run in runs)
    assert any(f"uv sync --no-dev --package {service}" in run for run in runs)
    runtime = runtime_stage(text)
    users = [args for op, args in runtime if op == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    assert [op for op, _ in runtime].index("USER") < [op for op, _ in runtime].index("CMD")
    healthchecks = [args for op, args in runtime if op == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert " CMD " in f" {healthchecks[0]} "
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", steps[0][1].split()[0])


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_copies_every_workspace_member_pyproject(service: str) -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    members = root["tool"]["uv"]["workspace"]["members"]
    copies = [args.split()[0] for op, args in instructions(dockerfile(service)) if op == "COPY"]
    assert "pyproject.toml" in copies
    assert {f"{member}/pyproject.toml" for member in members} <= set(copies)
    assert {"shared/src", f"{service}/src"} <= set(copies)


@pytest.mark.parametrize(
    ("service", "health_module"),
    [("event-broker", "event_broker.healthcheck"), ("event-processor", "event_processor.healthcheck")],
)
def test_worker_images_check_health_through_the_heartbeat_module(service: str, health_module: str) -> None:
    (healthcheck,) = [args for op, args in instructions(dockerfile(service)) if op == "HEALTHCHECK"]
    assert f'["python", "-m", "{health_module}"]' in healthcheck
    assert module_exists(health_module)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".env", ".venv", ".git", "tests", "bench"} <= set(ignored)


# -- the heartbeat health checks -----------------------------------------------------------------------------


HEALTH_CHECKS = [
    pytest.param(broker_healthcheck, "event-broker", id="broker"),
    pytest.param(processor_healthcheck, "event-processor", id="processor"),
]


@pytest.mark.parametrize(("module", "service"), HEALTH_CHECKS)
def test_health_check_accepts_a_recent_heartbeat_under_the_name_the_service_writes(
    module: Any, service: str
) -> None:
    beat = Heartbeat(service=service, instance=instance_name(), state="running", at=1000.0, details={})
    assert module.heartbeat_problem([beat], now=1005.0) is None


@pytest.mark.parametrize(("module", "service"), HEALTH_CHECKS)
def test_health_check_fails_when_this_hosts_heartbeat_is_stale(module: Any, service: str) -> None:
    stale = Heartbeat(service=service, instance=instance_name(), state="running", at=1000.0, details={})
    problem = module.heartbeat_problem([stale], now=1000.0 + module.MAX_AGE_SECONDS + 1)
    assert problem is not None
    assert "61 s old" in problem


@pytest.mark.parametrize(("module", "service"), HEALTH_CHECKS)
def test_health_check_ignores_other_hosts_and_other_services(module: Any, service: str) -> None:
    other_host = Heartbeat(
        service=service, instance="elsewhere-1:2:3", state="running", at=1000.0, details={}
    )
    other_service = Heartbeat(
        service="other", instance=instance_name(), state="running", at=1000.0, details={}
    )
    problem = module.heartbeat_problem([other_host, other_service], now=1001.0)
    assert problem is not None
    assert socket.gethostname() in problem


@pytest.mark.parametrize(("module", "service"), HEALTH_CHECKS)
def test_health_check_ignores_a_host_whose_name_starts_with_this_hosts(module: Any, service: str) -> None:
    longer_host = f"{socket.gethostname()}-2:{instance_name().split(':', 1)[1]}"
    beat = Heartbeat(service=service, instance=longer_host, state="running", at=1000.0, details={})
    assert module.heartbeat_problem([beat], now=1001.0) is not None


@pytest.mark.parametrize(("module", "service"), HEALTH_CHECKS)
def test_health_check_exits_one_when_redis_cannot_be_reached(
    module: Any,
    service: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port}/0")
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(ROOT / "config.yaml"))
    assert module.main() == 1
    assert "unhealthy: cannot read heartbeats" in capsys.readouterr().out


def test_test_helpers_parse_continuations_and_stages() -> None:
    text = "FROM a AS b\nRUN x \\\n    y\nFROM c\n# USER root\nUSER app\n"
    assert instructions(text) == [("FROM", "a AS b"), ("RUN", "x y"), ("FROM", "c"), ("USER", "app")]
    assert runtime_stage(text) == [("FROM", "c"), ("USER", "app")]


def test_the_development_override_publishes_redis_and_postgres_on_loopback_only() -> None:
    override = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())
    assert override["services"]["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    assert override["services"]["postgres"]["ports"] == ["127.0.0.1:5432:5432"]


def test_the_sentinel_profile_adds_a_replica_of_redis_and_three_sentinels_that_agree_on_it(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    optional = {name for name, service in services.items() if "sentinel" in service.get("profiles", [])}
    assert optional == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert services["redis-replica"]["command"][-3:] == ["--replicaof", "redis", "6379"]
    assert "redis-replica-data" in compose["volumes"]
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = services[name]["entrypoint"][-1]
        assert "sentinel monitor rebalancer redis 6379 2" in script, name  # quorum: two of three
        assert "--sentinel" in script
    sentinel_url = "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/rebalancer"
    assert sentinel_url in COMPOSE_FILE.read_text(), "the profile's comment shows the REDIS_URL to set"
    assert "profiles" not in services["redis"], "the primary runs in every deployment"
