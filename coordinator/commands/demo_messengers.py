"""The demo's messenger staff (issue 19): a few frontline people of the surge's region
given a DingTalk or WeCom userid (the shipped contacts have none, so that the shipped
playbooks need no messenger app), and their presses of the cards."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from ..config.catalog import Catalog
from ..models import Delivery
from ..sandbox.messengers import MessengerSandboxes

DINGTALK_STAFF = ("dong-li", "ren-jie", "jin-lu")
WECOM_STAFF = ("xiao-han", "liang-shan")


def with_messenger_staff(catalog: Catalog) -> Catalog:
    """`catalog` with DINGTALK_STAFF and WECOM_STAFF given userids (those who exist)."""
    people = dict(catalog.contacts.people)
    for ids, field in ((DINGTALK_STAFF, "dingtalk_userid"), (WECOM_STAFF, "wecom_userid")):
        for pid in ids:
            if pid in people:
                people[pid] = people[pid].model_copy(update={field: f"{pid.replace('-', '')}01"})
    return dataclasses.replace(catalog, contacts=dataclasses.replace(catalog.contacts, people=people))


async def press_cards(messengers: MessengerSandboxes, cards: Sequence[Delivery], done: set[str],
                      say: Callable[[str], None]) -> int:
    """The first DingTalk and the first WeCom card holder not in `done` press 确认 (in
    their messenger, through its sandbox). Returns the presses acknowledged."""
    pressed = 0
    for medium in ("dingtalk", "wecom"):
        card = next((d for d in cards if d.key.medium == medium and d.key.person_id not in done), None)
        if card is None:
            continue
        if medium == "dingtalk" and messengers.dingtalk is not None:
            status, _ = await messengers.dingtalk.click(card.address)
        elif medium == "wecom" and messengers.wecom is not None:
            task_id = next((c.task_id for c in reversed(messengers.wecom.cards)
                            if card.address.lower() in c.delivered and c.task_id), None)
            status = (await messengers.wecom.click(card.address, task_id)).status or 0 if task_id else 0
        else:
            continue
        say(f"   {card.key.person_id} pressed 确认 on the {medium} card: HTTP {status}")
        pressed += status == 200
    return pressed
