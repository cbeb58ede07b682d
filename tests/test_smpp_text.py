"""The SMPP channel's text handling, table-driven: which alphabet, where a long text is
cut, the concatenation header, the segment count shown before sending, decoding what
arrives, and the reassembly of replies in parts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coordinator.channels.smpp.bodies import ESM_UDHI, ShortMessage, u16
from coordinator.channels.smpp.config import relative_validity
from coordinator.channels.smpp.inbound import Concat, Reassembly, e164, user_data
from coordinator.channels.smpp.pdu import Tag
from coordinator.channels.smpp.text import (
    DC_GBK,
    DC_GSM7,
    DC_UCS2,
    GSM7_EXTENSION,
    GSM7_TABLE,
    concat_header,
    decode_text,
    segment_count,
    split_text,
)
from coordinator.segments import GSM7_BASIC, GSM7_EXTENDED, sms_segments

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
SCRIPT = "【演练】网络故障通报：华东区域部分用户4G业务受影响，请按预案统一口径答复，回复1确认。"

# text, data_coding, octets per part (headers not counted)
SPLITS = [
    ("", DC_GSM7, [0]),
    ("1 ABC", DC_GSM7, [5]),
    ("a" * 160, DC_GSM7, [160]),
    ("a" * 161, DC_GSM7, [153, 8]),
    ("a" * 306, DC_GSM7, [153, 153]),
    ("a" * 307, DC_GSM7, [153, 153, 1]),
    ("€" * 80, DC_GSM7, [160]),  # an extension character costs two septets
    ("€" * 81, DC_GSM7, [152, 10]),  # never an escape without its character
    ("a" * 152 + "{" + "a" * 10, DC_GSM7, [152, 12]),
    ("@£$¥èéùìòÇ\nØø\rÅå", DC_GSM7, [16]),
    ("ç", DC_UCS2, [2]),  # Ç is GSM-7, ç is not
    ("确认", DC_UCS2, [4]),
    ("中" * 70, DC_UCS2, [140]),
    ("中" * 71, DC_UCS2, [134, 8]),
    ("中" * 134, DC_UCS2, [134, 134]),
    ("中" * 135, DC_UCS2, [134, 134, 2]),
    ("中" * 66 + "😀" + "中" * 10, DC_UCS2, [132, 24]),  # a surrogate pair stays whole
    ("😀" * 35, DC_UCS2, [140]),
    ("😀" * 36, DC_UCS2, [132, 12]),
    ("ok 😀", DC_UCS2, [10]),
    (SCRIPT * 3, DC_UCS2, [134, 130]),
]


@pytest.mark.parametrize(("text", "data_coding", "sizes"), SPLITS)
def test_split(text: str, data_coding: int, sizes: list[int]) -> None:
    split = split_text(text)
    assert split.data_coding == data_coding
    assert [len(part) for part in split.parts] == sizes
    assert decode_text(b"".join(split.parts), data_coding) == text
    # No part ends inside a character: each decodes on its own (no escape without its
    # character, no half of a surrogate pair), and together they are the text.
    assert "".join(decode_text(part, data_coding) for part in split.parts) == text
    if data_coding == DC_UCS2:
        for part in split.parts:
            part.decode("utf-16-be")


@pytest.mark.parametrize("text", [text for text, _, _ in SPLITS] + ["【通知】" * 40, "a€" * 70, "€" * 77 + "a"])
def test_segment_count_is_what_the_split_bills_and_what_segments_shows(text: str) -> None:
    assert segment_count(text) == len(split_text(text).parts) == sms_segments(text).segments
    assert ("GSM-7" if split_text(text).data_coding == DC_GSM7 else "UCS-2") == sms_segments(text).encoding


def test_headers_number_the_parts_in_order_under_one_reference() -> None:
    split = split_text("中" * 135)
    parts = split.with_headers(reference=0xA7)
    assert [p[:6] for p in parts] == [bytes([5, 0, 3, 0xA7, 3, n]) for n in (1, 2, 3)]
    assert all(len(p) <= 140 for p in parts)
    assert split_text("确认").with_headers(9) == ["确认".encode("utf-16-be")]  # one part: no header


def test_gsm_parts_fit_a_short_message_with_their_header() -> None:
    assert all(len(p) == 6 + 153 for p in split_text("a" * 306).with_headers(1))


def test_too_many_parts_is_refused() -> None:
    assert len(split_text("中" * 67 * 255).parts) == 255
    with pytest.raises(ValueError, match="255"):
        split_text("中" * (67 * 255 + 1))
    with pytest.raises(ValueError):
        concat_header(256, 2, 1)


def test_the_gsm_table_is_the_alphabet_segments_counts() -> None:
    assert len(GSM7_TABLE) == 128
    assert set(GSM7_TABLE) - {"\x1b"} == GSM7_BASIC
    assert set(GSM7_EXTENSION) == GSM7_EXTENDED


@pytest.mark.parametrize(("data", "data_coding", "text"), [
    (b"\x00\x01\x02", DC_GSM7, "@£$"),
    (b"1 ABC", DC_GSM7, "1 ABC"),
    (b"\x1b\x65\x1b\x28", DC_GSM7, "€{"),
    (b"\x1b\x41", DC_GSM7, "A"),  # an escape before a code with no extension shows the basic one
    (b"caf\xe9", DC_GSM7, "café"),  # octets above 0x7F: some SMSC's Latin-1 under data_coding 0
    (b"caf\xe9", 0x03, "café"),
    (b"1 ABC", 0x01, "1 ABC"),
    ("确认".encode("utf-16-be"), DC_UCS2, "确认"),
    ("😀".encode("utf-16-be"), DC_UCS2, "😀"),
    ("确认".encode("gbk"), DC_GBK, "确认"),
    (b"1 ABC", 0xF0, "1 ABC"),  # GSM 03.38 DCS with a message class
    ("好".encode("utf-16-be"), 0x18, "好"),  # general data coding group, UCS-2
    (b"\xff", 0x04, "\xff"),
])
def test_decode(data: bytes, data_coding: int, text: str) -> None:
    assert decode_text(data, data_coding) == text


def test_relative_validity() -> None:
    assert relative_validity(3600) == "000000010000000R"
    assert relative_validity(2 * 86400 + 61) == "000002000101000R"


def _part(text_bytes: bytes, *, header: bytes = b"", sender: str = "8613800000001", data_coding: int = DC_UCS2,
          tlvs: dict[int, bytes] | None = None) -> ShortMessage:
    return ShortMessage(sender, "1065712345", header + text_bytes, source_addr_ton=1,
                        esm_class=ESM_UDHI if header else 0, data_coding=data_coding, tlvs=tlvs or {})


@pytest.mark.parametrize(("message", "concat"), [
    (_part(b"x", header=bytes([5, 0, 3, 7, 2, 1])), Concat(7, 2, 1)),
    (_part(b"x", header=bytes([6, 8, 4, 1, 2, 3, 2])), Concat(0x0102, 3, 2)),
    (_part(b"x", header=bytes([8, 0x24, 1, 1, 0, 3, 7, 2, 2])), Concat(7, 2, 2)),  # after another element
    (_part(b"x", header=bytes([5, 0, 3, 7, 2, 3])), None),  # part 3 of 2
    (_part(b"x"), None),
    (_part(b"x", tlvs={Tag.sar_msg_ref_num: u16(300), Tag.sar_total_segments: b"\x02",
                       Tag.sar_segment_seqnum: b"\x01"}), Concat(300, 2, 1)),
])
def test_concatenation_is_read_from_the_header_or_the_sar_tlvs(message: ShortMessage, concat: Concat | None) -> None:
    found, data = user_data(message)
    assert found == concat
    assert data == b"x"


def test_reassembly_joins_parts_in_any_order_and_keeps_senders_apart() -> None:
    reassembly = Reassembly(keep_for=timedelta(minutes=10))
    text = "确认收到，马上处理😀"
    raw = text.encode("utf-16-be")
    first, second = raw[:10], raw[10:]
    assert reassembly.add(_part(second, header=bytes([5, 0, 3, 42, 2, 2])), T0) is None
    assert reassembly.add(_part(first, header=bytes([5, 0, 3, 42, 2, 1]), sender="8613800000009"), T0) is None
    whole = reassembly.add(_part(first, header=bytes([5, 0, 3, 42, 2, 1])), T0)
    assert whole is not None and whole.parts == 2
    assert decode_text(whole.data, whole.first.data_coding) == text  # the pair split between parts is joined
    assert len(reassembly) == 1  # the other sender's part still waits
    assert reassembly.expire(T0 + timedelta(minutes=5)) == []
    assert reassembly.expire(T0 + timedelta(minutes=11)) == [("8613800000009", "1065712345", 1)]
    assert len(reassembly) == 0


def test_a_message_on_its_own_is_whole_at_once() -> None:
    whole = Reassembly(keep_for=timedelta(minutes=1)).add(_part(b"1 ABC", data_coding=DC_GSM7), T0)
    assert whole is not None and whole.data == b"1 ABC"


@pytest.mark.parametrize(("address", "ton", "number"), [
    ("8613800138000", 1, "+8613800138000"),
    ("+8613800138000", 0, "+8613800138000"),
    ("13800138000", 2, "+8613800138000"),
    ("013800138000", 2, "+8613800138000"),
    ("13800138000", 0, "13800138000"),  # unknown type: as written, never guessed
    ("10086", 3, "10086"),
])
def test_e164(address: str, ton: int, number: str) -> None:
    assert e164(address, ton, "86") == number
