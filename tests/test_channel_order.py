"""A playbook may use a person's channels in turn: the script by SMS first, the email
only for those whose SMS has no delivery receipt (and who have not acknowledged) after
`next_channel_after`. Over SMPP, against the sandbox SMSC holding its receipts back."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from coordinator.clock import ManualClock
from coordinator.config.catalog import Catalog
from coordinator.config.schemas import Audience
from coordinator.escalation import due_steps
from coordinator.models import DeliveryStatus, Medium
from coordinator.sandbox.smsc import SandboxSmsc
from coordinator.store import Store
from coordinator.store.records import StatusUpdate
from coordinator.web.state import SERVICES, Services

from .smpp_channels import smpp_service

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
WAIT = timedelta(minutes=10)


def in_turn(catalog: Catalog) -> Catalog:
    playbook = catalog.playbooks["broadband-outage"]
    audience = playbook.audience.model_copy(update={"channels": "in_turn", "next_channel_after": WAIT})
    return dataclasses.replace(catalog, playbooks={**catalog.playbooks,
                                                   playbook.id: playbook.model_copy(update={"audience": audience})})


def test_in_turn_needs_a_wait_and_together_has_none() -> None:
    base = {"teams": ["hotline"], "ack_within": "30m"}
    assert Audience.model_validate({**base, "channels": "in_turn", "next_channel_after": "10m"}).next_channel_after
    with pytest.raises(ValidationError, match="needs next_channel_after"):
        Audience.model_validate({**base, "channels": "in_turn"})
    with pytest.raises(ValidationError, match="in_turn only"):
        Audience.model_validate({**base, "next_channel_after": "10m"})


@pytest.fixture
async def service(store: Store, catalog: Catalog) -> AsyncIterator[tuple[Services, SandboxSmsc, ManualClock]]:
    clock = ManualClock(T0)
    # Receipts that do not come.
    async with smpp_service(store, in_turn(catalog), clock, receipt_delay=3600) as (client, smsc, _):
        yield client.app[SERVICES], smsc, clock  # type: ignore[index]


async def test_the_email_goes_only_to_those_whose_sms_is_not_delivered_in_time(
        service: tuple[Services, SandboxSmsc, ManualClock]) -> None:
    services, smsc, clock = service
    opened = await services.pipeline.trigger("broadband-outage", region="ningbo", actor="chen-li")
    incident = opened.incident
    await services.outbox.drain()
    scripts = [d for d in await services.store.deliveries(incident.id) if d.key.is_script]
    assert scripts and {d.key.medium for d in scripts} == {Medium.sms}  # SMS first, no email yet
    one, other, reached = scripts[0], scripts[1], scripts[2]
    await services.pipeline.acknowledge(incident.id, 1, one.key.person_id, "console")
    await services.outbox.report(StatusUpdate(reached.key, DeliveryStatus.delivered, clock.now(),
                                              provider_id=reached.provider_id))
    v1 = (await services.store.get_incident(incident.id)).script(1)
    assert v1 is not None and v1.approved_at is not None
    steps = due_steps(await services.store.get_incident(incident.id), incident.plan, v1.approved_at + WAIT, set())
    assert "next_channel:1" in [s.key for s in steps]
    clock.advance(WAIT)
    await services.pipeline.tick()
    await services.outbox.drain()
    emails = {d.key.person_id for d in await services.store.deliveries(incident.id)
              if d.key.is_script and d.key.medium == Medium.email}
    assert other.key.person_id in emails
    assert one.key.person_id not in emails and reached.key.person_id not in emails  # acknowledged; delivered
    assert emails <= {d.key.person_id for d in scripts}
    timeline = [e for e in await services.store.timeline(incident.id) if e.kind == "next_channel"]
    assert [e.data["emails"] for e in timeline] == [len(emails)]
