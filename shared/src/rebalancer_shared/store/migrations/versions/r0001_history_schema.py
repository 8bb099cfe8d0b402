"""The history schema as the first release deployed it from init.sql: events, their transitions,
runs, orders and deployment facts.

A database created by that init.sql (before migrations existed) has exactly these tables and no
`alembic_version`; `schema.py` recognises it and records it as this revision without running it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def _events() -> None:
    # One row per event ever accepted, its current state and the last error it met.
    op.create_table(
        "events",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("exec_command", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("data", JSONB(), nullable=False),
        sa.Column("ably_message_id", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("times_queued", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
    )
    op.create_index("ix_events_status_created", "events", ["status", "created_at"])
    op.create_index("ix_events_account", "events", ["account_id", "created_at"])


def _event_transitions() -> None:
    # Every state change of an event: queued, requeued, duplicate, coalesced, processing, retrying
    # (with the error), completed, rerun, removed, recovered.
    op.create_table(
        "event_transitions",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "event_id", sa.Uuid(), sa.ForeignKey("events.event_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("times_queued", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_event_transitions_event", "event_transitions", ["event_id", "id"])


def _runs() -> None:
    # One row per command run (attempt) of an event: its result, plan and equity information.
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Uuid(), primary_key=True),
        sa.Column(
            "event_id", sa.Uuid(), sa.ForeignKey("events.event_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("exec_command", sa.String(32), nullable=False),
        sa.Column("execution_mode", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("equity_info", JSONB()),
        sa.Column("plan", JSONB()),
        sa.Column("result", JSONB()),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
    )
    op.create_index("ix_runs_event", "runs", ["event_id", "started_at"])
    op.create_index("ix_runs_account", "runs", ["account_id", "started_at"])


def _orders() -> None:
    # Every order a run placed, with the broker's ids and its fills.
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Uuid(), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "event_id", sa.Uuid(), sa.ForeignKey("events.event_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("action", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Double(), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("limit_price", sa.Double()),
        sa.Column("broker_order_id", sa.Integer()),
        sa.Column("perm_id", sa.BigInteger()),
        sa.Column("order_ref", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("filled_quantity", sa.Double(), nullable=False),
        sa.Column("avg_fill_price", sa.Double()),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_orders_run", "orders", ["run_id"])
    op.create_index("ix_orders_event", "orders", ["event_id"])


def _deployment_facts() -> None:
    # Facts about the deployment itself, e.g. that the Redis marker was written (Redis-loss detection).
    op.create_table(
        "deployment_facts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )


def upgrade() -> None:
    _events()
    _event_transitions()
    _runs()
    _orders()
    _deployment_facts()


def downgrade() -> None:
    for table in ("deployment_facts", "orders", "runs", "event_transitions", "events"):
        op.drop_table(table)
