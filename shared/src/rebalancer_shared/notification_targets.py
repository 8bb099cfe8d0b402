"""Where operators are told what happened: apprise URLs, each with the outcomes it wants.

Configured globally in config.yaml (`notifications.targets`) and per account in accounts.yaml
(`notify:` inside an account entry; `notification.channel` is the Ably channel, unrelated)::

    notifications:
      targets:
        - url: "ntfys://${NTFY_TOKEN}@ntfy.example.com/rebalancer"
          on: [traded, failed, needs_attention, health]
        - url: "json://127.0.0.1:9000/hook"
          on: [completed]
          dry_runs: true

Secrets come from the environment: `${NAME}` in a URL is replaced by the variable's value,
percent-encoded (a `/`, `#` or `@` in a token stays inside its part of the URL), when the management
service starts (`expand_url`); a variable that is not set stops it with an error naming the
variable, never printing a value. A variable holds one part of a URL (a token, a password), never
several parts or a whole URL. Every service parses these lists (they live in config.yaml and
accounts.yaml), but only the management service expands and sends them, so the other services need
neither the variables nor apprise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from enum import StrEnum
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rebalancer_shared.errors import ConfigError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOOSE_DOLLAR = re.compile(r"\$(?!\{[A-Za-z_][A-Za-z0-9_]*\})")


class NotifyOn(StrEnum):
    """The outcomes a target can ask for."""

    TRADED = "traded"  # a live rebalance finished (its orders, fills, weights, equity)
    FAILED = "failed"  # a run failed and the event retries (transient failure)
    NEEDS_ATTENTION = "needs_attention"  # an event waits for an operator or the next session
    SCHEDULED = "scheduled"  # a live rebalance outside the session, scheduled for the open
    COMPLETED = "completed"  # any command finished
    HEALTH = "health"  # a service unhealthy for longer than the threshold, and healthy again
    DAILY = "daily"  # once a day at `daily_summary_at`: what the last day's events did, what waits


class MissingVariableError(ConfigError):
    """A notification URL names an environment variable that is not set."""


class NotificationTarget(BaseModel):
    """One apprise URL (`${VAR}` placeholders unexpanded) and what it wants to hear about."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: str = Field(min_length=1)
    on: tuple[NotifyOn, ...] = Field(min_length=1)
    dry_runs: bool = False  # events of commands that place no orders (print-*) only when true
    # What the target's pending messages are kept under: by default its URL as written (before the
    # `${VAR}` expansion); a name keeps them when the URL changes.
    name: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _unquoted_on_key(cls, data: object) -> object:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            return {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("url")
    @classmethod
    def _placeholders_are_well_formed(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("not an apprise URL (scheme://...), e.g. ntfy://topic or json://host/path")
        if _LOOSE_DOLLAR.search(value):
            raise ValueError("a '$' must start a ${NAME} placeholder (secrets come from the environment)")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _one_outcome_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class NotificationSettings(BaseModel):
    """The `notifications` section of config.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: tuple[NotificationTarget, ...] = ()
    # A service (or Redis) unhealthy for this long is notified once, and again when healthy.
    unhealthy_after_seconds: float = Field(default=300.0, ge=0)
    # A message not delivered this long after it was queued is given up (marked failed).
    give_up_after_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    # Messages per minute to one target at most; the excess waits, it is never dropped.
    per_target_per_minute: int = Field(default=30, ge=1, le=6000)
    # Sent messages are deleted from the table this many days after they were sent (a day at least:
    # a daily summary's row is what keeps a restart from sending it twice).
    keep_sent_days: float = Field(default=30.0, ge=1)
    # How often the notifier looks for new transitions and due messages.
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # The `daily` summary covers the 24 hours up to this time of day, in this zone, and goes then.
    daily_summary_at: time = time(17, 30)
    daily_summary_timezone: str = "America/New_York"

    @field_validator("daily_summary_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: an IANA name such as America/New_York or UTC"
            ) from None
        return value

    @field_validator("daily_summary_at")
    @classmethod
    def _whole_minute(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a time of day without a zone (the zone is daily_summary_timezone)")
        return value.replace(second=0, microsecond=0)

    @property
    def daily_zone(self) -> ZoneInfo:
        """The zone of `daily_summary_at`."""
        return ZoneInfo(self.daily_summary_timezone)


def placeholders(url: str) -> list[str]:
    """The environment variables a URL names, in order."""
    return _VARIABLE.findall(url)


def expand_url(url: str, environ: Mapping[str, str], where: str) -> tuple[str, list[str]]:
    """The URL with every `${NAME}` replaced by its value percent-encoded, and the values, raw and
    encoded (to be masked as secrets).

    Raises `MissingVariableError` naming the variable and `where` the URL is configured.
    """
    values: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = environ.get(name)
        if not value:
            raise MissingVariableError(
                f"{where}: the URL names ${{{name}}}, but the environment variable {name} is not set"
            )
        encoded = quote(value, safe="")
        values.extend((value, encoded))
        return encoded

    return _VARIABLE.sub(replace, url), values
