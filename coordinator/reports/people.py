"""The per-person view of an incident's wording (issue 19): for each person the wording
in force went to, where each channel's message stands (sent, delivered, read) and how
they acknowledged; and the messengers' read figures per channel. Pure, like the rest of
the report."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from ..config.catalog import Contacts
from ..models import Ack, Delivery, DeliveryStatus, Incident
from .parts import PersonChannel, PersonChannels, median

MESSENGERS = ("dingtalk", "wecom")
# Channels that report reading (WeCom reports none for app messages).
READ_STATE = ("dingtalk",)


def people_channels(incident: Incident, script_msgs: Sequence[Delivery], acks: Sequence[Ack],
                    contacts: Contacts) -> list[PersonChannels]:
    """A row per person the wording in force went to: those who have not acknowledged
    first, then by id."""
    current = incident.current_script
    if current is None:
        return []
    version = current.version
    acked = {a.person_id: a for a in acks if a.version == version}
    rows: dict[str, list[PersonChannel]] = {}
    for d in script_msgs:
        if d.key.version == version:
            rows.setdefault(d.key.person_id, []).append(
                PersonChannel(medium=d.key.medium.value, status=d.status.value, at=d.updated_at))
    out = []
    for person_id, channels in rows.items():
        person = contacts.people.get(person_id)
        ack = acked.get(person_id)
        out.append(PersonChannels(person_id=person_id, name=person.name if person else person_id,
                                  channels=sorted(channels, key=lambda c: c.at),
                                  acked_via=ack.via if ack else None, acked_at=ack.at if ack else None))
    return sorted(out, key=lambda row: (row.acked_at is not None, row.person_id))


def read_figures(channel: str, mine: Sequence[Delivery],
                 approved: dict[int, datetime]) -> tuple[int, float | None, float | None]:
    """(read, read rate, median seconds to read) of one channel's messages; the rate
    and time are None for a channel that reports no reading, or without messages."""
    read = [d for d in mine if d.status == DeliveryStatus.read]
    if channel not in READ_STATE or not mine:
        return len(read), None, None
    times = [(d.updated_at - approved[d.key.version]).total_seconds() for d in read if d.key.version in approved]
    return len(read), len(read) / len(mine), median(max(0.0, t) for t in times)
