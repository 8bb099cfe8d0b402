"""`pdt_protection` (skip | defer | off, default defer) in accounts.yaml and config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebalancer_shared.accounts import AccountsFileError, PdtProtection, RebalancingSettings, load_accounts
from rebalancer_shared.config import load_settings
from rebalancer_shared.errors import ConfigError

ACCOUNT = "- account_id: DU9\n  notification: {{channel: c}}\n  rebalancing:\n    pdt_protection: {value}\n"


def accounts_file(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(ACCOUNT.format(value=value))
    return path


def test_an_account_without_the_setting_defers() -> None:
    assert RebalancingSettings().pdt_protection is PdtProtection.DEFER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("skip", PdtProtection.SKIP),
        ("defer", PdtProtection.DEFER),
        ("off", PdtProtection.OFF),  # YAML 1.1 reads an unquoted off as false
        ("'off'", PdtProtection.OFF),
        ("false", PdtProtection.OFF),
    ],
)
def test_each_value_is_read_per_account(tmp_path: Path, value: str, expected: PdtProtection) -> None:
    accounts = load_accounts(accounts_file(tmp_path, value))
    assert accounts["DU9"].settings.pdt_protection is expected


@pytest.mark.parametrize("value", ["sometimes", "true", "on", "1", "[skip]", "SKIP"])
def test_a_bad_value_is_an_error_naming_the_file_the_account_the_key_and_the_choices(
    tmp_path: Path, value: str
) -> None:
    path = accounts_file(tmp_path, value)
    with pytest.raises(AccountsFileError) as refused:
        load_accounts(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: account 'DU9': key 'rebalancing.pdt_protection': ")
    assert "'skip', 'defer' or 'off'" in message


def test_the_default_comes_from_rebalancing_defaults_and_an_account_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("rebalancing_defaults:\n  pdt_protection: skip\n")
    defaults = load_settings(config, {}).rebalancing_defaults
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "- account_id: A\n  notification: {channel: c}\n"
        "- account_id: B\n  notification: {channel: c}\n  rebalancing: {pdt_protection: 'off'}\n"
    )
    accounts = load_accounts(path, defaults)
    assert accounts["A"].settings.pdt_protection is PdtProtection.SKIP
    assert accounts["B"].settings.pdt_protection is PdtProtection.OFF


def test_a_bad_default_in_config_yaml_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("rebalancing_defaults:\n  pdt_protection: maybe\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, {})
    assert str(refused.value).startswith(f"{config}: key 'rebalancing_defaults.pdt_protection': ")
    assert "'skip', 'defer' or 'off'" in str(refused.value)


def test_the_checkouts_files_name_the_setting() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "config.yaml", {})
    assert settings.rebalancing_defaults.pdt_protection is PdtProtection.DEFER
    assert "pdt_protection" in (root / "accounts.yaml").read_text()
