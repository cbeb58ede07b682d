"""The rules both backends keep, as pure functions: how a status update applies, which
incidents belong to one event, how ids are formed. Redis repeats some of them in Lua;
the comments there point here."""

from __future__ import annotations

from datetime import datetime, timezone

from ..models import ALL_REGIONS, DELIVERY_RANK, Ack, Delivery
from .records import StatusUpdate

HOUR = 3600


def claimed(doc: str | bytes, claimed_at: float | str | bytes | None) -> Delivery:
    """A claimed delivery: its stored document, and the first-claim time the store keeps
    beside it (epoch seconds; None from a store written before it was kept)."""
    delivery = Delivery.model_validate_json(doc)
    if claimed_at is None:
        return delivery
    return delivery.model_copy(update={"claimed_at": datetime.fromtimestamp(float(claimed_at), timezone.utc)})


def related_to(surge_key: str) -> tuple[str, list[str], bool]:
    """The incidents that belong to the same event as one on `surge_key`: its group
    (the key up to its region: "broadband", "drill:broadband"), the other keys whose
    open incident it joins, and whether any open incident of the group does. A regional
    surge joins the category-wide incident; a category-wide surge joins any incident of
    its category (the same complaints count into both streams)."""
    group, _, region = surge_key.rpartition("/")
    if region == ALL_REGIONS:
        return group, [], True
    return group, [f"{group}/{ALL_REGIONS}"], False


def medium_of(delivery_id: str) -> str:
    """The medium of a delivery id (`DeliveryKey.as_id`): its channel up to any "-" (and
    any "@N" naming a person's N-th phone)."""
    return delivery_id.rsplit(":", 1)[-1].split("-", 1)[0].split("@", 1)[0]


def apply_update(current: Delivery, update: StatusUpdate) -> tuple[Delivery, bool]:
    """`current` after `update` and whether its status moved; the rule both stores keep
    (Redis in its Lua script): the status only moves forward, with its time and error;
    a provider id is taken when moving, or when none is known yet."""
    if DELIVERY_RANK[update.status] > DELIVERY_RANK[current.status]:
        return current.model_copy(update={
            "status": update.status,
            "updated_at": update.at,
            "provider_id": update.provider_id or current.provider_id,
            "error": update.error if update.error is not None else current.error,
        }), True
    if update.provider_id and current.provider_id is None:
        return current.model_copy(update={"provider_id": update.provider_id}), False
    return current, False


def ack_id(ack: Ack) -> str:
    return ack_key(ack.person_id, ack.version, ack.role)


def ack_key(person_id: str, version: int | None, role: str | None = None) -> str:
    """An acknowledgement's id within its incident: one per (person, version, role)."""
    return f"{person_id}:{version if version is not None else '-'}:{role or '-'}"


def hour_floor(when: datetime) -> int:
    """Epoch seconds of the start of the UTC hour holding `when` (complaint statistics)."""
    ts = int(when.timestamp())
    return ts - ts % HOUR
