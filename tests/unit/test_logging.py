"""The one logging set-up: JSON lines off a terminal, and secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from rebalancer_shared.config import load_settings
from rebalancer_shared.logging import configure_logging, register_settings_secrets


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("DEBUG", "auto", stream)
    yield stream
    root.handlers[:], root.level = saved
    structlog.reset_defaults()


def test_an_api_key_put_in_config_never_reaches_the_log(log_output: io.StringIO) -> None:
    settings = load_settings(
        environ={
            "ALLOCATIONS_API_KEY": "alloc-key-7f3a9",
            "MANAGEMENT_API_KEY": "mgmt-key-51c2e",
            "ABLY_API_KEY": "app.key:ably-secret-88",
            "IB_PASSWORD": "ib-password-0042",
        }
    )
    register_settings_secrets(settings)
    secrets = [
        "alloc-key-7f3a9",
        "mgmt-key-51c2e",
        "ably-secret-88",
        "ib-password-0042",
    ]
    log = structlog.get_logger("test")
    log.info("settings loaded", settings=settings.model_dump(mode="python"))
    log.info("calling allocations", headers={"x-api-key": "alloc-key-7f3a9"}, api_key="alloc-key-7f3a9")
    log.error("request failed: GET http://x/?key=alloc-key-7f3a9 unauthorized")
    try:
        raise RuntimeError("login refused for password ib-password-0042")
    except RuntimeError:
        log.exception("ib login failed")
    logging.getLogger("ib_async.client").warning("connect with %s", "ib-password-0042")
    logging.getLogger("ably").info("key app.key:ably-secret-88 rejected")
    output = log_output.getvalue()
    assert output.count("\n") >= 6
    for secret in secrets:
        assert secret not in output, secret
    assert "***" in output


def test_log_lines_are_json_when_not_on_a_terminal(log_output: io.StringIO) -> None:
    structlog.get_logger("svc").info("event queued", event_id="e1", account_id="DU1", command="rebalance")
    line = json.loads(log_output.getvalue().strip().splitlines()[-1])
    assert line["event"] == "event queued"
    assert line["event_id"] == "e1"
    assert line["level"] == "info"
    assert "timestamp" in line
