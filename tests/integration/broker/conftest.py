"""Fixtures of the event-broker tests: the loopback Ably server in this event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.ably import FakeAblyServer


@pytest.fixture
async def fake_ably() -> AsyncIterator[FakeAblyServer]:
    async with FakeAblyServer() as server:
        yield server
