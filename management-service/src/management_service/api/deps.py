"""The dependencies of the routes, as `Annotated` aliases, and the API key guard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from management_service.auth import KeyCheck, check_api_key
from management_service.health import HealthPolicy
from management_service.models import ErrorResponse
from management_service.services import Services
from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EventQueue
from rebalancer_shared.store import EventStore

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ManagementApiKey",
    description="`Authorization: Bearer <MANAGEMENT_API_KEY>`",
)

_REFUSALS: dict[KeyCheck, tuple[int, str]] = {
    KeyCheck.NOT_CONFIGURED: (
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "MANAGEMENT_API_KEY is not configured: this endpoint is disabled until it is set",
    ),
    KeyCheck.MISSING: (
        status.HTTP_401_UNAUTHORIZED,
        "an API key is required: send the header 'Authorization: Bearer <MANAGEMENT_API_KEY>'",
    ),
    KeyCheck.WRONG: (status.HTTP_401_UNAUTHORIZED, "the API key is not valid"),
}

# The OpenAPI descriptions of the refusals of the guard, for the routes it protects.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (`WWW-Authenticate: Bearer`)."},
    503: {"model": ErrorResponse, "description": "No API key configured, or Redis/PostgreSQL unavailable."},
}


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if not isinstance(services, Services):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is still starting")
    return services


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]


def get_queue(services: ServicesDep) -> EventQueue:
    return services.queue


def get_lifecycle(services: ServicesDep) -> EventLifecycle:
    return services.lifecycle


def get_store(services: ServicesDep) -> EventStore:
    return services.store


def get_accounts(services: ServicesDep) -> Mapping[str, Account]:
    return services.accounts


def get_health_policy(services: ServicesDep) -> HealthPolicy:
    return services.health_policy


QueueDep = Annotated[EventQueue, Depends(get_queue)]
LifecycleDep = Annotated[EventLifecycle, Depends(get_lifecycle)]
StoreDep = Annotated[EventStore, Depends(get_store)]
AccountsDep = Annotated[Mapping[str, Account], Depends(get_accounts)]
HealthPolicyDep = Annotated[HealthPolicy, Depends(get_health_policy)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def require_api_key(settings: SettingsDep, credentials: BearerDep) -> None:
    """Let the request through only with `Authorization: Bearer <MANAGEMENT_API_KEY>`."""
    outcome = check_api_key(settings.management.api_key, credentials.credentials if credentials else None)
    if outcome is KeyCheck.GRANTED:
        return
    code, detail = _REFUSALS[outcome]
    headers = {"WWW-Authenticate": "Bearer"} if code == status.HTTP_401_UNAUTHORIZED else None
    raise HTTPException(code, detail, headers=headers)


# For `dependencies=[...]` of a route or router: the guard returns nothing the route needs.
ApiKeyRequired = Depends(require_api_key)
