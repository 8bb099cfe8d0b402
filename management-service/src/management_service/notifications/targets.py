"""The notification targets of a deployment: config.yaml's and each account's, ready to send to.

`resolve_targets` expands each URL's `${VAR}` placeholders from the environment (a missing variable
stops the management service with an error naming it; values are percent-encoded), registers the
values, raw and encoded, as secrets (so no log line, stored error or API answer shows them), and
checks that apprise knows the URL's service. A token typed into the URL itself rather than through
`${VAR}` is masked too: every part of the URL that apprise's privacy form hides (compare
`url(privacy=False)` with `url(privacy=True)`) is registered. (What apprise does not hide, e.g. an
ntfy topic, is not treated as a secret: put secrets in `${VAR}`.)

A target's `target_id` is what the `notifications` table stores: a hash of its account (or `*` for a
global target) and of its `name`, or of its URL *before* expansion when it has no name. It is stable
across restarts, replicas and a reordering of the lists, changes when the URL does (unless named),
and never derives from a secret. The same URL twice for the same account is refused. Logs name a
target by its id and apprise's privacy form of the URL (`json://host/path`, tokens shown as `****`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import apprise

from rebalancer_shared.accounts import Account
from rebalancer_shared.config import Settings
from rebalancer_shared.errors import ConfigError
from rebalancer_shared.logging import register_secret
from rebalancer_shared.notification_targets import NotificationTarget, NotifyOn, expand_url


class NotificationTargetError(ConfigError):
    """A notification URL apprise cannot use; the message names where it is configured."""


@dataclass(frozen=True)
class Target:
    """One place to send to, and which outcomes of which events it wants."""

    target_id: str
    where: str  # e.g. "config.yaml notifications.targets[0]", "accounts.yaml DU123456 notify[1]"
    url: str  # expanded: holds secrets; only apprise sees it
    shown: str  # apprise's privacy form, safe to log
    on: frozenset[NotifyOn]
    dry_runs: bool
    account_id: str | None  # None: every account (a global target)

    def wants(self, kind: NotifyOn, account_id: str | None, live: bool) -> bool:
        """True when this target asked for `kind`, of this account, live or (if asked) a dry run."""
        if kind not in self.on:
            return False
        if self.account_id is not None and account_id != self.account_id:
            return False
        return live or self.dry_runs


_URL_PARTS = re.compile(r"[^/:@?&=]+")


def _target_id(config: NotificationTarget, account_id: str | None) -> str:
    what = f"name:{config.name}" if config.name is not None else f"url:{config.url}"
    return hashlib.sha256(f"{account_id or '*'}\n{what}".encode()).hexdigest()[:16]


def _register_hidden_parts(plugin: apprise.plugins.NotifyBase) -> None:
    """Mask what apprise's privacy form hides (tokens typed into the URL, not through `${VAR}`)."""
    full = _URL_PARTS.findall(str(plugin.url(privacy=False)))  # type: ignore[no-untyped-call]  # apprise's url() is untyped
    shown = set(_URL_PARTS.findall(str(plugin.url(privacy=True))))  # type: ignore[no-untyped-call]
    for part in full:
        if part not in shown:
            register_secret(part)
            register_secret(unquote(part))


def _resolve(
    config: NotificationTarget, where: str, account_id: str | None, environ: Mapping[str, str]
) -> Target:
    url, secrets = expand_url(config.url, environ, where)
    for value in secrets:
        register_secret(value)
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        scheme = config.url.split("://", 1)[0]
        raise NotificationTargetError(
            f"{where}: apprise cannot use this URL (scheme {scheme!r}: unknown service or a malformed URL)"
        )
    _register_hidden_parts(plugin)
    return Target(
        target_id=_target_id(config, account_id),
        where=where,
        url=url,
        shown=str(plugin.url(privacy=True)).split("?", 1)[0],  # type: ignore[no-untyped-call]  # apprise's url() is untyped
        on=frozenset(config.on),
        dry_runs=config.dry_runs,
        account_id=account_id,
    )


def _configured(
    settings: Settings, accounts: Mapping[str, Account]
) -> Iterable[tuple[NotificationTarget, str, str | None]]:
    for index, config in enumerate(settings.notifications.targets):
        yield config, f"config.yaml notifications.targets[{index}]", None
    for account in accounts.values():
        for index, config in enumerate(account.notify):
            yield config, f"accounts.yaml {account.account_id} notify[{index}]", account.account_id


def resolve_targets(
    settings: Settings, accounts: Mapping[str, Account], environ: Mapping[str, str]
) -> tuple[Target, ...]:
    """Every configured target, expanded and checked; raise a `ConfigError` naming what is wrong."""
    targets: dict[str, Target] = {}
    for config, where, account in _configured(settings, accounts):
        target = _resolve(config, where, account, environ)
        if (twin := targets.get(target.target_id)) is not None:
            raise NotificationTargetError(
                f"{where}: the same target as {twin.where} (the same URL, or name, for the same "
                "account): list it once, with every outcome it wants"
            )
        targets[target.target_id] = target
    return tuple(targets.values())
