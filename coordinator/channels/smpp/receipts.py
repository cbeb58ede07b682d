"""Delivery receipts: a deliver_sm with the receipt bit in esm_class, read into what it
says about one submitted part, and the status of a whole message from its parts'.

Pure. The receipt's text form is not in the SMPP 3.4 body proper (Appendix B calls it
SMSC-specific) but every SMSC we know writes the de-facto one:

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

The receipted_message_id (0x001E) and message_state (0x0427) TLVs, where present, win
over the text: they are typed, and some SMSCs write the id in the text in another base.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from coordinator.models import DELIVERY_RANK, DeliveryStatus

from .bodies import ShortMessage, tlv_c_string, tlv_int
from .pdu import Tag

# stat: word -> what it means for the person. UNKNOWN says nothing: None.
# REJECTD is `failed`, not `undelivered`: the SMSC or the network refused the message
# (barred destination, content or credit check) and never tried the handset, which is
# what `failed` means for Twilio's messages too; `undelivered` is reserved for "tried,
# the handset did not take it" (EXPIRED, UNDELIV) or "dropped from the queue" (DELETED).
# Both are final, both make the outbox fall back to email.
STAT_STATUS: dict[str, DeliveryStatus | None] = {
    "DELIVRD": DeliveryStatus.delivered,
    "EXPIRED": DeliveryStatus.undelivered,
    "DELETED": DeliveryStatus.undelivered,
    "UNDELIV": DeliveryStatus.undelivered,
    "REJECTD": DeliveryStatus.failed,
    "ACCEPTD": DeliveryStatus.sent,
    "ENROUTE": DeliveryStatus.sent,
    "UNKNOWN": None,
}
# message_state (SMPP 3.4 section 5.2.28), in a TLV or a query_sm_resp -> the stat word.
MESSAGE_STATE_STAT: dict[int, str] = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD",
}
STAT_MESSAGE_STATE = {stat: state for state, stat in MESSAGE_STATE_STAT.items()}

# Field names may hold a space ("submit date"); a value runs to the next space, except
# text:, which runs to the end. Upper-case names are seen in the field too.
_FIELD = re.compile(r"(?<!\S)(id|sub|dlvrd|submit date|done date|stat|err|text):", re.IGNORECASE)


@dataclass(frozen=True)
class Receipt:
    message_id: str
    stat: str
    """The stat word, upper case ("DELIVRD"); "UNKNOWN" when the receipt names none."""
    error: str = ""
    """err: from the text (network specific, "000" for none), or the network_error_code TLV."""
    submitted: datetime | None = None
    done: datetime | None = None
    """The SMSC's local time, whose zone the receipt does not say: naive, for display."""
    text: str = ""

    @property
    def status(self) -> DeliveryStatus | None:
        """What the receipt means for the part; None: nothing (UNKNOWN or an unheard-of word)."""
        return STAT_STATUS.get(self.stat)

    @property
    def error_code(self) -> str | None:
        """The code to record on the delivery: the stat and err of a receipt that is not a
        plain success ("UNDELIV:001"), else None."""
        if self.stat in ("DELIVRD", "ACCEPTD", "ENROUTE"):
            return None
        return f"{self.stat}:{self.error}" if self.error.strip("0") else self.stat


def parse_receipt_text(text: str) -> dict[str, str]:
    """The fields of a receipt's text, lower-case names; absent fields are absent."""
    marks = list(_FIELD.finditer(text))
    fields: dict[str, str] = {}
    for here, after in zip(marks, marks[1:] + [None]):
        name = here.group(1).lower()
        end = after.start() if after is not None and name != "text" else len(text)
        value = text[here.end():end]
        fields[name] = value if name == "text" else value.strip()
        if name == "text":
            break
    return fields


def parse_receipt(message: ShortMessage, text: str) -> Receipt:
    """The receipt a deliver_sm carries; `text` is its decoded short_message (or payload).
    Raises ValueError when neither the TLVs nor the text name a message id."""
    fields = parse_receipt_text(text)
    message_id = fields.get("id", "")
    stat = fields.get("stat", "UNKNOWN").upper()
    error = fields.get("err", "")
    if Tag.receipted_message_id in message.tlvs:
        message_id = tlv_c_string(message.tlvs[Tag.receipted_message_id])
    if Tag.message_state in message.tlvs:
        stat = MESSAGE_STATE_STAT.get(tlv_int(message.tlvs[Tag.message_state]), "UNKNOWN")
    if Tag.network_error_code in message.tlvs and len(message.tlvs[Tag.network_error_code]) == 3:
        raw = message.tlvs[Tag.network_error_code]  # network type, then a 2-octet code
        error = f"{raw[0]}-{int.from_bytes(raw[1:], 'big'):03d}"
    if not message_id:
        raise ValueError(f"a receipt without a message id: {text!r}")
    return Receipt(message_id, stat, error, _receipt_time(fields.get("submit date")),
                   _receipt_time(fields.get("done date")), fields.get("text", ""))


def _receipt_time(value: str | None) -> datetime | None:
    # YYMMDDhhmm; some SMSCs add seconds. Read by hand, as strptime's %y would (69-99:
    # the 1900s): strptime took a tenth of the CPU a receipt costs.
    if value is None or len(value) not in (10, 12) or not value.isdigit() or not value.isascii():
        return None
    yy, month, day, hour, minute = (int(value[i:i + 2]) for i in range(0, 10, 2))
    try:
        return datetime(yy + (2000 if yy < 69 else 1900), month, day, hour, minute, int(value[10:12] or 0))
    except ValueError:
        return None


def status_of_state(message_state: int) -> DeliveryStatus | None:
    """A query_sm_resp's message_state as a DeliveryStatus (None for UNKNOWN or a value
    SMPP 3.4 does not define)."""
    return STAT_STATUS.get(MESSAGE_STATE_STAT.get(message_state, "UNKNOWN"))


def advance(current: DeliveryStatus, new: DeliveryStatus | None) -> DeliveryStatus:
    """`new` if it moves the status forward (DELIVERY_RANK), else `current`: a late or
    repeated receipt never undoes a later one, and a final status is never replaced."""
    if new is None or DELIVERY_RANK[new] <= DELIVERY_RANK[current]:
        return current
    return new


def message_status(parts: Iterable[DeliveryStatus | None]) -> DeliveryStatus:
    """The status of a message from its parts' (None: no receipt yet, but accepted).
    Delivered only when every part is; failed or undelivered as soon as one part is,
    since the person cannot read the whole script any more (failed first: the stronger
    word); else sent."""
    statuses = [DeliveryStatus.sent if s is None else s for s in parts]
    if not statuses:
        raise ValueError("a message has at least one part")
    for final in (DeliveryStatus.failed, DeliveryStatus.undelivered):
        if final in statuses:
            return final
    if all(s == DeliveryStatus.delivered for s in statuses):
        return DeliveryStatus.delivered
    return DeliveryStatus.sent
