"""What a browser gets outside the console's own pages: an error as a page in the
reader's language instead of the API's JSON, and the favicon.

Errors have one source, the API's JSON shape (errors.json_errors, auth.refuse). The
`html_errors` middleware, outside json_errors, turns such an answer into a page when a
browser asked for one (`Accept: text/html`) on a path that is not the API's: a 404 for
an unknown path or incident, a 400 naming what is wrong (a /stats period), a 403 saying
who is signed in and what the page needs. `/api/...`, the webhooks, the probes and the
event stream keep their JSON whatever they are sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

import aiohttp_jinja2
from aiohttp import web
from aiohttp_jinja2 import REQUEST_CONTEXT_KEY
from markupsafe import Markup, escape

from ..config.users import Role
from .auth import Principal, access_of, public
from .i18n import DEFAULT_LANG, MESSAGES, translator
from .page import Nav, nav_context

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
routes = web.RouteTableDef()

FAVICON = Path(__file__).parent / "static" / "favicon.ico"
# Paths that are an API whatever the caller accepts: their errors stay JSON.
API_PATHS = ("/api/", "/hooks/", "/events", "/healthz", "/livez", "/readyz", "/metrics")
# The email's acknowledgement links, opened by frontline staff who have no sign-in: a
# mangled one (a mail client cut it or added to it) reads like any bad link (hooks.py).
ACK_LINKS = "/ack/"
# Headers an error answer carries over to its page.
KEPT_HEADERS = ("Retry-After", "WWW-Authenticate", "Allow")


def wants_page(request: web.Request) -> bool:
    """A browser's request (it accepts HTML) for something that is not the API."""
    return not request.path.startswith(API_PATHS) and "text/html" in request.headers.get("Accept", "")


@dataclass(frozen=True)
class ErrorView:
    """What an error page says: a title, what happened and what to do, all in the page's
    language; `detail` is the API's English message, shown on English pages only."""

    status: int
    title: str
    lines: list[str]  # Markup where a part is code (a path)
    detail: str | None
    sign_in: bool


def explain(t: Callable[[str], str], lang: str, status: int, code: str, message: str,
            details: Sequence[Any], path: str, who: Principal | None, needs: Role | None) -> ErrorView:
    """The page for an error answer. Pure: the translator, the answer and the caller in."""
    title_key = f"error.title.{status}"
    title = t(title_key if title_key in MESSAGES else "error.title.other")
    lines: list[str] = []
    problem = next((d for d in details if isinstance(d, dict) and "problem" in d), None)
    if problem is not None:
        parameter = str(problem.get("parameter"))
        label = t(f"error.param.{parameter}") if f"error.param.{parameter}" in MESSAGES else parameter
        value = str(problem.get("value") or "")[:40]
        lines.append(t(f"error.problem.{problem['problem']}") % {"param": label, "value": value})
    elif path.startswith(ACK_LINKS):
        title = t("ack.invalid")
        lines.append(t("ack.malformed"))
        return ErrorView(status, title, lines, None, sign_in=False)
    elif code == "csrf_failed":
        lines.append(t("error.csrf"))
    elif status == 404:
        lines.append(Markup(escape(t("error.not_found"))) % Markup(f"<code>{escape(path)}</code>"))
    elif status in (403, 405, 409, 413, 503):
        lines.append(t(f"error.text.{status}"))
    else:
        lines.append(t("error.text.other"))
    if status == 403 and who is not None and code != "csrf_failed":
        lines.append(t("error.signed_in_as") % (who.name, _role_name(t, who)))
        if needs is not None:
            lines.append(t("error.needs_role") % t(f"role.{needs.value}"))
    elif status in (401, 403) and who is None:
        lines.append(t("error.sign_in"))
    detail = message if lang == "en" and message and problem is None and status != 404 else None
    return ErrorView(status, title, lines, detail, sign_in=who is None)


def _role_name(t: Callable[[str], str], who: Principal) -> str:
    for role in (Role.leader, Role.trainer, Role.viewer):
        if who.can(role):
            return t(f"role.{role.value}")
    return t("role.none")


def _error_of(body: bytes | str | None) -> tuple[str, str, list[Any]] | None:
    """code, message, details of an answer in the API's error shape; None otherwise."""
    if body is None:
        return None
    try:
        error = json.loads(body)["error"]
        return str(error["code"]), str(error["message"]), list(error.get("details") or [])
    except (ValueError, KeyError, TypeError):
        return None


async def _context(request: web.Request) -> Mapping[str, Any]:
    """The page's nav context, made now when the error came before the pages' own
    middleware ran (a refusal by auth, a 413)."""
    found = request.get(REQUEST_CONTEXT_KEY)
    if found:
        return dict(found)
    try:
        made = await nav_context(request)
    except RuntimeError:  # no session machinery on this request
        made = {}
    request[REQUEST_CONTEXT_KEY] = made
    return made


async def error_page(request: web.Request, status: int, code: str, message: str,
                     details: Sequence[Any] = ()) -> web.Response:
    context = await _context(request)
    t = context.get("t") or translator(DEFAULT_LANG)
    nav = context.get("nav")
    who = nav.who if isinstance(nav, Nav) else None  # page.nav_context: whoever is signed in
    access = access_of(request.match_info.handler) if request.match_info.http_exception is None else None
    needs = access.role if access is not None and access.kind == "role" else None
    view = explain(t, nav.lang if isinstance(nav, Nav) else DEFAULT_LANG, status, code, message, details,
                   request.path, who, needs)
    return aiohttp_jinja2.render_template("refused.html", request, {
        "t": t, "error": view, "status": status, "message": message}, status=status)


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser's error answer as a page (see the module's docstring)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not wants_page(request):
            raise
        found = _error_of(exc.text)
        if found is None:
            raise
        return _keep_headers(exc, await error_page(request, exc.status, *found))
    if response.status < 400 or not wants_page(request) or not isinstance(response, web.Response) \
            or response.content_type != "application/json":
        return response
    found = _error_of(response.body if isinstance(response.body, (bytes, str)) else None)
    if found is None:
        return response
    return _keep_headers(response, await error_page(request, response.status, *found))


def _keep_headers(answer: web.Response, page: web.Response) -> web.Response:
    for name in KEPT_HEADERS:
        if name in answer.headers:
            page.headers[name] = answer.headers[name]
    for name, cookie in answer.cookies.items():  # the session's, saved on the error answer
        page.cookies[name] = cookie
    return page


@routes.get("/favicon.ico")
@public
async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask for it on every site; a 404 for it filled the access log."""
    return web.FileResponse(FAVICON, headers={"Content-Type": "image/x-icon"})
