"""The OpenAPI description of the messengers' callbacks (web/messenger_hooks.py): open
routes, each checked by its own signature (WeCom's msg_signature; the DingTalk card
link's signed token and DingTalk's 免登 code)."""

from __future__ import annotations

from typing import Any

from .openapi_parts import STR, obj, op, path_param

Schema = dict[str, Any]

_TEXT_403 = {"description": "refused: a forged, stale or replayed callback, or WeCom is not configured",
             "content": {"text/plain": {"schema": STR}}}
_HTML = {200: {"description": "a page", "content": {"text/html": {"schema": STR}}},
         403: {"description": "the link or the code is invalid or expired, or names what was never sent",
               "content": {"text/html": {"schema": STR}}}}


def _query(*names: str) -> list[Schema]:
    return [{"name": n, "in": "query", "required": False, "schema": STR} for n in names]


def _signed(operation: Schema) -> Schema:
    operation["tags"] = ["signed"]
    return operation


def messenger_paths() -> dict[str, Schema]:
    token = path_param("token", description="the signed token of the DingTalk card's link (incident and version)")
    wecom_query = _query("msg_signature", "timestamp", "nonce")
    return {
        "/hooks/wecom": {
            "get": _signed(op("WeCom's callback URL check: the decrypted echostr", None, {
                200: {"description": "the echostr's plaintext", "content": {"text/plain": {"schema": STR}}},
                403: _TEXT_403}, parameters=wecom_query + _query("echostr"))),
            "post": _signed(op("A WeCom card's 确认 press (template_card_event, encrypted and signed)", None, {
                200: {"description": "received (an empty answer, as WeCom wants)",
                      "content": {"text/plain": {"schema": STR}}},
                403: _TEXT_403}, parameters=wecom_query, body={
                    "required": True, "description": "WeCom's XML envelope with its Encrypt element",
                    "content": {"text/xml": {"schema": STR}, "application/xml": {"schema": STR}}})),
        },
        "/hooks/dingtalk/ack/{token}": {
            "get": _signed(op("The page a DingTalk card's 确认 opens (acknowledges nothing by itself)", None, _HTML,
                              parameters=[token])),
            "post": _signed(op("Acknowledge as the person DingTalk's 免登 auth code names", None, _HTML,
                               parameters=[token], body={
                                   "required": True, "description": "the code from DingTalk's JSAPI requestAuthCode",
                                   "content": {"application/x-www-form-urlencoded": {
                                       "schema": obj({"code": STR}, ("code",))}}})),
        },
    }
