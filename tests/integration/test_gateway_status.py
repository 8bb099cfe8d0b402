"""What a processor tells its heartbeat about IB Gateway: unreachable (with why and since when) while
connecting fails, connected once it succeeds, and never unreachable for a client id in use (the
gateway answered). Real ib_async against the loopback TWS, or against a port nobody listens on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ib_async import IB

from event_processor.brokers import BrokerError, IbkrBroker
from event_processor.worker import Worker
from rebalancer_shared.config import OrderSettings, ProcessingSettings
from rebalancer_shared.lifecycle import EventLifecycle
from tests.fakes.tws import FakeTws, serve
from tests.fakes.tws.scenarios import ACCOUNT, TRADING_CLIENT_ID, drifted_state, ibkr_settings
from tests.support.servers import free_port


@pytest.fixture
async def fake() -> AsyncIterator[FakeTws]:
    async with serve(drifted_state()) as server:
        yield server


def _broker(port: int) -> IbkrBroker:
    settings = ibkr_settings(port, connect_attempts=2, connect_retry_delay_seconds=0.05)
    return IbkrBroker(settings, OrderSettings(), poll_interval_seconds=0.02, account_ids=[ACCOUNT])


async def test_a_gateway_nobody_answers_for_is_unreachable_with_the_reason_and_its_start() -> None:
    port = free_port()
    broker = _broker(port)
    try:
        assert broker.gateway.report() == {"state": "idle", "since": None, "reason": None}
        with pytest.raises(BrokerError):
            await broker.get_positions(ACCOUNT)
        first = broker.gateway.report()
        with pytest.raises(BrokerError):
            await broker.get_positions(ACCOUNT)
    finally:
        await broker.close()

    again = broker.gateway.report()
    assert again["state"] == "unreachable"
    assert f"cannot connect to IB Gateway at 127.0.0.1:{port}" in again["reason"]
    assert again["since"] == first["since"]  # one outage, from its first failure


async def test_a_gateway_that_answers_is_connected_and_a_client_id_in_use_is_not_unreachable(
    fake: FakeTws,
) -> None:
    blocker = IB()
    await blocker.connectAsync("127.0.0.1", fake.port, clientId=TRADING_CLIENT_ID, timeout=3)
    broker = _broker(fake.port)
    try:
        assert await broker.get_positions(ACCOUNT)
        assert broker.gateway.state == "connected"
        with pytest.raises(BrokerError, match="already in use"):
            await broker.cancel_open_orders(ACCOUNT, timeout_seconds=1)
        assert broker.gateway.state == "connected"
    finally:
        blocker.disconnect()
        await broker.close()


def test_the_processors_heartbeat_carries_the_gateway_status(lifecycle: EventLifecycle) -> None:
    broker = _broker(free_port())
    broker.gateway.unreachable("cannot connect to IB Gateway at 127.0.0.1:1")
    worker = Worker(lifecycle, handler=None, settings=ProcessingSettings(), gateway=broker.gateway)  # type: ignore[arg-type]

    details = worker._report().details

    assert details["gateway"]["state"] == "unreachable"
    assert details["gateway"]["reason"] == "cannot connect to IB Gateway at 127.0.0.1:1"
    assert "gateway" not in Worker(lifecycle, None, ProcessingSettings())._report().details  # type: ignore[arg-type]
