"""An account's positions through IB's per-account subscription, `reqPositionsMulti`.

`reqPositions` answers (and then streams) every account of the login to every connection that asks:
with 200 accounts a run would decode 800 rows per read, and every other account's fills after it.
`reqPositionsMulti(reqId, account, "")` answers one account's positions under the request's id, then
its changes until cancelled (TWS API docs, "Positions by account and model"). ib_async 2.1 decodes
those messages but drops them (`Wrapper.positionMulti` does nothing), so `positions_by_request` files
each row under its request id, as ib_async does for contract details, and hands it to
`IB.positionEvent` like any position: `account_positions` reads one account's positions, and a
subscription left open (`watch_positions`, for a mutating run) wakes the waits for fills to show.
"""

from __future__ import annotations

import asyncio

from ib_async import IB, Contract, Position

from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.models import BrokerPosition

ALL_MODELS = ""  # reqPositionsMulti's model code: none, the account's own positions


def positions_by_request(ib: IB) -> IB:
    """`ib`, delivering `positionMulti` rows to their request and to `IB.positionEvent`."""
    wrapper = ib.wrapper

    def position_multi(
        req_id: int, account: str, model_code: str, contract: Contract, pos: float, avg_cost: float
    ) -> None:
        position = Position(account, Contract.recreate(contract), pos, avg_cost)
        answer = wrapper._results.get(req_id)
        if req_id in wrapper._futures and isinstance(answer, list):
            answer.append(position)
        ib.positionEvent.emit(position)

    def position_multi_end(req_id: int) -> None:
        wrapper._endReq(req_id)  # type: ignore[no-untyped-call]

    # The decoder looks the handlers up by name at each message, so instance attributes serve.
    wrapper.positionMulti = position_multi  # type: ignore[method-assign, assignment]
    wrapper.positionMultiEnd = position_multi_end  # type: ignore[method-assign, assignment]
    return ib


async def account_positions(connection: IbkrConnection, account_id: str) -> list[Position]:
    """Every row IB sends for the account now (a conId may come more than once)."""
    ib = await connection.client()
    what = f"positions of {account_id}"
    # The client and wrapper methods used here are untyped in ib_async 2.1.
    req_id = ib.client.getReqId()
    future: asyncio.Future[list[Position]] = ib.wrapper.startReq(req_id)  # type: ignore[no-untyped-call]
    try:
        with connection.translated(what):
            ib.client.reqPositionsMulti(req_id, account_id, ALL_MODELS)  # type: ignore[no-untyped-call]
        return await connection.request(what, future)
    finally:
        if ib.isConnected():
            ib.client.cancelPositionsMulti(req_id)  # type: ignore[no-untyped-call]


async def watch_positions(connection: IbkrConnection, account_id: str) -> None:
    """Subscribe the connection to the account's position changes until it closes."""
    ib = await connection.client()
    with connection.translated(f"watching the positions of {account_id}"):
        ib.client.reqPositionsMulti(ib.client.getReqId(), account_id, ALL_MODELS)  # type: ignore[no-untyped-call]


def broker_position(position: Position) -> BrokerPosition:
    """A position with its contract's identity (conId, exchange, currency)."""
    contract = position.contract
    return BrokerPosition(
        symbol=contract.symbol,
        quantity=float(position.position),
        sec_type=contract.secType,
        avg_cost=float(position.avgCost),
        local_symbol=contract.localSymbol,
        con_id=int(contract.conId),
        exchange=contract.exchange,
        primary_exchange=contract.primaryExchange,
        currency=contract.currency,
    )
