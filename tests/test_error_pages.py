"""Errors as a browser sees them (issue 22, item 5): a page in the reader's language for
a browser on the console (404, 400 naming what is wrong, 403 saying who is signed in),
the API's JSON everywhere else, and a favicon."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import AsyncIterator

import pytest
import aiohttp
from aiohttp.test_utils import TestClient

from coordinator.config.catalog import Catalog

from .conftest import ADMIN_HEADERS
from .test_console import FIXTURES, HTML, login, make_client
from .test_sandbox_page import serve, sign_in


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    async for c in make_client(tmp_path, FIXTURES / "good"):
        yield c


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


async def test_an_unknown_path_is_a_page_for_a_browser_and_json_for_a_script(client: TestClient) -> None:
    await login(client, "p1")
    resp = await client.get("/no/such/page", headers=HTML)
    assert resp.status == 404 and resp.content_type == "text/html"
    page = await resp.text()
    assert "未找到" in page and "/no/such/page" in page and "p1 · 组长" in page  # signed in: the nav says so
    assert 'href="/login"' not in page and "无权操作" not in page
    english = await (await client.get("/no/such/page?lang=en", headers=HTML)).text()
    assert "Not found" in english and "There is no such page or record: /no/such/page" in text_of(english)
    # scripts and the API keep their JSON
    for path, headers in (("/no/such/page", {}), ("/api/nothing", HTML), ("/api/incidents/INC-x", HTML)):
        resp = await client.get(path, headers=headers)
        assert resp.status == 404 and resp.content_type == "application/json", path
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_an_unknown_incident_says_not_found_to_a_signed_in_leader(client: TestClient) -> None:
    await login(client, "p1")
    resp = await client.get("/incidents/INC-20261124-nothing", headers=HTML)
    page = await resp.text()
    assert resp.status == 404 and "未找到" in page, page
    assert "无权操作" not in page and "Not allowed" not in page and 'href="/login"' not in page


async def test_a_bad_stats_period_is_a_page_naming_the_parameter(client: TestClient) -> None:
    await login(client, "p3")
    resp = await client.get("/stats?from=2026-13-01", headers=HTML)
    assert resp.status == 400 and resp.content_type == "text/html"
    body = text_of(await resp.text())
    assert "请求有误" in body and "“起始日”不是有效日期" in body and "2026-13-01" in body
    resp = await client.get("/stats?from=2026-11-05&to=2026-11-01&lang=en", headers=HTML)
    body = text_of(await resp.text())
    assert resp.status == 400 and "Bad request" in body and "'To' is before 'From'." in body
    resp = await client.get("/stats.csv?table=people", headers=HTML)
    assert resp.status == 400 and "No such table to export: people" in text_of(await resp.text())
    # the API answers the same mistake in JSON, naming the parameter and the problem
    resp = await client.get("/api/stats?from=2026-13-01", headers={**ADMIN_HEADERS, **HTML})
    assert resp.status == 400 and resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_period"
    assert error["details"] == [{"parameter": "from", "value": "2026-13-01", "problem": "not_a_date"}]


async def test_a_refusal_says_who_is_signed_in_and_what_is_needed(tmp_path: Path, catalog: Catalog) -> None:
    server = await serve(tmp_path, catalog, sandbox=True)
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("")), headers=HTML,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, "sun-yue")  # a viewer; the sandbox inbox is the trainers'
            resp = await http.get("/sandbox/")
            body = text_of(await resp.text())
            assert resp.status == 403 and resp.content_type == "text/html"
            assert "无权操作" in body and "您当前登录为 sun-yue（只读）" in body and "需要“演练员”角色" in body
            assert "以其他用户登录" in body and "请先登录" not in body
            resp = await http.get("/sandbox/?lang=en")
            body = text_of(await resp.text())
            assert "Not allowed" in body and "You are signed in as sun-yue (viewer)" in body
            assert "This needs the trainer role." in body
            # a form whose CSRF token is stale: the page says so, not "not allowed"
            resp = await http.post("/logout", data={"csrf_token": "stale"})
            assert resp.status == 403 and "页面已过期" in text_of(await resp.text())
        # the API answers the same refusal in JSON
        async with aiohttp.ClientSession(base_url=str(server.make_url("")),
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await sign_in(http, "sun-yue")
            resp = await http.get("/sandbox/")
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    finally:
        await server.close()


async def test_anonymous_pages_still_go_to_the_login_page(client: TestClient) -> None:
    resp = await client.get("/stats", headers=HTML, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=%2Fstats"
    resp = await client.get("/no/such/page", headers=HTML)
    page = await resp.text()
    assert resp.status == 404 and 'href="/login"' in page and "未找到" in page


async def test_the_favicon_is_served(client: TestClient) -> None:
    resp = await client.get("/favicon.ico")
    assert resp.status == 200 and resp.content_type == "image/x-icon"
    assert (await resp.read())[:4] == b"\x00\x00\x01\x00"  # an ICO file
    resp = await client.get("/static/favicon.svg")
    assert resp.status == 200 and "<svg" in await resp.text()


async def test_a_mangled_ack_link_is_a_page_for_the_frontline(client: TestClient) -> None:
    """Staff open ack links from their mail with no sign-in: a link a mail client cut or
    added to is a Chinese page saying so, never the API's JSON nor a sign-in link."""
    for path in ("/ack/", "/ack/abc/def", "/ack/abc%3E/x"):
        resp = await client.get(path, headers=HTML)
        page = text_of(await resp.text())
        assert resp.status == 404 and resp.content_type == "text/html", path
        assert "确认链接无效" in page and "链接不完整或已损坏，请从邮件中重新打开。" in page, page
        assert 'href="/login"' not in await resp.text()
    resp = await client.get("/ack/not-a-token", headers=HTML)  # the route's own page
    assert resp.status == 403 and "确认链接无效" in await resp.text()
