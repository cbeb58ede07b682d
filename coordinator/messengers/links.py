"""The link behind a DingTalk card's 确认 button: one per incident and script version,
signed and expiring, naming no person.

Why no person: DingTalk takes one card for up to 100 userids per asyncsend_v2 call, so a
send to 10,000 staff is 100 calls, not 10,000 (DingTalk allows an app 20 calls a second
per API). A per-person link would force a call per person. The person is named instead
by DingTalk itself when the link is opened inside DingTalk: the page asks DingTalk's
JSAPI for a 免登 auth code (`dd.runtime.permission.requestAuthCode`, valid 5 minutes, once)
and the service exchanges it for the userid with `topapi/v2/user/getuserinfo`, using the
app's own token (docs/messengers.md). A link forwarded outside DingTalk acknowledges no
one: without a code from the person's own DingTalk there is no userid.

The key is derived from the ack secret for this one use, so an email's ack token is never
a card token or the other way round."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import AckTokenInvalid


@dataclass(frozen=True)
class CardClaim:
    incident_id: str
    version: int
    expires: datetime


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"dingtalk-card-link", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_card_token(secret: str, claim: CardClaim) -> str:
    payload = json.dumps([claim.incident_id, claim.version, int(claim.expires.timestamp())],
                         separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(hmac.new(_key(secret), payload, hashlib.sha256).digest()[:16])}"


def read_card_token(secret: str, token: str, now: datetime) -> CardClaim:
    """The claim of a token we made and that has not expired. Raises AckTokenInvalid."""
    try:
        payload_text, signature_text = token.split(".")
        payload = base64.urlsafe_b64decode(payload_text + "=" * (-len(payload_text) % 4))
        signature = base64.urlsafe_b64decode(signature_text + "=" * (-len(signature_text) % 4))
    except (ValueError, TypeError):
        raise AckTokenInvalid("malformed", "malformed card link") from None
    if not hmac.compare_digest(signature, hmac.new(_key(secret), payload, hashlib.sha256).digest()[:16]):
        raise AckTokenInvalid("forged", "card link signature does not match")
    try:
        incident_id, version, expires = json.loads(payload)
        claim = CardClaim(str(incident_id), int(version), datetime.fromtimestamp(int(expires), timezone.utc))
    except (ValueError, TypeError):
        raise AckTokenInvalid("malformed", "malformed card link") from None
    if now > claim.expires:
        raise AckTokenInvalid("expired", "card link has expired")
    return claim
