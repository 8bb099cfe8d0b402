"""ORM models of the history tables. They mirror the migrations column for column (a test compares
them with a migrated database).

Types are portable (JSONB on PostgreSQL, JSON elsewhere; BIGSERIAL as a plain integer key on
SQLite) so the same `EventStore` serves the embedded demo on SQLite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Json = JSON().with_variant(JSONB(), "postgresql")
SerialKey = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base of the history tables."""


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_status_created", "status", "created_at"),
        Index("ix_events_account", "account_id", "created_at"),
        Index("ix_events_created", "created_at", "event_id"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[str] = mapped_column(String(64))
    exec_command: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    ably_message_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    times_queued: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    failure_class: Mapped[str | None] = mapped_column(String(16))
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    history_seq: Mapped[int | None] = mapped_column(BigInteger)


class TransitionRow(Base):
    __tablename__ = "event_transitions"
    __table_args__ = (
        Index("ix_event_transitions_event", "event_id", "id"),
        Index("ux_event_transitions_seq", "seq", unique=True),
        Index("ix_event_transitions_at", "at"),
        Index(
            "ix_event_transitions_notification_pending",
            "id",
            postgresql_where=text("notification_pending"),
            sqlite_where=text("notification_pending"),
        ),
    )

    id: Mapped[int] = mapped_column(SerialKey, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("events.event_id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    times_queued: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(Timestamp)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    failure_class: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # True until the notifier has looked at the transition (management_service.notifications.intake).
    notification_pending: Mapped[bool] = mapped_column(Boolean, server_default=true())


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_event", "event_id", "started_at"),
        Index("ix_runs_account", "account_id", "started_at"),
        Index("ix_runs_status", "status"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("events.event_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[str] = mapped_column(String(64))
    exec_command: Mapped[str] = mapped_column(String(32))
    execution_mode: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    equity_info: Mapped[dict[str, Any] | None] = mapped_column(Json)
    plan: Mapped[dict[str, Any] | None] = mapped_column(Json)
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_run", "run_id"),
        Index("ix_orders_event", "event_id"),
        Index("ux_orders_run_seq", "run_id", "seq", unique=True),
        Index("ix_orders_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(SerialKey, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("runs.run_id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("events.event_id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    order_type: Mapped[str] = mapped_column(String(8))
    limit_price: Mapped[float | None] = mapped_column(Float)
    broker_order_id: Mapped[int | None] = mapped_column(Integer)
    perm_id: Mapped[int | None] = mapped_column(BigInteger)
    order_ref: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    filled_quantity: Mapped[float] = mapped_column(Float)
    avg_fill_price: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    seq: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)


class DeploymentFactRow(Base):
    __tablename__ = "deployment_facts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class NotificationRow(Base):
    """One message to one target, unique by (key, target): the dedup of every notification."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ux_notifications_key_target", "key", "target", unique=True),
        Index("ix_notifications_due", "status", "next_attempt_at"),
        Index("ix_notifications_event", "event_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(SerialKey, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    failure_class: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime | None] = mapped_column(Timestamp)
