"""Records the store contract tests build: complaints, incidents, deliveries at T0."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from coordinator.models import (
    Channel,
    Complaint,
    Delivery,
    DeliveryKey,
    DeliveryStatus,
    Incident,
    Surge,
    TimelineEvent,
)
from coordinator.store import Store
from coordinator.store.records import StatusUpdate

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


def delivery(person: str, channel: str = "sms") -> Delivery:
    return Delivery(
        key=DeliveryKey(incident_id="INC-1", version=1, person_id=person, channel=channel),
        address="+8613900000001", content_hash="abc", updated_at=T0,
    )


def surge(key: str, at: datetime) -> Surge:
    category, region = key.split("/")
    return Surge(key=key, category=category, region=region, onset=at - timedelta(minutes=10), detected_at=at,
                 observed=40, expected=5.0, ratio=8.0, score=0.99, samples=["c1", "c2"])


async def update(store: Store, key: DeliveryKey, status: DeliveryStatus, *, at: datetime,
                 provider_id: str | None = None, error: str | None = None) -> Delivery:
    """One status update through the batch call; the stored delivery after it."""
    [(found, _)] = await store.update_deliveries([StatusUpdate(key, status, at, provider_id, error)])
    assert found is not None, key.as_id()
    return found
