"""Which transitions are notified, as pure rules: a run that succeeded while a trigger arrived is
reported like a completion, and a failure repeated by the same event is news once an hour at most,
or when its class changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from management_service.notifications.rules import TransitionFacts, failure_is_news, outcomes
from rebalancer_shared.events import Command
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store import Transition

AT = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def facts(state: Transition, failure_class: str | None = None, at: datetime = AT) -> TransitionFacts:
    return TransitionFacts(
        row_id=1,
        seq=1,
        event_id=uuid.uuid4(),
        account_id="DU1",
        command=Command.REBALANCE,
        state=state,
        times_queued=2,
        detail=None,
        failure_class=failure_class,
        due_at=None,
        at=at,
    )


def test_a_rerun_after_a_live_rebalance_is_traded_and_completed() -> None:
    assert outcomes(facts(Transition.RERUN)) == (NotifyOn.TRADED, NotifyOn.COMPLETED)
    assert outcomes(facts(Transition.COMPLETED)) == (NotifyOn.TRADED, NotifyOn.COMPLETED)


def test_a_repeated_failure_is_news_again_after_an_hour_or_with_another_class() -> None:
    assert failure_is_news(facts(Transition.RETRYING, "transient"), None, None)
    last = AT - timedelta(minutes=59)
    assert not failure_is_news(facts(Transition.RETRYING, "transient"), "transient", last)
    assert failure_is_news(facts(Transition.RETRYING, "market_closed"), "transient", last)
    assert failure_is_news(facts(Transition.RETRYING, "transient"), "transient", AT - timedelta(hours=1))
