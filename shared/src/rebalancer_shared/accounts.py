"""accounts.yaml: the brokerage accounts we manage, the channel each follows, and their settings.

File format (the product brief's, plus optional per-account trading settings)::

    - account_id: "DU123456"
      notification:
        channel: "strategy-name-100"
      rebalancing:
        equity_reserve_percentage: 1.0   # 0-10, default 1
        fractional_shares: false         # default false; refused with the ibkr broker
        drift_threshold_pct: 0.0         # default 0: off
        min_order_value: 0.0             # default 0: off
        pdt_protection: defer            # skip | defer | off; default defer
      notify:                            # optional: this account's notification targets
        - url: "ntfy://${NTFY_TOPIC}"    # an apprise URL; ${NAME} from the environment
          on: [traded, failed]
          dry_runs: false

Settings an account leaves out come from `rebalancing_defaults` in config.yaml. A reserve outside
0-10 % or not a number falls back to 1 % with a warning naming the account (the brief's rule); any
other mistake (duplicate id, missing channel, unknown key) is an `AccountsFileError` naming the file,
the account and the key, because trading with a misread account file is worse than not starting.
The `ibkr` broker also refuses accounts with `fractional_shares: true` (`refuse_fractional_shares`):
IB does not take fractional-sized stock orders through its API.

`pdt_protection` says what a live rebalance does when IB limits the account's day trades (FINRA's
pattern-day-trader rule: `DayTradesRemaining` is 0 or more) and the plan holds more day trades (a
sale of a stock bought today, a purchase of one sold today) than remain: `skip` leaves the excess
ones out and reports them in the plan, `defer` places nothing and waits for the next session, `off`
trades as planned. YAML reads an unquoted `off` as false; false is taken as `off`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from rebalancer_shared.errors import ConfigError
from rebalancer_shared.notification_targets import NotificationTarget
from rebalancer_shared.yaml_text import describe_yaml_error

DEFAULT_RESERVE_PERCENTAGE = 1.0
MAX_RESERVE_PERCENTAGE = 10.0
# Why an account that trades fractions cannot run on the `ibkr` broker (TWS API message code 10243).
FRACTIONAL_VIA_IBKR = (
    "processing.broker is 'ibkr' and IB refuses fractional-sized stock orders placed through its API "
    '(error 10243 "Fractional-sized order cannot be placed via API"): set fractional_shares to false '
    "(whole shares), or use BROKER=simulated"
)

log = structlog.get_logger(__name__)


class AccountsFileError(ConfigError):
    """accounts.yaml cannot be used as it is; the message names the file, account and key."""


class PdtProtection(StrEnum):
    """What a live rebalance does with day trades beyond IB's `DayTradesRemaining` (module doc)."""

    SKIP = "skip"  # leave the excess day trades out, report them, trade the rest
    DEFER = "defer"  # place nothing; the run waits for the next session
    OFF = "off"  # no guard: trade as planned


class RebalancingSettings(BaseModel):
    """Per-account trading settings the planner and engine obey."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    equity_reserve_percentage: float = Field(default=DEFAULT_RESERVE_PERCENTAGE, ge=0, le=10)
    fractional_shares: bool = False
    drift_threshold_pct: float = Field(default=0.0, ge=0, le=100)
    min_order_value: float = Field(default=0.0, ge=0)
    min_trade_shares: float = Field(default=0.01, gt=0)
    pdt_protection: PdtProtection = PdtProtection.DEFER

    @field_validator("pdt_protection", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        # YAML 1.1 reads `off` (and `no`, `false`) as the boolean false.
        return PdtProtection.OFF if value is False else value


@dataclass(frozen=True)
class Account:
    """One managed account: its id, the Ably channel it follows and its trading settings."""

    account_id: str
    channel: str
    settings: RebalancingSettings
    # Where this account's outcomes are notified besides the global targets (notification_targets.py).
    notify: tuple[NotificationTarget, ...] = ()


_TOP_KEYS = {"account_id", "notification", "rebalancing", "notify"}
_NOTIFICATION_KEYS = {"channel"}
_TARGETS = TypeAdapter(tuple[NotificationTarget, ...])


def coerce_reserve(value: object, account_id: str) -> float:
    """Return a usable reserve percentage: the value when it is a number in 0-10, else 1 % (logged)."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is not None and math.isfinite(number) and 0 <= number <= MAX_RESERVE_PERCENTAGE:
        return number
    log.warning(
        "invalid equity_reserve_percentage, using default",
        account_id=account_id,
        value=repr(value),
        default=DEFAULT_RESERVE_PERCENTAGE,
    )
    return DEFAULT_RESERVE_PERCENTAGE


def _fail(path: Path, account: str, key: str, problem: str) -> AccountsFileError:
    return AccountsFileError(f"{path}: account {account!r}: key {key!r}: {problem}")


def _check_keys(path: Path, account: str, where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            name = f"{where}.{key}" if where else str(key)
            raise _fail(path, account, name, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _parse_settings(
    path: Path, account: str, raw: object, defaults: RebalancingSettings
) -> RebalancingSettings:
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise _fail(path, account, "rebalancing", "must be a mapping")
    allowed = set(RebalancingSettings.model_fields)
    _check_keys(path, account, "rebalancing", raw, allowed)
    merged = defaults.model_dump()
    merged.update(raw)
    if "equity_reserve_percentage" in raw:
        merged["equity_reserve_percentage"] = coerce_reserve(raw["equity_reserve_percentage"], account)
    try:
        return RebalancingSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = "rebalancing." + ".".join(str(p) for p in first["loc"])
        raise _fail(path, account, key, first["msg"]) from exc


def _parse_channel(path: Path, account: str, raw: object) -> str:
    if not isinstance(raw, dict):
        raise _fail(path, account, "notification.channel", "missing (every account follows one channel)")
    _check_keys(path, account, "notification", raw, _NOTIFICATION_KEYS)
    channel = raw.get("channel")
    if not isinstance(channel, str) or not channel.strip():
        raise _fail(path, account, "notification.channel", "missing or empty")
    return channel.strip()


def _parse_notify(path: Path, account: str, raw: object) -> tuple[NotificationTarget, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(path, account, "notify", "must be a list of {url, on, dry_runs}")
    try:
        return _TARGETS.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        index, *rest = first["loc"]
        key = f"notify[{index}]" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in rest)
        raise _fail(path, account, key, str(first["msg"]).removeprefix("Value error, ")) from exc


def _parse_account(path: Path, index: int, raw: object, defaults: RebalancingSettings) -> Account:
    if not isinstance(raw, dict):
        raise _fail(path, f"#{index + 1}", "account_id", "each entry must be a mapping")
    account_id = raw.get("account_id")
    if not isinstance(account_id, str | int) or not str(account_id).strip():
        raise _fail(path, f"#{index + 1}", "account_id", "missing or empty")
    account = str(account_id).strip()
    _check_keys(path, account, "", raw, _TOP_KEYS)
    channel = _parse_channel(path, account, raw.get("notification"))
    settings = _parse_settings(path, account, raw.get("rebalancing"), defaults)
    notify = _parse_notify(path, account, raw.get("notify"))
    return Account(account_id=account, channel=channel, settings=settings, notify=notify)


def parse_accounts(
    raw: object, path: Path, defaults: RebalancingSettings | None = None
) -> dict[str, Account]:
    """Validate the parsed YAML of an accounts file into accounts keyed by id, in file order."""
    base = defaults or RebalancingSettings()
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise AccountsFileError(f"{path}: must be a list of accounts")
    accounts: dict[str, Account] = {}
    for index, entry in enumerate(raw):
        account = _parse_account(path, index, entry, base)
        if account.account_id in accounts:
            raise _fail(path, account.account_id, "account_id", "duplicate account id")
        accounts[account.account_id] = account
    return accounts


def load_accounts(path: Path, defaults: RebalancingSettings | None = None) -> dict[str, Account]:
    """Read and validate accounts.yaml; raise `AccountsFileError` naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccountsFileError(f"{path}: cannot read accounts file: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AccountsFileError(f"{path}: not valid YAML: {describe_yaml_error(exc)}") from exc
    return parse_accounts(raw, path, defaults)


def refuse_fractional_shares(accounts: Mapping[str, Account], path: Path) -> None:
    """Raise `AccountsFileError` naming the first account with `fractional_shares: true`.

    For the `ibkr` broker: every order it would place for such an account could be refused.
    """
    for account in accounts.values():
        if account.settings.fractional_shares:
            key = "rebalancing.fractional_shares"
            raise _fail(path, account.account_id, key, f"true, but {FRACTIONAL_VIA_IBKR}")


def accounts_by_channel(accounts: Mapping[str, Account]) -> dict[str, list[Account]]:
    """Group accounts by the channel they follow (several accounts may share one)."""
    grouped: dict[str, list[Account]] = {}
    for account in accounts.values():
        grouped.setdefault(account.channel, []).append(account)
    return grouped
