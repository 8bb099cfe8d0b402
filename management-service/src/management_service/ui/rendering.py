"""Rendering the console's templates: the Jinja2 environment, its filters, the headers every page
gets, and how a message (an action's outcome, a refusal) reaches the operator.

Autoescaping is on for every template, so a value from the history (an error text, a trigger
payload) is shown, never run. Pages send a Content-Security-Policy that allows only this origin's
script and style (no inline script), are never cached (they show live state and carry the CSRF
token), and may not be framed.

A request made by the console's script carries `X-Console-Fetch: 1`: it gets the message alone (a
fragment the script shows in place); a plain form post gets a whole page. A fragment answers with
`X-Console-Fragment: 1`: the script inserts as HTML only an answer carrying it (anything else, say
a proxy's error page or a JSON error, is shown as text).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from management_service.ui.guards import ConsoleRefusal
from management_service.ui.session import console_session, known_session

HERE = Path(__file__).parent
FETCH_HEADER = "X-Console-Fetch"
FRAGMENT_HEADER = "X-Console-Fragment"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def when(value: datetime | None) -> str:
    """A time as UTC to the second (`2026-11-21 10:00:03Z`)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def age(seconds: float | None) -> str:
    """A duration for a person: `42 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if whole >= size:
            return f"{whole // size} {unit} {(whole % size) // smaller_size} {smaller}"
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{seconds:.0f} s"


def percent(value: float | None) -> str:
    """A weight (a fraction) as a percentage with two decimals."""
    if value is None:
        return "-"
    shown = f"{value * 100:.2f}"
    return f"{'0.00' if shown == '-0.00' else shown} %"


def number(value: float | None, digits: int = 2) -> str:
    """A number with thousands separators; whole numbers without decimals."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(when=when, age=age, percent=percent, number=number)


def is_fetch(request: Request) -> bool:
    return request.headers.get(FETCH_HEADER) == "1"


def render(
    request: Request, name: str, context: Mapping[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """A template with the session (sign-in state, CSRF token) and the deployment's switches."""
    settings = request.app.state.settings
    full = {
        "session": known_session(request),
        "protect_reads": settings.management.protect_reads,
        "enforce_live_guard": settings.management.enforce_live_guard,
        "key_configured": bool(
            settings.management.api_key and settings.management.api_key.get_secret_value()
        ),
        "path": request.url.path,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, full, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    if name.startswith("_"):
        response.headers[FRAGMENT_HEADER] = "1"
    return response


def notice(
    request: Request, message: str, *, ok: bool, status_code: int = 200, event_id: str | None = None
) -> HTMLResponse:
    """An action's outcome: the fragment for the script, or a page with a way back."""
    context = {"message": message, "ok": ok, "event_id": event_id}
    name = "_notice.html" if is_fetch(request) else "notice.html"
    return render(request, name, context, status_code)


def done(request: Request, message: str, event_id: str) -> Response:
    """A successful action: the script gets the message; a plain form post goes to the event's page."""
    if is_fetch(request):
        return notice(request, message, ok=True, event_id=event_id)
    return RedirectResponse(f"/ui/events/{event_id}", status_code=303)


async def render_refusal(request: Request, exc: Exception) -> Response:
    """The exception handler of `ConsoleRefusal`."""
    assert isinstance(exc, ConsoleRefusal)  # registered for this class only
    await console_session(request)  # the page's header shows who is signed in
    if exc.redirect_to and request.method == "GET" and not is_fetch(request):
        return RedirectResponse(exc.redirect_to, status_code=303)
    return notice(request, exc.message, ok=False, status_code=exc.status_code)
