"""Roles and rotations at a given moment, table-driven."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from coordinator.config.catalog import load_catalog
from coordinator.roster import assign_roles, audience, channels_of, is_blocked, on_call
from coordinator.config.schemas import DoNotContact, Rotation

FIXTURES = Path(__file__).parent / "fixtures"
from .conftest import REPO  # noqa: E402
CST = timezone(timedelta(hours=8))

WEEKLY = Rotation.model_validate(
    {
        "id": "r", "name": "值班", "start": "2026-11-04",  # a Wednesday: first handoff Mon 11-09 09:00
        "members": ["a", "b", "c"],
        "overrides": [{"start": "2026-11-20T00:00:00+08:00", "end": "2026-11-21T00:00:00+08:00", "person": "z"}],
    }
)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (datetime(2026, 11, 9, 8, 59, tzinfo=CST), "c"),  # before the first handoff: the last member
        (datetime(2026, 11, 9, 9, 0, tzinfo=CST), "a"),
        (datetime(2026, 11, 16, 8, 59, tzinfo=CST), "a"),
        (datetime(2026, 11, 16, 9, 0, tzinfo=CST), "b"),
        (datetime(2026, 11, 20, 12, 0, tzinfo=CST), "z"),  # override
        (datetime(2026, 11, 21, 0, 0, tzinfo=CST), "b"),  # override over
        (datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc), "c"),  # 09:00 CST Monday, given in UTC
        (datetime(2026, 11, 30, 9, 0, tzinfo=CST), "a"),  # wraps around
    ],
)
def test_weekly_rotation(local: datetime, expected: str) -> None:
    assert on_call(WEEKLY, local) == expected


def test_daily_rotation_hands_off_in_its_own_time_zone() -> None:
    daily = WEEKLY.model_copy(update={"period": "daily", "timezone": "Europe/London", "overrides": []})
    # 09:00 London on 2026-11-04 is 17:00 CST
    assert on_call(daily, datetime(2026, 11, 4, 16, 59, tzinfo=CST)) == "c"
    assert on_call(daily, datetime(2026, 11, 4, 17, 0, tzinfo=CST)) == "a"
    assert on_call(daily, datetime(2026, 11, 5, 17, 0, tzinfo=CST)) == "b"


def test_do_not_contact_per_channel() -> None:
    catalog = load_catalog(FIXTURES / "good")
    p1 = catalog.contacts.people["p1"]  # phone and email
    today = date(2026, 12, 1)
    assert channels_of(p1, (), today) == ["sms", "email"]
    assert channels_of(p1, (DoNotContact(phone=p1.phone, reason="退订短信"),), today) == ["email"]
    assert channels_of(p1, (DoNotContact(email=p1.email, reason="退订邮件"),), today) == ["sms"]
    assert channels_of(p1, (DoNotContact(person="p1", reason="休假"),), today) == []


def test_audience_by_team_region_and_do_not_contact() -> None:
    catalog = load_catalog(REPO)
    playbook = catalog.playbooks["broadband-outage"]
    today = date(2026, 11, 24)
    ningbo, left_out = audience(playbook, catalog.contacts, "ningbo", today)
    assert ningbo and all(r.person.region == "ningbo" for r in ningbo)
    assert all(set(r.person.teams) & set(playbook.audience.teams) for r in ningbo)
    everyone, _ = audience(playbook, catalog.contacts, "*", today)
    assert len(everyone) > len(ningbo)
    hotline_only, _ = audience(playbook, catalog.contacts, "ningbo", today, teams=["hotline"])
    assert hotline_only and all("hotline" in r.person.teams for r in hotline_only)
    # nobody the list closes completely is in, and partial closures drop just that channel
    for r in everyone:
        assert r.channels == tuple(channels_of(r.person, catalog.contacts.do_not_contact, today))
        assert r.channels


def test_do_not_contact_until_is_inclusive() -> None:
    catalog = load_catalog(FIXTURES / "good")
    p3 = catalog.contacts.people["p3"]
    entry = DoNotContact(person="p3", reason="休假", until=date(2026, 12, 1))
    assert is_blocked(p3, (entry,), date(2026, 12, 1))
    assert not is_blocked(p3, (entry,), date(2026, 12, 2))
    by_email = DoNotContact(email="p3@example.com", reason="退订")
    assert is_blocked(p3, (by_email,), date(2030, 1, 1))


def test_roles_from_position_rotation_and_backups() -> None:
    catalog = load_catalog(FIXTURES / "good")
    at = datetime(2026, 11, 24, 10, 0, tzinfo=CST)  # rotation starts 2026-01-05 (Mon): p2, p1 alternate
    leader, tech = assign_roles(catalog.playbooks["outage"], catalog.contacts, at)
    assert (leader.role, leader.chain, leader.holder) == ("leader", ["p1", "p2"], "p1")
    assert leader.deadline == at + timedelta(minutes=10)
    weeks = (at.replace(tzinfo=None) - datetime(2026, 1, 5, 9, 0)) // timedelta(days=7)
    assert tech.chain == [["p2", "p1"][weeks % 2]]
    assert not leader.gaps and not tech.gaps


def test_a_role_no_one_can_fill_is_reported_not_raised() -> None:
    catalog = load_catalog(FIXTURES / "good")
    blocked = catalog.contacts.__class__(
        **{**catalog.contacts.__dict__, "do_not_contact": (
            DoNotContact(person="p1", reason="休假"), DoNotContact(person="p2", reason="出差"),
        )}
    )
    leader, tech = assign_roles(catalog.playbooks["outage"], blocked, datetime(2026, 11, 24, 2, tzinfo=timezone.utc))
    assert leader.unfilled and leader.holder is None and leader.deadline is None
    assert leader.gaps == [
        "level 0: no one available (team leadership, position 客服部经理)",
        "level 1: no one available (person p2)",
    ]
    assert tech.unfilled
