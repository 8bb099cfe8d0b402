"""Fixtures of the processor tests that run against the loopback TWS: the allocation API serving the
scenario's targets on channel "chan", and the drifted account's gateway with quick fills."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.allocations import AllocationServer
from tests.fakes.tws import FakeTws, serve
from tests.fakes.tws.scenarios import TARGETS, drifted_state


@pytest.fixture
def api() -> Iterator[AllocationServer]:
    with AllocationServer() as server:
        server.set_weights("chan", TARGETS)
        yield server


@pytest.fixture
async def tws() -> AsyncIterator[FakeTws]:
    state = drifted_state()
    state.fill_delay_seconds = 0.02
    async with serve(state) as fake:
        yield fake
