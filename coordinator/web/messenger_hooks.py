"""The messengers' callbacks (docs/messengers.md), reachable without a session: each is
checked by its own signature.

- `GET /hooks/wecom`: WeCom's URL check (saving the app's callback settings): the
  decrypted echostr as plain text.
- `POST /hooks/wecom`: a press of a card's 确认 button, encrypted and signed; answered at
  once (WeCom retries after 5 s), the card turned grey as 已确认 after.
- `GET /hooks/dingtalk/ack/{token}`: the page the DingTalk card's button opens (incident
  and version in the signed token); inside DingTalk its script gets a 免登 code and posts
  it back. The GET itself acknowledges nothing.
- `POST /hooks/dingtalk/ack/{token}`: that code, exchanged for the userid: that person's
  acknowledgement.

A forged, stale or replayed callback, a bad link or a code DingTalk does not know is
answered 403 and changes nothing."""

from __future__ import annotations

import html
import logging

from aiohttp import web

from ..errors import AckTokenInvalid, CallbackRefused
from ..messengers.service import Messengers
from .auth import signed
from .hooks import _page
from .i18n import DEFAULT_LANG, translator
from .state import SERVICES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
_T = translator(DEFAULT_LANG)
MAX_CODE = 256


def _messengers(request: web.Request) -> Messengers:
    messengers = request.app[SERVICES].messengers
    assert messengers is not None  # build_services always builds them (unconfigured: without clients)
    return messengers


@routes.get("/hooks/wecom")
@signed
async def wecom_url_check(request: web.Request) -> web.Response:
    try:
        plain = _messengers(request).acks.wecom_url_check(request.query)
    except CallbackRefused as exc:
        log.warning("refused a WeCom URL check: %s (%s)", exc.reason, exc)
        return web.Response(status=403, text="refused")
    return web.Response(text=plain, content_type="text/plain")


@routes.post("/hooks/wecom")
@signed
async def wecom_callback(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        pressed = await _messengers(request).acks.wecom_press(request.query, body)
    except CallbackRefused as exc:
        log.warning("refused a WeCom callback: %s (%s)", exc.reason, exc)
        return web.Response(status=403, text="refused")
    if pressed is not None:
        log.info("wecom press: %s v%d acknowledged%s", pressed.incident_id, pressed.version,
                 "" if pressed.new else " (before)")
    return web.Response(text="", content_type="text/plain")  # WeCom wants an empty answer


@routes.get("/hooks/dingtalk/ack/{token}")
@signed
async def dingtalk_page(request: web.Request) -> web.Response:
    try:
        incident_id, version = _messengers(request).acks.dingtalk_claim(request.match_info["token"])
    except AckTokenInvalid as exc:
        return _bad_link(exc)
    corp_id = html.escape(request.app[SERVICES].settings.dingtalk_corp_id)
    outside, failed = html.escape(_T("msgr.dingtalk_needs_app")), html.escape(_T("msgr.code_failed"))
    return _page(_T("ack.title"), (
        f"<p>{html.escape(_T('ack.about') % (incident_id, version))}</p>"
        f"<p id=\"state\">{html.escape(_T('msgr.identifying'))}</p>"
        f"<noscript><p>{outside}</p></noscript>"
        # dingtalk_ack.js: dd.runtime.permission.requestAuthCode({corpId}), then posts the code here.
        f"<form method=\"post\" id=\"ack\" data-corp-id=\"{corp_id}\" data-api=\"requestAuthCode\" "
        f"data-outside=\"{outside}\" data-failed=\"{failed}\"><input type=\"hidden\" name=\"code\" value=\"\"></form>"
        "<script src=\"/static/dingtalk-jsapi.js\"></script><script src=\"/static/dingtalk_ack.js\"></script>"))


@routes.post("/hooks/dingtalk/ack/{token}")
@signed
async def dingtalk_ack(request: web.Request) -> web.Response:
    form = await request.post()
    code = form.get("code")
    if not isinstance(code, str) or not 0 < len(code) <= MAX_CODE:
        return _bad_link(AckTokenInvalid("unfounded", "no DingTalk auth code in the form"))
    try:
        pressed = await _messengers(request).acks.dingtalk_press(request.match_info["token"], code)
    except AckTokenInvalid as exc:
        return _bad_link(exc)
    assert pressed is not None
    said = _T("ack.done" if pressed.new else "ack.done_before") % pressed.version
    return _page(_T("ack.done_title"), f"<p>{html.escape(said)}</p>")


def _bad_link(exc: AckTokenInvalid) -> web.Response:
    log.warning("refused a DingTalk card link: %s", exc)  # never the token or the code
    return _page(_T("ack.invalid"), f"<p>{html.escape(_T('ack.' + exc.reason))}</p>", status=403)
