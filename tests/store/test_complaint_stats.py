"""Complaint statistics kept at insert time, the same on SQLite and Redis."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from coordinator.models import Channel, Complaint
from coordinator.store import Store
from coordinator.store.records import StatRow

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
H0 = int(T0.timestamp())


def complaint(cid: str, at: datetime = T0, *, channel: Channel = Channel.hotline, category: str = "broadband",
              region: str = "hangzhou", subscriber: str | None = None, drill: bool = False) -> Complaint:
    return Complaint(id=cid, received_at=at, channel=channel, category=category, region=region,
                     subscriber_hash=subscriber, ingested_at=at, drill=drill)


async def test_counts_per_hour_category_region_and_channel(store: Store) -> None:
    await store.add_complaints([
        complaint("a", T0 + timedelta(minutes=1)),
        complaint("b", T0 + timedelta(minutes=59, seconds=59)),
        complaint("c", T0 + timedelta(hours=1)),
        complaint("d", T0, channel=Channel.app),
        complaint("e", T0, region="ningbo"),
        complaint("f", T0, category="billing"),
    ])
    rows = await store.complaint_stats(T0, T0 + timedelta(days=1))
    assert rows == [
        StatRow(H0, "billing", "hangzhou", "hotline", 1, 0),
        StatRow(H0, "broadband", "hangzhou", "app", 1, 0),
        StatRow(H0, "broadband", "hangzhou", "hotline", 2, 0),
        StatRow(H0, "broadband", "ningbo", "hotline", 1, 0),
        StatRow(H0 + 3600, "broadband", "hangzhou", "hotline", 1, 0),
    ]


async def test_repeats_are_counted_where_the_repeat_lands(store: Store) -> None:
    await store.add_complaints([complaint("a", T0, subscriber="s1")])
    await store.add_complaints([
        complaint("b", T0 + timedelta(days=2), subscriber="s1", channel=Channel.app),  # repeat
        complaint("c", T0 + timedelta(days=2), subscriber="s2", channel=Channel.app),
        complaint("d", T0 + timedelta(days=20), subscriber="s1", channel=Channel.app),  # too late: not one
    ])
    rows = await store.complaint_stats(T0, T0 + timedelta(days=30))
    day2 = H0 + 2 * 86400
    assert rows == [
        StatRow(H0, "broadband", "hangzhou", "hotline", 1, 0),
        StatRow(day2, "broadband", "hangzhou", "app", 2, 1),
        StatRow(H0 + 20 * 86400, "broadband", "hangzhou", "app", 1, 0),
    ]


async def test_drills_and_duplicates_are_not_counted(store: Store) -> None:
    await store.add_complaints([complaint("a"), complaint("x", drill=True), complaint("y", drill=True)])
    await store.add_complaints([complaint("a"), complaint("b")])  # "a" again: stored once, counted once
    assert await store.complaint_stats(T0, T0 + timedelta(hours=1)) == [
        StatRow(H0, "broadband", "hangzhou", "hotline", 2, 0)]


async def test_the_range_is_half_open_in_whole_hours(store: Store) -> None:
    await store.add_complaints([
        complaint("before", T0 - timedelta(seconds=1)),
        complaint("first", T0 + timedelta(minutes=30)),
        complaint("last", T0 + timedelta(hours=2, minutes=59)),
        complaint("after", T0 + timedelta(hours=3)),
        # a UTC day later, in another Redis hash
        complaint("next-day", T0 + timedelta(days=1, hours=1)),
    ])
    # a start inside an hour takes that whole hour
    rows = await store.complaint_stats(T0 + timedelta(minutes=10), T0 + timedelta(hours=3))
    assert [(r.hour, r.count) for r in rows] == [(H0, 1), (H0 + 2 * 3600, 1)]
    later = await store.complaint_stats(T0 + timedelta(hours=3), T0 + timedelta(days=2))
    assert [(r.hour, r.count) for r in later] == [(H0 + 3 * 3600, 1), (H0 + 86400 + 3600, 1)]
    assert await store.complaint_stats(T0 + timedelta(days=5), T0 + timedelta(days=6)) == []
