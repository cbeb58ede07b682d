"""Property tests of the intake parsers: whatever bytes arrive, as a JSON or NDJSON body
or as a CSV or NDJSON file to replay, the parsers answer with items or their own error
(BodyError, ReplayError), the HTTP intake with a 2xx or a 4xx, and a refused item never
changes the store. Derandomized (a fixed sequence of examples) and bounded."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.errors import BodyError, ReplayError
from coordinator.intake import NDJSON_TYPES, Intake, SubscriberHasher, parse_body, read_json
from coordinator.models import Channel, Complaint
from coordinator.commands.replay import FIELDS, HttpSink, read_complaints
from coordinator.config.settings import Settings
from coordinator.store import Store
from coordinator.web.state import SERVICES

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
MAX_ITEMS = 20
CONTENT_TYPES = ["application/json", *NDJSON_TYPES, "text/plain", "application/x-www-form-urlencoded", ""]
FAST = settings(derandomize=True, database=None, deadline=None, max_examples=500,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HTTP = settings(FAST, max_examples=300)

# --- what arrives -------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
           | st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u2028"]))  # half a surrogate pair, NUL, LS
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
good_times = (st.integers(0, 60 * 24 * 80).map(lambda minutes: (T0 - timedelta(minutes=minutes)).isoformat())
              | st.sampled_from(["2026-11-24T09:58:00+08:00", "2026-11-24T01:58:00Z", "2026-11-24 09:58+08:00"]))
bad_times = st.sampled_from([
    "2026-11-24T09:58:00", "2026-11-24", "1795500000", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
    "2026-02-30T10:00:00+08:00", "2026-11-25T09:58:00+08:00", "2025-01-01T00:00:00Z", "yesterday", "",
]) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
# Per field: values intake takes, and values it refuses.
FIELD_VALUES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "id": (st.text("abcxyz0123-_ 长", min_size=1, max_size=10).filter(str.strip),
           st.sampled_from(["", " ", "a\x00b", "x" * 129])),
    "received_at": (good_times, bad_times),
    "channel": (st.sampled_from([c.value for c in Channel]), st.sampled_from(["fax", "HOTLINE", ""])),
    "category": (st.sampled_from(["outage", "broadband", "billing"]), st.sampled_from(["nonsense", ""])),
    "region": (st.sampled_from(["hangzhou", "ningbo", "nowhere"]), st.sampled_from(["Hangzhou", "-x", "", "a/b"])),
    "subscriber": (st.sampled_from(["13800138000", "+86-138-0013-8000", "(0571) 8888-1234"]),
                   st.sampled_from(["a\nb", "9" * 65])),
    "text": (st.text(max_size=20), st.just("长" * 2001)),
}


@st.composite
def complaint_like(draw: st.DrawFn) -> dict[str, Any]:
    """A complaint whose fields are each mostly good, sometimes wrong, missing or any
    JSON value at all: about half of them are taken."""
    item: dict[str, Any] = {}
    for name, (good, bad) in FIELD_VALUES.items():
        roll = draw(st.integers(0, 39))
        if roll == 0:
            continue  # missing
        item[name] = draw(json_values if roll == 1 else bad if roll == 2 else good)
    return item


def ndjson_of(lines: list[Any]) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)


bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.lists(complaint_like(), max_size=6).map(lambda items: json.dumps(items).encode()),
    complaint_like().map(lambda item: json.dumps(item).encode()),
    st.lists(complaint_like() | st.text(max_size=30) | json_values, max_size=6).map(
        lambda ls: ndjson_of(ls).encode("utf-8", "surrogatepass")),  # a lone surrogate: bytes that are not UTF-8
    st.integers(1, 2000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
    st.integers(1, 6000).map(lambda digits: ('{"id": ' + "7" * digits + "}").encode()),
)


# --- the parsers alone --------------------------------------------------------------------


@FAST
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_parse_body_answers_items_or_a_body_error(body: bytes, content_type: str) -> None:
    try:
        items = parse_body(body, content_type, MAX_ITEMS)
    except BodyError as exc:
        assert exc.code in ("invalid_json", "invalid_body", "empty_body", "too_many_items") and str(exc)
        return
    assert 0 < len(items) <= MAX_ITEMS
    assert all(isinstance(line, int) and line >= 1 for line, _ in items)


@FAST
@given(text=st.text(max_size=200) | st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)
       | st.integers(1, 6000).map(lambda n: "1" * n))
def test_read_json_answers_a_value_or_a_body_error(text: str) -> None:
    try:
        value = read_json(text)
    except BodyError as exc:
        assert exc.code == "invalid_json" and str(exc)
        return
    json.dumps(value, allow_nan=False)  # what was read can be written back as JSON


@FAST
@given(item=complaint_like() | json_values)
def test_check_answers_a_complaint_or_a_rejection(item: Any) -> None:
    intake = Intake(store=None, categories=["outage", "broadband", "billing"],  # type: ignore[arg-type]
                    hasher=SubscriberHasher("k"), clock=ManualClock(T0))
    checked = intake.check(1, item, T0)
    if isinstance(checked, Complaint):
        assert T0 - timedelta(days=90) <= checked.received_at <= T0 + timedelta(minutes=5)
        assert isinstance(item, dict) and isinstance(item["received_at"], str)
    else:
        assert checked.line == 1 and checked.reason
        json.dumps(checked.as_json())


def csv_of(items: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    writer.writerows([item.get(f, "") if isinstance(item.get(f), str) else json.dumps(item.get(f, ""))
                      for f in FIELDS] for item in items)
    return out.getvalue().encode("utf-8", "surrogatepass")  # half a pair: bytes that are not UTF-8


csv_files = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: ",".join(FIELDS).encode() + b"\n" + text.encode()),
    st.lists(complaint_like(), max_size=6).map(csv_of),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replay")


@FAST
@given(data=csv_files | bodies, suffix=st.sampled_from([".csv", ".ndjson", ".jsonl"]))
def test_read_complaints_answers_items_or_a_replay_error(folder: Path, data: bytes, suffix: str) -> None:
    path = folder / f"file{suffix}"
    path.write_bytes(data)
    try:
        items = read_complaints(path)
    except ReplayError as exc:
        assert str(exc).startswith(str(path))
        return
    assert all(isinstance(i, dict) and i["_at"].tzinfo is not None for i in items)
    assert [i["_at"] for i in items] == sorted(i["_at"] for i in items)


# --- through the HTTP handler ---------------------------------------------------------------


class Service:
    """The app on a test server of its own event loop, for hypothesis's synchronous tests."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        settings = Settings(store_url=f"sqlite:///{tmp}/props.db", subscriber_key="k", tick_seconds=0,
                            admin_token=ADMIN_TOKEN, outbox_worker=False, max_items=MAX_ITEMS,
                            users_file=tmp / "users.yaml")
        app = create_app(settings, clock=ManualClock(T0), catalog=load_catalog(FIXTURES / "good"))
        self.client = TestClient(TestServer(app, loop=self.loop), loop=self.loop)
        self.run(self.client.start_server())
        self.store: Store = app[SERVICES].store
        self.ids = itertools.count()

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    served = Service(tmp_path_factory.mktemp("props"))
    yield served
    served.close()


def fresh_ids(body: bytes, prefix: str) -> bytes:
    """Ids of this example's own, so an earlier example's complaints are no duplicates."""
    return body.replace(b'"id": "', f'"id": "{prefix}'.encode())


@HTTP
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_any_body_is_answered_2xx_or_4xx_and_refused_items_store_nothing(
        service: Service, body: bytes, content_type: str) -> None:
    body = fresh_ids(body, f"e{next(service.ids)}-")

    async def post() -> tuple[int, dict[str, Any], int, int]:
        before = await service.store.count_complaints()
        headers = {**ADMIN_HEADERS, "Content-Type": content_type} if content_type else ADMIN_HEADERS
        resp = await service.client.post("/api/complaints", data=body, headers=headers)
        answer = await resp.json()
        return resp.status, answer, before, await service.store.count_complaints()

    status, answer, before, after = service.run(post())
    event(f"status {status}")
    assert status in (200, 400, 413), (status, answer)
    if status == 200:
        assert after - before == answer["accepted"]
        assert answer["rejected"] == len(answer["errors"])
    else:
        assert after == before, answer
        assert set(answer["error"]) == {"code", "message", "details"}


@HTTP
@given(items=st.lists(complaint_like(), min_size=1, max_size=8))
def test_a_refused_item_never_reaches_the_store(service: Service, items: list[dict[str, Any]]) -> None:
    prefix = f"r{next(service.ids)}-"
    for item in items:
        if isinstance(item.get("id"), str):
            item["id"] = prefix + item["id"]

    async def post() -> tuple[int, dict[str, Any], int, int]:
        before = await service.store.count_complaints()
        resp = await service.client.post("/api/complaints", json=items, headers=ADMIN_HEADERS)
        return resp.status, await resp.json(), before, await service.store.count_complaints()

    status, answer, before, after = service.run(post())
    assert status in (200, 400), answer
    refused = answer["errors"] if status == 200 else answer["error"]["details"]
    accepted = answer["accepted"]
    event("some accepted" if accepted else "none accepted")
    assert after - before == accepted and accepted + answer["duplicate"] + len(refused) == len(items)
    # An id only refused items carry is not in the store.
    lines = {r["line"] for r in refused}
    kept = {i["id"].strip() for n, i in enumerate(items, start=1) if n not in lines and isinstance(i.get("id"), str)}
    for rejection in refused:
        if isinstance(rejection["id"], str) and rejection["id"].strip() not in kept:
            assert service.run(service.store.get_complaint(rejection["id"].strip())) is None, rejection


@HTTP
@given(data=csv_files)
def test_a_replayed_csv_file_is_answered_2xx_or_4xx(service: Service, folder: Path, data: bytes) -> None:
    path = folder / "replay.csv"
    path.write_bytes(data)
    try:
        items = read_complaints(path)
    except ReplayError:
        event("refused by read_complaints")
        return
    event("read" if items else "read, empty")
    if not items:
        return
    batch = [{k: v for k, v in item.items() if k != "_at"} for item in items]
    sink = HttpSink(service.client.session, str(service.client.make_url("")), ADMIN_TOKEN)
    before = service.run(service.store.count_complaints())
    counts = service.run(sink.send(batch))  # a 5xx, or an answer without counts, raises ReplayError
    assert service.run(service.store.count_complaints()) - before == counts["accepted"]
