"""An SMS text as SMPP carries it: GSM-7 (data_coding 0) when every character is in the
GSM 03.38 alphabet, UCS-2 (data_coding 8, UTF-16-BE) otherwise, split into the parts
of a concatenated message when it is too long for one.

Pure. Which alphabet and how many parts agree with `coordinator.segments`, which shows
the length of a script before it is sent: `segment_count` counts the parts of the very
split `split_text` makes, so what is shown is what is billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from coordinator.segments import LIMITS, sms_segments

DC_GSM7 = 0x00  # the SMSC default alphabet, which SMSCs take as GSM 03.38, one septet per octet
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
DC_GBK = 0x0F  # not in SMPP 3.4; Chinese SMSCs (and CMPP) use it for GBK

# GSM 03.38 default alphabet in code order; 0x1B is the escape to the extension table.
GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
GSM7_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                  "|": 0x40, "€": 0x65}
_GSM7_CODE = {ch: code for code, ch in enumerate(GSM7_TABLE) if code != ESCAPE}
_GSM7_EXTENDED_CHAR = {code: ch for ch, code in GSM7_EXTENSION.items()}
# Septets read as Latin-1, then the ones whose GSM-7 character differs put right: one C pass.
_GSM7_FROM_LATIN1 = str.maketrans({chr(code): ch for code, ch in enumerate(GSM7_TABLE) if chr(code) != ch})

IEI_CONCAT_8BIT = 0x00
IEI_CONCAT_16BIT = 0x08
MAX_PARTS = 255  # the concatenation header counts parts in one octet


@dataclass(frozen=True)
class Split:
    """A text encoded and cut into parts, each without its header. One part: it fits a
    single message and needs no header."""

    data_coding: int
    parts: tuple[bytes, ...]

    @property
    def concatenated(self) -> bool:
        return len(self.parts) > 1

    def with_headers(self, reference: int) -> list[bytes]:
        """The short_message of each part, with the concatenation header (IEI 0x00,
        8-bit `reference`, parts numbered from 1 in order) when there is more than one."""
        if not self.concatenated:
            return list(self.parts)
        total = len(self.parts)
        return [concat_header(reference, total, number) + part for number, part in enumerate(self.parts, 1)]


def concat_header(reference: int, total: int, number: int) -> bytes:
    if not (0 <= reference <= 0xFF and 1 <= number <= total <= MAX_PARTS):
        raise ValueError(f"no concatenation header for part {number}/{total}, reference {reference}")
    return bytes([5, IEI_CONCAT_8BIT, 3, reference, total, number])


def encode_units(text: str) -> tuple[int, list[bytes]]:
    """The data_coding for `text` and each character's encoding: GSM-7 (one octet, two
    for an extension character behind the escape) where coordinator.segments counts the
    text as GSM-7, else UTF-16-BE (two octets, four for a character outside the BMP)."""
    if sms_segments(text).encoding == "GSM-7":
        return DC_GSM7, [bytes([_GSM7_CODE[ch]]) if ch in _GSM7_CODE else bytes([ESCAPE, GSM7_EXTENSION[ch]])
                         for ch in text]
    return DC_UCS2, [ch.encode("utf-16-be") for ch in text]


@lru_cache(maxsize=64)  # a fan-out sends one text to thousands: it is cut once
def split_text(text: str) -> Split:
    """`text` in the fewest parts, never cutting a character: not a surrogate pair (an
    emoji), not an escape from its extension character. A part holds 160 septets or 70
    UTF-16 units alone, 153 or 67 beside a concatenation header. Raises ValueError past
    255 parts."""
    data_coding, units = encode_units(text)
    single, per_part = LIMITS["GSM-7" if data_coding == DC_GSM7 else "UCS-2"]
    width = 1 if data_coding == DC_GSM7 else 2  # octets per counted unit
    if sum(len(u) for u in units) <= single * width:
        return Split(data_coding, (b"".join(units),))
    parts: list[bytes] = []
    current = bytearray()
    for unit in units:
        if len(current) + len(unit) > per_part * width:
            parts.append(bytes(current))
            current = bytearray()
        current += unit
    parts.append(bytes(current))
    if len(parts) > MAX_PARTS:
        raise ValueError(f"the text needs {len(parts)} parts, at most {MAX_PARTS} can be concatenated")
    return Split(data_coding, tuple(parts))


def segment_count(text: str) -> int:
    """The messages the SMSC bills for `text`: the parts `split_text` makes. Sent as
    one message_payload instead, the SMSC cuts it into the same number of parts."""
    return len(split_text(text).parts)


def encode_whole(text: str) -> tuple[int, bytes]:
    """The whole text in one piece, for the message_payload TLV (the SMSC splits it)."""
    data_coding, units = encode_units(text)
    return data_coding, b"".join(units)


def decode_text(data: bytes, data_coding: int) -> str:
    """The text of user data (headers removed, parts joined) in `data_coding`. An
    alphabet this does not know is read as Latin-1, so nothing is lost silently."""
    alphabet = _alphabet(data_coding)
    if alphabet == "gsm7":
        return decode_gsm7(data)
    return data.decode(alphabet, errors="replace")


def _alphabet(data_coding: int) -> str:
    if data_coding == DC_GSM7:
        return "gsm7"
    if data_coding == DC_IA5:
        return "ascii"
    if data_coding == DC_UCS2:
        return "utf-16-be"
    if data_coding == DC_GBK:
        return "gbk"
    if data_coding & 0xF0 == 0xF0:  # GSM 03.38 DCS "data coding/message class": bit 2 says 8-bit
        return "latin-1" if data_coding & 0x04 else "gsm7"
    if 0x10 <= data_coding <= 0x3F:  # GSM 03.38 "general data coding": bits 3-2 name the alphabet
        return {0: "gsm7", 2: "utf-16-be"}.get((data_coding >> 2) & 0x03, "latin-1")
    return "latin-1"


def decode_gsm7(data: bytes) -> str:
    """Unpacked GSM-7, one septet per octet. An octet above 0x7F cannot be a septet:
    such data is some SMSC's Latin-1 under data_coding 0, and read as that."""
    if any(octet > 0x7F for octet in data):
        return data.decode("latin-1")
    if ESCAPE not in data:  # every receipt's text: no extension characters
        return data.decode("latin-1").translate(_GSM7_FROM_LATIN1)
    out: list[str] = []
    escaped = False
    for octet in data:
        if escaped:
            # 3GPP 23.038: an escape before a code without an extension character shows the basic one.
            out.append(_GSM7_EXTENDED_CHAR.get(octet, GSM7_TABLE[octet] if octet != ESCAPE else " "))
            escaped = False
        elif octet == ESCAPE:
            escaped = True
        else:
            out.append(GSM7_TABLE[octet])
    return "".join(out)
