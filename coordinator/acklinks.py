"""Signed, expiring acknowledgement links for the email: the token names the incident,
the script version and the person, and carries its expiry; an HMAC over them means it
cannot be forged or moved to another person. The signature only says we made the
token, so before it acknowledges anything the incident must bear its claim out
(`unfounded`): no ack is written for a message that was never sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import AckTokenInvalid
from .models import DeliveryKey, Incident, Medium

# The emails that carry a link (their purposes): a version of the wording, and the
# reminder about it. Role notices carry none (they are acknowledged by SMS or in the console).
LINK_PURPOSES = ("", "reminder")


def carries_link(key: DeliveryKey) -> bool:
    return key.medium == Medium.email and key.purpose in LINK_PURPOSES


@dataclass(frozen=True)
class AckClaim:
    incident_id: str
    version: int
    person_id: str
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, claim: AckClaim) -> str:
    payload = json.dumps(
        [claim.incident_id, claim.version, claim.person_id, int(claim.expires.timestamp())], separators=(",", ":")
    ).encode()
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(signature)}"


def read_token(secret: str, token: str, now: datetime) -> AckClaim:
    try:
        payload_text, signature_text = token.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (ValueError, TypeError):
        raise AckTokenInvalid("malformed", "malformed acknowledgement link") from None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(signature, expected):
        raise AckTokenInvalid("forged", "acknowledgement link signature does not match")
    incident_id, version, person_id, expires = json.loads(payload)
    claim = AckClaim(incident_id, int(version), person_id, datetime.fromtimestamp(expires, timezone.utc))
    if now > claim.expires:
        raise AckTokenInvalid("expired", "acknowledgement link has expired")
    return claim


def unfounded(claim: AckClaim, incident: Incident | None, contact: bool, emailed: bool) -> str | None:
    """Why the incident does not bear `claim` out, or None if it does: the incident
    exists (`incident` is None if not), has the version, and the person is a contact
    (`contact`) who was sent that version by email (`emailed`: a delivery that
    `carries_link`)."""
    if incident is None:
        return f"no incident {claim.incident_id}"
    if incident.script(claim.version) is None:
        return f"incident {incident.id} has no version {claim.version}"
    if not contact:
        return f"{claim.person_id} is not a contact"
    if not emailed:
        return f"{claim.person_id} was not sent version {claim.version} of {incident.id} by email"
    return None
