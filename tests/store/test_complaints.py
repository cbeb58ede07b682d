"""The complaint store contract (complaints, stream counts and state, surges), on SQLite and on a real Redis."""

from __future__ import annotations

from datetime import timedelta

from coordinator.models import (
    Channel,
)
from coordinator.store import Store

from ..conftest import BUCKET_SECONDS
from .builders import T0, complaint, surge


async def test_complaints_are_stored_once_and_counted_once(store: Store) -> None:
    first = await store.add_complaints([complaint("a"), complaint("b"), complaint("a")])
    again = await store.add_complaints([complaint("b"), complaint("c")])
    assert [a.new for a in first] == [True, True, False]
    assert [a.new for a in again] == [False, True]
    assert await store.count_complaints() == 3
    got = await store.get_complaint("a")
    assert got == complaint("a")
    assert await store.get_complaint("nope") is None
    counts = await store.bucket_counts("broadband/hangzhou", T0, T0 + timedelta(minutes=5))
    assert counts == {int(T0.timestamp()): 3}


async def test_each_complaint_counts_into_its_stream_and_the_category_wide_one(store: Store) -> None:
    await store.add_complaints(
        [
            complaint("1", T0, region="hangzhou"),
            complaint("2", T0 + timedelta(minutes=4, seconds=59), region="ningbo"),
            complaint("3", T0 + timedelta(minutes=5), region="hangzhou"),
            complaint("4", T0 + timedelta(days=1, minutes=1), region="hangzhou"),
        ]
    )
    b0 = int(T0.timestamp())
    span = (T0, T0 + timedelta(days=2))
    assert await store.bucket_counts("broadband/hangzhou", *span) == {
        b0: 1, b0 + BUCKET_SECONDS: 1, b0 + 86400: 1,
    }
    assert await store.bucket_counts("broadband/ningbo", *span) == {b0: 1}
    assert await store.bucket_counts("broadband/*", *span) == {b0: 2, b0 + BUCKET_SECONDS: 1, b0 + 86400: 1}
    # the end is exclusive, a start inside a bucket includes that bucket
    assert await store.bucket_counts("broadband/*", T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)) == {b0: 2}
    assert await store.stream_names() == [
        "broadband/*", "broadband/hangzhou", "broadband/ningbo",
    ]


async def test_counts_of_several_streams_at_once_are_each_streams_own(store: Store) -> None:
    regulator = complaint("m5", T0 + timedelta(days=1, minutes=7)).model_copy(update={"channel": Channel.regulator})
    await store.add_complaints([
        complaint("m1", T0, region="hangzhou", subscriber="s1"),
        complaint("m2", T0 + timedelta(minutes=6), region="ningbo", subscriber="s1"),
        complaint("m3", T0 + timedelta(minutes=12), region="ningbo", subscriber="s1"),
        complaint("m4", T0 + timedelta(days=1, minutes=1), region="hangzhou"),
        regulator,
    ])
    streams = ["broadband/hangzhou", "broadband/ningbo", "broadband/*", "outage/hangzhou"]
    spans = [(T0, T0 + timedelta(days=2)), (T0 + timedelta(minutes=7), T0 + timedelta(days=1, minutes=5)),
             (T0 + timedelta(minutes=5), T0 + timedelta(minutes=10))]
    for span in spans:
        for kind in ("all", "repeat", "regulator"):
            many = await store.bucket_counts_many(streams, *span, kind=kind)
            assert many == {s: await store.bucket_counts(s, *span, kind=kind) for s in streams}, (span, kind)
    b0 = int(T0.timestamp())
    assert (await store.bucket_counts_many(streams, *spans[0]))["broadband/*"] == {
        b0: 1, b0 + BUCKET_SECONDS: 1, b0 + 2 * BUCKET_SECONDS: 1, b0 + 86400: 1, b0 + 86400 + BUCKET_SECONDS: 1,
    }
    assert await store.bucket_counts_many([], *spans[0]) == {}


async def test_surges_are_recorded_and_queried(store: Store) -> None:
    await store.record_surge(surge("broadband/hangzhou", T0))
    await store.record_surge(surge("billing/*", T0 + timedelta(hours=1)))
    await store.record_surge(surge("broadband/hangzhou", T0 + timedelta(days=3)))
    assert [s.key for s in await store.surges()] == ["broadband/hangzhou", "billing/*", "broadband/hangzhou"]
    assert [s.detected_at for s in await store.surges(key="broadband/hangzhou", since=T0 + timedelta(days=1))] == [
        T0 + timedelta(days=3)
    ]


async def test_repeat_complainants_within_seven_days(store: Store) -> None:
    day = timedelta(days=1)
    added = await store.add_complaints([
        complaint("r1", T0, subscriber="s1"),
        complaint("r2", T0 + 2 * day, subscriber="s1"),  # again within 7 days: repeat
        complaint("r3", T0 + 2 * day, subscriber="s2"),
        complaint("r2", T0 + 2 * day, subscriber="s1"),  # the same complaint again: not new
    ])
    assert [(a.new, a.repeat) for a in added] == [(True, False), (True, True), (True, False), (False, False)]
    later = await store.add_complaints([
        complaint("r4", T0 + 10 * day, subscriber="s1"),  # 8 days after the last: not a repeat
        complaint("r5", T0 + 10 * day + timedelta(hours=1), subscriber="s1", region="ningbo"),
    ])
    assert [(a.new, a.repeat) for a in later] == [(True, False), (True, True)]
    span = (T0, T0 + 11 * day)
    b = lambda at: int(at.timestamp()) - int(at.timestamp()) % BUCKET_SECONDS  # noqa: E731
    assert await store.bucket_counts("broadband/hangzhou", *span, kind="repeat") == {b(T0 + 2 * day): 1}
    assert await store.bucket_counts("broadband/*", *span, kind="repeat") == {
        b(T0 + 2 * day): 1, b(T0 + 10 * day + timedelta(hours=1)): 1,
    }
    assert sum((await store.bucket_counts("broadband/*", *span)).values()) == 5
    assert await store.bucket_counts("broadband/*", *span, kind="regulator") == {}


async def test_regulator_channel_complaints_are_counted_apart(store: Store) -> None:
    regulator = complaint("g1").model_copy(update={"channel": Channel.regulator})
    await store.add_complaints([regulator, complaint("g2"), complaint("g3", region="ningbo")])
    b0 = int(T0.timestamp())
    span = (T0, T0 + timedelta(hours=1))
    assert await store.bucket_counts("broadband/hangzhou", *span, kind="regulator") == {b0: 1}
    assert await store.bucket_counts("broadband/*", *span, kind="regulator") == {b0: 1}
    assert await store.bucket_counts("broadband/ningbo", *span, kind="regulator") == {}
    assert await store.bucket_counts("broadband/*", *span) == {b0: 3}


async def test_stream_state_is_saved_by_compare_and_set(store: Store) -> None:
    assert await store.load_stream_state("broadband/hangzhou") == (None, 0)
    assert await store.save_stream_state("broadband/hangzhou", {"n": 1}, 1) is True
    assert await store.save_stream_state("broadband/hangzhou", {"n": 99}, 1) is False
    assert await store.save_stream_state("broadband/hangzhou", {"n": 2}, 2) is True
    assert await store.save_stream_state("broadband/hangzhou", {"n": 3}, 4) is False
    assert await store.load_stream_state("broadband/hangzhou") == ({"n": 2}, 2)


async def test_one_open_surge_per_stream(store: Store) -> None:
    assert await store.stream_surge("broadband/hangzhou") is None
    first = surge("broadband/hangzhou", T0)
    assert await store.open_stream_surge(first) is True
    assert await store.open_stream_surge(surge("broadband/hangzhou", T0 + timedelta(minutes=5))) is False
    assert await store.stream_surge("broadband/hangzhou") == first
    await store.close_stream_surge("broadband/hangzhou")
    assert await store.stream_surge("broadband/hangzhou") is None
    assert await store.open_stream_surge(surge("broadband/hangzhou", T0 + timedelta(hours=1))) is True
