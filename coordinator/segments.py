"""How many SMS segments a text costs, counted the way Twilio counts `num_segments`.

Pure, so the coordinator can show an official script's SMS length before sending it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet (without the escape 0x1B), one septet each.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs an escape septet plus its own.
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

# (units in a single-part message, units per part of a concatenated one): the
# concatenation header takes 7 septets from GSM-7 parts, 3 UTF-16 units from UCS-2 parts.
LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


class Segments(NamedTuple):
    encoding: Encoding
    segments: int
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text occupies."""


def sms_segments(text: str) -> Segments:
    """Encoding, segment count and size of `text` as an SMS.

    GSM-7 when every character is in the GSM 03.38 alphabet or its extension table
    (an extension character such as `€` or `{` costs two septets), else UCS-2, where a
    character outside the Basic Multilingual Plane (most emoji) costs two units. A
    character is never split between two parts, so a part may hold one unit less
    than its limit. An empty text is one (empty) segment.
    """
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        encoding: Encoding = "GSM-7"
        costs = [2 if ch in GSM7_EXTENDED else 1 for ch in text]
    else:
        encoding = "UCS-2"
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    units = sum(costs)
    single, per_part = LIMITS[encoding]
    if units <= single:
        return Segments(encoding, 1, units)
    parts, room = 1, per_part
    for cost in costs:
        if cost > room:
            parts, room = parts + 1, per_part
        room -= cost
    return Segments(encoding, parts, units)
