"""Complaint intake over HTTP, on both stores: every kind of bad input is refused with a
reason naming what is wrong, nothing of a refused line is stored, duplicates store once."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.intake import normalise_subscriber
from coordinator.config.settings import Settings
from coordinator.store import Store

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def item(cid: str = "c1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid,
        "received_at": "2026-11-24T09:58:00+08:00",
        "channel": "hotline",
        "category": "broadband",
        "region": "hangzhou",
        "subscriber": "138 0013 8000",
        "text": "家里宽带从早上开始断网",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def client(aiohttp_client: Any, store: Store) -> TestClient:
    settings = Settings(max_items=50, max_body_bytes=64 * 1024, subscriber_key="test-key", admin_token=ADMIN_TOKEN)
    app = create_app(
        settings, clock=ManualClock(NOW), store=store, catalog=load_catalog(FIXTURES / "good")
    )
    return await aiohttp_client(app, headers=ADMIN_HEADERS)


async def post(client: TestClient, payload: Any, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    data = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    resp = await client.post("/api/complaints", data=data, headers={"Content-Type": content_type})
    return resp.status, await resp.json()


async def test_one_complaint_then_the_same_again(client: TestClient, store: Store) -> None:
    assert await post(client, item()) == (
        200, {"accepted": 1, "duplicate": 0, "rejected": 0, "repeats": 0, "late": 0, "errors": []}
    )
    assert await post(client, item()) == (
        200, {"accepted": 0, "duplicate": 1, "rejected": 0, "repeats": 0, "late": 0, "errors": []}
    )
    assert await store.count_complaints() == 1
    stored = await store.get_complaint("c1")
    assert stored is not None and stored.received_at == datetime(2026, 11, 24, 1, 58, tzinfo=timezone.utc)
    assert stored.ingested_at == NOW
    # the same subscriber again, another complaint: a repeat
    assert (await post(client, item("c2")))[1]["repeats"] == 1


async def test_array_with_bad_items_keeps_the_good_ones(client: TestClient, store: Store) -> None:
    status, body = await post(client, [item("a"), item("b", channel="fax"), item("c"), item("a"), "oops"])
    assert status == 200
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 1, 2)
    assert body["errors"] == [
        {"line": 2, "id": "b", "field": "channel",
         "reason": "unknown channel 'fax' (known: hotline, app, web, shop, social, regulator)"},
        {"line": 5, "id": None, "field": None, "reason": "expected a JSON object, got str"},
    ]
    assert await store.get_complaint("b") is None
    assert await store.count_complaints() == 2


async def test_ndjson_reports_physical_lines(client: TestClient, store: Store) -> None:
    lines = [json.dumps(item("n1")), "", "{not json", json.dumps(item("n2", region="Hang Zhou"))]
    status, body = await post(client, "\n".join(lines) + "\n", "application/x-ndjson")
    assert status == 200 and body["accepted"] == 1
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(3, None), (4, "region")]
    assert body["errors"][0]["reason"].startswith("not JSON: ")
    assert "region must be a lowercase id" in body["errors"][1]["reason"]


async def test_json_lines_sent_as_plain_json_are_read_as_ndjson(client: TestClient) -> None:
    text = json.dumps(item("x1")) + "\n" + json.dumps(item("x2")) + "\n"
    assert (await post(client, text))[1]["accepted"] == 2


BAD_ITEMS = [
    (item(id=None), "id", "missing required field 'id'"),
    (item(category=None), "category", "missing required field 'category'"),
    (item(received_at=None), "received_at", "missing required field 'received_at'"),
    (item(category="roaming"), "category", "unknown category 'roaming' (known: "),
    (item(region=""), "region", "region must be a lowercase id"),
    (item(received_at="2026-11-24T09:58:00"), "received_at", "received_at needs a UTC offset"),
    (item(received_at="yesterday"), "received_at", "received_at: Input should be a valid datetime"),
    (item(received_at="2026-11-24T10:30:00+08:00"), "received_at", "is in the future"),
    (item(received_at="2026-01-01T10:00:00+08:00"), "received_at", "is older than 90 days"),
    (item(text="断" * 2001), "text", "text: String should have at most 2000 characters"),
    (item(id="x" * 129), "id", "id: String should have at most 128 characters"),
    (item(id="a\nb"), "id", "id must not contain control characters"),
    (item(channel=3), "channel", "unknown channel 3"),
]


@pytest.mark.parametrize(("payload", "field", "reason"), BAD_ITEMS)
async def test_each_kind_of_bad_item(client: TestClient, store: Store, payload: Any, field: str, reason: str) -> None:
    status, body = await post(client, payload)
    assert status == 400
    assert body["error"]["code"] == "invalid_complaints"
    assert body["accepted"] == 0 and body["rejected"] == 1
    [error] = body["error"]["details"]
    assert error["field"] == field
    assert error["reason"].startswith(reason) or reason in error["reason"], error["reason"]
    assert await store.count_complaints() == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{\"id\": ", "application/json", 400, "invalid_json"),
        ("[]", "application/json", 400, "empty_body"),
        ("42", "application/json", 400, "invalid_body"),
        (b"\xff\xfe", "application/json", 400, "invalid_body"),
        (json.dumps([item(f"m{i}") for i in range(51)]), "application/json", 413, "too_many_items"),
        ("[" + ",".join([json.dumps(item("big", text="x" * 1000))] * 70) + "]", "application/json", 413, "body_too_large"),
    ],
)
async def test_unreadable_bodies(
    client: TestClient, store: Store, data: Any, content_type: str, status: int, code: str
) -> None:
    got_status, body = await post(client, data, content_type)
    assert got_status == status
    assert body["error"]["code"] == code and body["error"]["message"]
    assert await store.count_complaints() == 0


async def test_subscriber_is_stored_hashed_and_normalised(client: TestClient, store: Store) -> None:
    await post(client, [item("s1", subscriber="13800138000"), item("s2", subscriber="+86-138-0013-8000"),
                        item("s3", subscriber="13900139000"), item("s4", subscriber=None)])
    hashes = [(await store.get_complaint(c)).subscriber_hash for c in ("s1", "s2", "s3", "s4")]  # type: ignore[union-attr]
    assert hashes[0] == hashes[1] != hashes[2]
    assert hashes[3] is None
    stored = (await store.get_complaint("s1")).model_dump_json()  # type: ignore[union-attr]
    assert "13800138000" not in stored and "0013" not in stored


def test_subscriber_normalisation() -> None:
    assert normalise_subscriber("138 0013 8000") == "+8613800138000"
    assert normalise_subscriber("8613800138000") == "+8613800138000"
    assert normalise_subscriber("(0571) 8888-1234") == "057188881234"


async def test_healthz_and_json_404(client: TestClient) -> None:
    resp = await client.get("/healthz")
    health = await resp.json()
    # this service has no channel while its playbooks need SMS and email: degraded
    assert resp.status == 200 and health["status"] == "degraded" and health["store"] == "ok"
    assert health["channels"] == {"sms": "missing", "email": "missing", "dingtalk": "missing", "wecom": "missing"}
    resp = await client.get("/api/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
