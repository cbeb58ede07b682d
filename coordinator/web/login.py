"""The login page, logout, and the first-run page that says how to create a user."""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session, new_session

from .auth import CSRF_FIELD, GATE, caller, csrf_token, public
from .page import console_page

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

HOME = "/"


def safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would lend our name to phishing. Browsers
    and URL builders drop tabs and line breaks and read a backslash as a slash, so
    `/<tab>/evil.example` would become `//evil.example`: any of them refuses the target."""
    if not target or any(ord(c) < 0x21 or c in "\\\x7f" for c in target):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return HOME
    return target


async def _form_page(request: web.Request, *, error: tuple[str, tuple[int, ...]] | None = None, name: str = "",
                     status: int = 200, target: str | None = None) -> web.Response:
    """`error`: the message's key in the catalogue (web/i18n.py) and its numbers."""
    gate = request.app[GATE]
    if gate.directory.empty:
        return aiohttp_jinja2.render_template("no_users.html", request, {
            "users_file": str(gate.directory.path), "problems": [str(p) for p in gate.directory.problems]})
    who = await caller(request)
    context: dict[str, Any] = {
        "who": who, "error": error, "name": name, "next": safe_next(target or request.query.get("next")),
        "csrf_field": CSRF_FIELD, "csrf": await csrf_token(request),
    }
    return aiohttp_jinja2.render_template("login.html", request, context, status=status)


@routes.get("/login")
@public
@console_page
async def login_page(request: web.Request) -> web.Response:
    return await _form_page(request)


@routes.post("/login")
@public
@console_page
async def login(request: web.Request) -> web.Response:
    """The CSRF token was checked by the middleware (a forged login is an attack too)."""
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    target = str(form.get("next", ""))
    gate = request.app[GATE]
    if not name or not password:
        return await _form_page(request, error=("login.empty", ()), name=name, status=400, target=target)
    attempt = await gate.logins.attempt(name[:64], password, request.remote or "unknown")
    if attempt.retry_after > 0:
        minutes = max(1, math.ceil(attempt.retry_after / 60))
        page = await _form_page(request, error=("login.too_many", (minutes,)), name=name, status=429, target=target)
        page.headers["Retry-After"] = str(math.ceil(attempt.retry_after))
        return page
    if attempt.busy:
        page = await _form_page(request, error=("login.busy", ()), name=name, status=503, target=target)
        page.headers["Retry-After"] = "5"
        return page
    user = attempt.user
    if user is None:
        return await _form_page(request, error=("login.wrong", ()), name=name, status=401, target=target)
    session = await new_session(request)  # a fresh session: nothing from before the login survives
    await gate.server_sessions.begin(session, user)
    await csrf_token(request)
    log.info("%s signed in (%s)", user.name, user.role.value)
    raise web.HTTPSeeOther(safe_next(target))


@routes.post("/logout")
@public
async def logout(request: web.Request) -> web.Response:
    await request.app[GATE].server_sessions.end(await get_session(request))
    raise web.HTTPSeeOther("/login")
