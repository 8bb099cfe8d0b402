"""Errors of the servers behind the API become 503 with a reason, never a bare 500.

A Redis or PostgreSQL that cannot be reached, or is too busy to answer (a Redis out of memory,
read-only, loading or misconfigured for snapshots; no free pooled connection), is a condition of the
deployment, not a bug: the client may retry later. Which errors those are is the shared
`rebalancer_shared.transient.is_transient`. Any other error of those servers (a wrong key type, a
broken constraint) is a bug and stays a 500, logged by the server. A path that
ends in '/' answers 404 naming the endpoint meant, since an empty shell variable in a URL
(`/queue/events/$EVENT_ID`) is the usual cause.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from management_service.health import describe_error
from management_service.models import ErrorResponse
from rebalancer_shared.transient import is_transient

log = structlog.get_logger(__name__)

# The errors of each server behind the API; the transient ones among them answer 503 naming it.
_SERVERS: dict[type[Exception], str] = {
    redis.exceptions.RedisError: "Redis",
    sqlalchemy.exc.SQLAlchemyError: "PostgreSQL",
}
SERVER_ERRORS = tuple(_SERVERS)


# The `responses` entry of a route that reads the history.
PG_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "PostgreSQL unavailable."}
}


def invalid_input(where: tuple[str, str], kind: str, message: str, value: object) -> HTTPException:
    """A 422 in the shape of FastAPI's own validation errors, so clients read one format for 422:
    `where` is (body|query|path, field name)."""
    error = {"type": kind, "loc": list(where), "msg": message, "input": value}
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [error])


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _server_of(exc: Exception) -> str:
    return next((name for kind, name in _SERVERS.items() if isinstance(exc, kind)), "a backing server")


async def server_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 naming the server that did not answer, or was too busy to, and why (secrets masked)."""
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": unavailable_detail(request, exc)},
    )


def unavailable_detail(request: Request, exc: Exception) -> str:
    """'Redis is unavailable: <reason>' for a transient error of a server, logged; any other error
    is raised again (a bug, not the deployment: the server's 500 handling logs its traceback)."""
    if not is_transient(exc):
        raise exc
    server = _server_of(exc)
    reason = describe_error(exc)
    log.warning("request failed: server unavailable", path=request.url.path, server=server, error=reason)
    return f"{server} is unavailable: {reason}"


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 whose `Allow` lists the methods of every route on the path, not only the first one's.

    Starlette answers from the first route whose path matches, so `PUT /queue/events` would say
    `Allow: GET` although POST is served there too. Each method is tried against the routes, since
    FastAPI keeps included routers as branches whose routes the app's route list does not show.
    """
    methods = [m for m in _METHODS if _best_match(request, method=m) is Match.FULL]
    response = await http_exception_handler(request, HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED))
    response.headers["Allow"] = ", ".join(methods)
    return response


def _best_match(request: Request, **changes: str) -> Match:
    """How well any route serves the request with `changes` to its scope (path, method)."""
    scope = {**request.scope, **changes}
    matches = {route.matches(scope)[0] for route in request.app.router.routes}
    return next((m for m in (Match.FULL, Match.PARTIAL) if m in matches), Match.NONE)


def _endpoint_meant(request: Request) -> str | None:
    """What a path ending in '/' was meant to reach, in words; None when nothing fits."""
    path, method = request.scope["path"], request.method
    trimmed = path.rstrip("/")
    if not trimmed or trimmed == path:
        return None
    # An endpoint whose last segment is a parameter: the parameter is what the URL left out.
    for template, operations in request.app.openapi()["paths"].items():
        head, _, last = template.rpartition("/")
        if head == trimmed and last.startswith("{") and method.lower() in operations:
            missing = last.strip("{}").replace("_", " ")
            endpoint = f"{method} {template}"
            return f"the {missing} is missing from the path: {endpoint} (an empty variable in the URL?)"
    if _best_match(request, path=trimmed) is Match.FULL:
        return f"no endpoint at {method} {path}: drop the trailing slash ({method} {trimmed})"
    return None


async def not_found(request: Request, exc: Exception) -> Response:
    """404; when no route matched a path ending in '/', the detail names the endpoint meant.

    Slashes are not redirected (`redirect_slashes=False`): a 307 with an empty body tells a curl user
    nothing, and `DELETE /queue/events/` is never a request for `/queue/events`.
    """
    meant = None if _best_match(request) is not Match.NONE else _endpoint_meant(request)
    if meant is None and isinstance(exc, StarletteHTTPException):
        return await http_exception_handler(request, exc)  # a route's own 404 keeps its detail
    return await http_exception_handler(request, HTTPException(status.HTTP_404_NOT_FOUND, meant))


def register_error_handlers(app: FastAPI) -> None:
    """Map unreachable or busy servers to 503 on every route, give 405 the full `Allow` and 404 a hint."""
    for kind in _SERVERS:
        app.add_exception_handler(kind, server_unavailable)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, method_not_allowed)
    app.add_exception_handler(status.HTTP_404_NOT_FOUND, not_found)
