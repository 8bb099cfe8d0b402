"""Account values through IB's per-account updates: NetLiquidation and TotalCashValue in the
account's base currency, and the pattern-day-trader counter `DayTradesRemaining` (with T+1..T+4).

Each read is a fresh `reqAccountUpdatesMulti(reqId, account, "", False)`: one account's values under
the request's id, then its end; the subscription is cancelled at once. Not the account summary:
`reqAccountSummary` answers for every account of the login ("All"; with 200 accounts, 400 rows for
two tags), IB refuses group "All" to logins with more than 50 subaccounts, and keeps at most two
summaries active per connection (error 322) (TWS API docs, "Account Summary"). Not ib_async's cached
account values either: a run must see the cash its sells freed. The values carry the same tags as
the summary's (`NetLiquidation` and `TotalCashValue` in the base currency, `DayTradesRemaining`
without one, -1 when nothing limits the account) beside per-currency ones (`CashBalance`, ...).

ib_async keeps such values in one cache and one event without their request id, so two reads in
flight on one connection would mix. `updates_by_request` files each value under its request id as
well, as ib_async does for contract details: a read gets the answer to its own request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import structlog
from ib_async import IB, AccountValue

from event_processor.brokers.day_trades import parse_day_trades_remaining
from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.models import AccountValues, BrokerError

log = structlog.get_logger(__name__)

ACCOUNT_TAGS = ("NetLiquidation", "TotalCashValue")
# The pattern-day-trader counter: today's, and the next four days' (logged for the operator).
DAY_TRADE_TAGS = ("DayTradesRemaining", *(f"DayTradesRemainingT+{n}" for n in range(1, 5)))
ALL_MODELS = ""  # the account's own values, not a model portfolio's


def updates_by_request(ib: IB) -> IB:
    """`ib`, filing each account update value under its request id too (the module doc says why)."""
    wrapper = ib.wrapper
    deliver = wrapper.accountUpdateMulti

    def account_update_multi(
        req_id: int, account: str, model_code: str, tag: str, value: str, currency: str
    ) -> None:
        deliver(req_id, account, model_code, tag, value, currency)  # ib_async's own cache and event
        answer = wrapper._results.get(req_id)
        if req_id in wrapper._futures and isinstance(answer, list):
            answer.append(AccountValue(account, tag, value, currency, model_code))

    # The decoder looks the handler up by name at each message, so the instance attribute serves.
    wrapper.accountUpdateMulti = account_update_multi  # type: ignore[method-assign, assignment]
    return ib


async def account_updates(
    connection: IbkrConnection, account_id: str, tags: Sequence[str]
) -> dict[str, AccountValue]:
    """The account's value of each of `tags` IB sends now (the first one of a tag).

    The connection's client must file account updates by request (`updates_by_request`)."""
    what = f"account values of {account_id}"
    ib = await connection.client()
    # The client and wrapper methods used here are untyped in ib_async 2.1.
    req_id = ib.client.getReqId()
    future: asyncio.Future[list[AccountValue]] = ib.wrapper.startReq(req_id)  # type: ignore[no-untyped-call]
    try:
        with connection.translated(what):
            ib.client.reqAccountUpdatesMulti(req_id, account_id, ALL_MODELS, False)  # type: ignore[no-untyped-call]
        answer = await connection.request(what, future)
    finally:
        if ib.isConnected():
            ib.client.cancelAccountUpdatesMulti(req_id)  # type: ignore[no-untyped-call]
    collected: dict[str, AccountValue] = {}
    for value in answer:
        if value.account == account_id and value.tag in tags:
            collected.setdefault(value.tag, value)
    return collected


def account_values(account_id: str, values: dict[str, AccountValue]) -> AccountValues:
    """NetLiquidation and TotalCashValue, and the base currency both are in; `BrokerError` otherwise."""
    return AccountValues(
        account_id=account_id,
        net_liquidation=_account_figure(account_id, values, "NetLiquidation"),
        total_cash=_account_figure(account_id, values, "TotalCashValue"),
        currency=_account_currency(account_id, values),
    )


def day_trades_remaining(account_id: str, values: dict[str, AccountValue]) -> int | None:
    """`DayTradesRemaining` (-1: unlimited), None when IB sent none or no number."""
    reported = {tag: value.value for tag, value in values.items()}
    remaining = parse_day_trades_remaining(reported.get("DayTradesRemaining"))
    log.info("day trades remaining", account_id=account_id, remaining=remaining, reported=reported)
    return remaining


def _account_currency(account_id: str, values: dict[str, AccountValue]) -> str:
    """The base currency both summary figures are in (IB sends them in it: USD, CAD, EUR, ...)."""
    currencies = sorted({value.currency for value in values.values()})
    if len(currencies) != 1:
        raise BrokerError(
            f"account {account_id}: NetLiquidation and TotalCashValue came in different currencies "
            f"({', '.join(currencies)}); both should be in the account's base currency"
        )
    return currencies[0]


def _account_figure(account_id: str, values: dict[str, AccountValue], tag: str) -> float:
    raw = values.get(tag)
    try:
        number = float(raw.value) if raw is not None else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise BrokerError(
            f"account {account_id}: IB Gateway sent no usable {tag} "
            f"(got {raw.value if raw else 'nothing'}); is the account managed by this login?"
        )
    return number
