"""The login page, logout, and the first-run page that says how to create a user."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session, new_session

from .auth import CSRF_FIELD, GATE, csrf_token, identify, public

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

HOME = "/"


def safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would lend our name to phishing."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return HOME
    return target


async def _form_page(request: web.Request, *, error: str = "", name: str = "", status: int = 200,
                     target: str | None = None) -> web.Response:
    gate = request.app[GATE]
    if gate.directory.empty:
        return aiohttp_jinja2.render_template("no_users.html", request, {
            "users_file": str(gate.directory.path), "problems": [str(p) for p in gate.directory.problems]})
    who = await identify(request)
    context: dict[str, Any] = {
        "who": who, "error": error, "name": name, "next": safe_next(target or request.query.get("next")),
        "csrf_field": CSRF_FIELD, "csrf": await csrf_token(request),
    }
    return aiohttp_jinja2.render_template("login.html", request, context, status=status)


@routes.get("/login")
@public
async def login_page(request: web.Request) -> web.Response:
    return await _form_page(request)


@routes.post("/login")
@public
async def login(request: web.Request) -> web.Response:
    """The CSRF token was checked by the middleware (a forged login is an attack too)."""
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    target = str(form.get("next", ""))
    gate = request.app[GATE]
    user = await asyncio.to_thread(gate.directory.check_password, name, password) if name and password else None
    if user is None:
        log.warning("failed login for %r from %s", name[:64], request.remote)
        return await _form_page(request, error="用户名或密码错误 · Wrong name or password", name=name,
                                status=401, target=target)
    session = await new_session(request)  # a fresh session: nothing from before the login survives
    session["user"] = user.name
    await csrf_token(request)
    log.info("%s signed in (%s)", user.name, user.role.value)
    raise web.HTTPSeeOther(safe_next(target))


@routes.post("/logout")
@public
async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther("/login")
