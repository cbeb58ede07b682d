"""Signed, expiring acknowledgement links for the email: the token names the incident,
the script version and the person, and carries its expiry; an HMAC over them means it
cannot be forged or moved to another person."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone


class AckTokenInvalid(ValueError):
    """Forged, damaged or expired; the message says which."""


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
        raise AckTokenInvalid("malformed acknowledgement link") from None
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(signature, expected):
        raise AckTokenInvalid("acknowledgement link signature does not match")
    incident_id, version, person_id, expires = json.loads(payload)
    claim = AckClaim(incident_id, int(version), person_id, datetime.fromtimestamp(expires, timezone.utc))
    if now > claim.expires:
        raise AckTokenInvalid("acknowledgement link has expired")
    return claim
