-- The PostgreSQL schema of the rebalancer's history. The ORM models in
-- shared/src/rebalancer_shared/store/tables.py must match it (tests/integration/test_schema.py).
-- Every statement is idempotent so the file can be applied to a database that already has it.

-- One row per event ever accepted, its current state and the last error it met.
CREATE TABLE IF NOT EXISTS events (
    event_id        UUID PRIMARY KEY,
    schema_version  INTEGER NOT NULL,
    account_id      VARCHAR(64) NOT NULL,
    exec_command    VARCHAR(32) NOT NULL,
    source          VARCHAR(16) NOT NULL,
    data            JSONB NOT NULL,
    ably_message_id VARCHAR(255),
    status          VARCHAR(16) NOT NULL,
    times_queued    INTEGER NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at      TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at     TIMESTAMP WITH TIME ZONE
);
CREATE INDEX IF NOT EXISTS ix_events_status_created ON events (status, created_at);
CREATE INDEX IF NOT EXISTS ix_events_account ON events (account_id, created_at);

-- Every state change of an event: queued, requeued, duplicate, coalesced, processing, retrying (with the
-- error), completed, rerun, removed, recovered.
CREATE TABLE IF NOT EXISTS event_transitions (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    state        VARCHAR(16) NOT NULL,
    times_queued INTEGER NOT NULL,
    detail       TEXT,
    at           TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_event_transitions_event ON event_transitions (event_id, id);

-- One row per command run (attempt) of an event: its result, plan and equity information.
CREATE TABLE IF NOT EXISTS runs (
    run_id         UUID PRIMARY KEY,
    event_id       UUID NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    attempt        INTEGER NOT NULL,
    account_id     VARCHAR(64) NOT NULL,
    exec_command   VARCHAR(32) NOT NULL,
    execution_mode VARCHAR(16) NOT NULL,
    worker         VARCHAR(128) NOT NULL,
    status         VARCHAR(16) NOT NULL,
    message        TEXT,
    error          TEXT,
    equity_info    JSONB,
    plan           JSONB,
    result         JSONB,
    started_at     TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at    TIMESTAMP WITH TIME ZONE
);
CREATE INDEX IF NOT EXISTS ix_runs_event ON runs (event_id, started_at);
CREATE INDEX IF NOT EXISTS ix_runs_account ON runs (account_id, started_at);

-- Every order a run placed, with the broker's ids and its fills.
CREATE TABLE IF NOT EXISTS orders (
    id              BIGSERIAL PRIMARY KEY,
    run_id          UUID NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    event_id        UUID NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    symbol          VARCHAR(32) NOT NULL,
    action          VARCHAR(4) NOT NULL,
    quantity        DOUBLE PRECISION NOT NULL,
    order_type      VARCHAR(8) NOT NULL,
    limit_price     DOUBLE PRECISION,
    broker_order_id INTEGER,
    perm_id         BIGINT,
    order_ref       VARCHAR(64) NOT NULL,
    status          VARCHAR(32) NOT NULL,
    filled_quantity DOUBLE PRECISION NOT NULL,
    avg_fill_price  DOUBLE PRECISION,
    created_at      TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at      TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_orders_run ON orders (run_id);
CREATE INDEX IF NOT EXISTS ix_orders_event ON orders (event_id);

-- Facts about the deployment itself, e.g. that the Redis marker was written (Redis-loss detection).
CREATE TABLE IF NOT EXISTS deployment_facts (
    name       VARCHAR(64) PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
);
