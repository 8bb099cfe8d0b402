"""config.yaml + environment (env wins) and the accounts.yaml loader's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rebalancer_shared.accounts import (
    AccountsFileError,
    RebalancingSettings,
    accounts_by_channel,
    load_accounts,
    refuse_fractional_shares,
)
from rebalancer_shared.config import ENV_VARIABLES, load_settings
from rebalancer_shared.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_environment_wins_over_config_file(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "config.yaml",
        "redis:\n  url: redis://from-file:6379/0\norders:\n  order_type: LMT\nallocations:\n  base_url: http://x\n",
    )
    settings = load_settings(config, {"REDIS_URL": "redis://from-env:6379/1", "TIME_IN_FORCE": "GTC"})
    assert settings.redis.url == "redis://from-env:6379/1"
    assert settings.orders.order_type == "LMT"
    assert settings.orders.time_in_force == "GTC"
    assert settings.allocations.base_url == "http://x"


def test_config_file_is_found_through_config_file_variable(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", "logging:\n  level: DEBUG\n")
    assert load_settings(environ={"CONFIG_FILE": str(config)}).logging.level == "DEBUG"


def test_brief_alias_for_the_allocation_key_is_accepted() -> None:
    settings = load_settings(environ={"ZEHNLABS_FINTECH_API_KEY": "alloc-secret-1"})
    assert settings.allocations.api_key is not None
    assert settings.allocations.api_key.get_secret_value() == "alloc-secret-1"
    both = load_settings(environ={"ZEHNLABS_FINTECH_API_KEY": "old", "ALLOCATIONS_API_KEY": "new"})
    assert both.allocations.api_key is not None
    assert both.allocations.api_key.get_secret_value() == "new"


def test_unknown_config_key_names_file_and_key(tmp_path: Path) -> None:
    config = write(tmp_path, "config.yaml", "redis:\n  urll: redis://x\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: key 'redis\.urll'"):
        load_settings(config, {})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"environment variable ORDER_TYPE: key 'orders\.order_type'"):
        load_settings(environ={"ORDER_TYPE": "STOP"})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", {})


def test_secrets_do_not_print() -> None:
    settings = load_settings(environ={"MANAGEMENT_API_KEY": "mgmt-secret-xyz", "IB_PASSWORD": "ib-pass-xyz"})
    assert "mgmt-secret-xyz" not in repr(settings)
    assert "ib-pass-xyz" not in str(settings.model_dump())


def test_repository_config_yaml_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "config.yaml", {})
    accounts = load_accounts(root / "accounts.yaml", settings.rebalancing_defaults)
    assert accounts


def test_every_env_variable_targets_a_real_setting() -> None:
    for name, path in ENV_VARIABLES.items():
        settings = load_settings(environ={})
        node: object = settings
        for key in path:
            assert hasattr(node, key), f"{name} -> {'.'.join(path)}"
            node = getattr(node, key)


ACCOUNTS = """
- account_id: "DU123456"
  notification:
    channel: "strategy-name-100"
  rebalancing:
    equity_reserve_percentage: 1.0
- account_id: "DU789012"
  notification:
    channel: "strategy-name-200"
  rebalancing:
    equity_reserve_percentage: 2.5
    fractional_shares: true
- account_id: "DU555"
  notification:
    channel: "strategy-name-100"
"""


def test_brief_accounts_file_loads_with_defaults(tmp_path: Path) -> None:
    defaults = RebalancingSettings(drift_threshold_pct=0.5)
    accounts = load_accounts(write(tmp_path, "accounts.yaml", ACCOUNTS), defaults)
    assert list(accounts) == ["DU123456", "DU789012", "DU555"]
    assert accounts["DU789012"].settings.equity_reserve_percentage == 2.5
    assert accounts["DU789012"].settings.fractional_shares is True
    assert accounts["DU555"].settings == defaults
    assert accounts["DU123456"].settings.drift_threshold_pct == 0.5
    channels = accounts_by_channel(accounts)
    assert [a.account_id for a in channels["strategy-name-100"]] == ["DU123456", "DU555"]


RESERVE_ACCOUNT = (
    "- account_id: DU9\n  notification: {{channel: c}}\n"
    "  rebalancing:\n    equity_reserve_percentage: {value}\n"
)


@pytest.mark.parametrize("value", ["12", "-1", "abc", "nan", "[1]", "true"])
def test_bad_reserve_falls_back_to_one_percent_with_a_warning_naming_the_account(
    tmp_path: Path, value: str
) -> None:
    text = RESERVE_ACCOUNT.format(value=value)
    with capture_logs() as logs:
        accounts = load_accounts(write(tmp_path, "accounts.yaml", text))
    assert accounts["DU9"].settings.equity_reserve_percentage == 1.0
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings
    assert warnings[0]["account_id"] == "DU9"


@pytest.mark.parametrize("value", ["0", "10", "2.5", "'3'"])
def test_reserve_inside_the_range_is_kept(tmp_path: Path, value: str) -> None:
    text = RESERVE_ACCOUNT.format(value=value)
    accounts = load_accounts(write(tmp_path, "accounts.yaml", text))
    assert accounts["DU9"].settings.equity_reserve_percentage == float(value.strip("'"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- account_id: A\n  notification: {channel: c}\n- account_id: A\n  notification: {channel: d}\n",
            r"accounts\.yaml: account 'A': key 'account_id': duplicate account id",
        ),
        ("- account_id: A\n", r"account 'A': key 'notification\.channel': missing"),
        ("- account_id: A\n  notification: {channel: ''}\n", r"account 'A': key 'notification\.channel'"),
        (
            "- account_id: A\n  notification: {channel: c}\n  colour: blue\n",
            r"account 'A': key 'colour': unknown key",
        ),
        (
            "- account_id: A\n  notification: {channel: c}\n  rebalancing: {reserve: 2}\n",
            r"account 'A': key 'rebalancing\.reserve': unknown key",
        ),
        (
            "- account_id: A\n  notification: {channel: c}\n  rebalancing: {fractional_shares: maybe}\n",
            r"account 'A': key 'rebalancing\.fractional_shares'",
        ),
        ("- notification: {channel: c}\n", r"account '#1': key 'account_id': missing"),
        ("account_id: A\n", r"must be a list of accounts"),
        ("- [unclosed\n", r"not valid YAML"),
    ],
)
def test_invalid_accounts_file_names_file_account_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AccountsFileError, match=message):
        load_accounts(write(tmp_path, "accounts.yaml", text))


def test_fractional_shares_by_default_with_the_ibkr_broker_are_refused_naming_the_file_and_key(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, "config.yaml", "rebalancing_defaults:\n  fractional_shares: true\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, {})
    message = str(refused.value)
    assert message.startswith(f"{config}: key 'rebalancing_defaults': fractional_shares is true, but ")
    assert "processing.broker is 'ibkr'" in message
    assert "error 10243" in message
    simulated = load_settings(config, {"BROKER": "simulated"})
    assert simulated.rebalancing_defaults.fractional_shares is True


def test_an_account_trading_fractional_shares_is_refused_for_ibkr_naming_file_account_and_key(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "accounts.yaml",
        "- account_id: A\n  notification: {channel: c}\n"
        "- account_id: B\n  notification: {channel: c}\n  rebalancing: {fractional_shares: true}\n",
    )
    accounts = load_accounts(path)  # a valid file: the simulated broker trades fractions
    with pytest.raises(AccountsFileError) as refused:
        refuse_fractional_shares(accounts, path)
    message = str(refused.value)
    assert message.startswith(f"{path}: account 'B': key 'rebalancing.fractional_shares': true, but ")
    assert "Fractional-sized order cannot be placed via API" in message
    refuse_fractional_shares({"A": accounts["A"]}, path)


def test_the_readme_documents_every_environment_variable() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in [*ENV_VARIABLES, "CONFIG_FILE"] if f"`{name}`" not in readme]
    assert missing == []
