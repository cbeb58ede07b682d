"""`X-Twilio-Signature`, computed the way Twilio signs its webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Base64 HMAC-SHA1, keyed with the auth token, of the full URL followed by each
    POST parameter's name and value, sorted by name (Twilio's legacy scheme, which
    `twilio.request_validator.RequestValidator` checks)."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
