"""The one configuration loader: config.yaml for structure, environment variables on top (env wins).

`Settings` is a pydantic-settings class whose sources are, in order of precedence, the environment
(read through the flat table below, since deployments use names like `IB_HOST` rather than nested
`IBKR__HOST`) and then the values of config.yaml.

Each environment variable a service reads is listed in `ENV_VARIABLES` with the config path it
overrides, so the table is the single place that names them: the README's reference, `.env.example`
and the docker-compose check are all held against it. Secrets (`SecretStr`) never print.

A `.env` file in the working directory is read too (outside Docker Compose as inside it): its
variables count as if they were set in the environment, and a variable really set in the environment
wins over the file's. An error names where the bad value came from (the variable, `.env`, or the file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rebalancer_shared.accounts import FRACTIONAL_VIA_IBKR, RebalancingSettings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.notification_targets import NotificationSettings
from rebalancer_shared.redis_urls import Topology, parse_redis_url
from rebalancer_shared.urls import DATABASE_SCHEMES, url_scheme_problem
from rebalancer_shared.yaml_text import describe_yaml_error

DEFAULT_CONFIG_FILE = "config.yaml"
DEFAULT_ACCOUNTS_FILE = "accounts.yaml"
DOTENV_FILE = ".env"
# How far target weights may sum from 1: the default of `allocations.sum_tolerance`, and the
# tolerance `rebalancer plan` applies (event_processor.allocations.weights), so both agree.
DEFAULT_SUM_TOLERANCE = 0.01


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSettings(_Section):
    """Where Redis is (one node, Sentinel or Cluster: rebalancer_shared.redis_urls) and when a write
    counts as durable: with `wait_replicas` > 0 every queue write is acknowledged only once that many
    replicas have it (Redis WAIT, up to `wait_timeout_seconds`); unset, 1 under Sentinel, else 0."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "rebalancer"
    wait_replicas: int | None = Field(default=None, ge=0, le=16)
    wait_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_redis_url(value)  # RedisUrlError (a ValueError) names the problem
        return value

    @model_validator(mode="after")
    def _no_wait_on_a_cluster(self) -> RedisSettings:
        if self.wait_replicas and parse_redis_url(self.url).topology is Topology.CLUSTER:
            raise ValueError(
                "wait_replicas (REDIS_WAIT_REPLICAS) cannot be used with a redis+cluster:// URL yet:"
                " set it to 0"
            )
        return self

    def replicas_to_wait_for(self) -> int:
        """How many replicas a queue write must reach before it is acknowledged."""
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 1 if parse_redis_url(self.url).topology is Topology.SENTINEL else 0


class DatabaseSettings(_Section):
    """The history database. Its schema is migrated at each service's start unless `migrate_on_start`
    is off (then a database behind the code's schema stops the service with the command to run)."""

    url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/rebalancer"
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        problem = url_scheme_problem(
            value, DATABASE_SCHEMES, "postgresql://USER[:PASSWORD]@HOST:5432/DATABASE"
        )
        if problem:
            raise ValueError(problem)
        return value


class StartupSettings(_Section):
    # How long a service waits for Redis and PostgreSQL at start before it exits (0: no waiting).
    wait_seconds: float = Field(default=60.0, ge=0)


class AllocationSettings(_Section):
    base_url: str = "http://127.0.0.1:8080/api/v1"
    api_key: SecretStr | None = None
    api_key_header: str = "x-api-key"
    timeout_seconds: float = Field(default=10.0, gt=0)
    attempts: int = Field(default=3, ge=1)
    retry_delay_seconds: float = Field(default=1.0, ge=0)
    sum_tolerance: float = Field(default=DEFAULT_SUM_TOLERANCE, ge=0, le=0.5)


class IbkrSettings(_Section):
    """Connection to IB Gateway / TWS. `port` None means the trading mode's default port."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    client_id: int | None = Field(default=None, ge=0)
    client_id_min: int = Field(default=100, ge=1)
    client_id_max: int = Field(default=999, ge=1)
    # Mutating runs of an account trade as client `trading_client_id_base` + a number from its id.
    trading_client_id_base: int = Field(default=1_000_000, ge=1000, le=2_000_000_000)
    trading_mode: Literal["paper", "live"] = "paper"
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    connect_attempts: int = Field(default=3, ge=1)
    connect_retry_delay_seconds: float = Field(default=1.0, ge=0)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    market_data_timeout_seconds: float = Field(default=5.0, gt=0)
    # Every price field (last, bid/ask, close; live, frozen or delayed) older than this is not used.
    max_price_age_seconds: float = Field(default=900.0, gt=0)
    # A bid/ask wider than this % of its midpoint gives no midpoint price and no limit price.
    max_spread_pct: float = Field(default=5.0, gt=0, le=100)
    # Snapshots at once: the login has 100 lines by default, shared with TWS; keep some for it.
    market_data_lines: int = Field(default=90, ge=1, le=10_000)
    # API connections this process opens at most: the reads connection and one per running mutating
    # run. IB Gateway serves 32 API clients in all; each process (and TWS's other programs) takes a share.
    max_connections: int = Field(default=16, ge=2, le=32)
    # IB shows a fill in the positions this long after its execution at most (ib_async #15). A live
    # run reads the positions only once the account's newest execution is this old (plus a second:
    # execution times are whole seconds), so a fill of an earlier run is never sold or bought again.
    position_lag_seconds: float = Field(default=1.0, ge=0, le=60)
    username: SecretStr | None = None
    password: SecretStr | None = None

    def effective_port(self) -> int:
        """The configured port, else the IB Gateway container's port for the trading mode."""
        if self.port is not None:
            return self.port
        return 4004 if self.trading_mode == "paper" else 4003


class OrderSettings(_Section):
    order_type: Literal["MKT", "LMT"] = "MKT"
    time_in_force: Literal["DAY", "GTC"] = "DAY"
    extended_hours_enabled: bool = False
    limit_slippage_bps: float = Field(default=10.0, ge=0, le=1000)


class ProcessingSettings(_Section):
    broker: Literal["ibkr", "simulated"] = "ibkr"
    max_concurrent_events: int = Field(default=8, ge=1, le=1024)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    retry_delay_seconds: float = Field(default=30.0, ge=0)
    reap_interval_seconds: float = Field(default=5.0, gt=0)
    # How often Redis is checked against PostgreSQL (events Redis lost are restored; see recovery.py).
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    # An idle worker slot wakes on a nudge (an event became claimable) or at the earliest due time of
    # a waiting event; it asks Redis at least this often anyway: the fallback for a lost nudge.
    claim_poll_seconds: float = Field(default=5.0, gt=0)
    # False: no wake-up subscription (a Redis front-end without pub/sub): idle slots then find new
    # events only by polling every claim_poll_seconds, so set that low (0.05) too.
    claim_wakeup: bool = True
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    cancel_timeout_seconds: float = Field(default=60.0, gt=0)
    fill_timeout_seconds: float = Field(default=300.0, gt=0)
    # How long a live run waits for IB's positions to show its fills (they lag the cash).
    position_settle_timeout_seconds: float = Field(default=5.0, gt=0)
    # BROKER=simulated only: a JSON file with the simulated accounts (see event_processor.brokers).
    simulated_broker_file: Path | None = None
    # When a live rebalance may run (event_processor.retry_policy): "nyse" = the NYSE calendar's
    # sessions (holidays, half days) from `market_open_delay_seconds` after the open to
    # `market_close_buffer_seconds` before the close; "always_open" = any time (the simulated broker's
    # demo; with a real gateway IB's own hours still stop market orders outside the session).
    market_calendar: Literal["nyse", "always_open"] = "nyse"
    market_open_delay_seconds: float = Field(default=300.0, ge=0, le=3 * 3600)
    market_close_buffer_seconds: float = Field(default=1200.0, ge=0, le=3 * 3600)


class AblySettings(_Section):
    api_key: SecretStr | None = None
    endpoint: str | None = None
    tls: bool = True
    catch_up_seconds: float = Field(default=120.0, ge=0)


class ManagementSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: SecretStr | None = None
    enforce_live_guard: bool = True
    protect_reads: bool = False
    # The web console's session cookie is sent over HTTPS only (set behind a TLS proxy).
    console_https_only: bool = False
    # A heartbeat older than this is stale (unset: 3 x processing.heartbeat_seconds).
    heartbeat_stale_seconds: float | None = Field(default=None, gt=0)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """Everything a service may read. Sections mirror the top-level keys of config.yaml."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    accounts_file: Path = Path(DEFAULT_ACCOUNTS_FILE)
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    allocations: AllocationSettings = AllocationSettings()
    ibkr: IbkrSettings = IbkrSettings()
    orders: OrderSettings = OrderSettings()
    processing: ProcessingSettings = ProcessingSettings()
    rebalancing_defaults: RebalancingSettings = RebalancingSettings()
    ably: AblySettings = AblySettings()
    management: ManagementSettings = ManagementSettings()
    logging: LoggingSettings = LoggingSettings()
    startup: StartupSettings = StartupSettings()
    notifications: NotificationSettings = NotificationSettings()

    @field_validator("rebalancing_defaults")
    @classmethod
    def _fractional_needs_a_broker_that_trades_fractions(
        cls, value: RebalancingSettings, info: ValidationInfo
    ) -> RebalancingSettings:
        processing = info.data.get("processing")
        broker = processing.broker if isinstance(processing, ProcessingSettings) else None
        if value.fractional_shares and broker == "ibkr":
            raise ValueError(f"fractional_shares is true, but {FRACTIONAL_VIA_IBKR}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first (it wins), then the file's values passed in by `load_settings`."""
        return (FlatEnvironmentSource(settings_cls), init_settings)


# Environment variable -> config path it overrides. Several names may feed one path (the first set
# one wins, in table order): the product brief's ZEHNLABS_FINTECH_API_KEY is accepted as an alias.
ENV_VARIABLES: dict[str, tuple[str, ...]] = {
    "ACCOUNTS_FILE": ("accounts_file",),
    "REDIS_URL": ("redis", "url"),
    "REDIS_KEY_PREFIX": ("redis", "key_prefix"),
    "REDIS_WAIT_REPLICAS": ("redis", "wait_replicas"),
    "REDIS_WAIT_TIMEOUT_SECONDS": ("redis", "wait_timeout_seconds"),
    "DATABASE_URL": ("database", "url"),
    "DATABASE_MIGRATE_ON_START": ("database", "migrate_on_start"),
    "STARTUP_WAIT_SECONDS": ("startup", "wait_seconds"),
    "ALLOCATIONS_BASE_URL": ("allocations", "base_url"),
    "ALLOCATIONS_API_KEY": ("allocations", "api_key"),
    "ZEHNLABS_FINTECH_API_KEY": ("allocations", "api_key"),
    "ALLOCATIONS_API_KEY_HEADER": ("allocations", "api_key_header"),
    "IB_HOST": ("ibkr", "host"),
    "IB_PORT": ("ibkr", "port"),
    "IB_CLIENT_ID": ("ibkr", "client_id"),
    "IB_MARKET_DATA_LINES": ("ibkr", "market_data_lines"),
    "IB_MAX_CONNECTIONS": ("ibkr", "max_connections"),
    "TRADING_MODE": ("ibkr", "trading_mode"),
    "IB_USERNAME": ("ibkr", "username"),
    "IB_PASSWORD": ("ibkr", "password"),
    "ORDER_TYPE": ("orders", "order_type"),
    "TIME_IN_FORCE": ("orders", "time_in_force"),
    "EXTENDED_HOURS_ENABLED": ("orders", "extended_hours_enabled"),
    "LIMIT_SLIPPAGE_BPS": ("orders", "limit_slippage_bps"),
    "BROKER": ("processing", "broker"),
    "MAX_CONCURRENT_EVENTS": ("processing", "max_concurrent_events"),
    "RETRY_DELAY_SECONDS": ("processing", "retry_delay_seconds"),
    "LEASE_SECONDS": ("processing", "lease_seconds"),
    "HEARTBEAT_SECONDS": ("processing", "heartbeat_seconds"),
    "SHUTDOWN_GRACE_SECONDS": ("processing", "shutdown_grace_seconds"),
    "RECONCILE_INTERVAL_SECONDS": ("processing", "reconcile_interval_seconds"),
    "CANCEL_TIMEOUT_SECONDS": ("processing", "cancel_timeout_seconds"),
    "FILL_TIMEOUT_SECONDS": ("processing", "fill_timeout_seconds"),
    "POSITION_SETTLE_TIMEOUT_SECONDS": ("processing", "position_settle_timeout_seconds"),
    "SIMULATED_BROKER_FILE": ("processing", "simulated_broker_file"),
    "MARKET_CALENDAR": ("processing", "market_calendar"),
    "MARKET_OPEN_DELAY_SECONDS": ("processing", "market_open_delay_seconds"),
    "MARKET_CLOSE_BUFFER_SECONDS": ("processing", "market_close_buffer_seconds"),
    "ABLY_API_KEY": ("ably", "api_key"),
    "ABLY_ENDPOINT": ("ably", "endpoint"),
    "ABLY_TLS": ("ably", "tls"),
    "ABLY_CATCH_UP_SECONDS": ("ably", "catch_up_seconds"),
    "MANAGEMENT_HOST": ("management", "host"),
    "MANAGEMENT_PORT": ("management", "port"),
    "MANAGEMENT_API_KEY": ("management", "api_key"),
    "ENFORCE_LIVE_GUARD": ("management", "enforce_live_guard"),
    "PROTECT_READS": ("management", "protect_reads"),
    "CONSOLE_HTTPS_ONLY": ("management", "console_https_only"),
    "HEARTBEAT_STALE_SECONDS": ("management", "heartbeat_stale_seconds"),
    "NOTIFY_UNHEALTHY_AFTER_SECONDS": ("notifications", "unhealthy_after_seconds"),
    "LOG_LEVEL": ("logging", "level"),
    "LOG_FORMAT": ("logging", "format"),
}
# Read by load_settings itself, before the file is opened.
CONFIG_FILE_VARIABLE = "CONFIG_FILE"

_environment: ContextVar[Mapping[str, str] | None] = ContextVar("rebalancer_environment", default=None)


def _set_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """Config path (dotted) -> the variable that sets it; the first set name in table order wins."""
    chosen: dict[str, str] = {}
    for name, path in ENV_VARIABLES.items():
        dotted = ".".join(path)
        if environ.get(name) and dotted not in chosen:
            chosen[dotted] = name
    return chosen


class FlatEnvironmentSource(PydanticBaseSettingsSource):
    """Reads the variables of `ENV_VARIABLES` into the nested shape of `Settings`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # values are produced whole by __call__

    def __call__(self) -> dict[str, Any]:
        environ = _environment.get()
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for dotted, name in _set_variables(env).items():
            *sections, key = dotted.split(".")
            target = data
            for section in sections:
                target = target.setdefault(section, {})
            target[key] = env[name]
        return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {describe_yaml_error(exc)}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections")
    return raw


def _describe(
    exc: ValidationError, path: Path | None, sources: Mapping[str, str], from_dotenv: set[str]
) -> str:
    first = exc.errors()[0]
    dotted = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if dotted in sources:
        name = sources[dotted]
        where = f"{DOTENV_FILE}: variable {name}" if name in from_dotenv else f"environment variable {name}"
    else:
        where = f"{path or 'defaults'}"
    return f"{where}: key {dotted!r}: {message}"


def _with_dotenv(environ: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """The environment over ./.env's variables (the environment wins); which names came from the file."""
    path = Path(DOTENV_FILE)
    if not path.is_file():
        return dict(environ), set()
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    from_file = {k: v for k, v in values.items() if v is not None and k not in environ}
    return {**from_file, **environ}, set(from_file)


def environment() -> dict[str, str]:
    """The process environment over `./.env`'s variables (the environment wins), as the settings see it:
    where `${NAME}` placeholders (notification URLs) are looked up."""
    return _with_dotenv(os.environ)[0]


def load_settings(config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load config.yaml (CONFIG_FILE, else ./config.yaml when it exists), then apply the environment.

    Without an explicit `environ`, the process environment is read over `./.env` (the environment wins).
    """
    from_dotenv: set[str] = set()
    if environ is None:
        env, from_dotenv = _with_dotenv(os.environ)
    else:
        env = dict(environ)
    path = config_file
    if path is None and env.get(CONFIG_FILE_VARIABLE):
        path = Path(env[CONFIG_FILE_VARIABLE])
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = Path(DEFAULT_CONFIG_FILE)
    data = _read_yaml(path) if path is not None else {}
    token = _environment.set(env)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, _set_variables(env), from_dotenv)) from exc
    finally:
        _environment.reset(token)
