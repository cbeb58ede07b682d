"""What every console page shares: who is looking and what they may do, the language,
the nav bar's links, and times and names as people read them. Added to every page's
template context (aiohttp-jinja2 context processor, set up by console.setup)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_jinja2 import REQUEST_CONTEXT_KEY
from aiohttp_session import get_session

from ..config.catalog import Catalog
from ..models import DRILL_PREFIX
from ..config.users import Role
from .auth import CSRF_FIELD, Principal, caller, csrf_token, principal
from .i18n import DEFAULT_LANG, HTML_LANG, JS_KEYS, LANGS, translator
from .state import SANDBOX, SERVICES, Services

LANG_KEY = "lang"
# Requests that never render a page: no session work for them.
NOT_PAGES = ("/static/", "/hooks/", "/events", "/ack/")


@dataclass(frozen=True)
class Nav:
    who: Principal | None
    lang: str
    path: str
    csrf: str
    sandbox_url: str | None
    switch: str  # the language link: this page, its query kept, in the other language
    # Media a playbook needs that no channel is configured for -> those playbooks' titles.
    missing_channels: dict[str, list[str]]

    @property
    def role(self) -> str:
        """The highest of the console's roles the viewer holds."""
        for role in (Role.leader, Role.trainer, Role.viewer):
            if self.who is not None and self.who.can(role):
                return role.value
        return "none"

    @property
    def can_lead(self) -> bool:
        return self.who is not None and self.who.can(Role.leader)

    @property
    def can_train(self) -> bool:
        return self.who is not None and self.who.can(Role.trainer)


def lang_switch(query: Iterable[tuple[str, str]], lang: str) -> str:
    """`?from=…&to=…&lang=en`: the page's own query with only the language changed."""
    other = "en" if lang == "zh" else "zh"
    return "?" + urlencode([(k, v) for k, v in query if k != LANG_KEY] + [(LANG_KEY, other)])



H = TypeVar("H", bound=Callable[..., Any])


def console_page(handler: H) -> H:
    """Marks a handler that always renders a page: it gets the nav context whatever the
    request's Accept says (curl and scripts send `*/*` or nothing; the page's template
    needs `t` and `nav` all the same)."""
    handler.__console_page__ = True  # type: ignore[attr-defined]
    return handler


def renders_page(request: web.Request) -> bool:
    """A console page, or a request that asks for HTML (the login page, a refusal, a
    report with `Accept: text/html`). JSON calls skip the session work."""
    if request.path.startswith(NOT_PAGES):
        return False
    if getattr(request.match_info.handler, "__console_page__", False):
        return True
    return "text/html" in request.headers.get("Accept", "")


async def nav_context(request: web.Request) -> dict[str, Any]:
    """`nav`, `t` (the translator) and `lang` for the layout. `?lang=en` (or zh) is kept
    in the session from then on."""
    if not renders_page(request):
        return {}
    session = await get_session(request)
    asked = request.query.get("lang")
    if asked in LANGS:
        session[LANG_KEY] = asked
    lang = session.get(LANG_KEY)
    lang = lang if lang in LANGS else DEFAULT_LANG
    try:
        who: Principal | None = principal(request)
    except RuntimeError:  # an open route or no route at all (a 404): whoever is signed in
        who = await caller(request)
    services = request.app.get(SERVICES)
    nav = Nav(who=who, lang=lang, path=request.path, csrf=await csrf_token(request),
              sandbox_url="/sandbox/" if SANDBOX in request.app else None,
              switch=lang_switch(request.query.items(), lang),
              missing_channels=_missing_by_medium(services) if services and who else {})
    t = translator(lang)
    return {"nav": nav, "t": t, "lang": HTML_LANG[lang], "csrf_field": CSRF_FIELD,
            "js_text": {key: t(key) for key in JS_KEYS}}


def _missing_by_medium(services: Services) -> dict[str, list[str]]:
    by_medium: dict[str, list[str]] = {}
    for playbook_id, media in services.missing_channels().items():
        for medium in media:
            by_medium.setdefault(medium, []).append(services.catalog.playbooks[playbook_id].title)
    return by_medium


@dataclass(frozen=True)
class Readable:
    """Times in the operator's zone and the names behind ids, for templates."""

    catalog: Catalog
    tz: ZoneInfo
    everywhere: str = "全部地区"  # how region "*" reads in the page's language

    def when(self, at: datetime | None, fmt: str = "%m-%d %H:%M:%S") -> str:
        return at.astimezone(self.tz).strftime(fmt) if at is not None else "—"

    def person(self, person_id: str | None) -> str:
        if person_id is None:
            return "—"
        found = self.catalog.contacts.people.get(person_id)
        return found.name if found else person_id

    def region(self, region_id: str) -> str:
        if region_id == "*":
            return self.everywhere
        found = self.catalog.contacts.regions.get(region_id)
        return found.name if found else region_id

    def team(self, team_id: str) -> str:
        found = self.catalog.contacts.teams.get(team_id)
        return found.name if found else team_id

    def category(self, category_id: str) -> str:
        return self.catalog.categories.get(category_id, category_id)

    def stream(self, stream: str) -> str:
        """宽带故障 · 宁波 for broadband/ningbo; drills keep their marker."""
        drill = stream.startswith(DRILL_PREFIX)
        category, _, region = stream.removeprefix(DRILL_PREFIX).partition("/")
        where = self.everywhere if region == "*" else self.region(region)
        return ("【演练】" if drill else "") + f"{self.category(category)} · {where}"


def readable(request: web.Request, t: Callable[[str], str]) -> Readable:
    services = request.app[SERVICES]
    return Readable(services.catalog, ZoneInfo(services.settings.timezone), t("all_regions"))



def tr(request: web.Request) -> Callable[[str], str]:
    """The page's translator, as nav_context chose it for this request."""
    found = request.get(REQUEST_CONTEXT_KEY, {}).get("t")
    return found if found is not None else translator(DEFAULT_LANG)


def page_lang(request: web.Request) -> str:
    """The page's language (zh or en), as nav_context chose it for this request."""
    nav = request.get(REQUEST_CONTEXT_KEY, {}).get("nav")
    return nav.lang if isinstance(nav, Nav) else DEFAULT_LANG
