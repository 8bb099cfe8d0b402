"""The error classes every service shares; each package adds its own below these."""


class RebalancerError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigError(RebalancerError):
    """A configuration file or environment variable cannot be used; the message says which and why."""
