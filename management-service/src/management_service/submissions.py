"""Adding an event by hand: the checks before it is submitted, shared by the API (`POST /queue/events`)
and the web console's actions, so both refuse the same things for the same reasons.

The refusals are exceptions named after the condition; the API turns them into 422 and 403, the
console into a message on the page.
"""

from __future__ import annotations

from collections.abc import Mapping

from management_service.auth import live_guard_blocks
from rebalancer_shared.accounts import Account
from rebalancer_shared.events import Event
from rebalancer_shared.lifecycle import EventLifecycle
from rebalancer_shared.queue import EnqueueOutcome, EnqueueResult

ENQUEUE_MESSAGE = {
    EnqueueOutcome.QUEUED: "event queued",
    EnqueueOutcome.ALREADY_ACCEPTED: "event queued (it had been accepted already)",
    EnqueueOutcome.COALESCED: (
        "the event for this account and command is processing (it will run once more), or was waiting "
        "(it runs now if its market allows)"
    ),
    EnqueueOutcome.DUPLICATE: "an event for this account and command is already queued: nothing was added",
}


class SubmissionRefused(Exception):
    """An event added by hand that is not submitted (the message says why)."""


class UnknownAccount(SubmissionRefused):
    """The account is not in the accounts file."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} is not configured in the accounts file")
        self.account_id = account_id


class LiveNotConfirmed(SubmissionRefused):
    """A live rebalance without the live guard's consent (`X-Allow-Live: true`, or the console's box)."""


async def submit_by_hand(
    lifecycle: EventLifecycle,
    accounts: Mapping[str, Account],
    event: Event,
    *,
    allow_live: str | None,
    enforce_live_guard: bool,
) -> EnqueueResult:
    """Check the account and the live guard, then submit through the same atomic dedup as the broker."""
    if event.account_id not in accounts:
        raise UnknownAccount(event.account_id)
    if live_guard_blocks(event.exec_command, allow_live, enforce_live_guard):
        raise LiveNotConfirmed(
            "a live rebalance places orders: send the header 'X-Allow-Live: true' to confirm"
        )
    return await lifecycle.submit(event)
