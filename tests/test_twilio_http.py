"""The twilio client's transport with the pre-encoded form (coordinator/channels/twilio_http.py)."""

from __future__ import annotations

import logging
import urllib.parse

import aiohttp
import pytest
from twilio.rest import Client

from coordinator.channels.twilio_http import FormTwilioHttpClient, encode_form
from coordinator.clock import ManualClock
from coordinator.sandbox import Delivery, TwilioSandbox

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "sandbox-auth-token"
SENDER = "+15005550006"
# Every character the form encoding has to get right: the separators, '+', '%', a space,
# a line break, Chinese, an emoji outside the BMP.
AWKWARD = "a+b=c&d e%20 ?#/\n确认收到 😀 'quoted' \"double\""

FORMS = [
    {"To": "+8613800138000", "Body": AWKWARD, "ValidityPeriod": 3600},
    {"MediaUrl": ["https://example.com/a?b=1&c=2", "https://example.com/二"], "Body": "x"},
    {"Empty": "", "Flag": "true", "Tuple": ("1", "2")},
]


@pytest.mark.parametrize("form", FORMS)
def test_encode_form_writes_what_urlencode_and_aiohttp_write(form: dict[str, object]) -> None:
    encoded = encode_form(form)
    assert encoded.decode("ascii") == urllib.parse.urlencode(form, doseq=True)
    formdata = aiohttp.FormData(form)()
    assert encoded == formdata._value  # the body aiohttp itself would have sent
    # and it reads back as the same fields
    pairs = urllib.parse.parse_qsl(encoded.decode("ascii"), keep_blank_values=True)
    expected = [(k, str(item)) for k, v in form.items() for item in (v if isinstance(v, (list, tuple)) else [v])]
    assert pairs == expected


async def test_the_real_client_sends_awkward_text_intact_and_lists_with_a_get(clock: ManualClock) -> None:
    sandbox = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, numbers=[SENDER], clock=clock, seed=1,
                            delivery=Delivery(step_delay=60, receipt_delay=60))
    await sandbox.start()
    http = FormTwilioHttpClient(pool_connections=False)
    http.session = aiohttp.ClientSession()
    try:
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
        client.api.base_url = sandbox.base_url.rstrip("/")
        sent = await client.messages.create_async(to="+8613800138000", from_=SENDER, body=AWKWARD,
                                                  validity_period=600)
        [message] = sandbox.received_by("+8613800138000")
        assert message.body == AWKWARD and sent.body == AWKWARD and message.sid == sent.sid
        # A GET carries no body; its filters stay in the query string.
        listed = await client.messages.list_async(to="+8613800138000", limit=5)
        assert [m.sid for m in listed] == [sent.sid]
    finally:
        await http.close()
        await sandbox.stop()


async def test_requests_are_logged_only_when_the_logger_takes_info(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, numbers=[SENDER], clock=clock, seed=1,
                            delivery=Delivery(step_delay=60, receipt_delay=60))
    await sandbox.start()
    logger = logging.getLogger("tests.twilio_http")
    http = FormTwilioHttpClient(pool_connections=False, logger=logger)
    http.session = aiohttp.ClientSession()
    try:
        client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
        client.api.base_url = sandbox.base_url.rstrip("/")
        with caplog.at_level(logging.WARNING, logger=logger.name):
            await client.messages.create_async(to="+8613800138000", from_=SENDER, body="quiet")
        assert not [r for r in caplog.records if r.name == logger.name]
        with caplog.at_level(logging.INFO, logger=logger.name):
            await client.messages.create_async(to="+8613800138000", from_=SENDER, body="loud")
        lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
        assert "-- BEGIN Twilio API Request --" in lines
        assert any(line.startswith("Response Status Code: 201") for line in lines)
    finally:
        await http.close()
        await sandbox.stop()
