"""Pointing the real twilio client at a Twilio-compatible base URL such as the sandbox's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

if TYPE_CHECKING:
    from coordinator.sandbox.twilio import TwilioSandbox


def point_client(client: Client, base_url: str) -> None:
    """Send `client`'s Messages API calls (and its paging links) to `base_url`.

    `client.api` is the api.twilio.com domain; every Messages URL, including the
    next-page links of a list, is built from its `base_url`. Edge and region are
    cleared because they rewrite the host name (TWILIO_EDGE/TWILIO_REGION would turn
    127.0.0.1 into nonsense).
    """
    client.api.base_url = base_url.rstrip("/")
    client.edge = None
    client.region = None


def sandbox_client(sandbox: TwilioSandbox) -> Client:
    """An async twilio Client for `sandbox`; call it inside the running event loop
    (AsyncTwilioHttpClient opens an aiohttp session) and close it with
    `await client.http_client.close()`. No retries: the http client's max_retries
    would re-POST a create after a 5xx and could send a message twice."""
    client = Client(sandbox.account_sid, sandbox.auth_token, http_client=AsyncTwilioHttpClient())
    point_client(client, sandbox.base_url)
    return client
