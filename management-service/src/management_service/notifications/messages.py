"""The text of each message: short plain text an operator reads on a phone (pure functions).

A live rebalance's message is built from what the run stored: its orders (as recorded, with fills),
the plan's weights before the run and its targets (each a fraction of total equity, the reserve
left out), and the equity information. The weights after are the weights before plus each fill's
value over the equity at the start: what the trades did, at the prices they got. Every text that
came from outside (errors, broker messages) is redacted of registered secrets again before it goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any

from management_service.notifications.daily_facts import DayFacts, OrderTally
from management_service.notifications.rules import TransitionFacts
from management_service.weights import after_fills
from rebalancer_shared.logging import redact_text
from rebalancer_shared.notification_targets import NotifyOn
from rebalancer_shared.store.views import as_utc

MAX_ORDER_LINES = 20
MAX_TEXT = 500


@dataclass(frozen=True)
class OrderFacts:
    """One order of a run, as the history recorded it."""

    symbol: str
    action: str
    quantity: float
    filled: float
    avg_price: float | None
    status: str


@dataclass(frozen=True)
class RunFacts:
    """The run a transition ended: its status, error, plan and result (JSON as stored), orders."""

    status: str
    error: str | None
    message: str | None
    equity_info: Mapping[str, Any] | None
    plan: Mapping[str, Any] | None
    orders: Sequence[OrderFacts] = field(default_factory=tuple)
    # Orders of the attempts before it that did not succeed (killed, interrupted, failed): the same
    # rebalance, already in `plan`'s weights before.
    earlier_orders: Sequence[OrderFacts] = field(default_factory=tuple)


@dataclass(frozen=True)
class Message:
    """What a target receives."""

    title: str
    body: str


def _clip(text: str | None) -> str:
    cleaned = redact_text(text or "").strip()
    return cleaned if len(cleaned) <= MAX_TEXT else cleaned[: MAX_TEXT - 1] + "…"


def _when(at: datetime | None) -> str:
    return as_utc(at).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "unknown"


def _order_lines(orders: Sequence[OrderFacts]) -> list[str]:
    lines = [_order_line(o) for o in orders[:MAX_ORDER_LINES]]
    if len(orders) > MAX_ORDER_LINES:
        lines.append(f"- ... and {len(orders) - MAX_ORDER_LINES} more")
    return lines


def _order_line(order: OrderFacts) -> str:
    price = f" @ {order.avg_price:,.2f}" if order.avg_price else ""
    return (
        f"- {order.action} {order.quantity:g} {order.symbol}: filled {order.filled:g}{price} ({order.status})"
    )


def weight_lines(run: RunFacts) -> list[str]:
    """`SYMBOL target x% | before y% -> after z%` per symbol held or targeted."""
    plan = run.plan or {}
    before: Mapping[str, float] = (plan.get("current") or {}).get("weights") or {}
    target: Mapping[str, float] = (plan.get("targets") or {}).get("weights") or {}
    total = float((run.equity_info or {}).get("total_equity") or 0.0)
    if not (before or target) or total <= 0:
        return []
    fills = ((o.symbol, o.action, o.filled, o.avg_price) for o in run.orders)
    after = after_fills(before, fills, total)
    lines = ["Weights (target | before -> after):"]
    for symbol in sorted(set(before) | set(target) | set(after)):
        was, now = before.get(symbol, 0.0), after.get(symbol, 0.0)
        lines.append(f"- {symbol} {target.get(symbol, 0.0):.1%} | {was:.1%} -> {now:.1%}")
    return lines


def equity_line(equity: Mapping[str, Any] | None) -> str:
    """Equity, reserve percentage and amount."""
    if not equity:
        return "Equity: unknown"
    return (
        f"Equity {float(equity['total_equity']):,.2f}; reserve {float(equity['reserve_percentage']):g} % "
        f"({float(equity['reserve_amount']):,.2f})"
    )


def _traded(facts: TransitionFacts, run: RunFacts | None) -> Message:
    if run is None:
        return Message(
            f"{facts.account_id}: rebalance finished", f"Live rebalance finished.\nEvent {facts.event_id}"
        )
    lines = [f"Live rebalance of {facts.account_id}: {run.status}. {_clip(run.message)}".strip()]
    if run.orders:
        lines += ["Orders:", *_order_lines(run.orders)]
    else:
        lines.append("No orders: the account is at its targets.")
    if run.earlier_orders:
        lines += ["Orders of earlier attempts that did not finish:", *_order_lines(run.earlier_orders)]
    lines += weight_lines(run)
    lines += [equity_line(run.equity_info), f"Event {facts.event_id}"]
    count = len(run.orders) + len(run.earlier_orders)
    title = f"{facts.account_id}: rebalance {run.status}, {count} order{'s' * (count != 1)}"
    return Message(title, "\n".join(lines))


def _completed(facts: TransitionFacts, run: RunFacts | None) -> Message:
    mode = "" if facts.live else " (dry run)"
    text = _clip(run.message) if run else ""
    body = f"{facts.command.value}{mode} of {facts.account_id} completed. {text}".strip()
    return Message(f"{facts.account_id}: {facts.command.value} completed", f"{body}\nEvent {facts.event_id}")


def _failed(facts: TransitionFacts, _: RunFacts | None) -> Message:
    body = (
        f"{facts.command.value} of {facts.account_id} failed (attempt {facts.times_queued - 1}): "
        f"{_clip(facts.detail)}\nFailure class: {facts.failure_class or 'transient'}; "
        f"runs again at {_when(facts.due_at)}.\nEvent {facts.event_id}"
    )
    return Message(f"{facts.account_id}: {facts.command.value} failed, retrying", body)


def _needs_attention(facts: TransitionFacts, _: RunFacts | None) -> Message:
    body = (
        f"{facts.command.value} of {facts.account_id} needs attention: {_clip(facts.detail)}\n"
        f"It runs again at {_when(facts.due_at)}, or when an operator retries or removes it.\n"
        f"Event {facts.event_id}"
    )
    return Message(f"{facts.account_id}: {facts.command.value} needs attention", body)


def _scheduled(facts: TransitionFacts, _: RunFacts | None) -> Message:
    body = (
        f"{facts.command.value} of {facts.account_id} is scheduled for {_when(facts.due_at)} "
        f"(the market is closed). {_clip(facts.detail)}\nEvent {facts.event_id}"
    )
    return Message(f"{facts.account_id}: {facts.command.value} scheduled for the open", body)


_WRITERS = {
    NotifyOn.TRADED: _traded,
    NotifyOn.COMPLETED: _completed,
    NotifyOn.FAILED: _failed,
    NotifyOn.NEEDS_ATTENTION: _needs_attention,
    NotifyOn.SCHEDULED: _scheduled,
}


def transition_message(kind: NotifyOn, facts: TransitionFacts, run: RunFacts | None) -> Message:
    """The message of a transition, written as `kind`."""
    return _WRITERS[kind](facts, run)


def health_message(component: str, down: bool, since: datetime, reason: str) -> Message:
    """A component unhealthy since `since` (down), or healthy again after that."""
    if down:
        return Message(
            f"rebalancer: {component} unhealthy",
            f"{component} has been unhealthy since {_when(since)}: {_clip(reason)}",
        )
    return Message(
        f"rebalancer: {component} healthy again",
        f"{component} is healthy again (unhealthy since {_when(since)}).",
    )


# The unfinished states of the `daily` summary's "waiting now" line, in the order told.
_WAITING = (
    ("needs attention", ("now:needs_attention",)),
    ("scheduled", ("now:scheduled",)),
    ("retrying", ("now:retrying",)),
    ("queued or running", ("now:queued", "now:processing")),
)
MAX_ACCOUNT_LINES = 30


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _waiting_now(facts: DayFacts, account_id: str | None = None) -> list[str]:
    counts = [(name, sum(facts.count(w, account_id) for w in whats)) for name, whats in _WAITING]
    return [f"{n} {name}" for name, n in counts if n]


def _orders_part(orders: OrderTally) -> str:
    unfilled = f", {orders.ended_unfilled} ended unfilled" if orders.ended_unfilled else ""
    unknown = f", {orders.unknown} outcome unknown" if orders.unknown else ""
    return (
        f"{_plural(orders.placed, 'order')}, {orders.filled} filled{unfilled}{unknown} "
        f"({orders.value:,.2f} in value)"
    )


def _account_line(facts: DayFacts, account_id: str) -> str:
    counts = [f"{facts.count(what, account_id)} {what}" for what in ("accepted", "completed")]
    if failed := facts.count("failed", account_id):
        counts.append(_plural(failed, "failed run"))
    parts = [", ".join(counts), *(_orders_part(o) for o in facts.orders if o.account_id == account_id)]
    if waiting := _waiting_now(facts, account_id):
        parts.append("now " + ", ".join(waiting))
    return f"- {account_id}: " + "; ".join(parts)


def daily_message(start: datetime, end: datetime, zone: tzinfo, facts: DayFacts) -> Message:
    """The `daily` summary of `[start, end)` (times shown in `zone` and UTC) from what a target sees."""
    local = as_utc(end).astimezone(zone)
    hours = round((end - start).total_seconds() / 3600)
    placed = sum(o.placed for o in facts.orders)
    filled = sum(o.filled for o in facts.orders)
    failed = facts.count("failed")
    waiting = _waiting_now(facts)
    in_utc = f" ({_when(end)})" if local.utcoffset() else ""
    lines = [f"{hours} hours to {local:%Y-%m-%d %H:%M %Z}{in_utc}."]
    accepted, completed = facts.count("accepted"), facts.count("completed")
    if accepted or completed or failed or placed:
        lines.append(f"Events: {accepted} accepted, {completed} completed, {_plural(failed, 'failed run')}.")
    else:
        lines.append("No event was accepted or run.")
    if placed:
        total = OrderTally("", placed, filled, sum(o.ended_unfilled for o in facts.orders), 0.0)
        value = sum(o.value for o in facts.orders)
        lines.append(f"Live {_orders_part(replace(total, value=value))}.")
    lines.append(f"Waiting now: {', '.join(waiting)}." if waiting else "Nothing is waiting now.")
    accounts = facts.accounts()
    if accounts:
        lines += ["By account:", *(_account_line(facts, a) for a in accounts[:MAX_ACCOUNT_LINES])]
        if len(accounts) > MAX_ACCOUNT_LINES:
            lines.append(f"- ... and {len(accounts) - MAX_ACCOUNT_LINES} more accounts")
    news = [_plural(filled, "order") + " filled", _plural(failed, "failed run")]
    if attention := facts.count("now:needs_attention"):
        news.append(f"{attention} need{'s' * (attention == 1)} attention")
    return Message(f"rebalancer daily summary {local:%Y-%m-%d}: " + ", ".join(news), "\n".join(lines))
