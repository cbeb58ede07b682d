"""One contract, every backend: each test runs on SQLite and on a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from coordinator.errors import Conflict, IncidentNotFound
from coordinator.models import (
    Ack,
    Channel,
    Complaint,
    Delivery,
    DeliveryKey,
    DeliveryStatus,
    Incident,
    IncidentStatus,
    Surge,
    TimelineEvent,
)
from coordinator.store import Store
from coordinator.store.records import StatusUpdate
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from .conftest import BUCKET_SECONDS

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def complaint(
    cid: str, at: datetime = T0, category: str = "broadband", region: str = "hangzhou", subscriber: str | None = None
) -> Complaint:
    return Complaint(
        id=cid, received_at=at, channel=Channel.hotline, category=category, region=region,
        subscriber_hash=subscriber or "h" + cid, text="宽带断网", ingested_at=at,
    )


def incident(iid: str, surge_key: str | None = "broadband/hangzhou", **extra: object) -> Incident:
    fields: dict[str, object] = dict(
        id=iid, playbook="broadband-outage", title="宽带大面积故障", severity="major",
        surge_key=surge_key, opened_at=T0, opened_by="surge", updated_at=T0,
    )
    fields.update(extra)
    return Incident.model_validate(fields)


def opened(by: str = "surge") -> TimelineEvent:
    return TimelineEvent(at=T0, kind="opened", actor=by)


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


async def test_a_reachable_store_answers_ping(store: Store) -> None:
    await store.ping()


async def test_secret_is_created_once(store: Store) -> None:
    assert await store.get_or_create_secret("subscriber", "first") == "first"
    assert await store.get_or_create_secret("subscriber", "second") == "first"


async def test_one_open_incident_per_surge_key(store: Store) -> None:
    created, is_new = await store.open_incident(incident("INC-1"), opened())
    assert is_new and created.id == "INC-1"
    same, is_new = await store.open_incident(incident("INC-2"), opened())
    assert not is_new and same.id == "INC-1"
    other, is_new = await store.open_incident(incident("INC-3", surge_key="billing/*"), opened())
    assert is_new and other.id == "INC-3"
    manual_a, new_a = await store.open_incident(incident("INC-4", surge_key=None), opened("leader"))
    manual_b, new_b = await store.open_incident(incident("INC-5", surge_key=None), opened("leader"))
    assert new_a and new_b
    # once resolved, the key is free again
    await store.save_incident(created.model_copy(update={"status": IncidentStatus.resolved, "revision": 1}))
    reopened, is_new = await store.open_incident(incident("INC-6"), opened())
    assert is_new and reopened.id == "INC-6"
    assert (await store.get_incident("INC-1")).status == IncidentStatus.resolved


async def test_concurrent_openers_make_one_incident(store: Store) -> None:
    results = await asyncio.gather(
        *(store.open_incident(incident(f"INC-{i}"), opened()) for i in range(50))
    )
    winners = [inc.id for inc, new in results if new]
    assert len(winners) == 1
    assert {inc.id for inc, _ in results} == set(winners)
    assert len(await store.list_incidents()) == 1


async def test_unknown_incident_raises(store: Store) -> None:
    with pytest.raises(IncidentNotFound):
        await store.get_incident("INC-404")
    with pytest.raises(IncidentNotFound):
        await store.save_incident(incident("INC-404"))
    with pytest.raises(IncidentNotFound):
        await store.append_timeline("INC-404", opened())


async def test_list_incidents_filters_newest_first(store: Store) -> None:
    await store.open_incident(incident("INC-1", opened_at=T0), opened())
    await store.open_incident(
        incident("INC-2", surge_key="billing/*", playbook="billing-error", opened_at=T0 + timedelta(hours=1)), opened()
    )
    await store.open_incident(
        incident("INC-3", surge_key=None, drill=True, opened_at=T0 + timedelta(hours=2)), opened()
    )
    inc1 = await store.get_incident("INC-1")
    await store.save_incident(inc1.model_copy(update={"status": IncidentStatus.closed, "revision": 1}))
    ids = lambda found: [i.id for i in found]  # noqa: E731
    assert ids(await store.list_incidents()) == ["INC-3", "INC-2", "INC-1"]
    assert ids(await store.list_incidents(open_only=True)) == ["INC-3", "INC-2"]
    assert ids(await store.list_incidents(open_only=False)) == ["INC-1"]
    assert ids(await store.list_incidents(drill=True)) == ["INC-3"]
    assert ids(await store.list_incidents(drill=False, playbook="broadband-outage")) == ["INC-1"]


async def test_timeline_is_append_only_in_order(store: Store) -> None:
    await store.open_incident(incident("INC-1"), opened())
    for n in range(5):
        await store.append_timeline(
            "INC-1", TimelineEvent(at=T0 + timedelta(minutes=n), kind="note", actor="leader", data={"n": n})
        )
    events = await store.timeline("INC-1")
    assert [e.kind for e in events] == ["opened"] + ["note"] * 5
    assert [e.data.get("n") for e in events[1:]] == [0, 1, 2, 3, 4]
    assert await store.timeline("INC-other") == []


def delivery(person: str, channel: str = "sms") -> Delivery:
    return Delivery(
        key=DeliveryKey(incident_id="INC-1", version=1, person_id=person, channel=channel),
        address="+8613900000001", content_hash="abc", updated_at=T0,
    )


async def test_delivery_is_deduplicated_and_only_moves_forward(store: Store) -> None:
    d = delivery("p1")
    assert await store.add_delivery(d) is True
    assert await store.add_delivery(d) is False
    assert await store.add_delivery(delivery("p1", "email")) is True
    at = T0 + timedelta(seconds=5)
    sent = await store.update_delivery(d.key, DeliveryStatus.sent, at=at, provider_id="SM1")
    assert sent.status == DeliveryStatus.sent and sent.provider_id == "SM1"
    done = await store.update_delivery(d.key, DeliveryStatus.delivered, at=at)
    assert done.status == DeliveryStatus.delivered and done.provider_id == "SM1"
    # a late "sent" and a duplicate "delivered" change nothing; neither does a late failure
    for late in (DeliveryStatus.sent, DeliveryStatus.delivered, DeliveryStatus.failed):
        assert (await store.update_delivery(d.key, late, at=at, error="x")).status == DeliveryStatus.delivered
    stored = await store.get_delivery(d.key)
    assert stored is not None and stored.status == DeliveryStatus.delivered and stored.error is None
    listed = await store.deliveries("INC-1")
    assert sorted((x.key.person_id, x.key.channel, x.status) for x in listed) == [
        ("p1", "email", DeliveryStatus.queued), ("p1", "sms", DeliveryStatus.delivered),
    ]
    assert await store.deliveries("INC-2") == []


async def test_first_ack_wins(store: Store) -> None:
    a1 = Ack(incident_id="INC-1", person_id="p1", version=1, via="sms", at=T0 + timedelta(minutes=2))
    a1_again = a1.model_copy(update={"via": "email", "at": T0 + timedelta(minutes=3)})
    a2 = Ack(incident_id="INC-1", person_id="p2", version=1, via="email", at=T0 + timedelta(minutes=1))
    role = Ack(incident_id="INC-1", person_id="p1", role="leader", via="api", at=T0 + timedelta(minutes=4))
    assert await store.record_ack(a1) is True
    assert await store.record_ack(a1_again) is False
    assert await store.record_ack(a2) is True
    assert await store.record_ack(role) is True
    assert await store.acks("INC-1") == [a2, a1, role]


async def test_data_survives_reopening(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if store_kind == "sqlite":
        path = tmp_path / "reopen.db"
        reopen = lambda: SqliteStore.open(path, BUCKET_SECONDS)  # noqa: E731
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:12]}:"
        reopen = lambda: RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)  # noqa: E731
    first = await reopen()
    await first.add_complaints([complaint("a")])
    await first.open_incident(incident("INC-1"), opened())
    await first.close()
    second = await reopen()
    assert [a.new for a in await second.add_complaints([complaint("a")])] == [False]
    assert await second.count_complaints() == 1
    assert (await second.open_incident(incident("INC-2"), opened()))[1] is False
    await second.close()


async def test_an_outbox_from_before_the_per_medium_queues_is_taken_over(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sms, email = delivery("p1"), delivery("p1", "email-reminder")
    if store_kind == "sqlite":
        path = tmp_path / "old.db"
        old = await SqliteStore.open(path, BUCKET_SECONDS)
        await old.add_deliveries([sms, email])
        await old._db.execute("DROP INDEX deliveries_outbox_medium")
        await old._db.execute("ALTER TABLE deliveries DROP COLUMN medium")
        await old._db.commit()
        await old.close()
        reopen = lambda: SqliteStore.open(path, BUCKET_SECONDS)  # noqa: E731
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:12]}:"
        old_redis = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
        await old_redis.add_deliveries([sms, email])
        r = old_redis._r
        for medium in ("sms", "email"):
            for did, due in await r.zrange(old_redis.keys.outbox(medium), 0, -1, withscores=True):
                await r.zadd(old_redis.keys.shared_outbox(), {did: due})
            await r.delete(old_redis.keys.outbox(medium))
        await old_redis.close()
        reopen = lambda: RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)  # noqa: E731
    store = await reopen()
    try:
        assert await store.outbox_size() == 2
        assert [d.key for d in await store.claim_deliveries("w", T0, 30, 10, medium="email")] == [email.key]
        assert [d.key for d in await store.claim_deliveries("w", T0, 30, 10, medium="sms")] == [sms.key]
    finally:
        await store.close()


async def test_a_save_from_a_stale_copy_is_refused(store: Store) -> None:
    await store.open_incident(incident("INC-1"), opened())
    base = await store.get_incident("INC-1")
    await store.save_incident(base.model_copy(update={"severity": "critical", "revision": 1}))
    with pytest.raises(Conflict):
        await store.save_incident(base.model_copy(update={"severity": "minor", "revision": 1}))
    with pytest.raises(Conflict):
        await store.save_incident(base.model_copy(update={"severity": "minor", "revision": 5}))
    stored = await store.get_incident("INC-1")
    assert (stored.severity, stored.revision) == ("critical", 1)


async def test_a_step_is_claimed_once_and_a_lapsed_claim_taken_over(store: Store) -> None:
    assert await store.claim_step("INC-1", "step:0:1", "worker-a", T0, 30) is True
    assert await store.claim_step("INC-1", "step:0:1", "worker-b", T0 + timedelta(seconds=10), 30) is False
    # worker-a died: its lease lapses and worker-b takes over
    assert await store.claim_step("INC-1", "step:0:1", "worker-b", T0 + timedelta(seconds=31), 30) is True
    assert await store.finished_steps("INC-1") == set()
    await store.finish_step("INC-1", "step:0:1")
    assert await store.claim_step("INC-1", "step:0:1", "worker-c", T0 + timedelta(days=1), 30) is False
    assert await store.finished_steps("INC-1") == {"step:0:1"}
    assert await store.claim_step("INC-2", "step:0:1", "worker-c", T0, 30) is True


async def test_concurrent_claims_have_one_winner(store: Store) -> None:
    got = await asyncio.gather(*(store.claim_step("INC-1", "k", f"w{i}", T0, 30) for i in range(20)))
    assert sum(got) == 1


def surge(key: str, at: datetime) -> Surge:
    category, region = key.split("/")
    return Surge(key=key, category=category, region=region, onset=at - timedelta(minutes=10), detected_at=at,
                 observed=40, expected=5.0, ratio=8.0, score=0.99, samples=["c1", "c2"])


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


async def test_outbox_claims_leases_retries_and_finishes(store: Store) -> None:
    for person in ("p1", "p2", "p3"):
        assert await store.add_delivery(delivery(person))
    assert await store.add_delivery(delivery("p4"), due=T0 + timedelta(minutes=5))
    assert await store.outbox_size() == 4
    first = await store.claim_deliveries("w1", T0, 30, 2)
    second = await store.claim_deliveries("w2", T0, 30, 10)
    assert len(first) == 2 and len(second) == 1  # p4 is not due yet
    assert {d.key.person_id for d in first + second} == {"p1", "p2", "p3"}
    assert await store.claim_deliveries("w3", T0 + timedelta(seconds=10), 30, 10) == []
    sent = first[0].key
    await store.update_delivery(sent, DeliveryStatus.sent, at=T0, provider_id="SM123")
    await store.finish_delivery(sent)
    found = await store.delivery_by_provider("SM123")
    assert found is not None and found.key == sent
    assert await store.delivery_by_provider("SM404") is None
    await store.retry_delivery(first[1].key, T0 + timedelta(seconds=20), attempts=1, error="20429")
    # w2 died holding its claim: the lease lapses and the delivery is due again
    again = await store.claim_deliveries("w4", T0 + timedelta(seconds=31), 30, 10)
    assert {d.key.person_id for d in again} == {first[1].key.person_id, second[0].key.person_id}
    retried = next(d for d in again if d.key == first[1].key)
    assert (retried.attempts, retried.error) == (1, "20429")
    # Each keeps the time it was first claimed: a later claim knows an earlier worker had it.
    assert [d.claimed_at for d in first + second] == [T0] * 3
    assert [d.claimed_at for d in again] == [T0, T0]
    assert await store.outbox_size() == 3


async def test_concurrent_claims_never_share_a_delivery(store: Store) -> None:
    for i in range(60):
        await store.add_delivery(delivery(f"p{i}"))
    claims = await asyncio.gather(*(store.claim_deliveries(f"w{i}", T0, 30, 7) for i in range(12)))
    ids = [d.key.as_id() for claim in claims for d in claim]
    assert len(ids) == len(set(ids)) == 60


async def test_opt_outs_are_mirrored(store: Store) -> None:
    await store.set_opt_out("+8613900000001", True)
    await store.set_opt_out("+8613900000002", True)
    await store.set_opt_out("+8613900000002", False)
    await store.set_opt_out("+8613900000003", False)
    assert await store.opted_out() == {"+8613900000001"}


async def test_deliveries_are_added_in_batches_deduplicated(store: Store) -> None:
    assert await store.add_deliveries([delivery(f"p{i}") for i in range(5)]) == 5
    assert await store.add_deliveries([delivery("p4"), delivery("p5"), delivery("p5", "email")]) == 2
    assert await store.outbox_size() == 7
    assert len(await store.deliveries("INC-1")) == 7


async def test_each_medium_is_claimed_on_its_own(store: Store) -> None:
    await store.add_deliveries([delivery("p1"), delivery("p1", "email"), delivery("p2", "sms-reminder"),
                                delivery("p2", "email-role-leader-assigned")])
    sms = await store.claim_deliveries("w1", T0, 30, 10, medium="sms")
    assert sorted(d.key.channel for d in sms) == ["sms", "sms-reminder"]
    assert await store.claim_deliveries("w1", T0, 30, 10, medium="sms") == []
    email = await store.claim_deliveries("w2", T0, 30, 1, medium="email")
    assert [d.key.medium for d in email] == ["email"]
    rest = await store.claim_deliveries("w3", T0, 30, 10)  # no medium: any
    assert len(rest) == 1 and rest[0].key.medium == "email" and rest[0].key != email[0].key
    await store.retry_delivery(sms[0].key, T0 + timedelta(seconds=5), attempts=1, error="20429")
    assert [d.key for d in await store.claim_deliveries("w1", T0 + timedelta(seconds=5), 30, 10, medium="sms")] \
        == [sms[0].key]
    assert await store.outbox_size() == 4


async def test_status_updates_in_a_batch(store: Store) -> None:
    a, b, c = delivery("p1"), delivery("p2"), delivery("p3", "email")
    await store.add_deliveries([a, b, c])
    await store.claim_deliveries("w1", T0, 30, 10)
    at = T0 + timedelta(seconds=1)
    answers = await store.update_deliveries([
        # a callback beats the sender's own record: the record still finishes it and
        # keeps the provider id, but does not move the status back
        StatusUpdate(a.key, DeliveryStatus.delivered, at, provider_id="SM1"),
        StatusUpdate(a.key, DeliveryStatus.sent, at, provider_id="SM1", finish=True),
        StatusUpdate(b.key, DeliveryStatus.sent, at, provider_id="SM2", finish=True),
        StatusUpdate(None, DeliveryStatus.delivered, at, provider_id="SM2"),  # by the provider id alone
        StatusUpdate(None, DeliveryStatus.delivered, at, provider_id="SM404"),
        StatusUpdate(DeliveryKey(incident_id="INC-1", version=1, person_id="nobody", channel="sms"),
                     DeliveryStatus.sent, at),
        StatusUpdate(c.key, DeliveryStatus.failed, at, error="smtp-550", finish=True),
        StatusUpdate(c.key, DeliveryStatus.failed, at, error="later"),  # a duplicate changes nothing
    ])
    assert [(m.delivery.status if m.delivery else None, m.moved) for m in answers] == [
        (DeliveryStatus.delivered, True), (DeliveryStatus.delivered, False),
        (DeliveryStatus.sent, True), (DeliveryStatus.delivered, True),
        (None, False), (None, False),
        (DeliveryStatus.failed, True), (DeliveryStatus.failed, False),
    ]
    assert await store.outbox_size() == 0
    stored = {d.key.person_id: d for d in await store.deliveries("INC-1")}
    assert (stored["p1"].status, stored["p1"].provider_id) == (DeliveryStatus.delivered, "SM1")
    assert (stored["p2"].status, stored["p2"].provider_id) == (DeliveryStatus.delivered, "SM2")
    assert (stored["p3"].status, stored["p3"].error) == (DeliveryStatus.failed, "smtp-550")
    assert stored["p2"].updated_at == at
    found = await store.delivery_by_provider("SM2")
    assert found is not None and found.key == b.key
    assert await store.update_deliveries([]) == []


async def test_a_provider_id_is_kept_when_the_status_does_not_move(store: Store) -> None:
    d = delivery("p1")
    await store.add_delivery(d)
    await store.update_delivery(d.key, DeliveryStatus.sending, at=T0)  # a callback by our id, no SID
    [(kept, moved)] = await store.update_deliveries([StatusUpdate(d.key, DeliveryStatus.queued, T0, "SM9", finish=True)])
    assert not moved and kept is not None and (kept.status, kept.provider_id) == (DeliveryStatus.sending, "SM9")
    found = await store.delivery_by_provider("SM9")
    assert found is not None and found.key == d.key
