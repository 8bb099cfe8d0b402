"""What docker-compose.yml must hand each container, derived from the one table of variables.

`SERVICE_SECTIONS` names the parts of the configuration each service reads; the variables a container
must be given follow from `rebalancer_shared.config.ENV_VARIABLES`, so a variable added to that table
is required in docker-compose.yml (and .env.example) without anyone remembering to add it here. The
product this replaces silently ignored ORDER_TYPE and TIME_IN_FORCE because compose never passed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rebalancer_shared.config import CONFIG_FILE_VARIABLE, ENV_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

# The configuration each service reads: a whole section ("redis") or one key
# ("processing.lease_seconds"). rebalancing_defaults has no variables; it comes from config.yaml.
SERVICE_SECTIONS: dict[str, frozenset[str]] = {
    "event-broker": frozenset(
        {
            "accounts_file",
            "redis",
            "database",
            "startup",
            "ably",
            "logging",
            # The broker's heartbeat interval, the queue's lease length and the reconciliation's interval.
            "processing.heartbeat_seconds",
            "processing.lease_seconds",
            "processing.reconcile_interval_seconds",
        }
    ),
    "event-processor": frozenset(
        {
            "accounts_file",
            "redis",
            "database",
            "startup",
            "allocations",
            "ibkr",
            "orders",
            "processing",
            "logging",
        }
    ),
    "management-service": frozenset(
        {
            "accounts_file",
            "redis",
            "database",
            "startup",
            "management",
            "notifications",
            # Heartbeat staleness is judged in heartbeat intervals; the queue needs the lease length.
            "processing.heartbeat_seconds",
            "processing.lease_seconds",
            "logging",
        }
    ),
}

# The Python package each service container runs with `python -m`.
SERVICE_MODULES: dict[str, str] = {
    "event-broker": "event_broker",
    "event-processor": "event_processor",
    "management-service": "management_service",
}

# Read into `ibkr` by load_settings but used only by the ib-gateway container (as TWS_USERID /
# TWS_PASSWORD): the processor logs in to the gateway's API, never to IBKR itself.
GATEWAY_ONLY: frozenset[str] = frozenset({"IB_USERNAME", "IB_PASSWORD"})

# Variables whose container value docker-compose.yml decides itself (paths inside the container, the
# compose services' addresses, where the API listens, the trading mode shared with the gateway). Every
# other variable is passed through as `${NAME:-}`: empty means unset to load_settings, so a value left
# out of .env falls back to config.yaml and then to the built-in default instead of being shadowed.
COMPOSE_DECIDES: frozenset[str] = frozenset(
    {
        CONFIG_FILE_VARIABLE,
        "ACCOUNTS_FILE",
        "REDIS_URL",
        "DATABASE_URL",
        "IB_HOST",
        "TRADING_MODE",
        "MANAGEMENT_HOST",
        "MANAGEMENT_PORT",
    }
)


def _selects(selector: str, path: tuple[str, ...]) -> bool:
    parts = tuple(selector.split("."))
    return path[: len(parts)] == parts


def required_variables(service: str) -> frozenset[str]:
    """Every variable `service` reads: those of its sections, plus CONFIG_FILE and ACCOUNTS_FILE."""
    selectors = SERVICE_SECTIONS[service]
    names = {name for name, path in ENV_VARIABLES.items() if any(_selects(s, path) for s in selectors)}
    return frozenset(names - GATEWAY_ONLY) | {CONFIG_FILE_VARIABLE, "ACCOUNTS_FILE"}


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """docker-compose.yml as data (anchors and `<<` merges resolved, as compose resolves them)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


def container_environment(compose: Mapping[str, Any], service: str) -> dict[str, str]:
    """The `environment:` of one compose service, as a name -> value mapping (either YAML form)."""
    raw = compose["services"][service].get("environment") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {name: value for name, _, value in pairs}
    return {str(name): "" if value is None else str(value) for name, value in raw.items()}


def missing_variables(compose: Mapping[str, Any], service: str) -> set[str]:
    """Variables `service` reads that its container is not given."""
    return set(required_variables(service)) - set(container_environment(compose, service))


def unexpected_variables(compose: Mapping[str, Any], service: str) -> set[str]:
    """Variables handed to `service` that it does not read (a secret in the wrong container, a typo)."""
    return set(container_environment(compose, service)) - set(required_variables(service))
