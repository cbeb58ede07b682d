"""What an attacker tried (issue 16), each as it was seen: an open redirect after login, a
leader forged from the store file, a session that outlived its logout, unthrottled
password guessing, pages without security headers, malformed requests answered 500,
names typed as passwords in the log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import sqlite3
import threading
import time
from datetime import timedelta
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from coordinator.clock import ManualClock
from coordinator.store import open_store
from coordinator.config.users import Role, User, add_user, remove_user, set_password
from coordinator.web.logins import Backoff, Logins
from coordinator.web.login import safe_next

from .test_auth import FAST, PASSWORD, T0, Env, csrf_of, login, make_app, settings_for
from . import test_auth

env = test_auth.env  # the fixture: three users and their tokens
OTHER_PASSWORD = "another long password"


# --- 1. open redirect ------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/\t/evil.example", "/\r/evil.example", "/\n/evil.example", "//evil.example",
    "/\\evil.example", "\\\\evil.example", "https://evil.example/", "http:/evil.example", "javascript:alert(1)",
    " /x", "/x\x00", "evil.example", "",
])
def test_next_accepts_only_a_same_origin_path(target: str) -> None:
    assert safe_next(target) == "/"


def test_next_keeps_an_ordinary_path() -> None:
    # still percent-encoded, a tab is two characters of a path on this site
    for target in ("/incidents/INC-1?lang=en", "/stats?from=2026-11-01", "/", "/%09/evil.example"):
        assert safe_next(target) == target


async def test_a_tab_after_the_slash_does_not_redirect_off_site(env: Env) -> None:
    # The reproduction: /login?next=/%09/evil.example answered Location: //evil.example.
    page = await (await env.client.get("/login?next=/%09/evil.example")).text()
    assert 'name="next" value="/"' in page
    resp = await login(env.client, "chen-li", next_="/\t/evil.example")
    assert resp.status == 303 and resp.headers["Location"] == "/"


# --- 2. the store file and forged cookies ----------------------------------------------

def forged_cookie(key: str, data: dict[str, Any]) -> str:
    """A session cookie as aiohttp-session's EncryptedCookieStorage writes it."""
    payload = json.dumps({"created": int(time.time()), "session": data}).encode()
    return Fernet(key.encode()).encrypt(payload).decode()


async def test_a_cookie_forged_with_the_stored_key_is_not_a_session(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.users_file is not None
    add_user(settings.users_file, "chen-li", Role.leader, FAST.hash(PASSWORD))
    async with TestClient(TestServer(make_app(settings))) as client:
        await client.get("/login")
        db = tmp_path / "auth.db"
        assert db.stat().st_mode & 0o077 == 0  # was 0644: anyone on the host could read the key
        key = sqlite3.connect(db).execute("SELECT value FROM secrets WHERE name = 'session-key'").fetchone()[0]
        for data in ({"user": "chen-li"}, {"user": "chen-li", "sid": "guessed"}):
            cookies = {"coordinator_session": forged_cookie(key, data)}
            resp = await client.get("/api/incidents", cookies=cookies)
            assert resp.status == 401, data


# --- 3. sessions end on the server -----------------------------------------------------

async def signed_in_cookie(env: Env, name: str = "chen-li") -> dict[str, str]:
    assert (await login(env.client, name)).status == 303
    cookie = env.client.session.cookie_jar.filter_cookies(env.client.make_url("/"))["coordinator_session"].value
    return {"coordinator_session": cookie}


async def test_a_copied_cookie_dies_with_logout(env: Env) -> None:
    copied = await signed_in_cookie(env)
    resp = await env.client.post("/logout", data={"csrf_token": await csrf_of(env.client)}, allow_redirects=False)
    assert resp.status == 303
    async with TestClient(env.client.server) as other:  # another browser holding the copy
        assert (await other.get("/api/incidents", cookies=copied)).status == 401


async def test_a_new_password_ends_every_session(env: Env) -> None:
    copied = await signed_in_cookie(env)
    assert (await env.client.get("/api/incidents")).status == 200
    set_password(env.users_file, "chen-li", FAST.hash(OTHER_PASSWORD))
    assert (await env.client.get("/api/incidents")).status == 401
    env.client.session.cookie_jar.clear()
    assert (await env.client.get("/api/incidents", cookies=copied)).status == 401
    assert (await login(env.client, "chen-li", OTHER_PASSWORD)).status == 303
    assert (await env.client.get("/api/incidents")).status == 200


async def test_a_removed_user_is_signed_out_even_if_added_again(env: Env) -> None:
    copied = await signed_in_cookie(env, "sun-yue")
    remove_user(env.users_file, "sun-yue")
    env.client.session.cookie_jar.clear()
    assert (await env.client.get("/api/incidents", cookies=copied)).status == 401
    add_user(env.users_file, "sun-yue", Role.viewer, FAST.hash(PASSWORD))  # same name, same password
    assert (await env.client.get("/api/incidents", cookies=copied)).status == 401


async def test_sessions_are_kept_on_redis_too(tmp_path: Path, redis_url: str) -> None:
    settings = replace(settings_for(tmp_path), store_url=f"{redis_url}?prefix=sess{time.monotonic_ns()}:")
    assert settings.users_file is not None
    add_user(settings.users_file, "chen-li", Role.leader, FAST.hash(PASSWORD))
    async with TestClient(TestServer(make_app(settings))) as client:
        assert (await login(client, "chen-li")).status == 303
        copied = {"coordinator_session": client.session.cookie_jar.filter_cookies(
            client.make_url("/"))["coordinator_session"].value}
        assert (await client.get("/api/incidents")).status == 200
        await client.post("/logout", data={"csrf_token": await csrf_of(client)})
        client.session.cookie_jar.clear()
        assert (await client.get("/api/incidents", cookies=copied)).status == 401


# --- 4. guessing passwords --------------------------------------------------------------

async def test_guessing_is_throttled_and_the_right_password_waits_too(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    backoff = Backoff()
    for _ in range(backoff.free):
        assert (await login(env.client, "chen-li", "wrong password")).status == 401
    resp = await login(env.client, "chen-li", PASSWORD)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert "尝试次数过多" in await resp.text()  # the login page speaks the page's language (Chinese unless asked)
    assert (await env.client.get("/api/incidents")).status == 401
    clock = _clock_of(env)
    clock.advance(timedelta(seconds=backoff.base_seconds + 1))
    assert (await login(env.client, "chen-li", PASSWORD)).status == 303  # the wait is over: and it resets


def _clock_of(env: Env) -> ManualClock:
    from coordinator.web.state import SERVICES

    clock = env.client.app[SERVICES].clock
    assert isinstance(clock, ManualClock)
    return clock


async def test_many_failures_lock_the_name_with_an_audit_entry(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    backoff = Backoff()
    clock = _clock_of(env)
    for n in range(backoff.lockout_after):
        resp = await login(env.client, "chen-li", "wrong password")
        assert resp.status == 401, n
        clock.advance(timedelta(seconds=backoff.cap_seconds + 1))  # each waits out its back-off
    audit = [r for r in caplog.records if r.name == "coordinator.audit"]
    assert len(audit) == 2 and "locked" in audit[0].getMessage()  # the name and the address
    assert "chen-li" in audit[0].getMessage()
    clock.advance(timedelta(seconds=backoff.cap_seconds + 1))
    assert (await login(env.client, "chen-li", PASSWORD)).status == 429  # locked: still
    clock.advance(timedelta(seconds=backoff.lockout_seconds))
    assert (await login(env.client, "chen-li", PASSWORD)).status == 303


def test_the_back_off_doubles_then_locks() -> None:
    b = Backoff(free=5, base_seconds=2, cap_seconds=300, lockout_after=20, lockout_seconds=900)
    assert [b.wait(n, T0, T0) for n in (0, 4, 5, 6, 7, 12, 19, 20, 50)] == [0, 0, 2, 4, 8, 256, 300, 900, 900]
    assert b.wait(6, T0, T0 + timedelta(seconds=3)) == 1
    assert b.wait(6, T0, T0 + timedelta(seconds=10)) == 0
    assert b.wait(9, None, T0) == 0


class SlowDirectory:
    """Stands in for the users file: each password check blocks until released, so the
    test sees how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def get(self, name: str) -> User | None:
        return None

    def check_password(self, name: str, password: str) -> User | None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.release.wait(5)
        with self._lock:
            self.running -= 1
        return None


async def test_password_checks_are_capped_and_a_crowd_is_turned_away(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/cap.db", 300)
    directory = SlowDirectory()
    logins = Logins(store, ManualClock(T0), directory, Backoff(free=1000, lockout_after=10_000),  # type: ignore[arg-type]
                    concurrency=2, queue=4)
    try:
        tasks = [asyncio.create_task(logins.attempt(f"u{i}", "pw", f"10.0.0.{i}")) for i in range(6)]
        await asyncio.sleep(0.3)
        directory.release.set()
        results = await asyncio.gather(*tasks)
    finally:
        await store.close()
    assert directory.peak == 2
    assert sum(r.busy for r in results) == 2  # the two beyond the queue of four
    assert all(r.user is None for r in results)


# --- 5. security headers ---------------------------------------------------------------

async def test_pages_and_answers_carry_security_headers(env: Env) -> None:
    await signed_in_cookie(env)
    for path in ("/login", "/", "/api/incidents", "/no/such/page", "/static/console.css"):
        resp = await env.client.get(path, headers={"Accept": "text/html"})
        h = resp.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
        assert "script-src 'self'" in h["Content-Security-Policy"] and "unsafe-inline" not in \
            h["Content-Security-Policy"].split("script-src")[1].split(";")[0]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
        assert h["Server"] == "coordinator" and "aiohttp" not in h["Server"] and "Python" not in h["Server"]
        if not path.startswith("/static/"):
            assert h["Cache-Control"] == "no-store", path


def test_no_template_holds_inline_script() -> None:
    templates = Path(__file__).parent.parent / "coordinator" / "web" / "templates"
    for page in templates.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text), page.name  # onclick=, onsubmit= ...
        for script in re.findall(r"<script([^>]*)>", text):
            assert "src=" in script or 'type="application/json"' in script, (page.name, script)


# --- 6. malformed requests are 4xx -----------------------------------------------------

@pytest.mark.parametrize("path", ["/hooks/twilio/status", "/hooks/twilio/inbound", "/login", "/logout"])
@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          "application/x-www-form-urlencoded; charset=nonsense"])
async def test_a_form_that_cannot_be_read_is_a_400(env: Env, path: str, content_type: str) -> None:
    resp = await env.client.post(path, data=b"a=1", headers={"Content-Type": content_type})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "bad_form"


async def test_undecodable_form_bytes_are_a_400(env: Env) -> None:
    resp = await env.client.post("/login", data=b"\xff\xfe=%ff",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_form"


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic !!!", "Bearer \u00e9t\u00e9", "garbage",
                                    "Bearer a b c"])
async def test_a_bad_authorization_header_never_breaks_a_page(env: Env, header: str) -> None:
    resp = await env.client.get("/login", headers={"Authorization": header})
    assert resp.status == 200, await resp.text()
    resp = await env.client.get("/api/incidents", headers={"Authorization": header})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"


async def test_undecodable_header_bytes_are_a_401(env: Env) -> None:
    # Raw bytes that are not UTF-8 reach the handler as surrogates.
    reader, writer = await asyncio.open_connection(env.client.host, env.client.port)
    writer.write(b"GET /api/incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    await writer.drain()
    head = (await reader.read(200)).split(b"\r\n")[0]
    writer.close()
    assert head.startswith(b"HTTP/1.1 4"), head


# --- 7. what the log says about a failed sign-in ---------------------------------------

async def test_a_password_typed_as_the_name_is_not_logged(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "MySecretPassw0rd!"
    assert (await login(env.client, secret, "x" * 9)).status == 401
    assert (await login(env.client, "chen-li", "wrong password")).status == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in logged and base64.b64encode(secret.encode()).decode() not in logged
    assert "unknown#" in logged and "failed sign-in of chen-li" in logged


async def test_a_live_page_stops_updating_once_its_session_is_signed_out(env: Env) -> None:
    copied = await signed_in_cookie(env)
    async with TestClient(env.client.server) as watcher:  # the wall screen, same cookie
        stream = await watcher.get("/events", cookies=copied)
        assert stream.status == 200
        first = b""
        while b"event: update" not in first:
            first += await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
        await env.client.post("/logout", data={"csrf_token": await csrf_of(env.client)})
        rest = await asyncio.wait_for(stream.content.read(), 10)  # the server ends the stream
        assert stream.content.at_eof(), rest
