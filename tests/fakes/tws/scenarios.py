"""Set-ups the broker and engine tests share: fast broker settings, a drifted account, log checks."""

from __future__ import annotations

import logging
from typing import Any

from event_processor.brokers.ibkr_trading import default_trading_client_id
from rebalancer_shared.config import IbkrSettings
from tests.fakes.tws.account import FakePosition, TwsState

ACCOUNT = "DU1"
CLIENT_ID = 7  # the reads connection's
# The client id ACCOUNT's mutating runs trade as (an earlier attempt of ours placed its orders).
TRADING_CLIENT_ID = default_trading_client_id(ACCOUNT, IbkrSettings().trading_client_id_base)
# Drifted: AAA over target, BBB under, CCC not held, DDD held but not targeted, plus an option.
TARGETS = {"AAA": 0.3, "BBB": 0.3, "CCC": 0.4}
HOLDINGS = {"AAA": 100.0, "BBB": 10.0, "DDD": 20.0}
PRICES = {"AAA": 50.0, "BBB": 100.0, "CCC": 40.0, "DDD": 25.0}
CASH = 5_000.0
OPTION = "AAA   250117C00050000"
# SHEL on the London Stock Exchange, in GBP: a listing (and conId) of its own. SHEL in USD on SMART is
# the NYSE ADR, a different contract that happens to share the ticker.
LONDON_SHEL = "SHEL.L"


def ibkr_settings(port: int, **overrides: Any) -> IbkrSettings:
    """Settings for a broker against the fake: short timeouts, a fixed client id, one attempt."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": CLIENT_ID,
        "connect_timeout_seconds": 3.0,
        "connect_attempts": 1,
        "connect_retry_delay_seconds": 0.05,
        "request_timeout_seconds": 3.0,
        "market_data_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return IbkrSettings(**values)


def drifted_state() -> TwsState:
    """One account with several stock positions and an option, and a quote for every symbol."""
    state = TwsState()
    state.add_account(ACCOUNT, CASH, HOLDINGS)
    option = FakePosition("AAA", 2.0, sec_type="OPT", avg_cost=120.0, local_symbol=OPTION)
    state.accounts[ACCOUNT].positions[OPTION] = option
    for symbol, price in PRICES.items():
        state.set_price(symbol, price)
    return state


def hold_london_shel(state: TwsState, quantity: float = 100.0, account: str = ACCOUNT) -> None:
    """The account also holds SHEL on the LSE (GBP); the NYSE ADR has a price, as any US ticker."""
    shel = FakePosition("SHEL", quantity, avg_cost=27.5, exchange="LSE", currency="GBP")
    state.accounts[account].positions[LONDON_SHEL] = shel
    state.set_price("SHEL", 70.0)


def ib_async_errors(records: list[logging.LogRecord]) -> list[str]:
    """ib_async log lines that mean a message was lost or misread (decoder and wrapper errors)."""
    return [
        r.getMessage()
        for r in records
        if r.name.startswith("ib_async")
        and ("Error handling fields" in r.getMessage() or r.name == "ib_async.Decoder")
    ]
