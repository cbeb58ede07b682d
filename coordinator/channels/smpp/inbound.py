"""Messages as they arrive in parts: the concatenation information of a short message
(a user data header, or the SAR TLVs some SMSCs use instead), the reassembly of the
parts, and the sender's number in E.164.

The ESME uses it for the replies staff send (MO), the sandbox SMSC for what the ESME
submits (MT): both sides of the same wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .bodies import ESM_UDHI, ShortMessage, tlv_int
from .pdu import Tag
from .text import IEI_CONCAT_8BIT, IEI_CONCAT_16BIT

TON_INTERNATIONAL = 1
TON_NATIONAL = 2
NPI_ISDN = 1


@dataclass(frozen=True)
class InboundSms:
    """A text someone sent to our number, whole, for the reply handling."""

    from_number: str
    """E.164 ("+8613800138000") when the SMSC says the number's type; else as it wrote it."""
    to_number: str
    text: str
    received_at: datetime


@dataclass(frozen=True)
class Concat:
    reference: int
    total: int
    number: int


def user_data(message: ShortMessage) -> tuple[Concat | None, bytes]:
    """The message's place in a concatenated one (None: it stands alone) and its user
    data without the header. A header that names no valid part leaves the message alone."""
    data = message.payload
    if message.esm_class & ESM_UDHI and data:
        end = 1 + data[0]
        return _concat_in_header(data[1:end]), data[end:]
    tlvs = message.tlvs
    if {Tag.sar_msg_ref_num, Tag.sar_total_segments, Tag.sar_segment_seqnum} <= tlvs.keys():
        return _valid(Concat(tlv_int(tlvs[Tag.sar_msg_ref_num]), tlv_int(tlvs[Tag.sar_total_segments]),
                             tlv_int(tlvs[Tag.sar_segment_seqnum]))), data
    return None, data


def _concat_in_header(header: bytes) -> Concat | None:
    at = 0
    while at + 2 <= len(header):
        iei, length = header[at], header[at + 1]
        value = header[at + 2:at + 2 + length]
        at += 2 + length
        if iei == IEI_CONCAT_8BIT and len(value) == 3:
            return _valid(Concat(value[0], value[1], value[2]))
        if iei == IEI_CONCAT_16BIT and len(value) == 4:
            return _valid(Concat(int.from_bytes(value[:2], "big"), value[2], value[3]))
    return None


def _valid(concat: Concat) -> Concat | None:
    return concat if 1 <= concat.number <= concat.total else None


@dataclass(frozen=True)
class Whole:
    """The parts of a message, joined in order (user data only); `first` is part 1."""

    first: ShortMessage
    data: bytes
    parts: int


class Reassembly:
    """Parts of concatenated messages waiting for the rest, by sender, recipient and
    reference. Time is passed in: `expire(now)` drops what waited longer than `keep_for`
    (a part lost on the way never completes its message)."""

    def __init__(self, *, keep_for: timedelta) -> None:
        self._keep_for = keep_for
        self._waiting: dict[tuple[str, str, int, int], tuple[datetime, dict[int, tuple[ShortMessage, bytes]]]] = {}

    def add(self, message: ShortMessage, now: datetime) -> Whole | None:
        """The whole message once `message` completes it (at once for one that stands
        alone), else None. A repeated part replaces the earlier copy."""
        concat, data = user_data(message)
        if concat is None or concat.total == 1:
            return Whole(message, data, 1)
        key = (message.source_addr, message.destination_addr, concat.reference, concat.total)
        since, parts = self._waiting.setdefault(key, (now, {}))
        parts[concat.number] = (message, data)
        if len(parts) < concat.total:
            return None
        del self._waiting[key]
        return Whole(parts[1][0], b"".join(parts[n][1] for n in range(1, concat.total + 1)), concat.total)

    def expire(self, now: datetime) -> list[tuple[str, str, int]]:
        """Drops the incomplete messages older than `keep_for`; returns (sender,
        recipient, parts received) of each, for the log."""
        old = [key for key, (since, _) in self._waiting.items() if now - since > self._keep_for]
        return [(key[0], key[1], len(self._waiting.pop(key)[1])) for key in old]

    def __len__(self) -> int:
        return len(self._waiting)


def e164(address: str, ton: int, country_code: str) -> str:
    """The number in E.164 when its type of number says how: international ("+" and
    the digits), national (the country code in front, the trunk 0 dropped). Of unknown
    type it stays as the SMSC wrote it: a Chinese SMSC writes "8613800138000" and
    "13800138000" alike, and guessing would match the wrong person."""
    digits = address.lstrip("+")
    if address.startswith("+") or ton == TON_INTERNATIONAL:
        return "+" + digits
    if ton == TON_NATIONAL:
        return "+" + country_code + digits.lstrip("0")
    return address
