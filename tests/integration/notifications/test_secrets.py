"""Secrets in notification URLs never reach the log: a `${VAR}` value with `/` and `#` in it is
percent-encoded (so it stays the password, as the receiver sees), and a token typed into the URL is
masked too; the log of a failing delivery is captured as the service writes it."""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Iterator

import pytest
import structlog

from management_service.health import HealthPolicy
from management_service.notifications import Notifier, resolve_targets
from rebalancer_shared.config import Settings
from rebalancer_shared.events import Command
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.logging import configure_logging
from rebalancer_shared.notification_targets import NotificationSettings, NotificationTarget, NotifyOn
from tests.fakes.notify_receiver import NotifyReceiver
from tests.integration.notifications.helpers import Clock, complete, new_event

VARIABLE_SECRET = "Zq9vK/Wm4xT#Lp7sR"  # a `/` and a `#`: unencoded, they would cut the URL apart
TYPED_SECRET = "Hx5dN2qB8w"


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("DEBUG", "json", stream)
    yield stream
    root.handlers[:], root.level = saved
    structlog.reset_defaults()


async def test_a_failing_delivery_logs_no_part_of_a_secret(
    own_lifecycle: EventLifecycle, log_output: io.StringIO
) -> None:
    clock = Clock(time.time())
    with NotifyReceiver(status=500) as receiver:
        urls = [
            f"json://ops:${{HOOK_PASSWORD}}@127.0.0.1:{receiver.port}/hook",
            f"json://desk:{TYPED_SECRET}@127.0.0.1:{receiver.port}/typed",
        ]
        settings = NotificationSettings(
            targets=tuple(NotificationTarget(url=u, on=(NotifyOn.COMPLETED,)) for u in urls)
        )
        targets = resolve_targets(Settings(notifications=settings), {}, {"HOOK_PASSWORD": VARIABLE_SECRET})
        service = Notifier(
            own_lifecycle.queue,
            own_lifecycle.store,
            targets,
            settings,
            HealthPolicy(stale_after_seconds=30.0),
            clock=clock,
            quick_wait_max_seconds=0.01,
        )
        await complete(own_lifecycle, new_event("DU1", Command.CANCEL_ORDERS))
        await service.run_once()
    sent = {base64.b64decode(a.split()[1]).decode() for a in receiver.authorizations if a}
    assert sent == {f"ops:{VARIABLE_SECRET}", f"desk:{TYPED_SECRET}"}  # the encoding kept each intact
    output = log_output.getvalue()
    assert "notification not delivered" in output
    for fragment in ("Zq9vK", "Wm4xT", "Lp7sR", "Zq9vK%2FWm4xT", TYPED_SECRET):
        assert fragment not in output, fragment
