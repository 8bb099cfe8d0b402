"""Alembic migrations of the history schema (see `rebalancer_shared.store.schema`)."""
