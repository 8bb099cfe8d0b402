"""Alembic's entry: run the migrations on the connection `schema.py` hands over, or print them as SQL.

Online, `rebalancer_shared.store.schema` opens the connection (holding the migration lock) and passes
it in `config.attributes["connection"]`; offline (`rebalancer db sql`, which generates init.sql) the
migrations are rendered for PostgreSQL without a server.
"""

from __future__ import annotations

from alembic import context

from rebalancer_shared.store.tables import Base

config = context.config

if context.is_offline_mode():
    context.configure(
        dialect_name="postgresql", literal_binds=True, target_metadata=Base.metadata, transactional_ddl=True
    )
else:
    context.configure(connection=config.attributes["connection"], target_metadata=Base.metadata)

with context.begin_transaction():
    context.run_migrations()
