"""The incident store contract (incidents, timeline, steps, acknowledgements), on SQLite and on a real Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from coordinator.errors import Conflict, IncidentNotFound
from coordinator.models import (
    Ack,
    IncidentStatus,
    TimelineEvent,
)
from coordinator.store import Store

from .builders import T0, incident, opened


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
