"""The bodies of the SMPP 3.4 commands this package sends or answers (spec section 4),
each a frozen record with `encode()` and a `decode(body)` classmethod. Commands without
a body (enquire_link, unbind, their responses, generic_nack) have none here."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from coordinator.errors import InvalidPdu

from .pdu import INTERFACE_VERSION, BodyReader, Tag, c_string, encode_tlvs

ESM_RECEIPT = 0x04  # esm_class message type: an SMSC delivery receipt
ESM_UDHI = 0x40  # esm_class: short_message starts with a user data header
MAX_SHORT_MESSAGE = 254


@dataclass(frozen=True)
class Bind:
    """bind_transmitter / bind_receiver / bind_transceiver (all the same body)."""

    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return (
            c_string(self.system_id, 16, "system_id")
            + c_string(self.password, 9, "password")
            + c_string(self.system_type, 13, "system_type")
            + bytes([self.interface_version, self.addr_ton, self.addr_npi])
            + c_string(self.address_range, 41, "address_range")
        )

    @classmethod
    def decode(cls, body: bytes) -> Bind:
        r = BodyReader(body)
        return cls(r.c_string(16), r.c_string(9), r.c_string(13), r.octet(), r.octet(), r.octet(), r.c_string(41))


@dataclass(frozen=True)
class BindResp:
    system_id: str
    sc_interface_version: int | None = None
    """The sc_interface_version TLV: an SMSC that sends 0x34 takes SMPP 3.4 TLVs
    (message_payload among them); one that sends none may not."""

    def encode(self) -> bytes:
        tlvs: dict[int, bytes] = {}
        if self.sc_interface_version is not None:
            tlvs[Tag.sc_interface_version] = bytes([self.sc_interface_version])
        return c_string(self.system_id, 16, "system_id") + encode_tlvs(tlvs)

    @classmethod
    def decode(cls, body: bytes) -> BindResp:
        r = BodyReader(body)
        system_id = r.c_string(16, optional=True)
        version = r.tlvs().get(Tag.sc_interface_version)
        return cls(system_id, version[0] if version else None)


@dataclass(frozen=True)
class ShortMessage:
    """submit_sm (ESME to SMSC) and deliver_sm (SMSC to ESME) share this body. The
    text is already encoded; `tlvs` maps a tag to its raw value."""

    source_addr: str
    destination_addr: str
    short_message: bytes = b""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    service_type: str = ""
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    replace_if_present_flag: int = 0
    sm_default_msg_id: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def is_receipt(self) -> bool:
        return self.esm_class & 0x3C == ESM_RECEIPT

    @property
    def payload(self) -> bytes:
        """The user data: message_payload when present (short_message is then empty), else short_message."""
        return self.tlvs.get(Tag.message_payload, self.short_message)

    def encode(self) -> bytes:
        if len(self.short_message) > MAX_SHORT_MESSAGE:
            raise ValueError(f"short_message is {len(self.short_message)} octets, at most {MAX_SHORT_MESSAGE}")
        return (
            c_string(self.service_type, 6, "service_type")
            + bytes([self.source_addr_ton, self.source_addr_npi])
            + c_string(self.source_addr, 21, "source_addr")
            + bytes([self.dest_addr_ton, self.dest_addr_npi])
            + c_string(self.destination_addr, 21, "destination_addr")
            + bytes([self.esm_class, self.protocol_id, self.priority_flag])
            + c_string(self.schedule_delivery_time, 17, "schedule_delivery_time")
            + c_string(self.validity_period, 17, "validity_period")
            + bytes([self.registered_delivery, self.replace_if_present_flag, self.data_coding,
                     self.sm_default_msg_id, len(self.short_message)])
            + self.short_message
            + encode_tlvs(self.tlvs)
        )

    @classmethod
    def decode(cls, body: bytes) -> ShortMessage:
        r = BodyReader(body)
        service_type = r.c_string(6)
        source_ton, source_npi, source = r.octet(), r.octet(), r.c_string(21)
        dest_ton, dest_npi, dest = r.octet(), r.octet(), r.c_string(21)
        esm_class, protocol_id, priority = r.octet(), r.octet(), r.octet()
        schedule, validity = r.c_string(17), r.c_string(17)
        registered, replace, data_coding, default_id = r.octet(), r.octet(), r.octet(), r.octet()
        short_message = r.octets(r.octet())
        return cls(
            source_addr=source, destination_addr=dest, short_message=short_message,
            source_addr_ton=source_ton, source_addr_npi=source_npi, dest_addr_ton=dest_ton, dest_addr_npi=dest_npi,
            esm_class=esm_class, registered_delivery=registered, data_coding=data_coding, service_type=service_type,
            protocol_id=protocol_id, priority_flag=priority, schedule_delivery_time=schedule, validity_period=validity,
            replace_if_present_flag=replace, sm_default_msg_id=default_id, tlvs=r.tlvs(),
        )


@dataclass(frozen=True)
class MessageIdResp:
    """submit_sm_resp (the SMSC's message id) and deliver_sm_resp (message_id unused, empty)."""

    message_id: str = ""

    def encode(self) -> bytes:
        return c_string(self.message_id, 65, "message_id")

    @classmethod
    def decode(cls, body: bytes) -> MessageIdResp:
        return cls(BodyReader(body).c_string(65, optional=True))


@dataclass(frozen=True)
class QuerySm:
    message_id: str
    source_addr: str
    source_addr_ton: int = 0
    source_addr_npi: int = 0

    def encode(self) -> bytes:
        return (c_string(self.message_id, 65, "message_id") + bytes([self.source_addr_ton, self.source_addr_npi])
                + c_string(self.source_addr, 21, "source_addr"))

    @classmethod
    def decode(cls, body: bytes) -> QuerySm:
        r = BodyReader(body)
        message_id = r.c_string(65)
        ton, npi = r.octet(), r.octet()
        return cls(message_id, r.c_string(21), ton, npi)


@dataclass(frozen=True)
class QueryResp:
    message_id: str
    message_state: int
    error_code: int = 0
    final_date: str = ""

    def encode(self) -> bytes:
        return (c_string(self.message_id, 65, "message_id") + c_string(self.final_date, 17, "final_date")
                + bytes([self.message_state, self.error_code]))

    @classmethod
    def decode(cls, body: bytes) -> QueryResp:
        r = BodyReader(body)
        message_id, final_date = r.c_string(65), r.c_string(17)
        return cls(message_id, r.octet(), r.octet(), final_date)


def tlv_int(value: bytes) -> int:
    """An integer TLV of 1, 2 or 4 octets."""
    if len(value) not in (1, 2, 4):
        raise InvalidPdu(f"an integer TLV of {len(value)} octets")
    return int.from_bytes(value, "big")


def tlv_c_string(value: bytes) -> str:
    """A C-octet string TLV; some SMSCs leave out the NUL."""
    return value.split(b"\0", 1)[0].decode("latin-1")


def u16(value: int) -> bytes:
    return struct.pack(">H", value)
