"""Errors under `/ui` answer as the console's notice page, not as the API's JSON.

`mount_console` wraps the API's handlers (api/errors.py and FastAPI's own) for the errors a page can
meet: a Redis or PostgreSQL that is unavailable (503 naming it), a query parameter that fails
validation (422), an unknown path (404), a method not served (405), any other HTTPException. A
request whose path is under `/ui` gets the notice page (or, for the live refresh, its fragment)
with the same status and the console's security headers; every other path gets the API's handler
unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from management_service.api.errors import SERVER_ERRORS, unavailable_detail
from management_service.ui.guards import ConsoleRefusal
from management_service.ui.rendering import render_refusal
from management_service.ui.session import CONSOLE_PATH

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]
_WRAPPED: Sequence[Any] = (
    *SERVER_ERRORS,
    RequestValidationError,
    StarletteHTTPException,
    status.HTTP_404_NOT_FOUND,
    status.HTTP_405_METHOD_NOT_ALLOWED,
)


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(f"{CONSOLE_PATH}/")


def _errors_text(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as `field: message; ...`."""
    parts = []
    for error in errors:
        where = error.get("loc", ()) if isinstance(error, dict) else ()
        message = error.get("msg", error) if isinstance(error, dict) else error
        parts.append(f"{where[-1]}: {message}" if where else str(message))
    return "; ".join(parts)


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    detail = exc.detail
    if isinstance(detail, list):
        return _errors_text(detail)
    if exc.status_code == status.HTTP_404_NOT_FOUND and detail == HTTPStatus.NOT_FOUND.phrase:
        return f"the console has no page at {request.url.path}"
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        return f"{request.method} is not served at {request.url.path}"
    return str(detail)


def console_refusal(request: Request, exc: Exception) -> ConsoleRefusal:
    """The refusal an error under /ui is shown as (a server error that is a bug is raised again)."""
    if isinstance(exc, RequestValidationError):
        return ConsoleRefusal(status.HTTP_422_UNPROCESSABLE_CONTENT, _errors_text(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        return ConsoleRefusal(exc.status_code, _http_message(request, exc))
    return ConsoleRefusal(status.HTTP_503_SERVICE_UNAVAILABLE, unavailable_detail(request, exc))


def _either(api_handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if is_console_path(request.url.path):
            return await render_refusal(request, console_refusal(request, exc))
        answer = api_handler(request, exc)
        return await answer if isinstance(answer, Awaitable) else answer

    return handle


def route_errors_to_console(app: FastAPI) -> None:
    """Wrap the app's handlers so that errors under /ui render as console pages (call after the
    API's handlers are registered)."""
    for key in _WRAPPED:
        api_handler = app.exception_handlers.get(key) or app.exception_handlers[StarletteHTTPException]
        app.add_exception_handler(key, _either(api_handler))
