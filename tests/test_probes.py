"""Requests anyone can send that once answered 500, or answered otherwise than the README
and the OpenAPI document say: each is now a 4xx in the error shape with its own code
(or the page it asked for), and the document lists what each operation answers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from openapi_schema_validator import OAS31Validator
from yarl import URL

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.config.settings import Settings
from coordinator.config.users import Passwords, Role, add_user
from coordinator.web.openapi import document

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery"
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
DEEP = "[" * 1000 + "]" * 1000
LONG_INT = '{"id": ' + "1" * 5000 + "}"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    users = tmp_path / "users.yaml"
    add_user(users, "p3", Role.viewer, FAST.hash(PASSWORD))
    settings = Settings(store_url=f"sqlite:///{tmp_path}/p.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN, outbox_worker=False, users_file=users)
    app = create_app(settings, clock=ManualClock(T0), catalog=load_catalog(FIXTURES / "good"))
    async with TestClient(TestServer(app)) as c:
        yield c


def complaint(cid: str = "c1", **changes: Any) -> dict[str, Any]:
    return {"id": cid, "received_at": "2026-11-24T09:58:00+08:00", "channel": "hotline", "category": "outage",
            "region": "hangzhou"} | changes


async def answer(resp: Any) -> tuple[int, dict[str, Any]]:
    return resp.status, await resp.json()


def error_code(body: dict[str, Any]) -> str:
    assert set(body["error"]) == {"code", "message", "details"} and body["error"]["message"], body
    return str(body["error"]["code"])


# --- 1. JSON no parser takes: nested 1,000 deep, an integer of 5,000 digits ----------------


@pytest.mark.parametrize("body", [DEEP, LONG_INT], ids=["deep", "long-int"])
async def test_intake_refuses_json_it_cannot_read(client: TestClient, body: str) -> None:
    status, got = await answer(await client.post("/api/complaints", data=body, headers={
        **ADMIN_HEADERS, "Content-Type": "application/json"}))
    assert (status, error_code(got)) == (400, "invalid_json")


@pytest.mark.parametrize("body", [DEEP, LONG_INT], ids=["deep", "long-int"])
@pytest.mark.parametrize("path", ["/api/incidents", "/api/playbooks/outage/preview", "/api/drills/weekly/run",
                                  "/api/incidents/INC-x/notes"])
async def test_every_json_handler_refuses_json_it_cannot_read(client: TestClient, path: str, body: str) -> None:
    status, got = await answer(await client.post(path, data=body, headers={
        **ADMIN_HEADERS, "Content-Type": "application/json"}))
    assert (status, error_code(got)) == (400, "invalid_json")


async def test_an_unreadable_ndjson_line_costs_the_good_ones_nothing(client: TestClient) -> None:
    lines = [json.dumps(complaint("good-1")), DEEP, LONG_INT, json.dumps(complaint("good-2"))]
    status, got = await answer(await client.post("/api/complaints", data="\n".join(lines), headers={
        **ADMIN_HEADERS, "Content-Type": "application/x-ndjson"}))
    assert status == 200 and (got["accepted"], got["rejected"]) == (2, 2)
    assert [(e["line"], e["reason"]) for e in got["errors"]] == [
        (2, "JSON nested deeper than 32 levels"),
        (3, "not JSON this service reads: an integer of more than 4300 digits"),
    ]


@pytest.mark.parametrize(("path", "body"), [
    ("/api/incidents/{id}/notes", {"text": "\ud800"}),
    ("/api/playbooks/outage/preview", {"region": "hangzhou", "params": {"cause": "\udfff"}}),
    ("/api/incidents/{id}/scripts", {"sms": "x\ud83dy"}),
])
async def test_half_a_surrogate_pair_is_no_text(client: TestClient, path: str, body: dict[str, Any]) -> None:
    """JSON escapes let a lone surrogate through; UTF-8 cannot encode it (once a 500)."""
    status, opened = await answer(await client.post("/api/incidents", headers=ADMIN_HEADERS, json={
        "playbook": "outage", "region": "hangzhou", "params": {"cause": "光缆被挖断"}}))
    assert status == 201, opened
    status, got = await answer(await client.post(path.format(id=opened["id"]), headers=ADMIN_HEADERS, json=body))
    assert (status, error_code(got)) == (400, "invalid_json")
    paired = await client.post("/api/playbooks/outage/preview", headers=ADMIN_HEADERS, json={
        "region": "hangzhou", "params": {"cause": "\ud83d\ude00"}})  # a pair is a character: 😀
    assert paired.status == 200 and "😀" in (await paired.json())["sms"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/drills/a%0Ab/run"), ("GET", "/api/drills/a%0D%0Ab/reports"),
    ("GET", "/api/incidents/a%0Ab"), ("POST", "/api/playbooks/a%0Ab/preview"),
])
async def test_an_id_with_a_newline_is_a_404(client: TestClient, method: str, path: str) -> None:
    """A refusal quoting the id kept it out of the status line (aiohttp raises on a
    newline in a reason: the drills' 404 once answered 500; found by the fuzzer)."""
    resp = await client.request(method, URL(path, encoded=True), headers=ADMIN_HEADERS, json={"region": "hangzhou"})
    status, got = await answer(resp)
    assert (status, error_code(got)) == (404, "not_found")


# --- 2. console pages asked for without Accept: text/html ----------------------------------


async def sign_in(client: TestClient) -> dict[str, str]:
    page = await (await client.get("/login", headers={"Accept": "text/html"})).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    resp = await client.post("/login", data={"name": "p3", "password": PASSWORD, "csrf_token": csrf.group(1),
                                              "next": "/"}, allow_redirects=False)
    assert resp.status == 303
    return {}  # the session cookie is the client's now


@pytest.mark.parametrize("who", ["admin-token", "signed-in"])
@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
async def test_console_pages_render_whatever_the_accept(client: TestClient, who: str, accept: str | None) -> None:
    status, opened = await answer(await client.post("/api/incidents", headers=ADMIN_HEADERS, json={
        "playbook": "outage", "region": "hangzhou", "params": {"cause": "光缆被挖断"}}))
    assert status == 201, opened
    headers = dict(ADMIN_HEADERS) if who == "admin-token" else await sign_in(client)
    if accept is not None:
        headers["Accept"] = accept
    for path in ("/", f"/incidents/{opened['id']}", "/trigger", "/drills", "/stats"):
        resp = await client.get(path, headers=headers, allow_redirects=False)
        assert resp.status == 200 and resp.content_type == "text/html", (path, resp.status, await resp.text())
        assert "<nav class=\"top\">" in await resp.text(), path
    missing = await client.get("/incidents/INC-nope", headers=headers)
    assert missing.status == 404 and missing.content_type == "text/html"


# --- 3. statistics for days Python's datetime arithmetic cannot reach ------------------------


@pytest.mark.parametrize("path", ["/api/stats", "/stats", "/stats.csv"])
@pytest.mark.parametrize(("query", "parameter"), [
    ("from=9999-01-01&to=9999-12-31", "from"),
    ("from=0001-01-01&to=0001-01-31", "from"),
    ("from=0001-01-01&to=0001-01-01", "from"),
    ("from=2026-01-01&to=9999-12-31", "to"),
    ("to=0001-01-01", "to"),
])
async def test_statistics_refuse_days_out_of_range(client: TestClient, path: str, query: str, parameter: str) -> None:
    status, got = await answer(await client.get(f"{path}?{query}", headers=ADMIN_HEADERS))
    assert (status, error_code(got)) == (400, "invalid_period")
    assert got["error"]["message"].startswith(f"'{parameter}' is out of the supported range")
    assert got["error"]["details"][0]["parameter"] == parameter


@pytest.mark.parametrize("query", ["from=9998-01-01&to=9998-12-31&by=month", "from=1970-01-01&to=1970-01-01"])
async def test_statistics_at_the_ends_of_the_range(client: TestClient, query: str) -> None:
    for path in ("/api/stats", "/stats", "/stats.csv"):
        assert (await client.get(f"{path}?{query}", headers=ADMIN_HEADERS)).status == 200, path


# --- 4. what the README and the document say -------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"  \r\n\t "], ids=["empty", "whitespace"])
@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
async def test_an_empty_intake_body_is_empty_body(client: TestClient, body: bytes, content_type: str) -> None:
    status, got = await answer(await client.post("/api/complaints", data=body, headers={
        **ADMIN_HEADERS, "Content-Type": content_type}))
    assert (status, error_code(got)) == (400, "empty_body")


@pytest.mark.parametrize("received_at", [1795500000, 1795500000.5, "1795500000", "1795500000000", True])
async def test_received_at_as_unix_time_is_refused(client: TestClient, received_at: Any) -> None:
    good = complaint("good", received_at=(T0 - timedelta(minutes=1)).isoformat())
    status, got = await answer(await client.post("/api/complaints", headers=ADMIN_HEADERS, json=[
        good, complaint("epoch", received_at=received_at)]))
    assert status == 200 and (got["accepted"], got["rejected"]) == (1, 1)
    [refused] = got["errors"]
    assert (refused["line"], refused["id"], refused["field"]) == (2, "epoch", "received_at")
    assert refused["reason"].startswith("received_at must be an ISO-8601 time with a UTC offset")
    alone = await client.post("/api/complaints", headers=ADMIN_HEADERS, json=complaint("x", received_at=received_at))
    assert (alone.status, error_code(await alone.json())) == (400, "invalid_complaints")


def test_the_document_says_received_at_is_iso_text() -> None:
    received_at = document()["components"]["schemas"]["Complaint"]["properties"]["received_at"]
    assert received_at["type"] == "string" and received_at["format"] == "date-time"
    assert "Unix time" in received_at["description"]


async def test_a_trigger_in_an_unknown_region_is_a_documented_409(client: TestClient) -> None:
    resp = await client.post("/api/incidents", headers=ADMIN_HEADERS, json={
        "playbook": "outage", "region": "nowhere", "params": {"cause": "光缆被挖断"}})
    status, got = await answer(resp)
    assert (status, error_code(got)) == (409, "invalid_action")
    documented = document()["paths"]["/api/incidents"]["post"]["responses"]
    assert documented["409"] == {"$ref": "#/components/responses/Conflict"}
    schema = document()["components"]["responses"]["Conflict"]["content"]["application/json"]["schema"]
    OAS31Validator({"components": document()["components"], **schema}).validate(got)


def test_the_document_lists_what_every_operation_can_answer() -> None:
    """What the middleware answers for any operation of a kind, besides each handler's own."""
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if "x-required-role" in operation:
                assert {"401", "403"} <= statuses, where
            if "requestBody" in operation:
                assert {"400", "408", "413"} <= statuses, where  # unreadable, too slow, too large
            if any(p["in"] == "query" for p in operation.get("parameters", [])):
                assert "400" in statuses, where
            if path != "/api/openapi.json":
                assert "503" in statuses, where  # the store is unavailable
