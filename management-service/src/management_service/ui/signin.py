"""Sign-in with the API key and sign-out (the session's rules: `ui.session`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from management_service.api.deps import SettingsDep
from management_service.auth import KeyCheck, check_api_key
from management_service.ui.guards import CheckedFormDep
from management_service.ui.rendering import render
from management_service.ui.session import sign_in, sign_out

router = APIRouter(prefix="/ui", include_in_schema=False)
_FAILED = {
    KeyCheck.NOT_CONFIGURED: (
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "MANAGEMENT_API_KEY is not configured: nobody can sign in until it is set",
    ),
    KeyCheck.MISSING: (status.HTTP_401_UNAUTHORIZED, "type the API key"),
    KeyCheck.WRONG: (status.HTTP_401_UNAUTHORIZED, "that is not the API key"),
}


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request) -> HTMLResponse:
    return render(request, "signin.html")


@router.post("/signin")
async def signin(request: Request, form: CheckedFormDep, settings: SettingsDep) -> Response:
    """Compare the key (constant time); on success a new session, then the overview."""
    outcome = check_api_key(settings.management.api_key, form.text("api_key") or None)
    if outcome is KeyCheck.GRANTED:
        sign_in(request)
        return RedirectResponse("/ui", status_code=status.HTTP_303_SEE_OTHER)
    code, message = _FAILED[outcome]
    return render(request, "signin.html", {"error": message}, status_code=code)


@router.post("/signout")
async def signout(request: Request, _: CheckedFormDep) -> Response:
    sign_out(request)
    return RedirectResponse("/ui/signin", status_code=status.HTTP_303_SEE_OTHER)
