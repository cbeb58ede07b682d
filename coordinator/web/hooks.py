"""Provider webhooks and the email acknowledgement link. Twilio's callbacks are checked
by signature (HMAC over the public URL and the form), never by session; the ack link
by its own signed token, then against what the incident sent (Pipeline.check_link)."""

from __future__ import annotations

import functools
import hmac
import html
import logging

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from ..acklinks import AckClaim, read_token
from ..errors import AckTokenInvalid
from ..channels.sms import map_twilio_status
from ..models import DeliveryKey, DeliveryStatus
from ..store.records import StatusUpdate
from .auth import signed
from .i18n import DEFAULT_LANG, translator
from .state import SERVICES, Services

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# The ack page speaks to the frontline, who read Chinese; it has no session to keep a
# language in.
_T = translator(DEFAULT_LANG)


async def _signed_form(request: web.Request) -> dict[str, str]:
    """The form of a Twilio webhook whose signature matches, else 403."""
    services = request.app[SERVICES]
    token = services.settings.twilio_auth_token
    form = {k: str(v) for k, v in (await request.post()).items()}
    url = services.settings.base_url + request.raw_path  # as sent: the signature covers the raw query
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not _valid(RequestValidator(token), url, form, signature):
        log.warning("rejected a webhook with a bad signature on %s", request.path)
        raise web.HTTPForbidden(reason="signature does not match")
    return form


def _valid(validator: RequestValidator, url: str, form: dict[str, str], signature: str) -> bool:
    """twilio's check. It always signs the URL twice (with and without the port, as
    Twilio may sign either); the URL exactly as configured is tried first, which is what
    a callback to it carries, so most callbacks cost one HMAC instead of two. The form
    goes in as a MultiDict, which the validator reads with `getall`: a plain dict costs it
    two caught AttributeErrors per parameter."""
    params = MultiDict(form)
    if signature and hmac.compare_digest(validator.compute_signature(url, params).encode(), signature.encode()):
        return True
    return bool(validator.validate(url, params, signature))


@routes.post("/hooks/twilio/status")
@signed
async def twilio_status(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    form = await _signed_form(request)
    try:
        status = DeliveryStatus(map_twilio_status(form.get("MessageStatus", "")))
    except ValueError:
        return web.Response(status=204)
    # By the id in the callback URL (a callback may beat the SID being recorded), else by
    # the SID. Recorded with the other callbacks and sends of the moment, in one write.
    key = DeliveryKey.parse(request.query.get("delivery", ""))
    sid = form.get("MessageSid") or None
    if key is None and sid is None:
        return web.Response(status=204)
    await services.outbox.report(StatusUpdate(key, status, services.clock.now(), provider_id=sid,
                                              error=form.get("ErrorCode") or None))
    return web.Response(status=204)


@routes.post("/hooks/twilio/inbound")
@signed
async def twilio_inbound(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    form = await _signed_form(request)
    replied = await services.pipeline.reply(form.get("From", ""), form.get("Body", ""))
    # The answer rides back on the webhook's own response, as TwiML: Twilio sends it to
    # the phone (no API call, no status callbacks: an ack storm costs one request each).
    return web.Response(text=twiml_answer(replied.answer), content_type="text/xml")


@functools.lru_cache(maxsize=1024)
def twiml_answer(text: str | None) -> str:
    """The TwiML that sends `text` back (nothing for None). Cached: in an ack storm
    thousands of people get the same few answers, and building the XML is a fifth of a
    reply's own work."""
    answer = MessagingResponse()
    if text is not None:
        answer.message(text)
    return str(answer)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="text/html", charset="utf-8", text=(
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body style=\"font-family:sans-serif;max-width:32em;margin:2em auto\">"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"))


@routes.get("/ack/{token}")
@signed
async def ack_page(request: web.Request) -> web.Response:
    """A page with a button: mail scanners fetch links, so the GET itself acknowledges
    nothing."""
    try:
        claim = await _founded_claim(request)
    except AckTokenInvalid as exc:
        return _bad_link(exc)
    return _page(_T("ack.title"), (
        f"<p>{html.escape(_T('ack.about') % (claim.incident_id, claim.version))}</p>"
        '<form method="post"><button type="submit" style="font-size:1.2em;padding:.5em 2em">'
        f"{html.escape(_T('ack.button'))}</button></form>"))


@routes.post("/ack/{token}")
@signed
async def ack_confirm(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        claim = read_token(services.ack_secret, request.match_info["token"], services.clock.now())
        new = await services.pipeline.acknowledge_link(claim)
    except AckTokenInvalid as exc:
        return _bad_link(exc)
    said = _T("ack.done" if new else "ack.done_before") % claim.version
    return _page(_T("ack.done_title"), f"<p>{html.escape(said)}</p>")


async def _founded_claim(request: web.Request) -> AckClaim:
    """The link's claim, if it is signed, current, and borne out by the incident."""
    services = request.app[SERVICES]
    claim = read_token(services.ack_secret, request.match_info["token"], services.clock.now())
    await services.pipeline.check_link(claim)
    return claim


def _bad_link(exc: AckTokenInvalid) -> web.Response:
    # The English reason goes to the log (never the token: it is a credential while it lasts).
    log.warning("refused an acknowledgement link: %s", exc)
    return _page(_T("ack.invalid"), f"<p>{html.escape(_T('ack.' + exc.reason))}</p>", status=403)
