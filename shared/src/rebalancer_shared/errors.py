"""The error classes every service shares; each package adds its own below these."""


class RebalancerError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigError(RebalancerError):
    """A configuration file or environment variable cannot be used; the message says which and why."""


class ServerUnavailableError(RebalancerError):
    """A server the product needs (Redis, PostgreSQL, Ably, the allocation API) cannot be used now;
    transient (`rebalancer_shared.transient`), so worth trying again later. The message names it
    (its URL without the password), says why, and what to do."""


class ServerRefusedError(ServerUnavailableError):
    """The server answers but refuses us (credentials, permissions): waiting will not help."""


class SchemaError(RebalancerError):
    """The history database's schema is not the one this release needs and cannot be made so here."""
