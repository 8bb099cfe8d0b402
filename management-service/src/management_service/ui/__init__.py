"""The web console at `/ui`: server-rendered pages over the same services as the API, sign-in with the
API key into a session cookie, and a few lines of script for the live refresh (see `static/console.js`).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from management_service.ui import actions, history, pages, signin
from management_service.ui.errors import route_errors_to_console
from management_service.ui.guards import ConsoleRefusal
from management_service.ui.rendering import HERE, render_refusal
from management_service.ui.session import add_session_middleware
from rebalancer_shared.config import Settings


def mount_console(app: FastAPI, settings: Settings) -> None:
    """Add the console's routes, its static files, its session middleware and its error pages (after
    the API's error handlers: the console's wrap them)."""
    add_session_middleware(app, settings)
    app.add_exception_handler(ConsoleRefusal, render_refusal)
    route_errors_to_console(app)
    for router in (pages.router, history.router, actions.router, signin.router):
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="console-static")
