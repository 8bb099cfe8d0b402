"""The API key: mutating endpoints need it, reads only with PROTECT_READS, and it never leaks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from management_service.main import create_app
from management_service.services import Services
from rebalancer_shared.config import Settings
from tests.integration.management.helpers import ACCOUNT_A, API_KEY, make_settings, set_api_key

BODY = {"account_id": ACCOUNT_A, "exec_command": "print-rebalance"}
# Ids no test ever creates (fixed: parallel test workers must collect the same parameters).
UNKNOWN = uuid.UUID("00000000-0000-4000-8000-00000000a11e")
MUTATIONS = [
    ("POST", "/queue/events"),
    ("DELETE", f"/queue/events/{UNKNOWN}"),
    ("POST", f"/queue/events/{UNKNOWN}/retry"),
]
READS = ["/queue/status", "/queue/events", f"/events/{UNKNOWN}", "/accounts", "/metrics"]
WRONG_CREDENTIALS: dict[str, dict[str, str] | dict[bytes, bytes]] = {
    "no header": {},
    "wrong scheme": {"Authorization": f"Basic {API_KEY}"},
    "token scheme": {"Authorization": f"Token {API_KEY}"},
    "wrong key": {"Authorization": "Bearer not-the-key"},
    "key prefix": {"Authorization": f"Bearer {API_KEY[:-1]}"},
    "empty bearer": {"Authorization": "Bearer "},
    "non-ascii key": {b"Authorization": "Bearer clé".encode()},
}


async def _send(
    client: httpx.AsyncClient, method: str, path: str, headers: Mapping[str, str] | Mapping[bytes, bytes]
) -> httpx.Response:
    body = BODY if method == "POST" else None
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), MUTATIONS)
@pytest.mark.parametrize("case", list(WRONG_CREDENTIALS))
async def test_mutations_without_the_right_key_are_401(
    client: httpx.AsyncClient, method: str, path: str, case: str
) -> None:
    response = await _send(client, method, path, WRONG_CREDENTIALS[case])
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert API_KEY not in response.text
    assert API_KEY[:-1] not in response.text


@pytest.mark.parametrize(
    ("method", "path", "expected"), [(*MUTATIONS[0], 201), (*MUTATIONS[1], 404), (*MUTATIONS[2], 404)]
)
async def test_mutations_with_the_right_key_pass(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str, expected: int
) -> None:
    assert (await _send(client, method, path, auth)).status_code == expected


@pytest.mark.parametrize(("method", "path"), MUTATIONS)
async def test_mutations_fail_closed_when_no_key_is_configured(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, auth: dict[str, str], method: str, path: str
) -> None:
    set_api_key(app, settings, None)
    response = await _send(client, method, path, auth)
    assert response.status_code == 503
    assert "MANAGEMENT_API_KEY is not configured" in response.json()["detail"]


async def test_the_key_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/queue/events", json={"account_id": "nobody"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", [*READS, "/health"])
async def test_reads_are_public_by_default(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code in (200, 404, 503)
    assert (await client.get(path)).status_code != 401


@pytest.fixture
def protected_client(
    tmp_path: Path, prefix: str, fresh_database_url: str, accounts_file: Path, services: Services
) -> httpx.AsyncClient:
    settings = make_settings(
        tmp_path,
        prefix=prefix,
        database_url=fresh_database_url,
        accounts_file=accounts_file,
        PROTECT_READS="true",
    )
    app = create_app(settings, services=services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m")


@pytest.mark.parametrize("path", READS)
async def test_protect_reads_requires_the_key_for_every_read(
    protected_client: httpx.AsyncClient, auth: dict[str, str], path: str
) -> None:
    async with protected_client as http:
        refused = await http.get(path)
        allowed = await http.get(path, headers=auth)
    assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
    assert allowed.status_code in (200, 404)


async def test_protect_reads_leaves_health_public(protected_client: httpx.AsyncClient) -> None:
    async with protected_client as http:
        assert (await http.get("/health")).status_code != 401


def test_openapi_declares_the_bearer_scheme_on_mutations_only(app: FastAPI) -> None:
    document = app.openapi()
    assert document["components"]["securitySchemes"]["ManagementApiKey"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/queue/events"]["post"]["security"] == [{"ManagementApiKey": []}]
    assert paths["/queue/events/{event_id}"]["delete"]["security"] == [{"ManagementApiKey": []}]
    assert "security" not in paths["/queue/events"]["get"]
