-- The PostgreSQL schema of the rebalancer's history, generated from the Alembic migrations
-- (shared/src/rebalancer_shared/store/migrations) by `./rebalancer db sql > init.sql`; do not edit.
-- The services create and upgrade the schema themselves at start; apply this file by hand only where
-- their database user may not change the schema (then set DATABASE_MIGRATE_ON_START=false).
BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001

CREATE TABLE events (
    event_id UUID NOT NULL,
    schema_version INTEGER NOT NULL,
    account_id VARCHAR(64) NOT NULL,
    exec_command VARCHAR(32) NOT NULL,
    source VARCHAR(16) NOT NULL,
    data JSONB NOT NULL,
    ably_message_id VARCHAR(255),
    status VARCHAR(16) NOT NULL,
    times_queued INTEGER NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (event_id)
);

CREATE INDEX ix_events_status_created ON events (status, created_at);

CREATE INDEX ix_events_account ON events (account_id, created_at);

CREATE TABLE event_transitions (
    id BIGSERIAL NOT NULL,
    event_id UUID NOT NULL,
    state VARCHAR(16) NOT NULL,
    times_queued INTEGER NOT NULL,
    detail TEXT,
    at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(event_id) REFERENCES events (event_id) ON DELETE CASCADE
);

CREATE INDEX ix_event_transitions_event ON event_transitions (event_id, id);

CREATE TABLE runs (
    run_id UUID NOT NULL,
    event_id UUID NOT NULL,
    attempt INTEGER NOT NULL,
    account_id VARCHAR(64) NOT NULL,
    exec_command VARCHAR(32) NOT NULL,
    execution_mode VARCHAR(16) NOT NULL,
    worker VARCHAR(128) NOT NULL,
    status VARCHAR(16) NOT NULL,
    message TEXT,
    error TEXT,
    equity_info JSONB,
    plan JSONB,
    result JSONB,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (run_id),
    FOREIGN KEY(event_id) REFERENCES events (event_id) ON DELETE CASCADE
);

CREATE INDEX ix_runs_event ON runs (event_id, started_at);

CREATE INDEX ix_runs_account ON runs (account_id, started_at);

CREATE TABLE orders (
    id BIGSERIAL NOT NULL,
    run_id UUID NOT NULL,
    event_id UUID NOT NULL,
    symbol VARCHAR(32) NOT NULL,
    action VARCHAR(4) NOT NULL,
    quantity DOUBLE PRECISION NOT NULL,
    order_type VARCHAR(8) NOT NULL,
    limit_price DOUBLE PRECISION,
    broker_order_id INTEGER,
    perm_id BIGINT,
    order_ref VARCHAR(64) NOT NULL,
    status VARCHAR(32) NOT NULL,
    filled_quantity DOUBLE PRECISION NOT NULL,
    avg_fill_price DOUBLE PRECISION,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (run_id) ON DELETE CASCADE,
    FOREIGN KEY(event_id) REFERENCES events (event_id) ON DELETE CASCADE
);

CREATE INDEX ix_orders_run ON orders (run_id);

CREATE INDEX ix_orders_event ON orders (event_id);

CREATE TABLE deployment_facts (
    name VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (name)
);

INSERT INTO alembic_version (version_num) VALUES ('0001') RETURNING alembic_version.version_num;

-- Running upgrade 0001 -> 0002

ALTER TABLE event_transitions ADD COLUMN seq BIGINT;

CREATE UNIQUE INDEX ux_event_transitions_seq ON event_transitions (seq);

ALTER TABLE events ADD COLUMN history_seq BIGINT;

ALTER TABLE orders ADD COLUMN seq INTEGER;

CREATE UNIQUE INDEX ux_orders_run_seq ON orders (run_id, seq);

CREATE INDEX ix_runs_status ON runs (status);

UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001';

-- Running upgrade 0002 -> 0003

ALTER TABLE orders ADD COLUMN message TEXT;

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';

-- Running upgrade 0003 -> 0004

ALTER TABLE events ADD COLUMN failure_class VARCHAR(16);

ALTER TABLE events ADD COLUMN next_attempt_at TIMESTAMP WITH TIME ZONE;

ALTER TABLE event_transitions ADD COLUMN failure_class VARCHAR(16);

ALTER TABLE event_transitions ADD COLUMN due_at TIMESTAMP WITH TIME ZONE;

UPDATE alembic_version SET version_num='0004' WHERE alembic_version.version_num = '0003';

-- Running upgrade 0004 -> 0005

ALTER TABLE event_transitions ADD COLUMN notification_pending BOOLEAN DEFAULT false NOT NULL;

ALTER TABLE event_transitions ALTER COLUMN notification_pending SET DEFAULT true;

CREATE INDEX ix_event_transitions_notification_pending ON event_transitions (id) WHERE notification_pending;

CREATE TABLE notifications (
    id BIGSERIAL NOT NULL,
    key VARCHAR(200) NOT NULL,
    target VARCHAR(64) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    account_id VARCHAR(64),
    event_id UUID,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ux_notifications_key_target ON notifications (key, target);

CREATE INDEX ix_notifications_due ON notifications (status, next_attempt_at);

UPDATE alembic_version SET version_num='0005' WHERE alembic_version.version_num = '0004';

-- Running upgrade 0005 -> 0006

CREATE INDEX ix_events_created ON events (created_at, event_id);

CREATE INDEX ix_orders_created ON orders (created_at, id);

CREATE INDEX ix_event_transitions_at ON event_transitions (at);

UPDATE alembic_version SET version_num='0006' WHERE alembic_version.version_num = '0005';

-- Running upgrade 0006 -> 0007

ALTER TABLE notifications ADD COLUMN claimed_by VARCHAR(32);

ALTER TABLE notifications ADD COLUMN failure_class VARCHAR(16);

ALTER TABLE notifications ADD COLUMN occurred_at TIMESTAMP WITH TIME ZONE;

CREATE INDEX ix_notifications_event ON notifications (event_id, kind, id);

UPDATE alembic_version SET version_num='0007' WHERE alembic_version.version_num = '0006';

COMMIT;
