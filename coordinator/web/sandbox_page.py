"""The sandbox page, for trainers, when the service runs its own sandbox (`serve
--sandbox`): what each staff phone and mailbox received, and a form to reply to an SMS
as the staff member holding that phone. Behind the console's login and its CSRF check:
a reply acknowledges as that person, so it is a trainer's act, not anyone's who can
reach a port (the sandbox's own port serves only its Messages API).

    GET  /sandbox/        the page (trainer)
    POST /sandbox/reply   `from`, `to`, `body`: the phone's reply, through the sandbox to
                          this service's inbound hook as Twilio would post it (trainer)
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ..sandbox.inprocess import RunningSandbox
from ..config.users import Role
from .api import api_error
from .auth import CSRF_FIELD, csrf_token, requires
from .page import console_page, tr
from .state import SANDBOX

routes = web.RouteTableDef()



def _sandbox(request: web.Request) -> RunningSandbox:
    sandbox = request.app.get(SANDBOX)
    if sandbox is None:
        raise web.HTTPNotFound(reason="this service runs no sandbox")
    return sandbox


@routes.get("/sandbox/")
@requires(Role.trainer)
@console_page
async def sandbox_page(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    return aiohttp_jinja2.render_template("sandbox.html", request, {
        "t": tr(request), "csrf": await csrf_token(request), "csrf_field": CSRF_FIELD,
        "counts": sandbox.sms.counts(), "threads": sandbox.sms.threads(), "mailboxes": sandbox.inbox.mailboxes(),
    })


@routes.post("/sandbox/reply")
@requires(Role.trainer)
async def sandbox_reply(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    form = await request.post()
    from_, to, body = (str(form.get(name, "")) for name in ("from", "to", "body"))
    if not body:
        raise web.HTTPBadRequest(reason="body is required")
    try:
        await sandbox.sms.reply(from_, to, body)
    except ValueError as exc:  # not a number of the account, not E.164
        raise api_error(web.HTTPBadRequest, "bad_request", str(exc)) from exc  # it quotes the numbers
    raise web.HTTPSeeOther(f"/sandbox/#phone-{from_}")
