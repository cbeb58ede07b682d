"""The Message resource: its state, its JSON, the checks on a send request, and Twilio's
error bodies. Pure: the server in `twilio.py` does the I/O."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from coordinator.errors import ApiError

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
MAX_VALIDITY_SECONDS = 36000
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")

# Delivery errors a carrier reports, with the error_message Twilio shows for each.
DELIVERY_ERRORS: dict[int, str] = {
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


def rfc2822(when: datetime | None) -> str | None:
    """Twilio's timestamp format, always in GMT: "Thu, 24 Aug 2023 05:01:45 +0000"."""
    return None if when is None else format_datetime(when.astimezone(timezone.utc))


@dataclass
class Message:
    """One message, outbound or inbound; mutable because its status moves."""

    sid: str
    account_sid: str
    direction: str  # "outbound-api" or "inbound"
    to: str
    from_: str | None  # None until a Messaging Service picks the sender
    messaging_service_sid: str | None
    body: str
    status: str
    num_segments: int  # 0 until a Messaging Service picks the sender, as Twilio does
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    error_code: int | None = None
    status_callback: str | None = None

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The JSON Twilio answers for this message (create, fetch, list)."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": DELIVERY_ERRORS.get(self.error_code) if self.error_code else None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": self.uri.removesuffix(".json") + "/Media.json"},
            "to": self.to,
            "uri": self.uri,
        }


@dataclass(frozen=True)
class SendRequest:
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None


def parse_send(
    form: Mapping[str, str], *, numbers: Collection[str], services: Mapping[str, Sequence[str]]
) -> SendRequest:
    """Check a create-Message form as Twilio does, in its order; raise ApiError(400, ...).

    Parameters the sandbox does not model (MediaUrl, ContentSid, SendAt, ...) are
    accepted and ignored; ValidityPeriod is checked but messages never wait long
    enough in the sandbox's queue to expire.
    """
    to = form.get("To", "")
    if not to:
        raise ApiError(400, 21604, "A 'To' phone number is required.")
    if not is_e164(to):
        raise ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    from_ = form.get("From") or None
    service = form.get("MessagingServiceSid") or None
    if from_ is None and service is None:
        raise ApiError(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message")
    if service is not None and service not in services:
        raise ApiError(400, 21705, f"The Messaging Service Sid {service} is invalid.")
    if from_ is not None and from_ not in numbers:
        raise ApiError(
            400,
            21606,
            f"The From phone number {from_} is not a valid, SMS-capable inbound phone number "
            "or short code for your account.",
        )
    body = form.get("Body", "")
    if not body:
        raise ApiError(400, 21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        raise ApiError(400, 21617, f"The concatenated message body exceeds the {MAX_BODY_CHARS} character limit.")
    validity = form.get("ValidityPeriod")
    if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= MAX_VALIDITY_SECONDS):
        raise ApiError(
            400, 21624, f"Validity period can only be set to integers between 1 and {MAX_VALIDITY_SECONDS} seconds."
        )
    callback = form.get("StatusCallback") or None
    if callback is not None:
        parts = urlsplit(callback)
        if parts.scheme not in ("http", "https") or not parts.hostname or "_" in parts.hostname:
            raise ApiError(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    return SendRequest(to, from_, service, body, callback)
