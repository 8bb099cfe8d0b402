"""Errors of the servers behind the API become 503 with a reason, never a bare 500.

A Redis or PostgreSQL that cannot be reached is a condition of the deployment, not a bug: the client
may retry later. Anything else unexpected stays a 500 (and is logged by the server).
"""

from __future__ import annotations

import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.routing import Match, Route

from management_service.health import describe_error
from rebalancer_shared.intake import TriggerNotAcceptedError

log = structlog.get_logger(__name__)

_UNAVAILABLE: dict[type[Exception], str] = {
    redis.exceptions.ConnectionError: "Redis",
    redis.exceptions.TimeoutError: "Redis",
    sqlalchemy.exc.OperationalError: "PostgreSQL",
    sqlalchemy.exc.InterfaceError: "PostgreSQL",
}


def _server_of(exc: Exception) -> str:
    return next((name for kind, name in _UNAVAILABLE.items() if isinstance(exc, kind)), "a backing server")


async def server_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 naming the server that did not answer and why (secrets masked)."""
    server = _server_of(exc)
    reason = describe_error(exc)
    log.warning("request failed: server unavailable", path=request.url.path, server=server, error=reason)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"{server} is unavailable: {reason}"},
    )


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 whose `Allow` lists the methods of every route on the path, not only the first one's.

    Starlette answers from the first route whose path matches, so `PUT /queue/events` would say
    `Allow: GET` although POST is served there too.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": ""})
        if match is not Match.NONE and isinstance(route, Route) and route.methods:
            methods |= route.methods
    response = await http_exception_handler(request, HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED))
    response.headers["Allow"] = ", ".join(sorted(methods))
    return response


async def trigger_not_accepted(request: Request, exc: Exception) -> JSONResponse:
    """503 saying that nothing was queued, so the client may simply send the event again."""
    log.warning("event not accepted", path=request.url.path, error=str(exc))
    return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, content={"detail": str(exc)})


def register_error_handlers(app: FastAPI) -> None:
    """Map unreachable-server errors to 503 on every route, and give 405 the full `Allow`."""
    for kind in _UNAVAILABLE:
        app.add_exception_handler(kind, server_unavailable)
    app.add_exception_handler(TriggerNotAcceptedError, trigger_not_accepted)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, method_not_allowed)
