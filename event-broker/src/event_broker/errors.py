"""The event broker's errors: each names the condition and what an operator can do about it."""

from __future__ import annotations

from rebalancer_shared.errors import RebalancerError, ServerRefusedError


class EventBrokerError(RebalancerError):
    """Base of the errors the event broker raises on purpose."""


class AblyConnectionFailedError(EventBrokerError, ServerRefusedError):
    """The Ably connection failed for good (FAILED state): a rejected key, or another fatal error.

    The SDK does not reconnect from FAILED, so the event broker stops with a non-zero exit code; a restart
    catches up on what was published meanwhile through channel rewind.
    """

    def __init__(self, code: int | None, status_code: int | None, reason: str) -> None:
        self.code = code
        self.status_code = status_code
        self.reason = reason
        super().__init__(self._describe())

    @property
    def key_rejected(self) -> bool:
        """True when Ably refused the credentials (401xx)."""
        return self.code is not None and 40100 <= self.code < 40200

    def _describe(self) -> str:
        if self.key_rejected:
            return (
                f"Ably rejected the API key (code {self.code}: {self.reason}); "
                "check ABLY_API_KEY (format appId.keyId:secret) and the key's capabilities"
            )
        return f"the Ably connection failed (code {self.code}: {self.reason})"
