"""The `daily` summary: once a day, what the last day's events did and what waits now.

The day ends at `daily_summary_at` in `daily_summary_timezone` (17:30 New York by default: after the
close, when the day's rebalances have filled) and starts at the same time of day the day before, so
a day is 23 or 25 hours around a change of summer time. The summary of the newest day that has ended
is queued once per target, under the key `daily:<its end's local date>`: the notifications table's
(key, target) uniqueness makes a restart, or a second replica, queue nothing twice, and a process
that was down at the time queues it when it starts (late, never lost; a day missed before that one
is not sent). A process remembers the day it queued only once the insert commits (`confirm`), and
reads the history for it only when it has not queued that day yet: once a day, not every round.

What a summary says is in `daily_facts` (the history's tallies) and `messages.daily_message` (the
text). A target of one account hears of that account only, and of dry runs only with `dry_runs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from management_service.notifications.daily_facts import day_facts
from management_service.notifications.messages import daily_message
from management_service.notifications.rows import Draft
from management_service.notifications.targets import Target
from rebalancer_shared.notification_targets import NotificationSettings, NotifyOn


def day_ending(now: datetime, at: time, zone: tzinfo) -> tuple[datetime, datetime]:
    """The newest day that has ended by `now` (aware): its start and end, in UTC.

    A day ends at `at` local time in `zone`. A local time that does not exist (skipped by summer
    time) is read as the hour after; one that happens twice, as the first (PEP 495's `fold=0`)."""
    local_now = now.astimezone(zone)
    end_date = local_now.date()
    if _at(end_date, at, zone) > now:
        end_date -= timedelta(days=1)
    end = _at(end_date, at, zone)
    return _at(end_date - timedelta(days=1), at, zone), end


def _at(day: date, at: time, zone: tzinfo) -> datetime:
    # A wall time skipped by a change to summer time (fold 0: the offset before it) is the hour after.
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


class DailySummary:
    """Drafts the `daily` message of the newest ended day, once per process and day."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: NotificationSettings,
        clock: Callable[[], float],
    ) -> None:
        self._sessions = sessions
        self._at = settings.daily_summary_at
        self._zone = settings.daily_zone
        self._clock = clock
        self._queued: datetime | None = None  # the end of the newest day whose messages are queued
        self._staged: datetime | None = None

    async def drafts(self, targets: Sequence[Target]) -> list[Draft]:
        """The messages of the newest ended day if this process has not queued them yet."""
        self._staged = None
        wanting = [t for t in targets if NotifyOn.DAILY in t.on]
        if not wanting:
            return []
        start, end = day_ending(datetime.fromtimestamp(self._clock(), UTC), self._at, self._zone)
        if end == self._queued:
            return []
        async with self._sessions() as session:
            facts = await day_facts(session, start, end)
        key = f"daily:{end.astimezone(self._zone):%Y-%m-%d}"
        drafts = []
        for target in wanting:
            message = daily_message(start, end, self._zone, facts.only(target.account_id, target.dry_runs))
            drafts.append(
                Draft(
                    key,
                    target.target_id,
                    NotifyOn.DAILY,
                    message.title,
                    message.body,
                    account_id=target.account_id,
                    occurred_at=end,
                )
            )
        self._staged = end
        return drafts

    def confirm(self) -> None:
        """The last drafts are queued: that day is done for this process."""
        if self._staged is not None:
            self._queued, self._staged = self._staged, None
