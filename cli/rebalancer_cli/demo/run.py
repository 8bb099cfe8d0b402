"""The demo's story: a dry-run trigger, then a live one, then the management API for curl.

The API serves the README's accounts, so its curl examples run against `make demo` as printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import structlog
import uvicorn
from pydantic import SecretStr
from rich.console import Console

from management_service.health import HealthPolicy
from management_service.main import create_app
from management_service.services import Services
from rebalancer_cli.demo.notifications import notifying
from rebalancer_cli.demo.render import (
    at_targets,
    picture,
    show_fills,
    show_plan,
    show_trigger,
    show_weights,
)
from rebalancer_cli.demo.world import BROKEN_ACCOUNT_ID, DemoWorld, demo_world
from rebalancer_shared.config import ManagementSettings, Settings
from rebalancer_shared.logging import configure_logging
from rebalancer_shared.store import EventHistory

log = structlog.get_logger(__name__)


async def _results(world: DemoWorld, event_ids: list[str]) -> list[EventHistory]:
    histories = []
    for event_id in event_ids:
        history = await world.store.history(uuid.UUID(event_id))
        assert history is not None
        histories.append(history)
    return histories


async def _story(world: DemoWorld, console: Console) -> bool:
    console.rule("[bold]1. A dry-run trigger: {} (anything but exec=rebalance is a dry run)")
    dry = await world.trigger({}, "demo-message-1:0")
    await world.wait_finished(dry)
    for history in await _results(world, dry):
        show_trigger(console, "trigger", {}, [(history.event.account_id, history.event.exec_command)])
        result = history.runs[-1].result
        assert result is not None  # a finished run always stores its report
        show_plan(console, history.event.account_id, result)
    console.print(f"  orders sent to the broker by the dry run: {len(world.broker.placed_orders)}")

    console.rule("[bold]2. A live trigger: {'exec': 'rebalance'}")
    before = {a: picture(world.broker, a) for a in world.accounts}
    live = await world.trigger({"exec": "rebalance"}, "demo-message-2:0")
    await world.wait_finished(live)
    reached_all = True
    for history in await _results(world, live):
        account_id = history.event.account_id
        account = world.accounts[account_id]
        show_trigger(console, "trigger", {"exec": "rebalance"}, [(account_id, history.event.exec_command)])
        show_fills(console, account_id, history.orders)
        after = picture(world.broker, account_id)
        reached = at_targets(after, world.broker.prices, account, world.targets)
        reached_all = reached_all and reached
        show_weights(console, account, world.targets, before[account_id], after, reached)
    return reached_all


# After the story both accounts sit at their targets; the market moves so that a live rebalance from
# the console (or curl) has something to trade.
PRICE_MOVES = {"TQQQ": 0.12, "SPXL": 0.09, "BTAL": -0.07, "EDC": -0.05}


def move_prices(world: DemoWorld) -> None:
    """Apply PRICE_MOVES to the simulated broker's prices."""
    for symbol, change in PRICE_MOVES.items():
        world.broker.prices[symbol] = round(world.broker.prices[symbol] * (1 + change), 2)


def port_free(host: str, port: int) -> bool:
    """True when the management API could listen there."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port_near(host: str, port: int, tries: int = 20) -> int:
    """The first free port after `port` (within `tries`), else one the system picks."""
    nearby = (p for p in range(port + 1, min(port + 1 + tries, 65536)) if port_free(host, p))
    found = next(nearby, None)
    if found is not None:
        return found
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class DemoApiKey:
    """The management API key of the demo: `MANAGEMENT_API_KEY` when the user set one, else a new one."""

    value: str
    generated: bool

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> DemoApiKey:
        given = environ.get("MANAGEMENT_API_KEY", "").strip()
        return cls(given, False) if given else cls(secrets.token_urlsafe(16), True)

    def announcement(self) -> str:
        """The line that tells the user which key to send (the key itself only if we made it)."""
        if self.generated:
            return f"export MANAGEMENT_API_KEY={self.value}"
        return "MANAGEMENT_API_KEY is set in your environment: the API uses that key"


async def _serve_api(world: DemoWorld, console: Console, host: str, port: int, key: DemoApiKey) -> None:
    management = ManagementSettings(host=host, port=port, api_key=SecretStr(key.value))
    settings = Settings(management=management)
    services = Services(world.worker.lifecycle, world.accounts, HealthPolicy.from_settings(settings))
    app = create_app(settings, services=services)
    move_prices(world)
    console.rule("[bold]3. The management API and the web console (Ctrl-C to stop)")
    async with notifying(world, settings, console) as receiver:
        _announce(world, console, host, port, key, receiver)
        server = _QuietServer(uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()
    console.print("  stopped")


def _announce(
    world: DemoWorld, console: Console, host: str, port: int, key: DemoApiKey, receiver: str
) -> None:
    console.print(f"  console: http://{host}:{port}/ui  (sign in with the key below to act)")
    moved = ", ".join(f"{symbol} {change:+.0%}" for symbol, change in PRICE_MOVES.items())
    console.print(f"  prices have moved since the story ({moved}): a live rebalance trades again")
    console.print(f"  curl http://{host}:{port}/health")
    console.print(f"  curl http://{host}:{port}/queue/status")
    console.print(f"  curl http://{host}:{port}/accounts")
    console.print(f"  {key.announcement()}", soft_wrap=True)
    console.print(
        '  curl -H "Authorization: Bearer $MANAGEMENT_API_KEY" -H "Content-Type: application/json" '
        '-d \'{"account_id": "DU123456", "exec_command": "print-positions", "data": {}}\' '
        f"http://{host}:{port}/queue/events",
        soft_wrap=True,
    )
    console.print(
        f"  {BROKEN_ACCOUNT_ID} follows a strategy whose allocation API is broken (weights that sum to 0.9): "
        "its events fail and then need attention (no retry fixes that); see them with /queue/events, "
        "retry them with POST /queue/events/{id}/retry or remove them with DELETE"
    )
    where = "" if port == 8000 else f", with localhost:8000 changed to {host}:{port}"
    console.print(f"  The README's curl examples (Management API) run against this demo as printed{where}.")
    console.print(
        f"  notifications: the notifier sends every outcome to a receiver in this demo ({receiver}), "
        "which prints each as 'notification: ...' below, the story's first"
    )


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signals to us: Ctrl-C stops the API, then the demo tears down cleanly."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True


async def run_demo(console: Console, once: bool, host: str, port: int, key: DemoApiKey) -> bool:
    """Run the story, then (unless `once`) serve the API until Ctrl-C.

    Returns True when every account of the story reached its targets.
    """
    configure_logging("WARNING", "console")
    async with demo_world() as world:
        reached = await _story(world, console)
        if not once:
            await _serve_api(world, console, host, port, key)
    return reached


def demo_main(once: bool, host: str, port: int, key: DemoApiKey) -> bool:
    """Synchronous entry for the CLI."""
    return asyncio.run(run_demo(Console(), once, host, port, key))
