"""The twilio client's aiohttp transport, with the request body encoded once.

`AsyncTwilioHttpClient` hands aiohttp the form as a dict, and aiohttp builds a `FormData`
for every request: a multipart writer with a fresh random boundary it never uses, then
a percent-encoding pass over every value. In a fan-out the longest value, the script's
text, is the same for thousands of requests, so its encoding is kept; the body goes to
aiohttp as bytes with the Content-Type the twilio client already set. Basic auth goes
in as a header built once, and the client's request and answer logging (a dozen
formatted lines per SMS) is skipped unless its logger takes INFO.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

# Script texts and the sender's fixed fields; per-recipient values pass through it too,
# and are evicted by the next versions' texts soon enough.
_QUOTED_CACHE = 1024


@functools.lru_cache(maxsize=_QUOTED_CACHE)
def _quoted(value: str) -> str:
    return quote_plus(value)


def encode_form(data: Mapping[str, object]) -> bytes:
    """`data` as application/x-www-form-urlencoded, as aiohttp's FormData (and
    `urlencode(..., doseq=True)`) writes it: a list or tuple value repeats its name,
    anything else is its `str()`."""
    pairs: list[str] = []
    for name, value in data.items():
        key = _quoted(str(name))
        if isinstance(value, (list, tuple)):
            pairs.extend(f"{key}={_quoted(str(item))}" for item in value)
        else:
            pairs.append(f"{key}={_quoted(str(value))}")
    return "&".join(pairs).encode("ascii")


@functools.lru_cache(maxsize=8)
def _basic(login: str, password: str) -> str:
    return aiohttp.encode_basic_auth(login, password)


FORM = "application/x-www-form-urlencoded"


def _content_type(headers: Mapping[str, str] | None) -> str:
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            return value.split(";")[0].strip().lower()
    return ""


class FormTwilioHttpClient(AsyncTwilioHttpClient):
    """AsyncTwilioHttpClient that sends a form body pre-encoded (see the module)."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        body: Any = data
        if data and _content_type(headers) == FORM:
            body = encode_form(data)
        if auth is not None:
            # As a header: aiohttp 3.14 deprecates the BasicAuth the parent would build.
            headers = {**(headers or {}), "Authorization": _basic(*auth)}
        return await super().request(method, url, params=params, data=body, headers=headers, auth=None,
                                     timeout=timeout, allow_redirects=allow_redirects)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)
