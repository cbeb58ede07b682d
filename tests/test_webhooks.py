"""Lifecycle events out, the parts that decide: the Standard Webhooks signature against
the specification's own test vector, the back-off schedule, the table of timeline kinds
to CloudEvents types and the events built from it, webhooks.yaml as `coordinator check`
reads it; then the story in one process against a loopback subscriber: an incident
opened, acknowledged, escalated, published and resolved reaches the subscriber as signed
CloudEvents, once each, retried after a 500, not after a 410."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from coordinator.app import build_services
from coordinator.clock import SystemClock
from coordinator.config.catalog import Catalog, check_config, load_catalog
from coordinator.config.settings import Settings
from coordinator.config.webhooks import Subscriber, Webhooks, secret_problem
from coordinator.webhooks.events import DRILL_FINISHED, EVENT_TYPES, LifecycleEvents, drill_event, event_type, incident_events
from coordinator.models import DrillRun, DrillRunStatus, TimelineEvent
from coordinator.store import Store
from coordinator.webhooks.sender import BASE_DELAY, MAX_DELAY, backoff, retry_after_seconds, signed_headers

from .conftest import REPO
from .webhook_receiver import OTHER_SECRET, SECRET, Receiver

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


# --- the signature ---------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    """The specification's published vector: id msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp
    1614265330, body {"test": 2432232314}, secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw."""
    at = datetime.fromtimestamp(1614265330, timezone.utc)
    headers = signed_headers(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", b'{"test": 2432232314}', at)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["Content-Type"] == "application/cloudevents+json"


def test_a_receiver_verifies_with_the_reference_library_and_refuses_tampering() -> None:
    now = datetime.now(timezone.utc)
    body = b'{"specversion": "1.0", "id": "INC-1.opened.0"}'
    headers = signed_headers(SECRET, "INC-1.opened.0", body, now)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(Exception):
        Webhook(SECRET).verify(body.replace(b"INC-1", b"INC-2"), headers)
    with pytest.raises(Exception):
        Webhook(OTHER_SECRET).verify(body, headers)


@pytest.mark.parametrize(("secret", "ok"), [
    (SECRET, True), (SECRET.removeprefix("whsec_"), True), (OTHER_SECRET, True),
    ("", False), (None, False), ("whsec_c2hvcnQ=", False),  # 5 bytes
    ("whsec_not base64!", False), ("plain-text-password-that-is-long-enough", False),
])
def test_secrets_must_be_standard_webhooks_secrets(secret: str | None, ok: bool) -> None:
    assert (secret_problem(secret) is None) == ok


# --- back-off --------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "ceiling"), [(1, 5), (2, 10), (3, 20), (4, 40), (8, 640), (10, 2560),
                                                   (11, 3600), (40, 3600)])
def test_backoff_doubles_with_equal_jitter_up_to_an_hour(attempts: int, ceiling: float) -> None:
    assert backoff(attempts, 0.0) == ceiling / 2
    assert ceiling / 2 < backoff(attempts, 0.5) < ceiling
    assert backoff(attempts, 0.999999) == pytest.approx(ceiling, rel=1e-5)
    assert BASE_DELAY == 5 and MAX_DELAY == 3600


def test_retry_after_is_honoured_when_longer_and_capped() -> None:
    assert backoff(1, 0.0, retry_after=30) == 30
    assert backoff(5, 0.0, retry_after=1) == 40  # shorter than the back-off: the back-off
    assert backoff(1, 0.0, retry_after=10**6) == MAX_DELAY
    assert retry_after_seconds("120") == 120 and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None


# --- the table and the events ----------------------------------------------------------


@pytest.mark.parametrize(("kind", "data", "expected"), [
    ("opened", {}, "cn.coordinator.incident.opened"),
    ("role_acked", {"role": "leader"}, "cn.coordinator.role.acknowledged"),
    ("status", {"status": "acknowledged"}, "cn.coordinator.incident.acknowledged"),
    ("escalated", {"role": "leader"}, "cn.coordinator.role.escalated"),
    ("script_approved", {"version": 1}, "cn.coordinator.script.approved"),
    ("script_sent", {"version": 1}, "cn.coordinator.script.published"),
    ("status", {"status": "resolved"}, "cn.coordinator.incident.resolved"),
    ("status", {"status": "closed"}, None), ("status", {"status": "scripted"}, None),
    ("note", {"text": "x"}, None), ("script_drafted", {}, None), ("role_assigned", {}, None),
])
def test_timeline_kinds_map_to_cloudevents_types(kind: str, data: dict[str, object], expected: str | None) -> None:
    assert event_type(TimelineEvent(at=T0, kind=kind, data=data)) == expected


def test_every_type_is_one_a_subscriber_may_ask_for() -> None:
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) == 8 and DRILL_FINISHED in EVENT_TYPES


async def test_incident_events_are_structured_cloudevents_with_stable_ids(store: Store, catalog: Catalog) -> None:
    services = await build_services(Settings(subscriber_key="k", tick_seconds=0), store=store, catalog=catalog,
                                    clock=SystemClock())
    incident = (await services.pipeline.trigger("broadband-outage", region="ningbo", actor="leader-1")).incident
    events = [TimelineEvent(at=T0, kind="note", data={"text": "x"}),
              TimelineEvent(at=T0, kind="role_acked", actor="p1", data={"role": "leader", "via": "sms", "level": 0})]
    built = incident_events(incident, events, "r7", "/coordinator/test")
    assert built == incident_events(incident, events, "r7", "/coordinator/test")  # the same whoever builds it
    [(event_id, kind, body)] = built
    assert event_id == f"{incident.id}.r7.1" and kind == "cn.coordinator.role.acknowledged"
    event = JSONFormat().read(None, body)  # the CloudEvents SDK reads it back
    assert event.get_specversion() == "1.0" and event.get_id() == event_id and event.get_type() == kind
    assert event.get_source() == "/coordinator/test" and event.get_subject() == incident.id
    assert event.get_time() == T0 and event.get_datacontenttype() == "application/json"
    data = json.loads(body)["data"]
    assert data["incident"]["id"] == incident.id and data["incident"]["playbook"] == "broadband-outage"
    assert data["actor"] == "p1" and data["details"] == {"role": "leader", "via": "sms", "level": 0}


async def test_lifecycle_queues_per_subscriber_wanting_the_type_once(store: Store) -> None:
    config = Webhooks(source="/coordinator/t", subscribers=(
        Subscriber("crm", "http://127.0.0.1:9/a", SECRET, frozenset(EVENT_TYPES), 5.0),
        Subscriber("screen", "http://127.0.0.1:9/b", SECRET, frozenset({DRILL_FINISHED}), 5.0)))
    wake = asyncio.Event()
    lifecycle = LifecycleEvents(store=store, webhooks=lambda: config, wake=wake)
    run = DrillRun(id="weekly-broadband-20261124-1000", drill_id="weekly-broadband", title="演练", how="schedule",
                   started_at=T0, status=DrillRunStatus.finished, ended_at=T0 + timedelta(hours=1),
                   end_reason="time is up", incident_id="DRL-20261124-abcdef")
    assert await lifecycle.drill_finished(run) == 2 and wake.is_set()
    assert await lifecycle.drill_finished(run) == 0  # two instances finishing one run: queued once
    assert await store.webhook_queue_depths() == {"crm": 1, "screen": 1}
    event_id, kind, body = drill_event(run, "/coordinator/t")
    [queued] = await store.claim_webhooks("screen", "w", T0 + timedelta(hours=2), 30, 10)
    assert (queued.event_id, queued.event_type, queued.body) == (event_id, kind, body)
    assert json.loads(body)["data"]["drill_run"]["end_reason"] == "time is up"
    assert json.loads(body)["subject"] == "DRL-20261124-abcdef"


# --- webhooks.yaml ---------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    for folder in ("playbooks", "templates", "contacts", "drills"):
        shutil.copytree(REPO / folder, target / folder)
    shutil.copy(REPO / "categories.yaml", target / "categories.yaml")
    return target


GOOD = """\
source: /coordinator/gd-prod
max_age_hours: 12
subscribers:
  - id: crm
    url: https://crm.example.com/hooks/coordinator
    secret_env: TEST_WEBHOOK_CRM_SECRET
    events: [cn.coordinator.incident.opened, cn.coordinator.incident.resolved]
    timeout_seconds: 3
  - id: screen
    url: http://10.0.0.5:8000/events
    secret_env: TEST_WEBHOOK_SCREEN_SECRET
"""


def test_a_good_webhooks_file_is_loaded_with_secrets_from_the_environment(
        config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_CRM_SECRET", SECRET)
    monkeypatch.setenv("TEST_WEBHOOK_SCREEN_SECRET", OTHER_SECRET)
    (config_dir / "webhooks.yaml").write_text(GOOD, encoding="utf-8")
    hooks = load_catalog(config_dir).webhooks
    assert hooks.source == "/coordinator/gd-prod" and hooks.max_age_seconds == 12 * 3600
    crm, screen = hooks.subscribers
    assert crm.secret == SECRET and crm.timeout_seconds == 3 and SECRET not in repr(crm)
    assert crm.events == {"cn.coordinator.incident.opened", "cn.coordinator.incident.resolved"}
    assert screen.events == set(EVENT_TYPES) and screen.timeout_seconds == 5
    assert [s.id for s in hooks.wanting("cn.coordinator.incident.opened")] == ["crm", "screen"]
    assert [s.id for s in hooks.wanting(DRILL_FINISHED)] == ["screen"]


def test_no_webhooks_file_means_no_subscribers(config_dir: Path) -> None:
    assert load_catalog(config_dir).webhooks == Webhooks()


def test_problems_are_reported_with_file_and_line(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_CRM_SECRET", "hunter2")
    monkeypatch.delenv("TEST_WEBHOOK_SCREEN_SECRET", raising=False)
    (config_dir / "webhooks.yaml").write_text("""\
subscribers:
  - id: crm
    url: ftp://crm.example.com/x
    secret_env: TEST_WEBHOOK_CRM_SECRET
    events: [cn.coordinator.incident.opened, incident.exploded]
  - id: crm
    url: https://b.example.com/
    secret_env: TEST_WEBHOOK_SCREEN_SECRET
  - id: third
    url: https://c.example.com/
    secret_env: lower_case
    timeout_seconds: 0
""", encoding="utf-8")
    problems = check_config(config_dir)
    assert "webhooks.yaml:3: subscribers[0].url: must be an http:// or https:// URL, got 'ftp://crm.example.com/x'" \
        in problems
    assert any(p.startswith("webhooks.yaml:5: subscribers[0].events[1]: unknown event type 'incident.exploded'")
               for p in problems)
    assert any(p.startswith("webhooks.yaml:4: subscribers[0].secret_env: environment variable "
                            "TEST_WEBHOOK_CRM_SECRET is not a Standard Webhooks secret") for p in problems)
    assert "webhooks.yaml:6: subscribers[1].id: duplicate subscriber id 'crm' (first at subscribers[0])" in problems
    assert ("webhooks.yaml:8: subscribers[1].secret_env: environment variable TEST_WEBHOOK_SCREEN_SECRET is not set"
            in problems)
    assert any(p.startswith("webhooks.yaml:11: subscribers[2].secret_env:") for p in problems)
    assert any(p.startswith("webhooks.yaml:12: subscribers[2].timeout_seconds:") for p in problems)
    assert not any("hunter2" in p for p in problems)  # a secret is never printed


# --- the story, in one process -------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    # The first request for each event fails with 500, the second succeeds.
    rx = await Receiver(answer=lambda n: 500 if n == 1 else 200).start()
    yield rx
    await rx.stop()


async def test_the_story_reaches_a_subscriber_signed_once_each_after_a_500(
        store: Store, catalog: Catalog, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("coordinator.webhooks.sender.BASE_DELAY", 0.2)  # the schedule itself is tested above
    subscriber = Subscriber("crm", receiver.url, SECRET, frozenset(EVENT_TYPES), 5.0)
    with_hooks = replace(catalog, webhooks=Webhooks(source="/coordinator/test", subscribers=(subscriber,)))
    services = await build_services(Settings(subscriber_key="k", tick_seconds=0), store=store, catalog=with_hooks,
                                    clock=SystemClock())
    stop = asyncio.Event()
    sender = asyncio.create_task(services.webhooks.run(stop))
    try:
        incident = (await services.pipeline.trigger("broadband-outage", region="ningbo", actor="leader-1")).incident
        leader = incident.roles[0]
        await services.pipeline.ack_role(incident.id, leader.holder, leader.role)
        await services.pipeline.resolve(incident.id, "leader-1", "fixed")
        wanted = {"cn.coordinator.incident.opened", "cn.coordinator.script.approved",
                  "cn.coordinator.script.published", "cn.coordinator.role.acknowledged",
                  "cn.coordinator.incident.acknowledged", "cn.coordinator.incident.resolved"}
        async with asyncio.timeout(60):  # a bound on a hang, not a timing assertion
            while (not wanted <= {r.event["type"] for r in receiver.delivered().values()}
                   or await store.webhook_queue_depths()):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await sender
    delivered = receiver.delivered()
    for event_id, request in delivered.items():
        tries = [r for r in receiver.received if r.id == event_id]
        assert [t.status for t in tries] == [500, 200]  # retried once, then never again
        assert tries[0].body == tries[1].body  # the same bytes, the same id
        assert all(t.signed_by(SECRET) and not t.signed_by(OTHER_SECRET) for t in tries)
        event = request.event
        assert event["id"] == event_id and event["specversion"] == "1.0" and event["subject"] == incident.id
        assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert await store.webhook_queue_depths() == {}
    types = [r.event["type"] for r in delivered.values()]
    assert types.count("cn.coordinator.script.published") == 2  # version 1 and the stand-down


def test_the_install_guides_verification_snippet_accepts_our_deliveries() -> None:
    """The by-hand verifier printed in docs/ops/install.md, run against a signed request."""
    guide = (REPO / "docs" / "ops" / "install.md").read_text(encoding="utf-8")
    snippet = next(block for block in guide.split("```python")[1:] if "def verify(" in block).split("```")[0]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)  # noqa: S102 - the guide's own code, tested as printed
    verify = namespace["verify"]
    body = b'{"specversion": "1.0", "id": "INC-1.opened.0"}'
    headers = signed_headers(SECRET, "INC-1.opened.0", body, datetime.now(timezone.utc))
    assert verify(body, headers, SECRET)  # type: ignore[operator]
    assert not verify(body + b" ", headers, SECRET)  # type: ignore[operator]
    assert not verify(body, headers, OTHER_SECRET)  # type: ignore[operator]
    stale = signed_headers(SECRET, "INC-1.opened.0", body, datetime.now(timezone.utc) - timedelta(hours=1))
    assert not verify(body, stale, SECRET)  # type: ignore[operator]


async def test_a_reload_brings_new_subscribers_in(store: Store, catalog: Catalog) -> None:
    """The catalog in use is read at each event: subscribers added by a reload get the
    events that follow it, and one removed gets no more."""
    from coordinator.app import use_catalog

    services = await build_services(Settings(subscriber_key="k", tick_seconds=0), store=store, catalog=catalog,
                                    clock=SystemClock())
    first = (await services.pipeline.trigger("broadband-outage", region="ningbo", actor="leader-1")).incident
    assert await store.webhook_queue_depths() == {}  # nobody subscribed yet
    hooks = Webhooks(subscribers=(Subscriber("crm", "http://127.0.0.1:9/", SECRET, frozenset(EVENT_TYPES), 5.0),))
    use_catalog(services, replace(catalog, webhooks=hooks))
    await services.pipeline.resolve(first.id, "leader-1", "fixed")
    queued = await store.claim_webhooks("crm", "w", datetime.now(timezone.utc) + timedelta(minutes=1), 30, 100)
    assert {d.event_type for d in queued} == {"cn.coordinator.incident.resolved", "cn.coordinator.script.approved",
                                              "cn.coordinator.script.published"}  # the stand-down's
    use_catalog(services, catalog)
    second = (await services.pipeline.trigger("broadband-outage", region="hangzhou", actor="leader-1")).incident
    assert second.id != first.id and await store.webhook_queue_depths() == {"crm": len(queued)}


def test_the_shipped_example_file_passes_check(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REPO / "deploy" / "webhooks.yaml.example", config_dir / "webhooks.yaml")
    assert any("COORDINATOR_WEBHOOK_CRM_SECRET is not set" in p for p in check_config(config_dir))
    for variable in ("CRM", "ORDERS", "SCREEN"):
        monkeypatch.setenv(f"COORDINATOR_WEBHOOK_{variable}_SECRET", SECRET)
    assert check_config(config_dir) == []
    assert [s.id for s in load_catalog(config_dir).webhooks.subscribers] == ["crm", "work-orders", "big-screen"]


async def test_a_drill_run_ending_is_told_once(store: Store, catalog: Catalog) -> None:
    from coordinator.clock import ManualClock

    hooks = Webhooks(subscribers=(Subscriber("screen", "http://127.0.0.1:9/", SECRET,
                                             frozenset({DRILL_FINISHED, "cn.coordinator.incident.opened"}), 5.0),))
    clock = ManualClock(T0)
    services = await build_services(Settings(subscriber_key="k", tick_seconds=0, sandbox=True), store=store,
                                    catalog=replace(catalog, webhooks=hooks), clock=clock)
    run = await services.drills.start("monthly-billing")
    assert run is not None and run.incident_id is not None
    clock.advance(timedelta(hours=3))  # past its max_duration: time is up
    finished = await services.drills.progress(run.id)
    assert finished is not None and finished.status == DrillRunStatus.finished
    await services.drills.progress(run.id)  # finished already: nothing more
    queued = await store.claim_webhooks("screen", "w", T0 + timedelta(hours=4), 30, 100)
    assert sorted(d.event_type for d in queued) == [DRILL_FINISHED, "cn.coordinator.incident.opened"]
    done = next(d for d in queued if d.event_type == DRILL_FINISHED)
    event = json.loads(done.body)
    assert event["id"] == f"{run.id}.finished" and event["subject"] == run.incident_id
    assert event["data"]["drill_run"]["end_reason"] == "time is up"
    assert json.loads(next(d for d in queued if d != done).body)["data"]["incident"]["drill"] is True
