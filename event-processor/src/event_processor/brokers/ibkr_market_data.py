"""Market data snapshots from IB Gateway, in batches under the login's market data line limit.

A snapshot holds one of the login's lines (100 by default, shared with TWS and every API client)
until IB ends it (once it has sent what there is, at most 11 s later) or until it is cancelled; a
request beyond the lines in use is refused with error 101 ("Max number of tickers has been
reached"). So every snapshot of the process, on whichever connection, first takes a line from one
`LinePool` of `ibkr.market_data_lines`: concurrent price reads share the lines instead of each
taking its own `market_data_lines`. A batch is as many symbols as there are free lines; it is over
when each snapshot has ended or holds every field (bid, ask, last with its time, close), or when
nothing new has arrived for `market_data_timeout_seconds`; a snapshot still open then is cancelled,
which gives its line back at once. Symbols refused with 101 anyway (lines held by TWS or another
client) go first into the next batch, which is no larger than the lines the refused one got; a
batch that gets no line at all waits one timeout and tries once more, then fails with a
`BrokerError` that says what to change.

The market data type (live, frozen, delayed) is the connection's and applies to the requests after
it: each batch sends it just before its requests when the connection's last one differs, in the same
step, so concurrent reads on one connection each get the type they asked for.

A batch may go out over several connections (the reads connection and a live run's trading
connection): each symbol goes to the first with room left in its pacing window for its request (and
the market data type, when that changes), else to the one whose backlog is shortest, so a burst of
quotes does not wait behind one connection's 48 messages per 1.25 s while another is idle. A batch's
messages, its requests and then their cancels, are promised at once (`IbkrConnection.promised`)
until sent, so a batch placed meanwhile (a run reads its targets' prices and, once its positions are
known, a held stock's) does not count on room the first batch's cancels will take: such a request
waited up to 1.25 s behind those cancels on a busy reads connection (the latency benchmark's 700 ms
outliers). A batch's own cancels may wait for room (they only give lines back); its requests do not.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from ib_async import IB, Contract, Ticker

from event_processor.brokers.ibkr_connection import IbkrConnection
from event_processor.brokers.ibkr_requests import wakeup_on, woken_or_timeout
from event_processor.brokers.models import BrokerError
from event_processor.brokers.quotes import Quote
from event_processor.task_groups import concurrently
from rebalancer_shared.config import IbkrSettings

log = structlog.get_logger(__name__)

MAX_TICKERS_REACHED = 101
# A snapshot costs its request and, unless IB ends it first, its cancel: both count against pacing.
MESSAGES_PER_SNAPSHOT = 2


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def quote_from_ticker(symbol: str, ticker: Ticker, received_at: datetime) -> Quote:
    """The snapshot's values in plain form (ib_async marks "none" with NaN or -1)."""
    return Quote(
        symbol=symbol,
        last=_number(ticker.last),
        bid=_number(ticker.bid),
        ask=_number(ticker.ask),
        close=_number(ticker.close),
        last_time=ticker.lastTimestamp or ticker.delayedLastTimestamp,
        market_data_type=int(ticker.marketDataType),
        received_at=received_at,
    )


def _complete(ticker: Ticker) -> bool:
    """Every field a snapshot can bring is in: waiting for IB to end it adds nothing."""
    fields = (ticker.bid, ticker.ask, ticker.last, ticker.close)
    stamped = ticker.lastTimestamp or ticker.delayedLastTimestamp
    return stamped is not None and all(_number(value) is not None for value in fields)


@dataclass
class _Request:
    symbol: str
    ticker: Ticker
    future: asyncio.Future[object]

    @property
    def answered(self) -> bool:
        return self.future.done() or _complete(self.ticker)


def _cost(contracts: Mapping[str, Contract], type_message: int) -> int:
    """The messages a batch of `contracts` will send: the type (if it changes), requests, cancels."""
    return MESSAGES_PER_SNAPSHOT * len(contracts) + type_message if contracts else 0


@dataclass
class _Promise:
    """Messages a batch promised to its connection's pacing window and has not sent yet."""

    connection: IbkrConnection
    left: int

    @classmethod
    def made(cls, connection: IbkrConnection, messages: int) -> _Promise:
        connection.promised += messages
        return cls(connection, messages)

    def kept(self, messages: int) -> None:
        messages = min(messages, self.left)
        self.connection.promised -= messages
        self.left -= messages


class LinePool:
    """The market data lines this process may hold at once; a snapshot holds one until it is over."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self._free = lines
        self._changed = asyncio.Condition()

    async def take(self, wanted: int) -> int:
        """Between 1 and `wanted` lines, as many as are free (waiting until one is)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._free > 0)
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    async def give(self, lines: int) -> None:
        async with self._changed:
            self._free += lines
            self._changed.notify_all()


class SnapshotReader:
    """Reads quotes for many contracts without holding more lines than the pool's."""

    def __init__(
        self,
        settings: IbkrSettings,
        lines: LinePool,
        clock: Callable[[], datetime],
        poll_interval_seconds: float,
    ) -> None:
        self._settings = settings
        self._lines = lines
        self._clock = clock
        self._poll = poll_interval_seconds

    async def quotes(
        self, connections: Sequence[IbkrConnection], contracts: Mapping[str, Contract], data_type: int
    ) -> dict[str, Quote]:
        """A quote per symbol IB answered for, asked for with market data type `data_type` over
        `connections` (in the order given while they have room)."""
        queue = list(contracts)
        limit = self._lines.lines
        quotes: dict[str, Quote] = {}
        stalled = False
        while queue:
            size = await self._lines.take(min(limit, len(queue)))
            batch, queue = queue[:size], queue[size:]
            try:
                got, refused = await self._spread(connections, {s: contracts[s] for s in batch}, data_type)
            finally:
                await self._lines.give(size)
            quotes.update(got)
            if not refused:
                continue
            queue = [*refused, *queue]
            limit = len(batch) - len(refused)
            if limit == 0:
                await self._wait_for_lines(refused, stalled)
                limit, stalled = 1, True
            else:
                limit, stalled = max(limit, 1), False
        return quotes

    async def _wait_for_lines(self, refused: list[str], stalled: bool) -> None:
        lines = self._settings.market_data_lines
        if stalled:
            raise BrokerError(
                f"IB Gateway refused market data for {', '.join(refused)} with error 101 (max number of "
                f"tickers reached): every market data line of the login is in use; lower "
                f"ibkr.market_data_lines ({lines}) or free lines in TWS"
            )
        log.warning("no market data line free; waiting for lines", symbols=len(refused), lines=lines)
        await asyncio.sleep(self._settings.market_data_timeout_seconds)

    async def _spread(
        self, connections: Sequence[IbkrConnection], contracts: Mapping[str, Contract], data_type: int
    ) -> tuple[dict[str, Quote], list[str]]:
        """One batch, each symbol sent to the first connection with room in its pacing window for its
        request, else to the one with the shortest backlog. The batch's messages (requests, then their
        cancels) are promised at once (`IbkrConnection.promised`): a batch placed meanwhile does not
        count on room they will take, nor send a request behind them."""
        # A connection whose market data type differs sends reqMarketDataType first: one more message.
        extra = [int(c.market_data_type != data_type) for c in connections]
        rooms = [c.send_room() - e for c, e in zip(connections, extra, strict=True)]
        parts: list[dict[str, Contract]] = [{} for _ in connections]
        for symbol, contract in contracts.items():
            with_room = [i for i, room in enumerate(rooms) if room > 0]
            best = with_room[0] if with_room else max(range(len(rooms)), key=rooms.__getitem__)
            parts[best][symbol] = contract
            rooms[best] -= 1
        promises = [_Promise.made(c, _cost(p, e)) for c, p, e in zip(connections, parts, extra, strict=True)]
        async with concurrently() as group:
            batches = [
                group.create_task(self._batch(connection, part, data_type, promise))
                for connection, part, promise in zip(connections, parts, promises, strict=True)
                if part
            ]
        quotes: dict[str, Quote] = {}
        refused: list[str] = []
        for batch in batches:
            got, lost = batch.result()
            quotes.update(got)
            refused += lost
        return quotes, refused

    async def _batch(
        self, connection: IbkrConnection, contracts: Mapping[str, Contract], data_type: int, promise: _Promise
    ) -> tuple[dict[str, Quote], list[str]]:
        try:
            ib = await connection.client()
            return await self._snapshots(connection, ib, contracts, data_type, promise)
        finally:
            promise.kept(promise.left)  # the cancels are sent (or not needed): the room is the pacer's

    async def _snapshots(
        self,
        connection: IbkrConnection,
        ib: IB,
        contracts: Mapping[str, Contract],
        data_type: int,
        promise: _Promise,
    ) -> tuple[dict[str, Quote], list[str]]:
        requests: dict[int, _Request] = {}
        refused: list[str] = []

        def on_error(req_id: int, code: int, text: str, contract: object) -> None:
            request = requests.get(req_id)
            if request is not None and code == MAX_TICKERS_REACHED:
                refused.append(request.symbol)

        what = f"market data snapshot of {', '.join(contracts)}"
        ib.errorEvent += on_error
        try:
            with connection.translated(what):
                # No await from here to the last request: the type goes out right before them.
                if connection.market_data_type != data_type:
                    ib.reqMarketDataType(data_type)
                    connection.market_data_type = data_type
                for symbol, contract in contracts.items():
                    req_id, requests[req_id] = self._request(ib, symbol, contract)
                promise.kept(promise.left - len(requests))  # sent: the pacer counts them now
                if not await self._answered(ib, list(requests.values())):
                    log.warning("market data snapshot timed out; using what arrived", symbols=list(contracts))
                if not ib.isConnected():
                    raise ConnectionError("socket closed during the snapshot")
        finally:
            ib.errorEvent -= on_error
            self._finish(ib, requests)
        received_at = self._clock()
        quotes = {
            r.symbol: quote_from_ticker(r.symbol, r.ticker, received_at)
            for r in requests.values()
            if r.symbol not in refused
        }
        return quotes, refused

    @staticmethod
    def _request(ib: IB, symbol: str, contract: Contract) -> tuple[int, _Request]:
        # ib_async keeps one Ticker per contract across requests: drop it so values from an earlier
        # snapshot cannot pass for this one's. The wrapper and client calls are untyped in ib_async 2.1.
        ib.wrapper.tickers.pop(hash(contract), None)
        req_id = ib.client.getReqId()
        future: asyncio.Future[object] = ib.wrapper.startReq(req_id, contract)  # type: ignore[no-untyped-call]
        ticker: Ticker = ib.wrapper.startTicker(req_id, contract, "snapshot")
        ib.client.reqMktData(req_id, contract, "", True, False, [])  # type: ignore[no-untyped-call]
        return req_id, _Request(symbol, ticker, future)

    async def _answered(self, ib: IB, requests: list[_Request]) -> bool:
        """Wait until every request is answered; False when nothing new came for the timeout.

        The time counts from the latest answer, and only once ib_async's throttle has sent every
        message it holds back (requests, and the cancels of the batch before, leave at a paced rate).
        Ticks and ends wake the wait; the poll interval is only its longest sleep.
        """
        loop = asyncio.get_running_loop()
        timeout = self._settings.market_data_timeout_seconds
        deadline, answered = loop.time() + timeout, 0
        with wakeup_on(ib.pendingTickersEvent, ib.errorEvent) as woken:
            for request in requests:
                request.future.add_done_callback(lambda _: woken.set())
            while (now_answered := sum(r.answered for r in requests)) < len(requests):
                if now_answered > answered or ib.client._msgQ:
                    answered, deadline = now_answered, loop.time() + timeout
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                await woken_or_timeout(woken, min(self._poll, remaining))
        return True

    @staticmethod
    def _finish(ib: IB, requests: Mapping[int, _Request]) -> None:
        """Cancel the snapshots IB has not ended (their lines come back at once) and forget them all."""
        for req_id, request in requests.items():
            if not request.future.done() and ib.isConnected():
                ib.client.cancelMktData(req_id)  # type: ignore[no-untyped-call]
            elif request.future.done() and not request.future.cancelled():
                request.future.exception()  # read, so asyncio does not log it as never retrieved
            ib.wrapper._endReq(req_id)  # type: ignore[no-untyped-call]
            ib.wrapper.endTicker(request.ticker, "snapshot")
