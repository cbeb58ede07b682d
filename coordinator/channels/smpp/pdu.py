"""SMPP 3.4 on the wire: the 16-byte header, framing on a stream, C-octet strings and
TLVs. The bodies of the commands we use are in `bodies.py`.

Shared by the ESME session and the sandbox SMSC; an SMSC we did not write (smpp34's, in
tests/test_smpp_independent.py) checks that both speak the same protocol as others do.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum

from coordinator.errors import InvalidPdu

HEADER = struct.Struct(">IIII")
# The largest PDU accepted: a message_payload TLV holds at most 64 KiB.
MAX_PDU = 70_000
RESPONSE_BIT = 0x8000_0000
INTERFACE_VERSION = 0x34


class Command(IntEnum):
    generic_nack = 0x8000_0000
    bind_receiver = 0x0000_0001
    bind_receiver_resp = 0x8000_0001
    bind_transmitter = 0x0000_0002
    bind_transmitter_resp = 0x8000_0002
    query_sm = 0x0000_0003
    query_sm_resp = 0x8000_0003
    submit_sm = 0x0000_0004
    submit_sm_resp = 0x8000_0004
    deliver_sm = 0x0000_0005
    deliver_sm_resp = 0x8000_0005
    unbind = 0x0000_0006
    unbind_resp = 0x8000_0006
    bind_transceiver = 0x0000_0009
    bind_transceiver_resp = 0x8000_0009
    enquire_link = 0x0000_0015
    enquire_link_resp = 0x8000_0015


class Status(IntEnum):
    """The command_status values this package names; any other (0x400-0x4FF are
    vendor-specific) stays a plain int."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVESMCLASS = 0x43
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVDSTTON = 0x50
    ESME_RINVSYSTYP = 0x53
    ESME_RTHROTTLED = 0x58
    ESME_RX_T_APPN = 0x64
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_RUNKNOWNERR = 0xFF


def status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return f"status {status:#x}"


class Tag(IntEnum):
    receipted_message_id = 0x001E
    sar_msg_ref_num = 0x020C
    sar_total_segments = 0x020E
    sar_segment_seqnum = 0x020F
    sc_interface_version = 0x0210
    network_error_code = 0x0423
    message_payload = 0x0424
    message_state = 0x0427


@dataclass(frozen=True)
class Pdu:
    command: int
    status: int
    sequence: int
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.command & RESPONSE_BIT)

    def encode(self) -> bytes:
        return HEADER.pack(HEADER.size + len(self.body), self.command, self.status, self.sequence) + self.body


def decode(data: bytes) -> Pdu:
    """One whole PDU (header included) from `data`."""
    if len(data) < HEADER.size:
        raise InvalidPdu(f"{len(data)} bytes is shorter than a header")
    length, command, status, sequence = HEADER.unpack_from(data)
    if length != len(data):
        raise InvalidPdu(f"command_length {length} but {len(data)} bytes")
    return Pdu(command, status, sequence, data[HEADER.size:])


async def read_pdu(reader: asyncio.StreamReader) -> Pdu:
    """The next PDU on the stream. Raises asyncio.IncompleteReadError at the end of the
    stream and InvalidPdu for a length no SMPP peer sends."""
    head = await reader.readexactly(4)
    (length,) = struct.unpack(">I", head)
    if not HEADER.size <= length <= MAX_PDU:
        raise InvalidPdu(f"command_length {length} is out of range")
    return decode(head + await reader.readexactly(length - 4))


class BodyReader:
    """Reads a body field by field; every read past the end raises InvalidPdu."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._at = 0

    def c_string(self, max_size: int, *, optional: bool = False) -> str:
        """A NUL-terminated string of at most `max_size` octets with the NUL. `optional`:
        a body that ends here reads as "" (an SMSC may leave out the message_id of a
        refused submit_sm)."""
        if optional and self._at >= len(self._body):
            return ""
        end = self._body.find(b"\0", self._at, self._at + max_size)
        if end < 0:
            raise InvalidPdu(f"no NUL within {max_size} octets at offset {self._at}")
        value = self._body[self._at:end].decode("latin-1")
        self._at = end + 1
        return value

    def octet(self) -> int:
        if self._at >= len(self._body):
            raise InvalidPdu(f"body ends at offset {self._at}, an octet was expected")
        self._at += 1
        return self._body[self._at - 1]

    def octets(self, count: int) -> bytes:
        if self._at + count > len(self._body):
            raise InvalidPdu(f"{count} octets wanted at offset {self._at}, the body has {len(self._body)}")
        self._at += count
        return self._body[self._at - count:self._at]

    def tlvs(self) -> dict[int, bytes]:
        """The optional parameters after the mandatory ones; a repeated tag keeps its last value."""
        found: dict[int, bytes] = {}
        while self._at < len(self._body):
            tag, length = struct.unpack(">HH", self.octets(4))
            found[tag] = self.octets(length)
        return found


def c_string(value: str, max_size: int, field: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) >= max_size or b"\0" in raw:
        raise ValueError(f"{field} must be at most {max_size - 1} ASCII characters without NUL: {value!r}")
    return raw + b"\0"


def encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs.items())
