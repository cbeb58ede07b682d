"""Access: every route declares who may call it; the mutating ones are tried, from the
app's own router, with no credentials and with every role; login, logout, CSRF, tokens,
the intake and admin tokens, the users file and its commands."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import ManualClock
from coordinator.config.settings import Settings
from coordinator.config.users import GRANTS, Passwords, Role, add_token, add_user
from coordinator.web.auth import CSRF_HEADER, access_of, requires

from .conftest import ADMIN_TOKEN

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
INTAKE_TOKEN = "test-intake-token-0123456789"
PASSWORD = "correct horse battery"
# Cheap argon2 parameters: verification cost comes from the hash itself.
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
# Paths that answer to their own signature, not to a session or token.
SIGNED_PREFIXES = ("/hooks/", "/ack/")


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(store_url=f"sqlite:///{tmp_path}/auth.db", subscriber_key="k", tick_seconds=0,
                    admin_token=ADMIN_TOKEN, intake_token=INTAKE_TOKEN, users_file=tmp_path / "users.yaml",
                    outbox_worker=False, **extra)


def make_app(settings: Settings) -> web.Application:
    return create_app(settings, clock=ManualClock(T0), catalog=load_catalog(FIXTURES / "good"))


@dataclass
class Env:
    client: TestClient
    tokens: dict[str, str]  # principal -> bearer token ("leader", "trainer", "viewer", "intake", "admin")
    users_file: Path

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    settings = settings_for(tmp_path)
    assert settings.users_file is not None
    tokens = {"intake": INTAKE_TOKEN, "admin": ADMIN_TOKEN}
    for name, role in (("chen-li", Role.leader), ("zhao-min", Role.trainer), ("sun-yue", Role.viewer)):
        add_user(settings.users_file, name, role, FAST.hash(PASSWORD))
        tokens[role.value] = add_token(settings.users_file, name, "tests", T0)
    client = TestClient(TestServer(make_app(settings)))
    await client.start_server()
    try:
        yield Env(client, tokens, settings.users_file)
    finally:
        await client.close()


async def login(client: TestClient, name: str, password: str = PASSWORD, next_: str = "/") -> Any:
    page = await (await client.get("/login")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    return await client.post("/login", data={"name": name, "password": password, "csrf_token": csrf.group(1),
                                              "next": next_}, allow_redirects=False)


async def csrf_of(client: TestClient) -> str:
    page = await (await client.get("/login")).text()
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


# --- generated from the router ---------------------------------------------------------

APP_ROUTES = [
    (route.method, route.resource.canonical, route.handler)
    for route in make_app(Settings()).router.routes()
    if route.resource is not None and not isinstance(route.resource, web.StaticResource)
]
ROLE_ROUTES = [
    (method, path) for method, path, handler in APP_ROUTES
    if method != "HEAD" and (access := access_of(handler)) is not None and access.kind == "role"
]
MUTATING = [(m, p) for m, p in ROLE_ROUTES if m not in ("GET", "OPTIONS")]
PRINCIPALS = ("leader", "trainer", "viewer", "intake", "admin")


def test_every_route_declares_its_access() -> None:
    undeclared = [f"{m} {p}" for m, p, h in APP_ROUTES if access_of(h) is None]
    assert undeclared == [], "declare access with @requires(Role.x), @public or @signed (coordinator/web/auth.py)"


def test_only_webhooks_ack_links_and_a_few_pages_are_open() -> None:
    for _, path, handler in APP_ROUTES:
        access = access_of(handler)
        if access is not None and access.kind == "signed":
            assert path.startswith(SIGNED_PREFIXES), path
        elif access is not None and access.kind == "public":
            assert path in ("/healthz", "/livez", "/readyz", "/metrics", "/api/openapi.json", "/login", "/logout",
                            "/favicon.ico"), path
    # every mutating API route is role-checked
    api_writes = {(m, p) for m, p, _ in APP_ROUTES if p.startswith("/api/") and m not in ("GET", "HEAD")}
    assert api_writes <= set(MUTATING) and MUTATING


def held(principal: str) -> frozenset[Role]:
    return frozenset(Role) if principal == "admin" else GRANTS[Role(principal)]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.mark.parametrize(("method", "path"), MUTATING, ids=[f"{m} {p}" for m, p in MUTATING])
async def test_mutating_route_refuses_the_anonymous_and_the_wrong_roles(env: Env, method: str, path: str) -> None:
    needed = next(access_of(h) for m, p, h in APP_ROUTES if (m, p) == (method, path)).role  # type: ignore[union-attr]
    assert needed is not None
    url = concrete(path)
    resp = await env.client.request(method, url, json={})
    assert resp.status == 401, await resp.text()
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for who in PRINCIPALS:
        resp = await env.client.request(method, url, json={}, headers=env.bearer(who))
        if needed in held(who):
            assert resp.status not in (401, 403), (who, resp.status, await resp.text())
        else:
            assert resp.status == 403, (who, await resp.text())
            assert (await resp.json())["error"]["code"] == "forbidden"
    assert needed not in held("viewer"), "a viewer only reads"


READS = [(m, p) for m, p in ROLE_ROUTES if m == "GET"]


@pytest.mark.parametrize(("method", "path"), READS, ids=[f"{m} {p}" for m, p in READS])
async def test_reads_need_a_viewer(env: Env, method: str, path: str) -> None:
    url = concrete(path)
    assert (await env.client.get(url)).status == 401
    assert (await env.client.get(url, headers=env.bearer("intake"))).status == 403
    assert (await env.client.get(url, headers=env.bearer("viewer"))).status not in (401, 403)


# --- the service's own rules -----------------------------------------------------------

async def test_open_routes(env: Env) -> None:
    assert (await env.client.get("/healthz")).status == 200
    assert (await env.client.get("/api/openapi.json")).status == 200
    # webhooks answer to their signature, not to credentials
    resp = await env.client.post("/hooks/twilio/status", data={"MessageSid": "SM1"}, headers=env.bearer("admin"))
    assert resp.status == 403 and "signature" in (await resp.json())["error"]["message"]
    assert (await env.client.get("/ack/forged-token")).status == 403


async def test_an_undeclared_route_is_refused(tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path))

    async def forgotten(request: web.Request) -> web.Response:
        return web.json_response({"secret": True})

    app.router.add_post("/api/forgotten", forgotten)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/api/forgotten", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "undeclared_route"


async def test_a_bad_bearer_token_is_refused_even_with_a_session(env: Env) -> None:
    assert (await login(env.client, "chen-li")).status == 303
    assert (await env.client.get("/api/incidents")).status == 200
    resp = await env.client.get("/api/incidents", headers={"Authorization": "Bearer coord_nope"})
    assert resp.status == 401 and (await resp.json())["error"]["message"] == "the bearer token is not valid"
    assert (await env.client.get("/api/incidents", headers={"Authorization": "Basic eDp5"})).status == 401


async def test_the_actor_is_the_caller_and_only_the_admin_names_someone_else(env: Env) -> None:
    body = {"playbook": "outage", "region": "hangzhou", "params": {"cause": "光缆"}, "by": "someone-else"}
    resp = await env.client.post("/api/incidents", json=body, headers=env.bearer("leader"))
    assert resp.status == 201, await resp.text()
    incident = await resp.json()
    assert incident["opened_by"] == "chen-li"
    resp = await env.client.post(f"/api/incidents/{incident['id']}/notes", json={"text": "n", "by": "p9"},
                                 headers=env.bearer("admin"))
    assert resp.status == 201
    detail = await (await env.client.get(f"/api/incidents/{incident['id']}", headers=env.bearer("viewer"))).json()
    assert [e["actor"] for e in detail["timeline"] if e["kind"] == "note"] == ["p9"]


async def test_intake_token_only_posts_complaints(env: Env) -> None:
    complaint = {"id": "c1", "received_at": "2026-11-24T09:58:00+08:00", "channel": "hotline",
                 "category": "broadband", "region": "hangzhou"}
    resp = await env.client.post("/api/complaints", json=complaint, headers=env.bearer("intake"))
    assert resp.status == 200 and (await resp.json())["accepted"] == 1
    assert (await env.client.get("/api/streams", headers=env.bearer("intake"))).status == 403
    # users do not post complaints: intake is a role of its own
    assert (await env.client.post("/api/complaints", json=complaint, headers=env.bearer("leader"))).status == 403
    resp = await env.client.post("/api/complaints", json=complaint | {"id": "c2"}, headers=env.bearer("admin"))
    assert resp.status == 200


# --- sessions, login, CSRF -------------------------------------------------------------

async def test_login_session_csrf_and_logout(env: Env) -> None:
    client = env.client
    resp = await login(client, "chen-li", next_="/api/streams")
    assert resp.status == 303 and resp.headers["Location"] == "/api/streams"
    cookie = resp.headers["Set-Cookie"]
    assert "coordinator_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http public URL
    assert (await client.get("/api/incidents")).status == 200
    body = {"playbook": "outage", "region": "hangzhou", "params": {"cause": "x"}}
    resp = await client.post("/api/incidents", json=body)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf_failed"
    resp = await client.post("/api/incidents", json=body, headers={CSRF_HEADER: "forged"})
    assert resp.status == 403
    resp = await client.post("/api/incidents", json=body, headers={CSRF_HEADER: await csrf_of(client)})
    assert resp.status == 201 and (await resp.json())["opened_by"] == "chen-li"
    # signed in, the login page offers to sign out
    assert "chen-li" in await (await client.get("/login")).text()
    # logout needs the CSRF token too
    assert (await client.post("/logout", data={})).status == 403
    resp = await client.post("/logout", data={"csrf_token": await csrf_of(client)}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await client.get("/api/incidents")).status == 401


async def test_a_viewer_session_reads_but_cannot_act(env: Env) -> None:
    assert (await login(env.client, "sun-yue")).status == 303
    assert (await env.client.get("/api/incidents")).status == 200
    resp = await env.client.post("/api/incidents", json={"playbook": "outage", "region": "hangzhou"},
                                 headers={CSRF_HEADER: await csrf_of(env.client)})
    assert resp.status == 403 and "needs the leader role" in (await resp.json())["error"]["message"]


async def test_wrong_password_and_unknown_user(env: Env) -> None:
    for name, password in (("chen-li", "wrong password"), ("nobody", PASSWORD)):
        resp = await login(env.client, name, password)
        assert resp.status == 401
        assert "用户名或密码错误" in await resp.text()  # the page's language: Chinese unless asked
    assert (await env.client.get("/api/incidents")).status == 401


async def test_login_form_needs_its_csrf_token(env: Env) -> None:
    await env.client.get("/login")
    resp = await env.client.post("/login", data={"name": "chen-li", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 403
    assert (await env.client.get("/api/incidents")).status == 401


async def test_login_never_redirects_off_site(env: Env) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        resp = await login(env.client, "chen-li", next_=target)
        assert resp.headers["Location"] == "/", target


async def test_pages_send_the_anonymous_to_login(tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path))
    await add_user_now(tmp_path / "users.yaml")

    @requires(Role.leader)
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="console")

    app.router.add_get("/console", page)
    async with TestClient(TestServer(app)) as client:
        html = {"Accept": "text/html"}
        resp = await client.get("/console?x=1", headers=html, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/login?next=%2Fconsole%3Fx%3D1"
        # the API answers JSON whatever is accepted
        resp = await client.get("/api/incidents", headers=html)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
        assert (await login(client, "chen-li", next_="/console")).headers["Location"] == "/console"
        assert await (await client.get("/console", headers=html)).text() == "console"


async def test_secure_cookie_behind_https(tmp_path: Path) -> None:
    async with TestClient(TestServer(make_app(settings_for(tmp_path, public_url="https://yingji.example")))) as client:
        await add_user_now(tmp_path / "users.yaml")
        resp = await client.get("/login")
        assert "Secure" in resp.headers["Set-Cookie"]


async def add_user_now(path: Path) -> None:
    add_user(path, "chen-li", Role.leader, FAST.hash(PASSWORD))


async def test_no_users_page_and_users_added_while_running(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with TestClient(TestServer(make_app(settings))) as client:
        page = await (await client.get("/login")).text()
        assert "coordinator user add" in page and "users.yaml" in page
        await add_user_now(tmp_path / "users.yaml")  # no restart: the file is reread when it changes
        assert (await login(client, "chen-li")).status == 303
        assert (await client.get("/api/incidents")).status == 200
        # removed from the file: the session ends
        (tmp_path / "users.yaml").write_text("users: []\n")
        assert (await client.get("/api/incidents")).status == 401


async def test_a_bad_users_file_edit_keeps_the_last_good_users(env: Env) -> None:
    env.users_file.write_text("users:\n  - name: chen-li\n    role: boss\n")
    assert (await env.client.get("/api/incidents", headers=env.bearer("viewer"))).status == 200


# --- the users file and its commands ---------------------------------------------------

def test_user_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from coordinator.commands.cli import main
    from coordinator.config.users import Directory

    monkeypatch.delenv("COORDINATOR_USERS_FILE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["user", "--config", str(tmp_path), "add", "chen-li", "--role", "leader", "--password-stdin"]) == 0
    assert main(["user", "--config", str(tmp_path), "add", "bot", "--role", "viewer", "--no-password"]) == 0
    capsys.readouterr()
    assert main(["user", "--config", str(tmp_path), "token", "bot", "--label", "dashboard"]) == 0
    token = capsys.readouterr().out.strip()
    text = (tmp_path / "users.yaml").read_text()
    assert token.startswith("coord_") and token not in text and "a long password" not in text
    assert (tmp_path / "users.yaml").stat().st_mode & 0o077 == 0
    directory = Directory(tmp_path / "users.yaml")
    bot = directory.by_token(token)
    assert bot is not None and bot.role == Role.viewer
    assert directory.check_password("chen-li", "a long password") is not None
    assert directory.check_password("chen-li", "a wrong password") is None
    assert directory.check_password("bot", "") is None  # token-only users have no password
    assert main(["user", "--config", str(tmp_path), "add", "chen-li", "--role", "viewer", "--no-password"]) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "--config", str(tmp_path), "add", "x", "--role", "viewer", "--password-stdin"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["user", "--config", str(tmp_path), "token", "bot", "--revoke"]) == 0
    assert Directory(tmp_path / "users.yaml").by_token(token) is None
    assert main(["user", "--config", str(tmp_path), "list"]) == 0
    assert "chen-li\tleader\tpassword" in capsys.readouterr().out


def test_check_reports_a_bad_users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from coordinator.commands.cli import main

    monkeypatch.delenv("COORDINATOR_USERS_FILE", raising=False)
    config = tmp_path / "config"
    shutil.copytree(FIXTURES / "good", config)
    assert main(["check", str(config)]) == 0
    (config / "users.yaml").write_text(
        "users:\n"
        "  - name: chen-li\n"
        "    role: boss\n"
        "    password: hunter22\n"
        "  - name: chen-li\n"
        "    role: viewer\n"
        "    extra: 1\n")
    capsys.readouterr()
    assert main(["check", str(config)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "users.yaml:3: users[0].role: Input should be 'leader', 'trainer' or 'viewer', got 'boss'",
        "users.yaml:4: users[0].password: must be an argon2 hash (made by `coordinator user add`), "
        "not a plain password",
        "users.yaml:7: users[1]: unknown field 'extra'",
    ]
    (config / "users.yaml").write_text("users:\n  - name: a\n    role: viewer\n  - name: a\n    role: leader\n")
    assert main(["check", str(config)]) == 1
    assert capsys.readouterr().out.splitlines() == ["users.yaml:4: users[1].name: duplicate user 'a'"]


@pytest.mark.parametrize(("env", "message"), [
    ({"COORDINATOR_ADMIN_TOKEN": "short"}, "COORDINATOR_ADMIN_TOKEN must be at least 16"),
    ({"COORDINATOR_INTAKE_TOKEN": "has spaces in it, sixteen+"}, "COORDINATOR_INTAKE_TOKEN must be at least 16"),
    ({"COORDINATOR_SESSION_KEY": "not-a-key"}, "COORDINATOR_SESSION_KEY must be a Fernet key"),
])
def test_bad_access_settings_are_named(env: dict[str, str], message: str) -> None:
    from coordinator.errors import SettingsError

    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
