"""Answers no route gives: a path ending in '/' (an empty `$EVENT_ID` in a URL), a method not served."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("DELETE", "/queue/events/", "DELETE /queue/events/{event_id}"),
        ("GET", "/events/", "GET /events/{event_id}"),
    ],
)
async def test_a_path_without_its_event_id_is_404_naming_the_endpoint(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str, endpoint: str
) -> None:
    response = await client.request(method, path, headers=auth)
    assert response.status_code == 404  # not 307 to the list of events
    assert "location" not in response.headers
    assert response.json()["detail"] == (
        f"the event id is missing from the path: {endpoint} (an empty variable in the URL?)"
    )


async def test_a_trailing_slash_is_not_redirected_but_named(client: httpx.AsyncClient) -> None:
    response = await client.get("/queue/status/")
    assert (response.status_code, response.json()["detail"]) == (
        404,
        "no endpoint at GET /queue/status/: drop the trailing slash (GET /queue/status)",
    )


async def test_an_unknown_path_is_a_plain_404(client: httpx.AsyncClient) -> None:
    for path in ("/nothing", "/nothing/"):
        response = await client.get(path)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


async def test_a_method_not_served_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.put("/queue/events")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")
    response = await client.patch("/queue/events/8b6f1b9e-0d7e-4c53-9a3c-3f1c2b0e6a10")
    assert (response.status_code, response.headers["allow"]) == (405, "DELETE")


def test_the_openapi_document_has_no_path_for_the_hints(app: FastAPI) -> None:
    assert not [path for path in app.openapi()["paths"] if path.endswith("/")]
