"""Sign-in for the web console: the API key, typed once, buys a session that Redis can revoke.

The cookie is Starlette's `SessionMiddleware`: the session's JSON in base64, signed with itsdangerous
(HMAC-SHA1 over a key of ours), `HttpOnly`, `SameSite=Strict`, path `/ui`, `Secure` when
`CONSOLE_HTTPS_ONLY=true`. It holds two things: the random id of a signed-in session (after sign-in)
and a random CSRF token. It never holds the key, and the key never goes into a page or a URL: it
arrives in a POST body (sign-in) and is only compared, in constant time (`auth.check_api_key`).

Signed in means: the cookie's session id is live in Redis (`session_store`), checked on every
request. Its life is absolute (8 h from sign-in, never extended by use: the middleware re-sends the
cookie with every answer, so the cookie's own Max-Age would slide); sign-out deletes it in Redis, so
a copy of the cookie taken before is worthless. With Redis unreachable nobody is signed in: the
session cannot be checked (`ConsoleSession.unverified` says why), actions are refused and public
pages render as read-only.

The cookie's signing key is derived from MANAGEMENT_API_KEY (HMAC-SHA256 of a fixed label), so no
new secret needs managing, and a new API key makes every existing cookie invalid: changing the key
signs everyone out. With no key configured nobody can sign in; cookies are then signed with a key
made at start (they only ever carry a CSRF token).

CSRF: every form carries the session's token in a hidden `csrf_token` field and every POST of the
console is refused (403) unless it matches (constant-time comparison): a synchronizer token, with
`SameSite=Strict` as a second wall. The token is made at the first page a visitor sees (so the
sign-in form has one too: no login CSRF) and renewed at sign-in (no fixation).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from fastapi import FastAPI, Request
from pydantic import SecretStr
from starlette.middleware.sessions import SessionMiddleware

from management_service.api.deps import get_services
from management_service.health import describe_error
from management_service.ui.session_store import REDIS_UNAVAILABLE, SESSION_SECONDS, ConsoleSessions
from rebalancer_shared.config import Settings

SESSION_COOKIE = "rebalancer_console"
CONSOLE_PATH = "/ui"
_KEY_LABEL = b"rebalancer web console session cookie v1"
_SESSION_ID = "sid"
_CSRF = "csrf"


def session_signing_key(api_key: SecretStr | None) -> str:
    """The cookie's signing key: derived from the API key, or random when none is configured."""
    if api_key is None or not api_key.get_secret_value():
        return secrets.token_hex(32)
    return hmac.new(api_key.get_secret_value().encode(), _KEY_LABEL, hashlib.sha256).hexdigest()


def add_session_middleware(app: FastAPI, settings: Settings) -> None:
    """Sessions for the console's paths (the API itself never reads them: it wants the bearer key)."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_signing_key(settings.management.api_key),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,  # the cookie's; the session's own life is its Redis TTL
        path=CONSOLE_PATH,
        same_site="strict",
        https_only=settings.management.console_https_only,
    )


def listens_beyond_loopback(host: str) -> bool:
    """True unless `host` is a loopback address or `localhost` (0.0.0.0 and names count as beyond)."""
    if host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def insecure_cookie_warning(settings: Settings) -> str | None:
    """What to warn about at start when the session cookie may travel in clear text."""
    management = settings.management
    if management.console_https_only or not listens_beyond_loopback(management.host):
        return None
    return (
        f"CONSOLE_HTTPS_ONLY is off while the management service listens on {management.host}, beyond "
        "loopback: the console's session cookie may cross the network in clear text. Serve the console "
        "through a TLS proxy and set CONSOLE_HTTPS_ONLY=true"
    )


@dataclass(frozen=True)
class ConsoleSession:
    """What a request's session says: signed in or not, the token its forms must carry, and, when
    Redis could not be asked whether the session is live, why (`unverified`)."""

    signed_in: bool
    csrf_token: str
    session_id: str | None = None
    unverified: str | None = None

    def csrf_matches(self, presented: str | None) -> bool:
        """True when a form's token is this session's (constant time)."""
        return bool(presented) and hmac.compare_digest(str(presented).encode(), self.csrf_token.encode())


def sessions_of(request: Request) -> ConsoleSessions:
    """The Redis side of the console's sessions, on the deployment's queue connection and prefix."""
    queue = get_services(request).queue
    return ConsoleSessions(queue.redis, queue.keys)


def client_address(request: Request) -> str:
    """The client's address (behind a trusted proxy, uvicorn's proxy headers make it the real one)."""
    return request.client.host if request.client else "unknown"


def _cookie_csrf(request: Request) -> str:
    session = request.session
    if not isinstance(session.get(_CSRF), str):
        session[_CSRF] = secrets.token_urlsafe(32)
    token: str = session[_CSRF]
    return token


async def _resolve(request: Request) -> ConsoleSession:
    csrf = _cookie_csrf(request)
    session_id = request.session.get(_SESSION_ID)
    if not isinstance(session_id, str):
        return ConsoleSession(signed_in=False, csrf_token=csrf)
    try:
        live = await sessions_of(request).is_live(session_id)
    except REDIS_UNAVAILABLE as exc:  # Redis down: nobody is signed in now
        reason = describe_error(exc)
        return ConsoleSession(signed_in=False, csrf_token=csrf, session_id=session_id, unverified=reason)
    if not live:
        request.session.pop(_SESSION_ID, None)  # expired or revoked: the cookie forgets it
    return ConsoleSession(signed_in=live, csrf_token=csrf, session_id=session_id if live else None)


async def console_session(request: Request) -> ConsoleSession:
    """The request's session (checked against Redis once per request), with a CSRF token made for
    it if it had none."""
    known = getattr(request.state, "console_session", None)
    if isinstance(known, ConsoleSession):
        return known
    found = await _resolve(request)
    request.state.console_session = found
    return found


def known_session(request: Request) -> ConsoleSession:
    """The session `console_session` found for this request; signed out when it did not run."""
    known = getattr(request.state, "console_session", None)
    if isinstance(known, ConsoleSession):
        return known
    return ConsoleSession(signed_in=False, csrf_token=_cookie_csrf(request))


def start_session(request: Request, session_id: str) -> None:
    """The cookie of a new signed-in session: its id and a new CSRF token (no fixation)."""
    request.session.clear()
    request.session.update({_SESSION_ID: session_id, _CSRF: secrets.token_urlsafe(32)})
    request.state.console_session = ConsoleSession(
        signed_in=True, csrf_token=request.session[_CSRF], session_id=session_id
    )


def end_session(request: Request) -> None:
    """Forget the session in the browser (the response clears the cookie)."""
    request.session.clear()
    request.state.console_session = ConsoleSession(signed_in=False, csrf_token=_cookie_csrf(request))
