"""The history refuses writes (a fault hook on the `events` table) when a trigger arrives: the event
broker's submit is accepted all the same (Redis and the outbox), nothing is submitted twice, and once
PostgreSQL takes writes again the history catches up and the event runs once: one event, one run."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.services import TARGETS, broker_and_processor
from tests.e2e.test_whole_system import at_targets, wait_for
from tests.support.servers import REDIS_URL

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
CHANNEL = "strategy-outage"

FAULT = """
CREATE TABLE fault_switch (on_since TIMESTAMP WITH TIME ZONE);
INSERT INTO fault_switch VALUES (now());
CREATE FUNCTION refuse_history() RETURNS trigger AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM fault_switch) THEN RAISE EXCEPTION 'history writes refused (fault hook)'; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_history BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_history();
"""


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def test_a_trigger_arriving_while_the_history_refuses_writes_is_one_event_and_one_run(
    prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    url = fresh_database_url.replace("+psycopg", "")
    query(url, FAULT)
    with broker_and_processor(
        tmp_path,
        redis_url=REDIS_URL,
        prefix=prefix,
        database_url=fresh_database_url,
        channel=CHANNEL,
        accounts=["HO1"],
        RETRY_DELAY_SECONDS="0.3",
    ) as services:
        time.sleep(2)  # the services are up
        services.ably.publish(CHANNEL, {"exec": "rebalance"})
        time.sleep(4)  # submitted, claimed, failing while the history refuses
        assert services.tws.state()["received_orders"] == [], "nothing trades without a record"
        assert query(url, "SELECT count(*) FROM events") == [(0,)]
        query(url, "DELETE FROM fault_switch")

        def done() -> bool:
            return query(url, "SELECT status FROM events") == [("completed",)]

        wait_for(done, 60, "the event to complete once the history takes writes")
        state = services.tws.state()
    assert at_targets(state["accounts"]["HO1"], TARGETS)
    assert query(url, "SELECT count(*) FROM events") == [(1,)], "one trigger, one event"
    assert query(url, "SELECT status, count(*) FROM runs GROUP BY status") == [("success", 1)], "one run"
    states = [s for (s,) in query(url, "SELECT state FROM event_transitions ORDER BY seq")]
    assert states[0] == "queued"
    assert states[-1] == "completed"
