"""What the event broker reads from the shared `Settings`, plus its own timings (constants with defaults).

Everything deployment-specific comes from the one loader (`rebalancer_shared.config.load_settings`):
ABLY_API_KEY, ABLY_ENDPOINT, ABLY_TLS, `ably.catch_up_seconds`, REDIS_URL, REDIS_KEY_PREFIX,
DATABASE_URL, ACCOUNTS_FILE, HEARTBEAT_SECONDS (the event broker beats at least every 5 s). The other
timings below have no variable of their own: they are properties of the event broker, not of a
deployment, and tests set them directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from event_broker.retry import RetryPolicy
from rebalancer_shared.config import Settings
from rebalancer_shared.errors import ConfigError

SERVICE_NAME = "event-broker"
# A message id is remembered well beyond any rewind window, so a catch-up never replays it.
SEEN_TTL_MARGIN_SECONDS = 3600
DEFAULT_HEARTBEAT_SECONDS = 5.0


@dataclass(frozen=True)
class EventBrokerSettings:
    """The event broker's view of the configuration."""

    api_key: str
    # Keyword arguments for `AblyRealtime` besides the key (endpoint, tls; tests add short timers).
    client_options: Mapping[str, Any] = field(default_factory=dict)
    catch_up_seconds: float = 120.0
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    attach_timeout_seconds: float = 15.0
    close_timeout_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The queue's lease length (a restored processing event waits one) and the reconcile interval.
    lease_seconds: float = 30.0
    reconcile_interval_seconds: float = 30.0

    @property
    def seen_ttl_seconds(self) -> int:
        """How long an Ably message id is remembered: twice the catch-up window plus an hour."""
        return math.ceil(2 * self.catch_up_seconds) + SEEN_TTL_MARGIN_SECONDS

    @property
    def rewind(self) -> str | None:
        """The channel `rewind` parameter of the first attach, None when catch-up is off."""
        if self.catch_up_seconds <= 0:
            return None
        return f"{math.ceil(self.catch_up_seconds)}s"

    @classmethod
    def from_settings(cls, settings: Settings) -> EventBrokerSettings:
        """Build from the loaded settings; a missing Ably key is a `ConfigError`."""
        key = settings.ably.api_key.get_secret_value().strip() if settings.ably.api_key else ""
        if not key:
            raise ConfigError(
                "environment variable ABLY_API_KEY: key 'ably.api_key': not set "
                "(the event broker needs an Ably API key to subscribe)"
            )
        # Production keeps the SDK's defaults: binary protocol (msgpack), Ably's own endpoint, TLS on.
        options: dict[str, Any] = {"tls": settings.ably.tls}
        if settings.ably.endpoint:
            options["endpoint"] = settings.ably.endpoint
        return cls(
            api_key=key,
            client_options=options,
            catch_up_seconds=settings.ably.catch_up_seconds,
            # The management service judges staleness in units of the shared heartbeat interval.
            heartbeat_seconds=min(DEFAULT_HEARTBEAT_SECONDS, settings.processing.heartbeat_seconds),
            lease_seconds=settings.processing.lease_seconds,
            reconcile_interval_seconds=settings.processing.reconcile_interval_seconds,
        )
