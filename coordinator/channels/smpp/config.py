"""What the SMPP channel needs to know: where the SMSC is, who we are to it, and the
timings of the session. Checked when built, all at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MAX_VALIDITY_SECONDS = 63 * 86400  # the relative validity period counts days in two digits, weeks beyond


@dataclass(frozen=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    source_addr: str
    """Our number or service code, as the SMSC knows it (e.g. "1065712345")."""
    system_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 1
    country_code: str = "86"
    """For a reply from a number of national type (TON 2): "+86" is put in front."""
    window: int = 10
    """submit_sm and query_sm outstanding at once, unanswered; the SMSC's contract says how many."""
    long_text: Literal["udh", "payload"] = "udh"
    """How a text longer than one message goes: parts with a concatenation header, or one
    submit_sm with the whole text in message_payload. "payload" is used only when the
    SMSC's bind_resp announces SMPP 3.4 TLVs (sc_interface_version); else parts."""
    validity_seconds: int | None = 3600
    """The SMSC drops a message still undelivered after this long: a late script is a stale one."""
    enquire_link_seconds: float = 30.0
    response_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 10.0
    """How long a send waits for a (re)connection before it gives up, retryable."""
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    throttle_min_seconds: float = 1.0
    throttle_max_seconds: float = 30.0
    throttle_attempts: int = 5
    """Tries of one submit_sm that the SMSC throttles (ESME_RTHROTTLED, ESME_RMSGQFUL),
    each after a growing pause of the whole session, before the send fails retryable."""
    reassembly_seconds: float = 600.0
    """How long the parts of a reply wait for the rest."""
    track_seconds: float = 2 * 86400
    """How long a sent message's parts are remembered for their receipts."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name, limit in (("system_id", 15), ("password", 8), ("system_type", 12), ("source_addr", 20)):
            value = getattr(self, name)
            if len(value) > limit or not value.isascii():
                problems.append(f"{name} must be at most {limit} ASCII characters")
        if not self.system_id:
            problems.append("system_id is required")
        if not 0 < self.port < 65536:
            problems.append("port must be 1..65535")
        if self.window < 1:
            problems.append("window must be at least 1")
        if self.throttle_attempts < 1:
            problems.append("throttle_attempts must be at least 1")
        if self.long_text not in ("udh", "payload"):
            problems.append('long_text must be "udh" or "payload"')
        if self.validity_seconds is not None and not 60 <= self.validity_seconds <= MAX_VALIDITY_SECONDS:
            problems.append(f"validity_seconds must be 60..{MAX_VALIDITY_SECONDS}")
        for name in ("enquire_link_seconds", "response_timeout_seconds", "connect_timeout_seconds",
                     "reconnect_min_seconds", "reconnect_max_seconds", "throttle_min_seconds",
                     "throttle_max_seconds", "reassembly_seconds", "track_seconds"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            problems.append("reconnect_min_seconds must not exceed reconnect_max_seconds")
        if self.throttle_min_seconds > self.throttle_max_seconds:
            problems.append("throttle_min_seconds must not exceed throttle_max_seconds")
        if problems:
            raise ValueError("SmppConfig: " + "; ".join(problems))


def relative_validity(seconds: int) -> str:
    """SMPP's relative time format (section 7.1.1), "YYMMDDhhmmss000R", for `seconds`."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"
