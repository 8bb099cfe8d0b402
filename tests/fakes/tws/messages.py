"""The TWS socket protocol as the fake speaks it: framing, and the server messages ib_async decodes.

Field orders follow ib_async 2.1.0's `Decoder` for server version 178 (PROTOCOLS.md). A message with
a wrong field count never reaches the client (the decoder logs "Error handling fields" and drops it),
so every builder here is covered by tests that assert ib_async logged no decoder error.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from tests.fakes.tws.account import FakeOrder, FakePosition, FillRecord
from tests.fakes.tws.executions import execution_time

SERVER_VERSION = 178
CONNECTION_TIME = "20240102 09:30:00 EST"

Field = str | int | float | bool | None


def field_text(value: Field) -> str:
    """One field as TWS writes it: bools as 1/0, None as empty, numbers via str()."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def frame(fields: Sequence[Field]) -> bytes:
    """A length-prefixed frame of NUL-terminated fields."""
    payload = "".join(field_text(value) + "\0" for value in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """The fields of one frame's payload (the trailing NUL gives an empty last element)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


def handshake_reply() -> bytes:
    return frame([SERVER_VERSION, CONNECTION_TIME])


def next_valid_id(order_id: int) -> bytes:
    return frame([9, 1, order_id])


def managed_accounts(accounts: Sequence[str]) -> bytes:
    return frame([15, 1, ",".join(accounts)])


def error(req_id: int, code: int, text: str) -> bytes:
    return frame([4, 2, req_id, code, text, ""])


def account_value(tag: str, value: str, currency: str, account: str) -> bytes:
    return frame([6, 2, tag, value, currency, account])


def account_time(stamp: str) -> bytes:
    return frame([8, 1, stamp])


def account_download_end(account: str) -> bytes:
    return frame([54, 1, account])


def account_update_multi(req_id: int, account: str, tag: str, value: str, currency: str) -> bytes:
    return frame([73, 1, req_id, account, "", tag, value, currency])


def account_update_multi_end(req_id: int) -> bytes:
    return frame([74, 1, req_id])


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> bytes:
    return frame([63, 1, req_id, account, tag, value, currency])


def account_summary_end(req_id: int) -> bytes:
    return frame([64, 1, req_id])


def _contract_fields(
    con_id: int,
    symbol: str,
    sec_type: str,
    local_symbol: str = "",
    exchange: str = "SMART",
    currency: str = "USD",
) -> list[Field]:
    # conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, currency,
    # localSymbol, tradingClass: the 11-field contract block of positions, executions and orders.
    return [con_id, symbol, sec_type, "", 0.0, "", "", exchange, currency, local_symbol or symbol, symbol]


def position(account: str, con_id: int, held: FakePosition) -> bytes:
    """POSITION (61): a position's contract names its listing (primary exchange) and currency."""
    contract = _contract_fields(
        con_id, held.symbol, held.sec_type, held.local_symbol, held.listing_exchange(), held.currency
    )
    return frame([61, 3, account, *contract, held.quantity, held.avg_cost])


def position_end() -> bytes:
    return frame([62, 1])


def position_multi(req_id: int, account: str, con_id: int, held: FakePosition) -> bytes:
    """POSITION_MULTI (71): one account's position, for the request that subscribed to it."""
    contract = _contract_fields(
        con_id, held.symbol, held.sec_type, held.local_symbol, held.listing_exchange(), held.currency
    )
    return frame([71, 1, req_id, account, *contract, held.quantity, held.avg_cost, ""])


def position_multi_end(req_id: int) -> bytes:
    return frame([72, 1, req_id])


def open_order_end() -> bytes:
    return frame([53, 1])


def completed_orders_end() -> bytes:
    return frame([102])


def executions_end(req_id: int) -> bytes:
    return frame([55, 1, req_id])


def contract_details(
    req_id: int, con_id: int, listing: FakePosition, *, trading_hours: str = "", liquid_hours: str = ""
) -> bytes:
    """CONTRACT_DETAILS (10) of a stock listing: SMART routing, its primary exchange and currency, and
    its sessions (IB's tradingHours / liquidHours strings)."""
    symbol, currency, primary = listing.symbol, listing.currency, listing.listing_exchange()
    fields: list[Field] = [10, req_id, symbol, "STK", "", 0.0, "", "SMART", currency, symbol, "NMS", symbol]
    fields += [con_id, 0.01, "", "ACTIVETIM,LMT,MKT", f"SMART,{primary}", 1, 0, f"{symbol} INC"]
    fields += [
        primary,
        "",
        "",
        "",
        "",
        "US/Eastern",
        trading_hours,
        liquid_hours,
        "",
        "",
        0,
    ]  # ..., numSecIds
    fields += [1, "", "", "26", "", "COMMON", 0.0001, 0.0001, 100]
    return frame(fields)


def contract_details_end(req_id: int) -> bytes:
    return frame([52, 1, req_id])


def market_data_type(req_id: int, data_type: int) -> bytes:
    return frame([58, 1, req_id, data_type])


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> bytes:
    return frame([1, 6, req_id, tick_type, price, size, 0])


def tick_string(req_id: int, tick_type: int, value: str) -> bytes:
    return frame([46, 6, req_id, tick_type, value])


def tick_snapshot_end(req_id: int) -> bytes:
    return frame([57, 1, req_id])


def order_status(order: FakeOrder) -> bytes:
    remaining = max(order.quantity - order.filled, 0.0)
    return frame(
        [
            3,
            order.order_id,
            order.status,
            order.filled,
            remaining,
            order.avg_fill_price,
            order.perm_id,
            0,  # parentId
            order.last_fill_price,
            order.client_id,
            "",  # whyHeld
            0.0,  # mktCapPrice
        ]
    )


def execution(req_id: int, record: FillRecord, con_id: int) -> bytes:
    """EXECUTION_DATA (11): a live fill (`req_id` -1) or an answer to reqExecutions; the time in UTC."""
    side = "BOT" if record.action == "BUY" else "SLD"
    fields: list[Field] = [11, req_id, record.order_id, *_contract_fields(con_id, record.symbol, "STK")]
    fields += [record.exec_id, execution_time(record.executed_at), record.account, "NASDAQ", side]
    fields += [record.shares, record.price, record.perm_id, record.client_id, 0]
    fields += [record.cum_qty, record.avg_price, record.order_ref, "", "", "", 1, 0]
    return frame(fields)


def commission_report(exec_id: str, commission: float) -> bytes:
    return frame([59, 1, exec_id, commission, "USD", "", "", ""])


def open_order(order: FakeOrder, con_id: int) -> bytes:
    """OPEN_ORDER (5) for a plain stock order; every optional block is absent (its count is 0)."""
    fields: list[Field] = [5, order.order_id, *_contract_fields(con_id, order.symbol, "STK")]
    limit = order.limit_price if order.limit_price is not None else ""
    fields += [order.action, order.quantity, order.order_type, limit, "", order.time_in_force, ""]
    fields += [order.account, "O", 0, order.order_ref, order.client_id, order.perm_id, order.outside_rth]
    fields += [False, 0.0, "", "", "", "", ""]  # hidden .. faPercentage (no faProfile since 177)
    fields += [""] * 29  # modelCode .. deltaNeutralAuxPrice (deltaNeutralOrderType empty)
    fields += [""] * 7  # continuousUpdate .. comboLegsDescrip
    fields += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    fields += ["", "", ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement (unset)
    fields += [""]  # hedgeType
    fields += [False, "", "", False, False]  # optOutSmartRouting .. notHeld, no delta-neutral contract
    fields += [""]  # algoStrategy
    fields += [False, False, order.status]  # solicited, whatIf, status
    fields += [""] * 14  # margin and commission figures, commissionCurrency, warningText
    fields += [False, False]  # randomizeSize, randomizePrice
    fields += [0]  # conditions
    fields += [""] * 16  # adjustedOrderType .. usePriceMgmtAlgo
    fields += ["", False, False]  # duration, postToAts, autoCancelParent
    fields += [""] * 5  # minTradeQty .. midOffsetAtHalf
    return frame(fields)
