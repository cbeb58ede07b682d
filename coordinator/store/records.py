"""The values passed to and from a store besides the domain models: a delivery's status
update and its answer, a stored complaint's flags, a statistics row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from ..models import Delivery, DeliveryKey, DeliveryStatus

CountKind = Literal["all", "repeat", "regulator"]

# The delivery media (`DeliveryKey.medium`); each has its own outbox queue.
MEDIA = ("sms", "email", "dingtalk", "wecom")
# Those the outbox sends one delivery at a time; the messengers' deliveries go out in
# groups, one vendor call for many people (messengers/sending.py).
ONE_BY_ONE = ("sms", "email")
MESSENGERS = ("dingtalk", "wecom")
# What a send's result records when the provider took the message.
ACCEPTED = frozenset({DeliveryStatus.sent, DeliveryStatus.delivered})


class StatusUpdate(NamedTuple):
    """A delivery's new status: from the send's own result, or a provider's callback."""

    key: DeliveryKey | None
    """None: the delivery is found by `provider_id` (a callback without our id)."""
    status: DeliveryStatus
    at: datetime
    provider_id: str | None = None
    error: str | None = None
    finish: bool = False
    """The provider accepted it: out of the outbox for good."""


class Moved(NamedTuple):
    delivery: Delivery | None
    """As stored after the update; None when there is no such delivery."""
    moved: bool
    """The status went forward."""


class Added(NamedTuple):
    new: bool
    repeat: bool


@dataclass(frozen=True, slots=True)
class StatRow:
    """Complaints of one UTC hour in one category, region and channel."""

    hour: int  # epoch seconds of the hour's start (UTC)
    category: str
    region: str
    channel: str
    count: int
    repeat: int  # of them, repeats (the same subscriber within the repeat window)
