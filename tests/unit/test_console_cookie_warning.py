"""The start warning when the console's session cookie may cross the network in clear text."""

from __future__ import annotations

from pathlib import Path

import pytest

from management_service.ui.session import insecure_cookie_warning, listens_beyond_loopback
from rebalancer_shared.config import load_settings


@pytest.mark.parametrize(
    ("host", "beyond"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.20", True),
        ("console.example.org", True),
    ],
)
def test_which_addresses_reach_beyond_loopback(host: str, beyond: bool) -> None:
    assert listens_beyond_loopback(host) is beyond


@pytest.mark.parametrize(
    ("host", "https_only", "warns"),
    [("0.0.0.0", "false", True), ("0.0.0.0", "true", False), ("127.0.0.1", "false", False)],
)
def test_the_warning_is_given_only_for_a_cookie_in_clear_text_beyond_loopback(
    tmp_path: Path, host: str, https_only: str, warns: bool
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    settings = load_settings(
        config_file=config, environ={"MANAGEMENT_HOST": host, "CONSOLE_HTTPS_ONLY": https_only}
    )
    warning = insecure_cookie_warning(settings)
    assert (warning is not None) is warns
    if warning:
        assert host in warning
        assert "CONSOLE_HTTPS_ONLY=true" in warning
