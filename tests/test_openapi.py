"""The OpenAPI document is valid, names every API route with its method and role, and
real answers match the schemas it gives for them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.config.settings import Settings
from coordinator.web.auth import access_of
from coordinator.web.openapi import document

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
# What the document covers: the JSON API, health, and the signed webhooks and ack links
# (pages and static files are not part of the API).
API_PREFIXES = ("/api/", "/hooks/", "/ack/")
API_PATHS = ("/healthz", "/livez", "/readyz", "/metrics")


def api_routes() -> list[tuple[str, str, Any]]:
    app = create_app(Settings())
    return [
        (route.method, route.resource.canonical, route.handler)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
        and not isinstance(route.resource, web.StaticResource)
        and (route.resource.canonical.startswith(API_PREFIXES) or route.resource.canonical in API_PATHS)
    ]


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # the whole document against the OpenAPI 3.1 specification
    for name, schema in doc["components"]["schemas"].items():
        OAS31Validator.check_schema(schema)  # raises SchemaError naming what is wrong
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "cookie"}


def test_every_route_is_documented_with_its_method_and_role() -> None:
    paths = document()["paths"]
    missing = [f"{m} {p}" for m, p, _ in api_routes() if m.lower() not in paths.get(p, {})]
    assert missing == [], "document these in coordinator/web/openapi.py"
    routed = {(m.lower(), p) for m, p, _ in api_routes()}
    stale = [f"{m.upper()} {p}" for p, ops in paths.items() for m in ops if (m, p) not in routed]
    assert stale == [], "documented but not routed"
    for method, path, handler in api_routes():
        access = access_of(handler)
        assert access is not None, path
        operation = paths[path][method.lower()]
        if access.kind == "role":
            assert access.role is not None
            assert operation.get("x-required-role") == access.role.value, (method, path)
            assert operation["security"] and {"401", "403"} <= set(operation["responses"]), (method, path)
        else:
            assert operation["security"] == [], (method, path)


def schema_validator(schema: dict[str, Any]) -> OAS31Validator:
    return OAS31Validator({"components": document()["components"], **schema})


def answer_schema(path: str, method: str, status: int, content: str = "application/json") -> dict[str, Any]:
    responses = document()["paths"][path][method]["responses"]
    response = responses[str(status)]
    if "$ref" in response:
        response = document()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"][content]["schema"]  # type: ignore[no-any-return]


async def check(resp: Any, path: str, method: str = "get") -> Any:
    body = await resp.json()
    schema_validator(answer_schema(path, method, resp.status)).validate(body)
    return body


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    settings = Settings(store_url=f"sqlite:///{tmp_path}/o.db", subscriber_key="k", tick_seconds=0,
                        admin_token=ADMIN_TOKEN, outbox_worker=False, users_file=tmp_path / "users.yaml")
    app = create_app(settings, clock=ManualClock(T0), catalog=load_catalog(FIXTURES / "good"))
    return await aiohttp_client(app, headers=ADMIN_HEADERS)


async def test_answers_match_the_document(client: TestClient) -> None:
    served = await (await client.get("/api/openapi.json", headers={"Authorization": ""})).json()
    assert served == json.loads(json.dumps(document()))
    await check(await client.get("/healthz"), "/healthz")
    complaint = {"id": "c1", "received_at": "2026-11-24T09:58:00+08:00", "channel": "hotline",
                 "category": "outage", "region": "hangzhou", "subscriber": "13800138000"}
    await check(await client.post("/api/complaints", json=[complaint]), "/api/complaints", "post")
    refused = await check(await client.post("/api/complaints", json={**complaint, "channel": "fax"}),
                          "/api/complaints", "post")
    assert refused["error"]["code"] == "invalid_complaints"
    await check(await client.get("/api/streams"), "/api/streams")
    opened = await check(await client.post("/api/incidents", json={
        "playbook": "outage", "region": "hangzhou", "params": {"cause": "光缆被挖断"}, "by": "p1"}),
        "/api/incidents", "post")
    iid = opened["id"]
    await check(await client.get("/api/incidents?open=true"), "/api/incidents")
    await check(await client.get(f"/api/incidents/{iid}"), "/api/incidents/{id}")
    scripts = await check(await client.get(f"/api/incidents/{iid}/scripts"), "/api/incidents/{id}/scripts")
    assert scripts["scripts"]
    await check(await client.post(f"/api/incidents/{iid}/scripts", json={"params": {"cause": "光缆"}}),
                "/api/incidents/{id}/scripts", "post")
    await check(await client.get(f"/api/incidents/{iid}/deliveries"), "/api/incidents/{id}/deliveries")
    await check(await client.post(f"/api/incidents/{iid}/notes", json={"text": "抢修中"}),
                "/api/incidents/{id}/notes", "post")
    await check(await client.post(f"/api/incidents/{iid}/severity", json={"severity": "critical"}),
                "/api/incidents/{id}/severity", "post")
    await check(await client.post(f"/api/incidents/{iid}/ack", json={"person": "p1"}),
                "/api/incidents/{id}/ack", "post")
    await check(await client.post(f"/api/incidents/{iid}/resolve", json={"note": "修复"}),
                "/api/incidents/{id}/resolve", "post")
    # errors have the documented shape
    await check(await client.get("/api/incidents/INC-nope"), "/api/incidents/{id}")
    await check(await client.post(f"/api/incidents/{iid}/resolve", json={}), "/api/incidents/{id}/resolve", "post")
    await check(await client.get("/api/streams", headers={"Authorization": ""}), "/api/streams")
