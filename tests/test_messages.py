"""Typed messages: a delivery key's medium and purpose are fields (its stored id is
unchanged), and the notices that are not scripts are rendered from templates with
their own subject."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from coordinator.models import Delivery, DeliveryKey, Incident, Medium
from coordinator.notices import reminder, role_notice, supervisor_notice

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def incident(drill: bool = False, code: str = "") -> Incident:
    return Incident(id="INC-1", playbook="broadband-outage", title="宁波宽带故障", severity="major",
                    region="ningbo", opened_at=T0, opened_by="surge", updated_at=T0, drill=drill, code=code)


@pytest.mark.parametrize("channel, medium, purpose, notice, role", [
    ("sms", Medium.sms, "", None, None),
    ("email", Medium.email, "", None, None),
    ("sms-reminder", Medium.sms, "reminder", "reminder", None),
    ("email-reminder-manual1764900000", Medium.email, "reminder-manual1764900000", "reminder", None),
    ("sms-supervisor", Medium.sms, "supervisor", "supervisor", None),
    ("sms-role-cs-lead-assigned", Medium.sms, "role-cs-lead-assigned", "role_assigned", "cs-lead"),
    ("email-role-tech-level2", Medium.email, "role-tech-level2", "role_escalation", "tech"),
])
def test_a_key_id_parses_into_medium_and_purpose_and_back(channel: str, medium: Medium, purpose: str,
                                                          notice: str | None, role: str | None) -> None:
    key = DeliveryKey.parse(f"INC-1:2:p1:{channel}")
    assert key is not None
    assert (key.medium, key.purpose, key.notice, key.role, key.is_script) == (medium, purpose, notice, role, not purpose)
    assert key.as_id() == f"INC-1:2:p1:{channel}"
    assert key == DeliveryKey(incident_id="INC-1", version=2, person_id="p1", medium=medium, purpose=purpose)


def test_a_key_with_an_unknown_medium_is_not_a_key() -> None:
    assert DeliveryKey.parse("INC-1:2:p1:fax-reminder") is None
    assert DeliveryKey.parse("INC-1:x:p1:sms") is None


def test_a_delivery_stored_before_medium_and_purpose_were_fields_still_reads() -> None:
    stored = {"key": {"incident_id": "INC-1", "version": 1, "person_id": "p1", "channel": "email-reminder"},
              "address": "a@example.com", "content_hash": "", "updated_at": T0.isoformat()}
    delivery = Delivery.model_validate(stored)
    assert (delivery.key.medium, delivery.key.purpose, delivery.subject) == (Medium.email, "reminder", None)
    again = Delivery.model_validate_json(delivery.model_dump_json())
    assert again == delivery and "channel" not in delivery.model_dump()["key"]


def test_notices_are_rendered_with_their_own_subject() -> None:
    role = role_notice(incident(code="K7"), "应急组长", "assigned", "宁波", "03:15")
    assert role.text == "【应急】宁波宽带故障（宁波）您被指定为应急组长，请于03:15前回复1确认〔事件码K7〕"
    assert role.subject == "【应急】宁波宽带故障：应急组长待确认"
    escalated = role_notice(incident(), "应急组长", "level2", "宁波", "03:15")
    assert "升级：您现为应急组长" in escalated.text
    nudge = reminder(incident(drill=True), 2)
    assert nudge.text == "【演练】【提醒】您尚未确认宁波宽带故障口径v2，请阅读后回复1确认收到"
    assert nudge.subject == "【演练】【提醒】宁波宽带故障口径v2待确认"
    boss = supervisor_notice(incident(code="K7"), 1, ["张三", "李四"])
    assert boss.text == "【督办】宁波宽带故障口径v1以下同事尚未确认：张三、李四。请督促确认〔事件码K7〕"
    assert boss.subject == "【督办】宁波宽带故障口径v1未确认名单"
