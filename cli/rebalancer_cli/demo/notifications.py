"""The demo's notifications: the management service's own notifier, sending to a receiver in the demo.

The notifier is the production one (management_service.notifications: intake from the history's
transitions, one sender per target, retries, rate limit) over the demo's store and queue. Its one
target is apprise's `json://` URL of a loopback HTTP server the demo runs in a thread of its own,
which prints each message as it arrives: what an operator's ntfy, Slack or webhook would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from rich.console import Console
from rich.markup import escape

from management_service.health import HealthPolicy
from management_service.notifications import Notifier, resolve_targets
from management_service.services import STOP_SECONDS
from rebalancer_cli.demo.world import DemoWorld
from rebalancer_shared.config import Settings
from rebalancer_shared.notification_targets import NotificationSettings, NotificationTarget, NotifyOn

# Everything an event can end in, dry runs included (a live rebalance is one `traded` message).
DEMO_OUTCOMES = (
    NotifyOn.TRADED,
    NotifyOn.COMPLETED,
    NotifyOn.FAILED,
    NotifyOn.NEEDS_ATTENTION,
    NotifyOn.SCHEDULED,
)
MAX_BODY = 1 << 20


def _handler(console: Console) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            try:
                message = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            body = "\n".join(f"      {line}" for line in str(message.get("message", "")).splitlines())
            console.print(f"  [bold]notification:[/bold] {escape(str(message.get('title', '')))}")
            console.print(escape(body), highlight=False)

        def log_message(self, format: str, *args: object) -> None:
            return  # the console prints the messages; no access log

    return Receive


class DemoReceiver:
    """A loopback HTTP server taking apprise's json:// POSTs and printing them (a context manager)."""

    def __init__(self, console: Console) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(console))
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The apprise URL that reaches this receiver."""
        return f"json://127.0.0.1:{self._server.server_address[1]}/demo"

    def target(self) -> NotificationTarget:
        """The demo's notification target: this receiver, every outcome, dry runs included."""
        return NotificationTarget(url=self.url, on=DEMO_OUTCOMES, dry_runs=True, name="demo-receiver")

    def __enter__(self) -> DemoReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.asynccontextmanager
async def notifying(world: DemoWorld, settings: Settings, console: Console) -> AsyncIterator[str]:
    """Run the notifier over the demo's history, to a `DemoReceiver`, while inside; yields its URL."""
    with DemoReceiver(console) as receiver:
        notifications = NotificationSettings(targets=(receiver.target(),))
        configured = settings.model_copy(update={"notifications": notifications})
        targets = resolve_targets(configured, world.accounts, {})
        policy = HealthPolicy.from_settings(configured)
        notifier = Notifier(world.worker.lifecycle.queue, world.store, targets, notifications, policy)
        task = asyncio.create_task(notifier.run(), name="notifier")
        try:
            yield receiver.url
        finally:
            notifier.stop()
            _, running = await asyncio.wait([task], timeout=STOP_SECONDS)
            for left in running:
                left.cancel()
