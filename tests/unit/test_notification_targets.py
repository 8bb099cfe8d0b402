"""Notification targets: validated where they are configured, secrets from the environment only,
a missing variable named (its absence, never a value), and expanded values masked in every log."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from management_service.notifications import resolve_targets
from management_service.notifications.targets import NotificationTargetError
from rebalancer_shared.accounts import AccountsFileError, parse_accounts
from rebalancer_shared.config import Settings, load_settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import redact_text
from rebalancer_shared.notification_targets import MissingVariableError, NotifyOn


def test_config_yaml_targets_are_read_with_their_outcomes(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "notifications:\n  unhealthy_after_seconds: 120\n  targets:\n"
        "    - url: 'ntfys://${NTFY_TOKEN}@ntfy.example.com/ops'\n      on: [traded, health]\n"
    )
    settings = load_settings(config, environ={})
    assert settings.notifications.unhealthy_after_seconds == 120
    assert settings.notifications.targets[0].on == (NotifyOn.TRADED, NotifyOn.HEALTH)
    assert not settings.notifications.targets[0].dry_runs


def test_an_unknown_outcome_names_the_account_and_the_key() -> None:
    raw = [
        {
            "account_id": "DU1",
            "notification": {"channel": "c"},
            "notify": [{"url": "json://h/x", "on": ["trade"]}],
        }
    ]
    with pytest.raises(AccountsFileError, match=r"account 'DU1': key 'notify\[0\]\.on\[0\]'"):
        parse_accounts(raw, Path("accounts.yaml"))


def test_a_literal_dollar_in_a_url_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("notifications:\n  targets:\n    - url: 'json://h/$TOKEN'\n      on: [failed]\n")
    with pytest.raises(ConfigError, match=r"notifications\.targets\.0\.url.*\$\{NAME\}"):
        load_settings(config, environ={})


def test_a_missing_variable_is_named_and_a_set_one_is_masked_in_logs(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "notifications:\n  targets:\n"
        "    - url: 'json://127.0.0.1:9/hook?token=${HOOK_TOKEN}'\n      on: [failed]\n"
    )
    settings = load_settings(config, environ={})
    with pytest.raises(MissingVariableError) as missing:
        resolve_targets(settings, {}, {})
    assert "config.yaml notifications.targets[0]" in str(missing.value)
    assert "HOOK_TOKEN is not set" in str(missing.value)

    (resolved,) = resolve_targets(settings, {}, {"HOOK_TOKEN": "s3cr3t-hook-token"})
    assert "s3cr3t-hook-token" in resolved.url
    assert "s3cr3t-hook-token" not in resolved.shown
    assert redact_text("posting to json://127.0.0.1:9/hook?token=s3cr3t-hook-token") == (
        "posting to json://127.0.0.1:9/hook?token=***"
    )


def test_a_url_apprise_does_not_know_stops_the_service_naming_where_it_is() -> None:
    settings = Settings.model_validate(
        {"notifications": {"targets": [{"url": "nosuch://x", "on": ["failed"]}]}}
    )
    with pytest.raises(NotificationTargetError, match=r"config\.yaml notifications\.targets\[0\].*'nosuch'"):
        resolve_targets(settings, {}, {})


def _settings(*targets: Mapping[str, object]) -> Settings:
    return Settings.model_validate({"notifications": {"targets": list(targets)}})


def test_a_target_id_follows_the_url_as_written_not_its_place_or_its_secret() -> None:
    ops = {"url": "json://127.0.0.1:9/ops?token=${TOKEN}", "on": ["failed"]}
    desk = {"url": "json://127.0.0.1:9/desk", "on": ["failed"]}
    first = {t.url: t.target_id for t in resolve_targets(_settings(ops, desk), {}, {"TOKEN": "t0ken-one"})}
    again = {t.url: t.target_id for t in resolve_targets(_settings(desk, ops), {}, {"TOKEN": "t0ken-two"})}
    assert list(first.values()) == [
        again["json://127.0.0.1:9/ops?token=t0ken-two"],
        again["json://127.0.0.1:9/desk"],
    ]
    named = resolve_targets(_settings({**desk, "name": "desk"}), {}, {})[0]
    renamed = resolve_targets(_settings({**desk, "url": "json://127.0.0.1:9/desk2", "name": "desk"}), {}, {})[
        0
    ]
    assert named.target_id == renamed.target_id != first["json://127.0.0.1:9/desk"]


def test_the_same_target_twice_is_refused_naming_both_places() -> None:
    ops = {"url": "json://127.0.0.1:9/ops", "on": ["failed"]}
    with pytest.raises(NotificationTargetError, match=r"targets\[1\]: the same target as .*targets\[0\]"):
        resolve_targets(_settings(ops, {**ops, "on": ["traded"]}), {}, {})


def test_a_variable_is_percent_encoded_and_masked_raw_and_encoded() -> None:
    settings = _settings({"url": "json://ops:${PASS}@127.0.0.1:9/hook", "on": ["failed"]})
    (resolved,) = resolve_targets(settings, {}, {"PASS": "pa/ss#w@rd"})
    assert resolved.url == "json://ops:pa%2Fss%23w%40rd@127.0.0.1:9/hook"
    assert resolved.shown == "json://ops:****@127.0.0.1:9/hook"
    assert redact_text("pa/ss#w@rd and pa%2Fss%23w%40rd") == "*** and ***"


def test_a_token_typed_into_the_url_is_masked_as_apprise_hides_it() -> None:
    settings = _settings({"url": "tgram://123456789:AAbbCCddEEffGg/987654", "on": ["failed"]})
    (resolved,) = resolve_targets(settings, {}, {})
    assert "AAbbCCddEEffGg" not in resolved.shown
    assert redact_text("POST https://api.telegram.org/bot123456789:AAbbCCddEEffGg/sendMessage") == (
        "POST https://api.telegram.org/bot***/sendMessage"
    )
