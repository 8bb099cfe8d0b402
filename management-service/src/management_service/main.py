"""Assembles the FastAPI application: lifespan, error handlers, routers and their guards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, params

from management_service.api.deps import ApiKeyRequired
from management_service.api.errors import register_error_handlers
from management_service.api.routes import accounts, events, health, metrics, orders, queue, runs
from management_service.notifications import Target
from management_service.services import Services, open_services
from management_service.ui import mount_console
from rebalancer_shared.config import Settings

DESCRIPTION = """Queue health and control of the IBKR portfolio rebalancer.

Reads are public unless `PROTECT_READS=true` (then every read but `/health` needs the key);
`POST` and `DELETE` always need `Authorization: Bearer <MANAGEMENT_API_KEY>`.
"""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _lifespan(settings: Settings, services: Services | None, targets: Sequence[Target] | None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:  # built and owned by the caller (tests)
            yield
            return
        async with open_services(settings, targets) as opened:
            app.state.services = opened
            yield
            del app.state.services

    return lifespan


def create_app(
    settings: Settings, *, services: Services | None = None, targets: Sequence[Target] | None = None
) -> FastAPI:
    """The API over `services`, or over services opened from `settings` for the app's lifespan
    (with these notification `targets`, when the caller resolved them already)."""
    app = FastAPI(
        title="Rebalancer management service",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=_lifespan(settings, services, targets),
        redirect_slashes=False,  # a path ending in '/' gets a 404 that says why (api/errors.py)
    )
    app.state.settings = settings
    if services is not None:
        app.state.services = services
    register_error_handlers(app)
    read_guard: list[params.Depends] = [ApiKeyRequired] if settings.management.protect_reads else []
    app.include_router(health.router)
    for router in (queue.router, events.router, runs.router, orders.router, accounts.router, metrics.router):
        app.include_router(router, dependencies=read_guard)
    mount_console(app, settings)  # the web console at /ui (its pages follow PROTECT_READS themselves)
    return app


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document, without connecting to anything."""
    return create_app(settings).openapi()
