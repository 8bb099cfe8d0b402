"""The trading connections: each account's fixed client id, and a connection per mutating run, capped.

IB lets only the client that placed an order cancel it (client 0 also cancels orders entered by hand
in TWS). So every mutating run of an account (cancel-orders, rebalance) trades through a connection of
its own with the account's fixed trading client id (`trading_client_ids`): any later attempt, after a
crash or on another replica, connects with the same id and can cancel what an earlier one left
working. The account lock lets only one mutating run of an account at a time, so the id is never
wanted twice (a connection the gateway has not dropped yet gives error 326: retried briefly, then the
event retries). The run's connection is closed when the run ends (`release`).

IB Gateway serves at most 32 API clients. A process opens at most `ibkr.max_connections`: its reads
connection and `max_connections - 1` trading connections. A run that finds none free waits until a
run ends and gives one back (logged), rather than failing or pushing the gateway past its ceiling.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Sequence

import structlog
from ib_async import IB

from event_processor.brokers.gateway_status import GatewayStatus
from event_processor.brokers.ibkr_connection import IbkrConnection
from rebalancer_shared.config import IbkrSettings

log = structlog.get_logger(__name__)

TRADING_CLIENT_ID_SPAN = 1_000_000
READS_CONNECTIONS = 1  # the process's one reads connection counts against max_connections too


def default_trading_client_id(account_id: str, base: int) -> int:
    """`base` + a stable number from the account id (the same on every machine, every start)."""
    return base + zlib.crc32(account_id.encode()) % TRADING_CLIENT_ID_SPAN


def trading_client_ids(account_ids: Sequence[str], base: int) -> dict[str, int]:
    """Each account's fixed trading client id; two accounts whose numbers meet step apart in id order."""
    taken: set[int] = set()
    ids: dict[str, int] = {}
    for account_id in sorted(account_ids):
        candidate = default_trading_client_id(account_id, base)
        while candidate in taken:
            candidate = base + (candidate - base + 1) % TRADING_CLIENT_ID_SPAN
        taken.add(candidate)
        ids[account_id] = candidate
    return ids


class TradingConnections:
    """The trading connections of the accounts whose mutating runs are under way in this process."""

    def __init__(
        self,
        settings: IbkrSettings,
        ib_factory: Callable[[], IB],
        account_ids: Sequence[str] = (),
        gateway: GatewayStatus | None = None,
    ) -> None:
        self.gateway = gateway if gateway is not None else GatewayStatus()
        self._settings = settings
        self._ib_factory = ib_factory
        self._ids = trading_client_ids(account_ids, settings.trading_client_id_base)
        self._held: dict[str, IbkrConnection] = {}
        self._free = asyncio.Semaphore(settings.max_connections - READS_CONNECTIONS)

    def client_id(self, account_id: str) -> int:
        """The fixed client id of the account's mutating runs."""
        known = self._ids.get(account_id)
        if known is not None:
            return known
        return default_trading_client_id(account_id, self._settings.trading_client_id_base)

    def held(self, account_id: str) -> IbkrConnection | None:
        """The account's trading connection while its mutating run holds one."""
        return self._held.get(account_id)

    async def open(self, account_id: str) -> IbkrConnection:
        """The account's trading connection (connected on first use), waiting for a free one if needed."""
        held = self._held.get(account_id)
        if held is not None:
            return held
        if self._free.locked():
            log.info(
                "every IB connection of this process is in use; waiting for a run to end",
                account_id=account_id,
                max_connections=self._settings.max_connections,
            )
        await self._free.acquire()
        held = self._held.get(account_id)  # opened by another caller of the same run meanwhile
        if held is not None:
            self._free.release()
            return held
        held = IbkrConnection(
            self._settings,
            self._ib_factory,
            client_id=self.client_id(account_id),
            purpose=f"trading {account_id}",
            gateway=self.gateway,
        )
        self._held[account_id] = held
        return held

    async def release(self, account_id: str) -> None:
        """The account's mutating run ended: close its connection and give its place back."""
        held = self._held.pop(account_id, None)
        if held is None:
            return
        try:
            await held.close()
        finally:
            self._free.release()

    async def close(self) -> None:
        for account_id in list(self._held):
            await self.release(account_id)
