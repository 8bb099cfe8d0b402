"""The overview's chart as plain geometry: one group of three bars (accepted, completed, failed) per
hour, drawn by the template as inline SVG. No chart library, no script: the numbers are in the page
(each bar has a `<title>` a pointer or a screen reader shows), and the SVG scales with its box."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rebalancer_shared.store.activity import HourActivity

WIDTH = 720
HEIGHT = 200
LEFT = 32  # room for the count axis
BOTTOM = 22  # room for the hour labels
TOP = 8
SERIES = ("accepted", "completed", "failed")


@dataclass(frozen=True)
class Bar:
    series: str
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: bars, the hour labels under them, the count ticks beside them."""

    width: int
    height: int
    bars: list[Bar]
    hour_labels: list[Tick]
    count_ticks: list[Tick]
    totals: dict[str, int]
    baseline: float


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = int(10 ** math.floor(math.log10(value)))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def activity_chart(hours: Sequence[HourActivity]) -> Chart:
    """Bars scaled to the busiest hour; an hour label every third hour (UTC)."""
    top_count = nice_ceiling(max((max(h.accepted, h.completed, h.failed) for h in hours), default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(hours), 1)
    bar_width = slot * 0.8 / len(SERIES)
    bars, labels = [], []
    for index, hour in enumerate(hours):
        x0 = LEFT + index * slot + slot * 0.1
        for offset, series in enumerate(SERIES):
            count = int(getattr(hour, series))
            height = plot_height * count / top_count
            bars.append(
                Bar(
                    series=series,
                    x=round(x0 + offset * bar_width, 2),
                    y=round(TOP + plot_height - height, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                    title=f"{hour.hour:%H}:00 UTC: {count} {series}",
                )
            )
        if index % 3 == 0:
            labels.append(Tick(round(x0 + slot * 0.4, 2), f"{hour.hour:%H}h"))
    ticks = [Tick(round(TOP + plot_height * (1 - f), 2), f"{top_count * f:g}") for f in (0, 0.5, 1)]
    totals = {series: sum(int(getattr(h, series)) for h in hours) for series in SERIES}
    return Chart(WIDTH, HEIGHT, bars, labels, ticks, totals, TOP + plot_height)
