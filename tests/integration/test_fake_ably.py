"""The real `ably` SDK against the loopback fake Ably server: what the event-broker tests rely on."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from ably import AblyRealtime  # type: ignore[import-untyped]  # the SDK ships no type information

from tests.fakes.ably import FakeAblyServer, FakeAblyThread
from tests.fakes.ably.control import ControlServer

pytestmark = pytest.mark.timeout(20)

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 5.0


class Inbox:
    """Collects what a channel subscription receives. The SDK only accepts functions and methods as
    listeners (not e.g. `list.append`), hence a class with a method."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def receive(self, message: Any) -> None:
        self.messages.append(message)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.messages]

    async def wait_for(self, name: str) -> Any:
        await wait_until(lambda: name in self.names, f"message {name!r}, got {self.names}")
        return next(m for m in self.messages if m.name == name)


class StateLog:
    """Every state change an SDK emitter (connection or channel) reports, in order."""

    def __init__(self) -> None:
        self.changes: list[Any] = []

    def record(self, change: Any) -> None:
        self.changes.append(change)

    @property
    def states(self) -> list[str]:
        return [str(change.current.value) for change in self.changes]


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            # Polling: the conditions read SDK state, and the SDK has no awaitable for "is already X".
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
async def fake_ably() -> AsyncIterator[FakeAblyServer]:
    async with FakeAblyServer() as server:
        yield server


@pytest.fixture(params=[False, True], ids=["json", "msgpack"])
def binary(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@asynccontextmanager
async def realtime_client(
    server: FakeAblyServer, *, binary: bool = True, **options: Any
) -> AsyncIterator[Any]:
    client = AblyRealtime(**{**server.client_options(use_binary_protocol=binary), **options})
    try:
        yield client
    finally:
        await client.close()


async def subscribed(client: Any, channel_name: str, **channel_options: Any) -> Inbox:
    inbox = Inbox()
    await client.channels.get(channel_name, **channel_options).subscribe(inbox.receive)
    return inbox


def connection_id(client: Any) -> str:
    # The SDK's Connection has no `id`; the connection manager holds it.
    return str(client.connection.connection_manager.connection_id)


# -- messages -------------------------------------------------------------------------------------------


async def test_subscriber_receives_published_object_decoded_with_ably_message_id(
    fake_ably: FakeAblyServer, binary: bool
) -> None:
    async with realtime_client(fake_ably, binary=binary) as client:
        inbox = await subscribed(client, "rebalance-acc1")

        message_id = fake_ably.publish("rebalance-acc1", "trigger", {"exec": "rebalance", "n": [1, 2]})

        message = await inbox.wait_for("trigger")
        assert message.data == {"exec": "rebalance", "n": [1, 2]}
        assert message.id == message_id
        assert re.fullmatch(r"[^:]+:0", message.id), "message id is <protocol message id>:<index>"
        assert message.encoding == ""
        assert message.timestamp == fake_ably.history("rebalance-acc1")[0].timestamp_ms


async def test_string_empty_non_json_and_binary_payloads_arrive_as_the_sdk_decodes_them(
    fake_ably: FakeAblyServer, binary: bool
) -> None:
    async with realtime_client(fake_ably, binary=binary) as client:
        inbox = await subscribed(client, "payloads")

        fake_ably.publish("payloads", "text", "rebalance")
        fake_ably.publish("payloads", "empty", None)
        fake_ably.publish("payloads", "not-json", '{"exec": rebalance')
        fake_ably.publish("payloads", "bytes", b"\x00\xffraw")

        await inbox.wait_for("bytes")
        assert [(m.name, m.data) for m in inbox.messages] == [
            ("text", "rebalance"),
            ("empty", None),
            ("not-json", '{"exec": rebalance'),
            ("bytes", bytearray(b"\x00\xffraw")),
        ]
        assert len({m.id for m in inbox.messages}) == 4


async def test_client_publish_is_acknowledged_stored_and_echoed_to_subscribers(
    fake_ably: FakeAblyServer, binary: bool
) -> None:
    async with realtime_client(fake_ably, binary=binary) as client:
        inbox = await subscribed(client, "echo")

        await asyncio.wait_for(client.channels.get("echo").publish("mine", {"exec": "dry_run"}), WAIT_S)

        message = await inbox.wait_for("mine")
        assert message.data == {"exec": "dry_run"}
        assert message.id == f"{connection_id(client)}:0:0"
        [stored] = fake_ably.history("echo")
        assert stored.encoding == "json"
        assert isinstance(stored.data, str)
        assert json.loads(stored.data) == {"exec": "dry_run"}


async def test_subscriber_of_one_channel_gets_none_of_another_channels_messages(
    fake_ably: FakeAblyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ably")
    async with (
        realtime_client(fake_ably) as alpha_client,
        realtime_client(fake_ably) as beta_client,
    ):
        alpha = await subscribed(alpha_client, "alpha")
        beta = await subscribed(beta_client, "beta")

        fake_ably.publish("beta", "for-beta", {})
        fake_ably.publish("alpha", "for-alpha", {})

        await alpha.wait_for("for-alpha")
        await beta.wait_for("for-beta")
        assert alpha.names == ["for-alpha"]
        assert beta.names == ["for-beta"]
        # A MESSAGE for a channel the client never created fails inside the SDK, which only logs it.
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_detached_channel_receives_no_more_messages(fake_ably: FakeAblyServer) -> None:
    async with realtime_client(fake_ably) as client:
        detached = await subscribed(client, "leaving")
        staying = await subscribed(client, "staying")

        await asyncio.wait_for(client.channels.get("leaving").detach(), WAIT_S)
        fake_ably.publish("leaving", "after-detach", {})
        fake_ably.publish("staying", "marker", {})

        # One socket delivers in order: once the marker is in, a leaked message would be too.
        await staying.wait_for("marker")
        assert detached.names == []
        assert fake_ably.attached_channels == {"staying"}


# -- connection failures --------------------------------------------------------------------------------


async def test_dropped_connection_is_resumed_and_each_message_arrives_once(
    fake_ably: FakeAblyServer, binary: bool
) -> None:
    async with realtime_client(fake_ably, binary=binary) as client:
        inbox = await subscribed(client, "resume")
        channel = client.channels.get("resume")
        connection_states, attaches = StateLog(), StateLog()
        client.connection.on(connection_states.record)
        channel.on("attached", attaches.record)
        fake_ably.publish("resume", "before-drop", {})
        await inbox.wait_for("before-drop")
        first_connection_id = connection_id(client)

        fake_ably.drop_connections()
        fake_ably.publish("resume", "while-down", {})
        await wait_until(lambda: len(attaches.changes) == 1, "the channel to re-attach")
        fake_ably.publish("resume", "after-resume", {})

        await inbox.wait_for("after-resume")
        assert inbox.names == ["before-drop", "while-down", "after-resume"]
        assert connection_states.states[:1] == ["disconnected"]
        assert connection_id(client) == first_connection_id
        assert attaches.changes[0].resumed is True


async def test_restarted_server_is_reconnected_and_each_message_arrives_once(
    fake_ably: FakeAblyServer,
) -> None:
    async with realtime_client(fake_ably) as client:
        inbox = await subscribed(client, "restart")
        attaches = StateLog()
        client.channels.get("restart").on("attached", attaches.record)
        fake_ably.publish("restart", "before-restart", {})
        await inbox.wait_for("before-restart")
        first_connection_id = connection_id(client)

        await fake_ably.restart()
        fake_ably.publish("restart", "while-reconnecting", {})
        await wait_until(lambda: len(attaches.changes) == 1, "the channel to re-attach")
        fake_ably.publish("restart", "after-restart", {})

        await inbox.wait_for("after-restart")
        assert inbox.names == ["before-restart", "while-reconnecting", "after-restart"]
        assert connection_id(client) != first_connection_id
        assert fake_ably.connected_clients == [connection_id(client)]
        assert client.connection.error_reason.code == 80008  # "unable to recover connection"


async def test_rejected_key_fails_the_connection_with_40101(fake_ably: FakeAblyServer, binary: bool) -> None:
    fake_ably.reject_key(True)
    async with realtime_client(fake_ably, binary=binary) as client:
        await wait_until(lambda: client.connection.state.value == "failed", "the connection to fail")

        assert client.connection.error_reason.code == 40101
        assert client.connection.error_reason.status_code == 401
        assert fake_ably.connected_clients == []


async def test_key_accepted_again_once_rejection_is_lifted(fake_ably: FakeAblyServer) -> None:
    fake_ably.reject_key(True)
    fake_ably.reject_key(False)
    async with realtime_client(fake_ably) as client:
        await wait_until(lambda: client.connection.state.value == "connected", "the connection")


# -- heartbeats -----------------------------------------------------------------------------------------


async def test_ping_is_answered_by_the_heartbeat_echo(fake_ably: FakeAblyServer, binary: bool) -> None:
    async with realtime_client(fake_ably, binary=binary) as client:
        await wait_until(lambda: client.connection.state.value == "connected", "the connection")

        round_trip_ms = await client.connection.ping()

        assert 0 <= round_trip_ms < 1000


async def idle_connection_states(send_heartbeats: bool) -> list[str]:
    """Connection states an idle client goes through in 1 s when the server promises traffic every 200 ms.

    The client gives up after maxIdleInterval + realtime_request_timeout (+100 ms) without any traffic.
    The log starts before the connection: the SDK sets `connection.state` at once but emits the change
    on a later loop turn, so a listener added when the state reads "connected" can still hear it.
    """
    server = FakeAblyServer(max_idle_interval_ms=200, send_heartbeats=send_heartbeats)
    async with server, realtime_client(server, realtime_request_timeout=300) as client:
        states = StateLog()
        client.connection.on(states.record)
        await wait_until(lambda: "connected" in states.states, "the connection")
        connected_at = states.states.index("connected") + 1
        await asyncio.sleep(1.0)
        return states.states[connected_at:]


async def test_server_heartbeats_keep_an_idle_connection_open() -> None:
    assert await idle_connection_states(send_heartbeats=True) == []


async def test_silent_server_is_dropped_by_the_client_after_max_idle_interval() -> None:
    assert (await idle_connection_states(send_heartbeats=False))[:1] == ["disconnected"]


# -- rewind ---------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_rewind_by_time_replays_messages_inside_the_window_only(binary: bool) -> None:
    clock = FakeClock()
    async with FakeAblyServer(clock=clock) as server:
        server.publish("rewound", "too-old", {})
        clock.now += 200
        server.publish("rewound", "recent-1", {"n": 1})
        clock.now += 60
        server.publish("rewound", "recent-2", "two")
        clock.now += 30
        async with realtime_client(server, binary=binary) as client:
            inbox = await subscribed(client, "rewound", params={"rewind": "120s"})
            server.publish("rewound", "live", {})

            await inbox.wait_for("live")
            assert inbox.names == ["recent-1", "recent-2", "live"]
            assert inbox.messages[0].data == {"n": 1}


async def test_rewind_by_count_replays_that_many_latest_messages(fake_ably: FakeAblyServer) -> None:
    for n in range(5):
        fake_ably.publish("counted", f"m{n}", {})
    async with realtime_client(fake_ably) as client:
        inbox = await subscribed(client, "counted", params={"rewind": "2"})
        fake_ably.publish("counted", "live", {})

        await inbox.wait_for("live")
        assert inbox.names == ["m3", "m4", "live"]


async def test_attach_without_rewind_replays_nothing(fake_ably: FakeAblyServer) -> None:
    fake_ably.publish("plain", "old", {})
    async with realtime_client(fake_ably) as client:
        inbox = await subscribed(client, "plain")
        fake_ably.publish("plain", "live", {})

        await inbox.wait_for("live")
        assert inbox.names == ["live"]


# -- driving the fake from elsewhere --------------------------------------------------------------------


async def test_server_in_background_thread_is_driven_by_threadsafe_calls() -> None:
    with FakeAblyThread() as server:
        async with realtime_client(server) as client:
            inbox = await subscribed(client, "threaded")

            message_id = await asyncio.to_thread(server.publish_threadsafe, "threaded", "t", {"a": 1})

            assert (await inbox.wait_for("t")).id == message_id
            assert await asyncio.to_thread(server.attached_channels_threadsafe) == {"threaded"}


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def test_control_endpoint_publishes_and_drops(fake_ably: FakeAblyServer) -> None:
    control = ControlServer(fake_ably, "127.0.0.1", 0)
    control.start()
    try:
        async with realtime_client(fake_ably) as client:
            inbox = await subscribed(client, "controlled")
            attaches = StateLog()
            client.channels.get("controlled").on("attached", attaches.record)
            base = f"http://127.0.0.1:{control.port}"

            reply = await asyncio.to_thread(
                _post, f"{base}/publish", {"channel": "controlled", "name": "via-http", "data": {"a": 1}}
            )
            assert (await inbox.wait_for("via-http")).id == reply["id"]

            await asyncio.to_thread(_post, f"{base}/drop", {})
            await wait_until(lambda: len(attaches.changes) == 1, "the channel to re-attach after the drop")
    finally:
        await asyncio.to_thread(control.stop)


async def test_standalone_process_serves_realtime_and_control_ports() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.ably", "--port", "0", cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        ports = json.loads(await asyncio.wait_for(process.stdout.readline(), WAIT_S))
        base = f"http://127.0.0.1:{ports['control_port']}"
        external = FakeAblyServer(port=ports["port"])  # not started: only for its client options
        async with realtime_client(external) as client:
            inbox = await subscribed(client, "e2e")
            await asyncio.to_thread(_post, f"{base}/publish", {"channel": "e2e", "name": "go", "data": "x"})
            assert (await inbox.wait_for("go")).data == "x"
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
