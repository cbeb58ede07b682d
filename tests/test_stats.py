"""Statistics: the roll-ups on hand-built counts (pure), then end to end through the
real app: complaints and incidents in, /api/stats, the CSV and the page out."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.models import Incident, IncidentStatus, Surge, TimelineEvent
from coordinator.config.settings import Settings
from coordinator.reports.stats import IncidentTimes, build_statistics, periods
from coordinator.store.records import StatRow
from coordinator.web.i18n import MESSAGES
from coordinator.web.state import SERVICES, Services
from coordinator.web.stats import parse_period

from .conftest import ADMIN_HEADERS, ADMIN_TOKEN

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIXTURES = Path(__file__).parent / "fixtures"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def hour(local: str) -> int:
    """The epoch hour of a local (+08:00) time."""
    return int(datetime.fromisoformat(local + "+08:00").timestamp())


def row(local: str, category: str, region: str, channel: str, count: int, repeat: int = 0) -> StatRow:
    return StatRow(hour(local), category, region, channel, count, repeat)


HOURLY = [
    row("2026-10-31T23:00", "billing", "hangzhou", "hotline", 5),  # the day before the range
    row("2026-11-01T00:00", "broadband", "hangzhou", "hotline", 3, 1),  # UTC: still Oct 31
    row("2026-11-01T07:00", "broadband", "ningbo", "app", 2),
    row("2026-11-01T23:00", "billing", "hangzhou", "hotline", 4, 2),
    row("2026-11-03T08:00", "broadband", "hangzhou", "hotline", 1),
    row("2026-11-03T09:00", "broadband", "hangzhou", "hotline", 2, 1),  # same keys, another hour
    row("2026-11-04T00:00", "broadband", "hangzhou", "hotline", 9),  # the day after the range
]


def times(iid: str, opened_local: str, *, drill: bool = False, detect: float | None = None, open_: float = 0.0,
          first: float | None = None, resolve: float | None = None) -> IncidentTimes:
    return IncidentTimes(id=iid, opened_at=utc(opened_local + "+08:00"), drill=drill, to_detect_seconds=detect,
                         to_open_seconds=open_, to_first_script_seconds=first, to_resolve_seconds=resolve)


def stats_by(by: str, start: date = date(2026, 11, 1), end: date = date(2026, 11, 3), incidents: Any = ()) -> Any:
    return build_statistics(HOURLY, incidents, start=start, end=end, by=by,  # type: ignore[arg-type]
                            tz=SHANGHAI, tz_name="Asia/Shanghai")


# --- pure roll-ups ---------------------------------------------------------------------


def test_days_are_local_and_every_day_of_the_range_is_a_period() -> None:
    s = stats_by("day")
    assert [(p.key, p.count, p.repeat, p.repeat_share) for p in s.periods] == [
        ("2026-11-01", 9, 3, round(3 / 9, 4)), ("2026-11-02", 0, 0, None), ("2026-11-03", 3, 1, round(1 / 3, 4))]
    assert (s.total.count, s.total.repeat, s.total.repeat_share) == (12, 4, round(4 / 12, 4))


def test_full_rows_sum_the_hours_of_a_period() -> None:
    rows = [(r.period, r.category, r.region, r.channel, r.count, r.repeat) for r in stats_by("day").rows]
    assert rows == [
        ("2026-11-01", "billing", "hangzhou", "hotline", 4, 2),
        ("2026-11-01", "broadband", "hangzhou", "hotline", 3, 1),
        ("2026-11-01", "broadband", "ningbo", "app", 2, 0),
        ("2026-11-03", "broadband", "hangzhou", "hotline", 3, 1),
    ]


def test_each_dimension_has_totals_largest_first_and_cells_per_period() -> None:
    category, region, channel = stats_by("day").dimensions
    assert [(t.key, t.count, t.repeat, t.repeat_share) for t in category.totals] == [
        ("broadband", 8, 2, 0.25), ("billing", 4, 2, 0.5)]
    assert [(c.period, c.key, c.count) for c in category.cells] == [
        ("2026-11-01", "billing", 4), ("2026-11-01", "broadband", 5), ("2026-11-03", "broadband", 3)]
    assert [(t.key, t.count) for t in region.totals] == [("hangzhou", 10), ("ningbo", 2)]
    assert [(t.key, t.count, t.repeat) for t in channel.totals] == [("hotline", 10, 4), ("app", 2, 0)]


def test_by_month_the_local_month_decides() -> None:
    s = stats_by("month", start=date(2026, 10, 1), end=date(2026, 11, 30))
    assert [(p.key, p.count) for p in s.periods] == [("2026-10", 5), ("2026-11", 21)]
    assert periods(date(2026, 1, 31), date(2026, 3, 1), "month") == ["2026-01", "2026-02", "2026-03"]


def test_incidents_per_period_with_medians_and_drills_apart() -> None:
    incidents = [
        times("a", "2026-11-01T00:30", detect=600, open_=900, first=120, resolve=3600),  # UTC: Oct 31
        times("b", "2026-11-02T10:00", open_=0, first=60),  # manual, still open
        times("c", "2026-11-03T10:00", detect=300, open_=400, first=200, resolve=1800),
        times("d", "2026-11-03T11:00", drill=True, detect=30, open_=40, first=10, resolve=600),
        times("e", "2026-10-31T23:59", detect=1, open_=1, resolve=1),  # before the range
        times("f", "2026-11-04T00:00", detect=1, open_=1, resolve=1),  # after it
    ]
    s = stats_by("month", incidents=incidents)
    [nov] = s.incidents
    assert (nov.period, nov.count, nov.resolved) == ("2026-11", 3, 2)
    assert nov.median_to_detect_seconds == 450.0  # (600 + 300) / 2: the manual one has none
    assert nov.median_to_open_seconds == 400.0  # 0, 400, 900
    assert nov.median_to_first_script_seconds == 120.0
    assert nov.median_to_resolve_seconds == 2700.0
    [drill] = s.drill_incidents
    assert (drill.count, drill.median_to_resolve_seconds) == (1, 600.0)
    by_day = stats_by("day", incidents=incidents)
    assert by_day.incidents_total == nov.model_copy(update={"period": "total"})
    assert [(p.period, p.count) for p in by_day.incidents] == [("2026-11-01", 1), ("2026-11-02", 1), ("2026-11-03", 1)]
    assert by_day.incidents[1].median_to_resolve_seconds is None


def test_nothing_in_range_gives_zeros_not_errors() -> None:
    s = build_statistics([], [], start=date(2026, 2, 1), end=date(2026, 2, 2), by="day", tz=SHANGHAI,
                         tz_name="Asia/Shanghai")
    assert [(p.key, p.count, p.repeat_share) for p in s.periods] == [("2026-02-01", 0, None), ("2026-02-02", 0, None)]
    assert s.total.count == 0 and s.rows == [] and s.incidents == []
    assert all(d.totals == [] for d in s.dimensions)


@pytest.mark.parametrize(("query", "expected"), [
    ({}, (date(2026, 11, 1), date(2026, 11, 24), "day")),
    ({"from": "2026-10-01", "to": "2026-10-31", "by": "month"}, (date(2026, 10, 1), date(2026, 10, 31), "month")),
    ({"from": "2025-11-24", "to": "2026-11-24"}, (date(2025, 11, 24), date(2026, 11, 24), "day")),  # 366 days
])
def test_the_period_asked_for(query: dict[str, str], expected: tuple[date, date, str]) -> None:
    p = parse_period(query, date(2026, 11, 24))
    assert (p.start, p.end, p.by) == expected


@pytest.mark.parametrize("query", [
    {"from": "2026-13-01"}, {"to": "yesterday"}, {"by": "week"}, {"from": "2026-11-05", "to": "2026-11-04"},
    {"from": "2025-11-23", "to": "2026-11-24"},
])
def test_a_bad_period_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(web.HTTPBadRequest):
        parse_period(query, date(2026, 11, 24))


# --- end to end ------------------------------------------------------------------------

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> TestClient:
    if store_kind == "sqlite":
        url = f"sqlite:///{tmp_path}/s.db"
    else:
        url = request.getfixturevalue("redis_url") + f"?prefix=stats-{tmp_path.name}:"
    settings = Settings(store_url=url, subscriber_key="k", tick_seconds=0, admin_token=ADMIN_TOKEN,
                        outbox_worker=False, users_file=tmp_path / "users.yaml")
    app = create_app(settings, clock=ManualClock(T0), catalog=load_catalog(FIXTURES / "good"))
    return await aiohttp_client(app, headers=ADMIN_HEADERS)


def complaint(cid: str, when: str, *, channel: str = "hotline", category: str = "outage",
              region: str = "hangzhou", subscriber: str | None = None) -> dict[str, Any]:
    item = {"id": cid, "received_at": when, "channel": channel, "category": category, "region": region}
    if subscriber:
        item["subscriber"] = subscriber
    return item


COMPLAINTS = [
    complaint("c1", "2026-10-31T23:30:00+08:00", subscriber="13800000001"),
    complaint("c2", "2026-11-01T00:10:00+08:00", subscriber="13800000001"),  # repeat; UTC Oct 31
    complaint("c3", "2026-11-23T09:00:00+08:00", channel="app", category="billing"),
    complaint("c4", "2026-11-24T09:00:00+08:00", region="ningbo", subscriber="13800000002"),
    complaint("c5", "2026-11-24T09:30:00+08:00", region="ningbo", subscriber="138 0000 0002"),  # repeat
]


def services(client: TestClient) -> Services:
    return client.app[SERVICES]  # type: ignore[index,no-any-return]


async def open_surge_incident(client: TestClient) -> None:
    """A real incident opened by a surge on Nov 20: detected 15 min after onset, opened 20
    min after it, resolved 2 hours after opening."""
    store = services(client).store
    opened = utc("2026-11-20T09:00:00+08:00")
    surge = Surge(key="outage/ningbo", category="outage", region="ningbo", onset=opened - timedelta(minutes=20),
                  detected_at=opened - timedelta(minutes=5), observed=30, expected=3.0, ratio=10.0, score=0.99)
    incident = Incident(id="INC-20261120-aaaaaa", playbook="outage", title="全网故障", severity="major",
                        category="outage", region="ningbo", surge_key="outage/ningbo", opened_at=opened,
                        opened_by="surge", surge=surge, status=IncidentStatus.resolved, resolved_at=opened + timedelta(hours=2),
                        updated_at=opened)
    await store.open_incident(incident, TimelineEvent(at=opened, kind="opened",
                                                      data={"surge_data": surge.model_dump(mode="json")}))


async def trigger_and_resolve(client: TestClient, *, drill: bool, after: timedelta) -> str:
    clock = services(client).clock
    assert isinstance(clock, ManualClock)
    resp = await client.post("/api/incidents", json={
        "playbook": "outage", "region": "hangzhou", "params": {"cause": "光缆被挖断"}, "drill": drill, "by": "p1"})
    assert resp.status == 201, await resp.text()
    iid = (await resp.json())["id"]
    clock.advance(after)
    resp = await client.post(f"/api/incidents/{iid}/resolve", json={"by": "p1"})
    assert resp.status == 200, await resp.text()
    return str(iid)


async def load(client: TestClient) -> None:
    resp = await client.post("/api/complaints", json=COMPLAINTS)
    assert (await resp.json())["accepted"] == 5
    drill = await services(client).intake.submit(
        [(1, complaint("d1", "2026-11-24T09:40:00+08:00")), (2, complaint("d2", "2026-11-24T09:41:00+08:00"))],
        drill=True)
    assert drill.accepted == 2
    await open_surge_incident(client)
    await trigger_and_resolve(client, drill=False, after=timedelta(minutes=30))
    await trigger_and_resolve(client, drill=True, after=timedelta(minutes=10))


async def test_api_stats_counts_what_was_posted_and_leaves_drills_out(client: TestClient) -> None:
    await load(client)
    resp = await client.get("/api/stats?from=2026-10-31&to=2026-11-30&by=month")
    assert resp.status == 200, await resp.text()
    s = await resp.json()
    assert (s["start"], s["end"], s["by"], s["timezone"]) == ("2026-10-31", "2026-11-30", "month", "Asia/Shanghai")
    assert [(p["key"], p["count"], p["repeat"]) for p in s["periods"]] == [("2026-10", 1, 0), ("2026-11", 4, 2)]
    assert s["total"] == {"key": "total", "count": 5, "repeat": 2, "repeat_share": 0.4}
    channel = next(d for d in s["dimensions"] if d["name"] == "channel")
    assert [(t["key"], t["count"]) for t in channel["totals"]] == [("hotline", 4), ("app", 1)]
    [nov] = s["incidents"]
    assert (nov["period"], nov["count"], nov["resolved"]) == ("2026-11", 2, 2)
    assert nov["median_to_detect_seconds"] == 900.0  # only the surge one was detected
    assert nov["median_to_open_seconds"] == 600.0  # (1200 + 0) / 2
    assert nov["median_to_resolve_seconds"] == 4500.0  # (7200 + 1800) / 2
    assert nov["median_to_first_script_seconds"] is None  # no outbox worker: nothing reached anyone
    [drill] = s["drill_incidents"]
    assert (drill["count"], drill["median_to_resolve_seconds"]) == (1, 600.0)

    by_day = await (await client.get("/api/stats?from=2026-11-23&to=2026-11-24")).json()
    assert [(p["key"], p["count"], p["repeat"]) for p in by_day["periods"]] == [
        ("2026-11-23", 1, 0), ("2026-11-24", 2, 1)]
    default = await (await client.get("/api/stats")).json()
    assert (default["start"], default["end"], default["by"]) == ("2026-11-01", "2026-11-24", "day")
    assert default["total"]["count"] == 4


async def test_the_csv_exports_match_the_api(client: TestClient) -> None:
    await load(client)
    resp = await client.get("/stats.csv?from=2026-10-31&to=2026-11-30&by=month&table=complaints")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="complaints_2026-10-31_2026-11-30_month.csv"')
    assert "filename*=UTF-8''" in disposition
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["期间", "类别代码", "类别"]
    assert rows[1:] == [
        ["2026-10", "outage", "移动网络/业务中断", "hangzhou", "杭州", "hotline", "客服热线", "1", "0", "0.0000"],
        ["2026-11", "billing", "计费争议", "hangzhou", "杭州", "app", "手机营业厅", "1", "0", "0.0000"],
        ["2026-11", "outage", "移动网络/业务中断", "hangzhou", "杭州", "hotline", "客服热线", "1", "1", "1.0000"],
        ["2026-11", "outage", "移动网络/业务中断", "ningbo", "宁波", "hotline", "客服热线", "2", "1", "0.5000"],
    ]
    incidents = await (await client.get("/stats.csv?from=2026-11-01&to=2026-11-30&by=month&table=incidents")).read()
    lines = list(csv.reader(io.StringIO(incidents.decode("utf-8-sig"))))
    assert lines[1:] == [["2026-11", "真实", "2", "2", "900", "600", "", "4500"]]
    with_drills = await (await client.get(
        "/stats.csv?from=2026-11-01&to=2026-11-30&by=month&table=incidents&drills=1")).read()
    assert list(csv.reader(io.StringIO(with_drills.decode("utf-8-sig"))))[2] == [
        "2026-11", "演练", "1", "1", "", "0", "", "600"]
    assert (await client.get("/stats.csv?table=everything")).status == 400


async def test_the_page_shows_the_figures(client: TestClient) -> None:
    await load(client)
    resp = await client.get("/stats?from=2026-11-01&to=2026-11-30&by=month")
    assert resp.status == 200
    page = await resp.text()
    assert "投诉与事件统计" in page and "<svg" in page
    assert "投诉 <strong>4</strong> 件，其中重复投诉 2 件（50.0%" in page
    assert "手机营业厅" in page and "宁波" in page
    assert "1小时15分" in page  # median time to resolve, 4500 s
    by_day = await (await client.get("/stats?from=2026-11-01&to=2026-11-30&by=day")).text()
    assert "<td>全期</td>" in by_day and "<td>2026-11-20</td>" in by_day
    assert "演练事件（不计入以上统计）" in page
    assert 'href="/stats.csv?from=2026-11-01&amp;to=2026-11-30&amp;by=month&amp;table=complaints"' in page


async def test_the_page_in_english_and_the_language_link_keeps_the_period(client: TestClient) -> None:
    await load(client)
    query = "from=2026-11-01&to=2026-11-30&by=month"
    page = await (await client.get(f"/stats?{query}&lang=en", headers={"Accept": "text/html"})).text()
    assert '<html lang="en">' in page and "<h1>Complaints and incidents</h1>" in page
    assert "<strong>4</strong> complaints, 2 of them repeats (50.0%" in page
    assert "By region" in page and "mobile app" in page and "1 h 15 min" in page
    assert "Drill incidents (not counted above)" in page
    # only the names from the configuration stay Chinese, and the link back to Chinese
    catalog = services(client).catalog
    names = [*catalog.categories.values(), *(r.name for r in catalog.contacts.regions.values()),
             *(p.title for p in catalog.playbooks.values()), "中文"]  # titles: in the no-channel banner
    left = page
    for name in sorted(names, key=len, reverse=True):
        left = left.replace(name, "")
    assert re.findall(r"[\u4e00-\u9fff]+", left) == []
    assert not [zh for key, (zh, _) in MESSAGES.items() if key.startswith("stats.") and zh in page]
    # the language link keeps the period: switching language does not lose it
    assert f'href="?{query.replace("&", "&amp;")}&amp;lang=zh" class="lang">中文</a>' in page
    chinese = await (await client.get(f"/stats?lang=zh&{query}", headers={"Accept": "text/html"})).text()
    assert "<h1>投诉与事件统计</h1>" in chinese and "1小时15分" in chinese
    assert f'href="?{query.replace("&", "&amp;")}&amp;lang=en" class="lang">English</a>' in chinese


async def test_a_bad_period_is_a_json_400(client: TestClient) -> None:
    resp = await client.get("/api/stats?from=2026-11-30&to=2026-11-01")
    assert resp.status == 400
    assert "'to' is before 'from'" in (await resp.json())["error"]["message"]


async def test_statistics_need_a_viewer(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    for path in ("/api/stats", "/stats.csv"):
        resp = await client.get(path, headers=anonymous)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    page = await client.get("/stats", headers={**anonymous, "Accept": "text/html"}, allow_redirects=False)
    assert page.status == 303 and page.headers["Location"].startswith("/login?next=%2Fstats")
