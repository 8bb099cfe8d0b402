"""Sign-in for the web console: the API key, typed once, buys a signed session cookie.

The cookie is Starlette's `SessionMiddleware`: the session's JSON in base64, signed with itsdangerous
(HMAC-SHA1 over a key of ours), `HttpOnly`, `SameSite=Strict`, path `/ui`, `Secure` when
`CONSOLE_HTTPS_ONLY=true`, valid for `SESSION_HOURS`. It holds two things: `signed_in` and a random
CSRF token. It never holds the key, and the key never goes into a page or a URL: it arrives in a
POST body (sign-in) and is only compared, in constant time (`auth.check_api_key`).

The cookie's signing key is derived from MANAGEMENT_API_KEY (HMAC-SHA256 of a fixed label), so no
new secret needs managing, and a new API key makes every existing cookie invalid: changing the key
signs everyone out. With no key configured nobody can sign in; cookies are then signed with a key
made at start (they only ever carry a CSRF token).

The session lives in the cookie alone (no server-side store): signing out clears it in the browser;
a copy taken before stays valid until it expires or the API key changes.

CSRF: every form carries the session's token in a hidden `csrf_token` field and every POST of the
console is refused (403) unless it matches (constant-time comparison): a synchronizer token, with
`SameSite=Strict` as a second wall. The token is made at the first page a visitor sees (so the
sign-in form has one too: no login CSRF) and renewed at sign-in (no fixation).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import FastAPI, Request
from pydantic import SecretStr
from starlette.middleware.sessions import SessionMiddleware

from rebalancer_shared.config import Settings

SESSION_COOKIE = "rebalancer_console"
SESSION_HOURS = 8
CONSOLE_PATH = "/ui"
_KEY_LABEL = b"rebalancer web console session cookie v1"
_SIGNED_IN = "signed_in"
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
        max_age=SESSION_HOURS * 3600,
        path=CONSOLE_PATH,
        same_site="strict",
        https_only=settings.management.console_https_only,
    )


@dataclass(frozen=True)
class ConsoleSession:
    """What a request's session says: signed in or not, and the token its forms must carry."""

    signed_in: bool
    csrf_token: str

    def csrf_matches(self, presented: str | None) -> bool:
        """True when a form's token is this session's (constant time)."""
        return bool(presented) and hmac.compare_digest(str(presented).encode(), self.csrf_token.encode())


def console_session(request: Request) -> ConsoleSession:
    """The request's session, with a CSRF token made for it if it had none."""
    session = request.session
    if not isinstance(session.get(_CSRF), str):
        session[_CSRF] = secrets.token_urlsafe(32)
    return ConsoleSession(signed_in=session.get(_SIGNED_IN) is True, csrf_token=session[_CSRF])


def sign_in(request: Request) -> None:
    """Start a signed-in session with a new CSRF token."""
    request.session.clear()
    request.session.update({_SIGNED_IN: True, _CSRF: secrets.token_urlsafe(32)})


def sign_out(request: Request) -> None:
    """Forget the session (the response clears the cookie)."""
    request.session.clear()
