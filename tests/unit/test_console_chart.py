"""The overview's chart as geometry (management_service.ui.chart): pure, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from management_service.ui.chart import activity_chart, nice_ceiling
from rebalancer_shared.store.activity import HourActivity


def test_the_chart_scales_to_the_busiest_hour() -> None:
    start = datetime(2026, 11, 21, tzinfo=UTC)
    hours = [HourActivity(start + timedelta(hours=i), accepted=i, completed=i // 2) for i in range(24)]
    chart = activity_chart(hours)
    assert nice_ceiling(23) == 50
    assert nice_ceiling(0) == 1
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.series == "accepted"
    assert tallest.title == "23:00 UTC: 23 accepted"
    assert chart.totals == {
        "accepted": sum(range(24)),
        "completed": sum(i // 2 for i in range(24)),
        "failed": 0,
    }
    assert all(b.y + b.height == pytest.approx(chart.baseline) for b in chart.bars)
