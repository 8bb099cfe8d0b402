"""Build a `SimulatedBroker` from a JSON file (BROKER=simulated: the demo, e2e tests, benchmarks).

    {"latency_seconds": 0.2,
     "prices": {"AAA": 101.5, "BBB": 48.2},
     "accounts": {"DU1": {"cash": 1000.0, "positions": {"AAA": 10}, "day_trades_remaining": 2}},
     "default_account": {"cash": 100000.0, "positions": {}}}

Every account of accounts.yaml that the file does not list starts as `default_account` (when given).
`day_trades_remaining` (IB's DayTradesRemaining) is -1, unlimited, unless given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from event_processor.brokers.simulated import SimulatedBroker
from rebalancer_shared.errors import ConfigError


class _Account(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cash: float
    positions: dict[str, float] = Field(default_factory=dict)
    day_trades_remaining: int = Field(default=-1, ge=-1)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_seconds: float = Field(default=0.0, ge=0)
    prices: dict[str, float]
    accounts: dict[str, _Account] = Field(default_factory=dict)
    default_account: _Account | None = None


def simulated_broker_from_file(path: Path, account_ids: Iterable[str]) -> SimulatedBroker:
    """The broker the file describes, with an account for each id (listed, else the default)."""
    try:
        spec = _File.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read simulated broker file: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: key {key!r}: {first['msg']}") from exc
    broker = SimulatedBroker(spec.prices, latency_seconds=spec.latency_seconds)
    for account_id in sorted(set(account_ids) | set(spec.accounts)):
        account = spec.accounts.get(account_id) or spec.default_account
        if account is not None:
            broker.add_account(
                account_id, account.cash, account.positions, day_trades_remaining=account.day_trades_remaining
            )
    return broker
