"""Who may call what. Every route declares its access on its handler, in one line:

    @routes.post("/api/incidents")
    @requires(Role.leader)          # 401 without credentials, 403 with a lesser role
    async def create_incident(request): ...

    @public                          # anyone: /healthz, the login page, the OpenAPI document
    @signed                          # no session; the handler checks its own signature
                                     # (Twilio webhooks, signed ack links)

The `authorize` middleware enforces it. A route that declares nothing is refused (403
`undeclared_route`, logged as an error), and tests/test_auth.py fails on it: access is
never open by omission. Static files under /static/ are the one exemption. `/metrics`,
when it comes, is `@public`: Prometheus scrapes without credentials, and it carries
counts, nothing personal. A new API route also needs its entry in web/openapi.py.

Credentials, in this order:
- `Authorization: Bearer TOKEN`: the admin token (every role; may name the acting
  person in a body's `by`), the intake token (complaint intake only), or a user's API
  token (that user's role). A bearer call needs no CSRF token.
- the session cookie set by the login page (encrypted, HttpOnly, SameSite=Lax, Secure
  when the public URL is https). Every unsafe request carried by the cookie (and every
  form POST, the login form included) must echo the session's CSRF token, as the
  `csrf_token` form field or the `X-CSRF-Token` header.
Roles nest (coordinator/config/users.py): leader > trainer > viewer; `intake` stands apart.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import Session, get_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from ..errors import BadBearer
from ..config.settings import Settings
from ..config.users import GRANTS, Directory, Role
from .errors import error_response
from .logins import Backoff, Logins
from .sessions import ServerSessions
from .state import SERVICES

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_NAME = "coordinator_session"
ADMIN = "admin"
INTAKE = "intake"
# Sign-ins waiting for a password check beyond which more are turned away (logins.py).
LOGIN_QUEUE = 32


@dataclass(frozen=True)
class Access:
    """What a route demands: a role, or nothing from us (`public`, `signed`)."""

    role: Role | None
    kind: str  # "role" | "public" | "signed"


def _declare(access: Access) -> Callable[[F], F]:
    def mark(handler: F) -> F:
        handler.__access__ = access  # type: ignore[attr-defined]
        return handler
    return mark


def requires(role: Role) -> Callable[[F], F]:
    """The caller must hold `role` (or a role that includes it)."""
    return _declare(Access(role, "role"))


public = _declare(Access(None, "public"))
signed = _declare(Access(None, "signed"))


def access_of(handler: Any) -> Access | None:
    return getattr(handler, "__access__", None)


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]
    via: str  # "session" | "token" | "admin" | "intake"

    def can(self, role: Role) -> bool:
        return role in self.roles


@dataclass
class Gate:
    """The service's access state, built when the app starts."""

    directory: Directory
    admin_token: str | None
    intake_token: str | None
    sessions: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
    server_sessions: ServerSessions
    logins: Logins

    def bearer(self, token: str) -> Principal | None:
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(ADMIN, frozenset(Role), "admin")
        if self.intake_token and hmac.compare_digest(token.encode(), self.intake_token.encode()):
            return Principal(INTAKE, GRANTS[Role.intake], "intake")
        user = self.directory.by_token(token)
        return Principal(user.name, GRANTS[user.role], "token") if user else None


GATE = web.AppKey("gate", Gate)
_PRINCIPAL = web.RequestKey("principal", Principal)


def gate_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx after the services one: the session key may live in the store."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = app[SERVICES].store
        key = settings.session_key or await store.get_or_create_secret("session-key", Fernet.generate_key().decode())
        storage = EncryptedCookieStorage(
            key, cookie_name=COOKIE_NAME, httponly=True, samesite="Lax",
            secure=settings.base_url.startswith("https://"), max_age=int(settings.session_hours * 3600),
        )
        directory = Directory(settings.users_path)
        for problem in directory.problems:
            log.error("users file: %s", problem)
        clock = app[SERVICES].clock
        app[GATE] = Gate(directory, settings.admin_token, settings.intake_token, session_middleware(storage),
                         ServerSessions(store, clock, directory, settings.session_hours),
                         Logins(store, clock, directory, Backoff(), settings.login_concurrency, LOGIN_QUEUE))
        yield

    return ctx


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp-session's middleware, whose key is only known once the store is open."""
    gate = request.app.get(GATE)
    if gate is None or signed_route(request):
        return await handler(request)
    return await gate.sessions(request, handler)


def signed_route(request: web.Request) -> bool:
    """A `signed` route (Twilio's webhooks, three per SMS in a fan-out; the ack links)
    never reads a session: it skips the session machinery. Its access is still checked
    by `authorize`, which runs after this for every route alike."""
    match = request.match_info
    if match.http_exception is not None:
        return False
    access = access_of(match.handler)
    return access is not None and access.kind == "signed"


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None or isinstance(match.route.resource, web.StaticResource):
        return await handler(request)  # 404/405 as usual; static assets are open
    access = access_of(match.handler)
    if access is None:
        log.error("refused %s %s: the route declares no access (auth.requires/public/signed)",
                  request.method, request.path)
        return refuse(request, 403, "undeclared_route", "this route declares no access rule")
    if access.kind == "signed":
        return await handler(request)
    try:
        who = await identify(request)
    except BadBearer:
        if access.kind == "role":
            return refuse(request, 401, "unauthorized", "the bearer token is not valid")
        who = None  # an open route does not care who is asking
    if access.kind == "role":
        assert access.role is not None
        if who is None:
            return refuse(request, 401, "unauthorized", "sign in, or send Authorization: Bearer TOKEN")
        if not who.can(access.role):
            return refuse(request, 403, "forbidden",
                          f"{request.method} {request.path} needs the {access.role.value} role")
    if request.method not in SAFE_METHODS and (who is None or who.via == "session"):
        if not await _csrf_ok(request):
            return refuse(request, 403, "csrf_failed", f"missing or wrong CSRF token ({CSRF_FIELD} or {CSRF_HEADER})")
    return await handler(request)


async def identify(request: web.Request) -> Principal | None:
    """The caller, from a bearer token or the session; None if anonymous. An
    Authorization header that is present but wrong raises (no fallback to the cookie)."""
    if _PRINCIPAL in request:
        return request[_PRINCIPAL]
    gate = request.app[GATE]
    header = request.headers.get("Authorization")
    who: Principal | None = None
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        # A token is printable ASCII; anything else (undecodable bytes arrive as surrogates)
        # is simply wrong, never an encoding error further down.
        usable = scheme.lower() == "bearer" and token and token.isascii() and token.isprintable()
        who = gate.bearer(token) if usable else None
        if who is None:
            raise BadBearer()
    else:
        user = await gate.server_sessions.user_of(await get_session(request))
        if user is not None:
            who = Principal(user.name, GRANTS[user.role], "session")
    if who is not None:
        request[_PRINCIPAL] = who
    return who


async def caller(request: web.Request) -> Principal | None:
    """The caller on an open route, which does not care about a wrong bearer token."""
    try:
        return await identify(request)
    except BadBearer:
        return None


async def still_allowed(request: web.Request) -> bool:
    """For a long-lived answer (a live page's event stream): is its caller still who they
    were? A session may have been signed out and a user's token revoked meanwhile."""
    who = request.get(_PRINCIPAL)
    if who is None or who.via in ("admin", "intake"):
        return True
    gate = request.app[GATE]
    if who.via == "token":
        header = request.headers.get("Authorization", "")
        return gate.directory.by_token(header.partition(" ")[2].strip()) is not None
    return await gate.server_sessions.user_of(await get_session(request)) is not None


def principal(request: web.Request) -> Principal:
    """The authenticated caller of a route that `requires` a role."""
    who = request.get(_PRINCIPAL)
    if who is None:
        raise RuntimeError("principal() on a route that does not require a role")
    return who


def acting_person(request: web.Request, claimed: str = "") -> str:
    """Who acts: the signed-in user or token owner. Only the admin token, which belongs
    to no one, may name the person (a script or the CLI acting for a leader)."""
    who = principal(request)
    if who.via == "admin":
        return claimed or ADMIN
    return who.name


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, created on first use; pages put it in every form."""
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def _csrf_ok(request: web.Request) -> bool:
    session: Session = await get_session(request)
    expected = session.get("csrf")
    if not isinstance(expected, str):
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def refuse(request: web.Request, status: int, code: str, message: str) -> web.StreamResponse:
    """JSON for the API; for pages, the login page (401 on a GET), else the JSON that
    browser.html_errors shows a browser as a page (saying who is signed in)."""
    if request.path.startswith("/api/") or request.path in ("/healthz", "/metrics") or not _wants_html(request):
        response = error_response(status, code, message)
    elif status == 401 and request.method in SAFE_METHODS:
        return web.Response(status=303, headers={"Location": f"/login?{urlencode({'next': request.path_qs})}"})
    else:
        response = error_response(status, code, message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="coordinator"'
    return response


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "") or request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data")
