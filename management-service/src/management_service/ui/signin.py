"""Sign-in with the API key and sign-out (the session's rules: `ui.session`, `ui.session_store`).

Every attempt is logged with the client's address (never the key). After MAX_FAILED_SIGN_INS wrong
keys from one address within FAILURE_WINDOW_SECONDS, that address is refused (429, saying when to
try again) without the key being compared, until the window closes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from management_service.api.deps import SettingsDep
from management_service.auth import KeyCheck, check_api_key
from management_service.health import describe_error
from management_service.ui.guards import CheckedForm, CheckedFormDep, ConsoleRefusal, SessionDep
from management_service.ui.rendering import age, render, when
from management_service.ui.session import client_address, end_session, sessions_of, start_session
from management_service.ui.session_store import (
    FAILURE_WINDOW_SECONDS,
    MAX_FAILED_SIGN_INS,
    REDIS_UNAVAILABLE,
    Throttle,
)
from rebalancer_shared.config import Settings

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/ui", include_in_schema=False)
_FAILED = {
    KeyCheck.NOT_CONFIGURED: (
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "MANAGEMENT_API_KEY is not configured: nobody can sign in until it is set",
    ),
    KeyCheck.MISSING: (status.HTTP_401_UNAUTHORIZED, "type the API key"),
    KeyCheck.WRONG: (status.HTTP_401_UNAUTHORIZED, "that is not the API key"),
}


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request, _: SessionDep) -> HTMLResponse:
    return render(request, "signin.html")


def _throttled(request: Request, throttle: Throttle) -> HTMLResponse:
    again = datetime.now(UTC) + timedelta(seconds=throttle.retry_after_seconds)
    message = (
        f"too many failed sign-ins from your address ({MAX_FAILED_SIGN_INS} in "
        f"{FAILURE_WINDOW_SECONDS // 60} minutes): try again after {when(again)} "
        f"(in {age(throttle.retry_after_seconds)})"
    )
    response = render(
        request, "signin.html", {"error": message}, status_code=status.HTTP_429_TOO_MANY_REQUESTS
    )
    response.headers["Retry-After"] = str(throttle.retry_after_seconds)
    return response


async def _attempt(request: Request, form: CheckedForm, settings: Settings, client: str) -> Response:
    outcome = check_api_key(settings.management.api_key, form.text("api_key") or None)
    sessions = sessions_of(request)
    if outcome is KeyCheck.NOT_CONFIGURED:
        log.warning("console sign-in failed", client=client, reason=outcome.value)
        code, message = _FAILED[outcome]
        return render(request, "signin.html", {"error": message}, status_code=code)
    throttle = await sessions.throttle(client)
    if throttle.blocked:
        log.warning("console sign-in refused: too many failures", client=client, failures=throttle.failures)
        return _throttled(request, throttle)
    if outcome is KeyCheck.GRANTED:
        start_session(request, await sessions.create(client))
        await sessions.clear_failures(client)
        log.info("console sign-in", client=client)
        return RedirectResponse("/ui", status_code=status.HTTP_303_SEE_OTHER)
    throttle = await sessions.count_failure(client)
    log.warning("console sign-in failed", client=client, reason=outcome.value, failures=throttle.failures)
    code, message = _FAILED[outcome]
    return render(request, "signin.html", {"error": message}, status_code=code)


@router.post("/signin")
async def signin(request: Request, form: CheckedFormDep, settings: SettingsDep) -> Response:
    """Check the throttle, compare the key (constant time); on success a new session, then the overview."""
    client = client_address(request)
    try:
        return await _attempt(request, form, settings, client)
    except REDIS_UNAVAILABLE as exc:  # Redis down (sessions and the throttle live there): nobody can sign in
        reason = describe_error(exc)
        log.warning("console sign-in refused: Redis is unavailable", client=client, error=reason)
        raise ConsoleRefusal(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"cannot sign in now: Redis, where sessions are kept, is unavailable ({reason})",
        ) from exc


@router.post("/signout")
async def signout(request: Request, form: CheckedFormDep) -> Response:
    """Revoke the session in Redis and clear the cookie."""
    session_id = form.session.session_id
    end_session(request)
    if session_id is None:
        return RedirectResponse("/ui/signin", status_code=status.HTTP_303_SEE_OTHER)
    try:
        await sessions_of(request).revoke(session_id)
    except (
        REDIS_UNAVAILABLE
    ) as exc:  # Redis down: the browser forgets the session, Redis keeps it till expiry
        reason = describe_error(exc)
        log.warning(
            "console sign-out could not revoke the session", client=client_address(request), error=reason
        )
        raise ConsoleRefusal(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "signed out in this browser, but Redis is unavailable, so the session could not be revoked: "
            f"a copy of the cookie stays valid until the session expires ({reason})",
        ) from exc
    log.info("console sign-out", client=client_address(request))
    return RedirectResponse("/ui/signin", status_code=status.HTTP_303_SEE_OTHER)
