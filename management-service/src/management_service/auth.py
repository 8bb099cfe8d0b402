"""The API key check and the live-trading guard, as plain decisions (the routes turn them into HTTP).

The key is compared in constant time on its UTF-8 bytes, so neither timing nor a non-ASCII header
tells an attacker anything. With no key configured every protected endpoint refuses: failing closed
is the only safe reading of a deployment that forgot its secret.
"""

from __future__ import annotations

import hmac
from enum import Enum

from pydantic import SecretStr

from rebalancer_shared.events import Command


class KeyCheck(Enum):
    """The outcome of checking a presented bearer token against the configured key."""

    GRANTED = "granted"
    NOT_CONFIGURED = "not configured"
    MISSING = "missing"
    WRONG = "wrong"


def check_api_key(configured: SecretStr | None, presented: str | None) -> KeyCheck:
    """Compare the presented bearer token with MANAGEMENT_API_KEY (constant time)."""
    if configured is None or not configured.get_secret_value():
        return KeyCheck.NOT_CONFIGURED
    if not presented:
        return KeyCheck.MISSING
    expected = configured.get_secret_value().encode()
    if hmac.compare_digest(presented.encode(), expected):
        return KeyCheck.GRANTED
    return KeyCheck.WRONG


def live_guard_blocks(command: Command, allow_live_header: str | None, enforce: bool) -> bool:
    """True when a command that places orders lacks `X-Allow-Live: true` while the guard is on."""
    if not enforce or not command.places_orders:
        return False
    return (allow_live_header or "").strip().lower() != "true"
