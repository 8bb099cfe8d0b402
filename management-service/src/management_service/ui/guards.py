"""Who may see and do what in the console, as route dependencies.

- Pages and their live parts: public, like the API's reads, unless `PROTECT_READS=true`; then a page
  without sign-in leads to the sign-in form and a live part answers 401.
- Every POST: its CSRF token first (403 without it or with another session's), then, for the
  actions, sign-in (401). Nothing is read or changed before both pass.
- Redis unreachable: no session can be checked, so nobody is signed in. Actions are refused (503,
  saying so), protected pages too (503: fail closed); public pages render as read-only.

A refusal is a `ConsoleRefusal`, rendered by `rendering.render_refusal` as a message in a page (or
in the fragment a script asked for), never as a JSON error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, status
from starlette.datastructures import FormData

from management_service.api.deps import SettingsDep
from management_service.ui.session import ConsoleSession, console_session

SIGN_IN_PATH = "/ui/signin"


class ConsoleRefusal(Exception):
    """A console request that is refused: its status, what to tell the operator, where to send them."""

    def __init__(self, status_code: int, message: str, redirect_to: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.redirect_to = redirect_to


SessionDep = Annotated[ConsoleSession, Depends(console_session)]


def _unverified(session: ConsoleSession, what: str) -> ConsoleRefusal:
    return ConsoleRefusal(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"Redis is unavailable, so the console cannot check your session: {what} "
        f"({session.unverified}); try again when Redis is back",
    )


def page_reader(session: SessionDep, settings: SettingsDep) -> ConsoleSession:
    """A page: anyone, unless reads are protected (then sign-in first)."""
    if settings.management.protect_reads and session.unverified:
        raise _unverified(session, "reads are protected, so pages are refused")
    if settings.management.protect_reads and not session.signed_in:
        raise ConsoleRefusal(
            status.HTTP_401_UNAUTHORIZED, "sign in to see the console (reads are protected)", SIGN_IN_PATH
        )
    return session


def part_reader(session: SessionDep, settings: SettingsDep) -> ConsoleSession:
    """A page's live part: like the page, but a refusal is a 401 (the script shows it), not a redirect."""
    if settings.management.protect_reads and session.unverified:
        raise _unverified(session, "reads are protected, so pages are refused")
    if settings.management.protect_reads and not session.signed_in:
        raise ConsoleRefusal(status.HTTP_401_UNAUTHORIZED, "signed out: sign in again to see the console")
    return session


@dataclass(frozen=True)
class CheckedForm:
    """A POSTed form whose CSRF token matched, and the session it came with."""

    fields: FormData
    session: ConsoleSession

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        return value.strip() if isinstance(value, str) else ""


async def checked_form(request: Request, session: SessionDep) -> CheckedForm:
    """The form of a POST, refused with 403 unless it carries this session's CSRF token."""
    fields = await request.form()
    token = fields.get("csrf_token")
    if not session.csrf_matches(token if isinstance(token, str) else None):
        raise ConsoleRefusal(
            status.HTTP_403_FORBIDDEN,
            "the form is out of date or did not come from this console (CSRF token missing or wrong): "
            "nothing was done; reload the page and try again",
        )
    return CheckedForm(fields, session)


CheckedFormDep = Annotated[CheckedForm, Depends(checked_form)]


async def operator_form(form: CheckedFormDep) -> CheckedForm:
    """An action's form: CSRF checked, and signed in with the API key."""
    if form.session.unverified:
        raise _unverified(form.session, "actions are refused (nothing was done)")
    if not form.session.signed_in:
        raise ConsoleRefusal(
            status.HTTP_401_UNAUTHORIZED, "actions need the API key: sign in first (nothing was done)"
        )
    return form


OperatorFormDep = Annotated[CheckedForm, Depends(operator_form)]
PageReaderDep = Annotated[ConsoleSession, Depends(page_reader)]
PartReaderDep = Annotated[ConsoleSession, Depends(part_reader)]
