"""Issue 19's pure parts: contacts with DingTalk / WeCom userids (`coordinator check`:
format, duplicates, a userid for a messenger not configured), the do-not-contact list
per channel, the audience's ordered channels, the vendor chunks, the card link."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from coordinator.messengers.links import CardClaim, make_card_token, read_card_token
from coordinator.config.catalog import check_config, load_catalog
from coordinator.config.schemas import Audience, DoNotContact, Person
from coordinator.errors import AckTokenInvalid
from coordinator.messengers.sending import card_key, chunks, parse_card_key
from coordinator.messages import reached
from coordinator.models import Delivery, DeliveryKey, DeliveryStatus
from coordinator.roster import address_of, channels_of, unused_userids

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 24)


def person(**extra: object) -> Person:
    return Person.model_validate({"id": "p9", "name": "赵九", "region": "ningbo", "teams": ["shop"], **extra})


def test_a_messenger_userid_alone_reaches_a_person_and_nothing_does_not() -> None:
    assert person(dingtalk_userid="manager4521").dingtalk_userid == "manager4521"
    assert person(wecom_userid="ZhangSan").wecom_userid == "ZhangSan"
    with pytest.raises(ValidationError, match="no phone, email, dingtalk_userid or wecom_userid"):
        person()
    with pytest.raises(ValidationError, match="dingtalk_userid"):
        person(dingtalk_userid="has space")
    with pytest.raises(ValidationError, match="wecom_userid"):
        person(wecom_userid="x" * 65)


def test_do_not_contact_closes_the_channels_it_names_or_all() -> None:
    p = person(phone="+8613900000009", dingtalk_userid="dt9", wecom_userid="wc9")
    assert channels_of(p, (), TODAY) == ["sms", "dingtalk", "wecom"]
    only_dingtalk = DoNotContact(person="p9", reason="调岗", channels=["dingtalk"])
    assert channels_of(p, (only_dingtalk,), TODAY) == ["sms", "wecom"]
    everything = DoNotContact(person="p9", reason="休假")
    assert channels_of(p, (everything,), TODAY) == []
    over = DoNotContact(person="p9", reason="休假", until=TODAY - timedelta(days=1))
    assert channels_of(p, (over,), TODAY) == ["sms", "dingtalk", "wecom"]
    assert address_of(p, "dingtalk") == "dt9" and address_of(p, "wecom") == "wc9"
    with pytest.raises(ValidationError):
        DoNotContact(person="p9", reason="x", channels=["fax"])  # type: ignore[list-item]


def test_the_audience_takes_an_ordered_list_of_channels_and_keeps_the_old_forms() -> None:
    base = {"teams": ["shop"], "ack_within": "30m"}
    listed = Audience.model_validate({**base, "channels": ["dingtalk", "sms", "email"], "order": "in_turn",
                                      "next_channel_after": "10m"})
    assert listed.channel_order == ("dingtalk", "sms", "email") and listed.in_turn
    together = Audience.model_validate({**base, "channels": ["wecom", "email"]})
    assert together.channel_order == ("wecom", "email") and not together.in_turn
    old = Audience.model_validate({**base, "channels": "in_turn", "next_channel_after": "10m"})
    assert old.in_turn and old.channel_order[:2] == ("sms", "email")
    for bad in ({"channels": ["sms", "sms"]}, {"channels": ["sms"], "order": "in_turn"},
                {"channels": ["sms"], "next_channel_after": "10m"}, {"channels": "together", "order": "in_turn"}):
        with pytest.raises(ValidationError):
            Audience.model_validate({**base, **bad})


def config_with(tmp_path: Path, people: list[dict[str, object]]) -> Path:
    root = tmp_path / "config"
    shutil.copytree(FIXTURES / "good", root)
    org = root / "contacts" / "org.yaml"
    data = yaml.safe_load(org.read_text(encoding="utf-8"))
    data["people"] += people
    org.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return root


def test_check_refuses_a_userid_two_people_share(tmp_path: Path) -> None:
    base = {"region": "ningbo", "teams": ["shop"]}
    root = config_with(tmp_path, [{"id": "p7", "name": "七", "dingtalk_userid": "Same01", **base},
                                  {"id": "p8", "name": "八", "dingtalk_userid": "same01", **base},
                                  {"id": "p9", "name": "九", "wecom_userid": "w9", **base}])
    problems = check_config(root)
    assert len(problems) == 1 and "person p8: dingtalk_userid same01 is also p7's" in problems[0]
    assert problems[0].startswith("contacts/org.yaml:")


def test_check_warns_of_userids_for_a_messenger_not_configured(tmp_path: Path) -> None:
    base = {"region": "ningbo", "teams": ["shop"]}
    root = config_with(tmp_path, [{"id": "p7", "name": "七", "dingtalk_userid": "d7", **base},
                                  {"id": "p9", "name": "九", "wecom_userid": "w9", **base}])
    contacts = load_catalog(root).contacts
    warnings = unused_userids(contacts, {"wecom"})
    assert len(warnings) == 1 and "1 people have a dingtalk_userid (p7)" in warnings[0]
    assert "COORDINATOR_DINGTALK_APP_KEY" in warnings[0]
    assert unused_userids(contacts, {"dingtalk", "wecom"}) == []


def delivery(person_id: str, medium: str, status: DeliveryStatus = DeliveryStatus.queued, version: int = 1,
             purpose: str = "") -> Delivery:
    return Delivery(key=DeliveryKey(incident_id="INC-1", version=version, person_id=person_id, medium=medium,
                                    purpose=purpose), address=f"u-{person_id}", content_hash="h", status=status,
                    updated_at=T0)


def test_cards_go_in_the_vendors_chunks_one_per_content() -> None:
    many = [delivery(f"p{i}", "dingtalk") for i in range(250)]
    assert [len(c) for c in chunks(many, "dingtalk")] == [100, 100, 50]
    assert [len(c) for c in chunks([delivery(f"p{i}", "wecom") for i in range(2500)], "wecom")] == [1000, 1000, 500]
    mixed = [delivery("a", "dingtalk"), delivery("b", "dingtalk", version=2), delivery("c", "dingtalk", purpose="reminder")]
    assert len(chunks(mixed, "dingtalk")) == 3  # another version or purpose is another card
    assert parse_card_key(card_key(mixed[1])) == ("INC-1", 2)
    assert parse_card_key("ack:nothing") is None and parse_card_key("other:INC-1:1") is None


def test_what_counts_as_reached_per_channel() -> None:
    assert reached(delivery("a", "dingtalk", DeliveryStatus.read))
    assert not reached(delivery("a", "dingtalk", DeliveryStatus.delivered))  # in DingTalk, unread
    assert not reached(delivery("a", "wecom", DeliveryStatus.sent))  # WeCom tells no read state
    assert reached(delivery("a", "sms", DeliveryStatus.delivered))


def test_a_card_link_names_incident_and_version_and_cannot_be_forged_or_reused_late() -> None:
    token = make_card_token("secret", CardClaim("INC-1", 3, T0 + timedelta(days=3)))
    claim = read_card_token("secret", token, T0)
    assert (claim.incident_id, claim.version) == ("INC-1", 3)
    for bad, now in ((token[:-2] + "xx", T0), (token, T0 + timedelta(days=4)), ("garbage", T0)):
        with pytest.raises(AckTokenInvalid):
            read_card_token("secret", bad, now)
    with pytest.raises(AckTokenInvalid, match="signature"):
        read_card_token("another secret", token, T0)


def test_readiness_names_a_playbook_whose_messenger_is_not_configured() -> None:
    from coordinator.roster import missing_media

    catalog = load_catalog(FIXTURES / "good")
    playbook = next(iter(catalog.playbooks.values()))
    frontline = playbook.audience.teams[0]
    people = {pid: p.model_copy(update={"dingtalk_userid": f"d-{pid}"}) if frontline in p.teams else p
              for pid, p in catalog.contacts.people.items()}
    contacts = dataclasses.replace(catalog.contacts, people=people)
    listed = playbook.model_copy(update={"audience": playbook.audience.model_copy(
        update={"channels": ["dingtalk", "sms", "email"]})})
    assert missing_media([listed], contacts, {"sms", "email"}) == {listed.id: ["dingtalk"]}
    assert missing_media([listed], contacts, {"sms", "email", "dingtalk"}) == {}
    without = listed.model_copy(update={"audience": listed.audience.model_copy(update={"channels": ["sms", "email"]})})
    assert missing_media([without], contacts, {"sms", "email"}) == {}  # userids, but the playbook does not use them
