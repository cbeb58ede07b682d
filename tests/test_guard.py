"""Slow clients against a real guarded server on loopback: raw sockets that trickle a
head or a body, hold too many connections, idle, or never read a stream."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from coordinator.errors import StalledClient
from coordinator.web.guard import (GuardedSite, GuardLimits, body_deadline, limits_of, start_guarded_site,
                                   write_or_drop)

HOST = "127.0.0.1"
MAX_BODY = 1024
STREAM_TIMEOUT = 0.5  # the stream handler's own write deadline
SLACK = 1.0  # scheduling on a busy CI box; every deadline under test is 0.5-2 s
FAST = GuardLimits(header_timeout=0.5, body_timeout=0.5, max_connections_per_client=100,
                   keepalive_timeout=1.0, write_timeout=0.5)


@dataclass
class StreamLog:
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None


STREAM = web.AppKey("stream_log", StreamLog)


def tiny_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[body_deadline])
    app[STREAM] = StreamLog()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "header_timeout": limits_of(request).header_timeout})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"echo": await request.json()})

    async def form(request: web.Request) -> web.Response:
        return web.json_response({k: str(v) for k, v in (await request.post()).items()})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response({"ok": True})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (16 << 20))

    async def stream(request: web.Request) -> web.StreamResponse:
        log = request.app[STREAM]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:  # fast enough to fill the socket buffers of a client that never reads
                await write_or_drop(response, b"data: " + b"x" * 65536 + b"\n\n", STREAM_TIMEOUT)
        except ConnectionResetError as exc:
            log.error = exc
        finally:
            log.ended.set()
        return response

    app.router.add_get("/", hello)
    app.router.add_post("/echo", echo)
    app.router.add_post("/form", form)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/stream", stream)
    return app


Serve = Callable[..., Awaitable[GuardedSite]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    sites: list[GuardedSite] = []

    async def start(**limits: Any) -> GuardedSite:
        site = await start_guarded_site(tiny_app(), HOST, 0, limits=replace(FAST, **limits), shutdown_timeout=1.0)
        sites.append(site)
        return site

    yield start
    for site in sites:
        await site.stop()


async def wait_closed(reader: asyncio.StreamReader, limit: float) -> float:
    """Seconds until the server closes the connection (FIN or RST); fails past `limit`."""
    start = time.monotonic()
    async with asyncio.timeout(limit):
        with suppress(ConnectionResetError):
            while await reader.read(65536):
                pass
    return time.monotonic() - start


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = next(int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length"))
    return int(head.split()[1]), await reader.readexactly(length)


async def trickle(writer: asyncio.StreamWriter, pieces: Callable[[int], bytes]) -> None:
    """Send one more piece every 0.2 s until the server hangs up."""
    with suppress(ConnectionError):
        for n in range(1000):
            await asyncio.sleep(0.2)
            writer.write(pieces(n))
            await writer.drain()


async def connect(port: int, source: str = HOST) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port, local_addr=(source, 0))


async def get_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return (await read_response(reader))[0]


async def test_slowloris_connections_are_cut_while_others_are_served(serve: Serve) -> None:
    site = await serve(keepalive_timeout=5.0)  # so only the head deadline can end them in time

    async def slowloris() -> float:
        reader, writer = await connect(site.port)
        opened = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        dribble = asyncio.create_task(trickle(writer, lambda n: f"X-Slow-{n}: y\r\n".encode()))
        try:
            await wait_closed(reader, FAST.header_timeout + SLACK)
            return time.monotonic() - opened
        finally:
            dribble.cancel()
            writer.close()

    async def normal_client() -> list[int]:
        statuses = []
        async with aiohttp.ClientSession(f"http://{HOST}:{site.port}") as session:
            for n in range(8):
                async with session.get("/") as get, session.post("/echo", json={"n": n}) as post:
                    statuses += [get.status, post.status]
                await asyncio.sleep(0.05)
        return statuses

    attack = [asyncio.create_task(slowloris()) for _ in range(50)]
    await asyncio.sleep(0.05)  # the attack is under way before the normal client starts
    statuses = await normal_client()
    lasted = await asyncio.gather(*attack)
    assert statuses == [200] * 16
    assert all(FAST.header_timeout - 0.05 <= t <= FAST.header_timeout + SLACK for t in lasted), lasted
    assert site.guard.header_timeouts == 50


async def test_a_kept_alive_connection_has_header_timeout_from_the_next_heads_first_byte(serve: Serve) -> None:
    site = await serve(keepalive_timeout=3.0)
    reader, writer = await connect(site.port)
    assert await get_on(reader, writer) == 200
    await asyncio.sleep(0.7)  # idle longer than header_timeout: not counted against the head
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    dribble = asyncio.create_task(trickle(writer, lambda n: f"X-Slow-{n}: y\r\n".encode()))
    lasted = await wait_closed(reader, FAST.header_timeout + SLACK)
    dribble.cancel()
    writer.close()
    assert lasted >= FAST.header_timeout - 0.05
    assert site.guard.header_timeouts == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_slow_body_gets_408_and_the_connection_ends(serve: Serve, framing: str) -> None:
    site = await serve(keepalive_timeout=5.0)
    reader, writer = await connect(site.port)
    length = b"Content-Length: 1000" if framing == "content-length" else b"Transfer-Encoding: chunked"
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + length + b"\r\n\r\n")
    piece = (lambda n: b"1234567890") if framing == "content-length" else (lambda n: b"a\r\n1234567890\r\n")
    dribble = asyncio.create_task(trickle(writer, piece))
    started = time.monotonic()
    async with asyncio.timeout(FAST.body_timeout + SLACK):
        status, body = await read_response(reader)
    took = time.monotonic() - started
    assert status == 408 and took >= FAST.body_timeout - 0.05
    assert json.loads(body)["error"]["code"] == "request_timeout"
    # aiohttp would read the rest for up to 10 s (lingering close); the head deadline ends it sooner
    assert await wait_closed(reader, FAST.header_timeout + SLACK) <= FAST.header_timeout + SLACK
    dribble.cancel()
    writer.close()


async def test_bodies_that_arrive_are_served_and_oversized_ones_get_413(serve: Serve) -> None:
    site = await serve()
    async with aiohttp.ClientSession(f"http://{HOST}:{site.port}") as session:
        async with session.get("/") as response:  # handlers see the limits served with (limits_of)
            assert (await response.json())["header_timeout"] == FAST.header_timeout
        async with session.post("/echo", json={"a": [1, 2]}) as response:
            assert response.status == 200 and await response.json() == {"echo": {"a": [1, 2]}}
        async with session.post("/form", data={"f": "1"}) as response:
            assert await response.json() == {"f": "1"}
        multipart = aiohttp.FormData({"f": "2"}, default_to_multipart=True)
        async with session.post("/form", data=multipart) as response:  # read by post(), not read()
            assert await response.json() == {"f": "2"}
        async with session.post("/echo", data=b"x" * (4 * MAX_BODY)) as response:
            assert response.status == 413


async def test_connections_over_the_cap_are_closed_at_once(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    site = await serve(max_connections_per_client=5, header_timeout=5.0, keepalive_timeout=5.0)
    held = [await connect(site.port) for _ in range(5)]
    assert [await get_on(r, w) for r, w in held] == [200] * 5
    with caplog.at_level(logging.WARNING, logger="coordinator.web.guard"):
        for _ in range(3):
            reader, writer = await connect(site.port)
            assert await wait_closed(reader, 0.5) < 0.5  # not a header timeout: that is 5 s
            writer.close()
    assert site.guard.refused == 3
    assert len([r for r in caplog.records if "refusing" in r.getMessage()]) == 1  # one warning, not one per connection

    with suppress(OSError):  # another address has its own count (Linux routes all of 127/8 to loopback)
        other = await connect(site.port, source="127.0.0.2")
        assert await get_on(*other) == 200
        other[1].close()

    for _, writer in held[:2]:
        writer.close()
    async with asyncio.timeout(1):
        while site.guard.connections_from(HOST) > 3:
            await asyncio.sleep(0.01)
    again = [await connect(site.port) for _ in range(2)]
    assert [await get_on(r, w) for r, w in again] == [200] * 2
    reader, writer = await connect(site.port)
    assert await wait_closed(reader, 0.5) < 0.5
    for _, w in [*held[2:], *again, (reader, writer)]:
        w.close()


async def test_an_idle_kept_alive_connection_is_closed_after_keepalive_timeout(serve: Serve) -> None:
    site = await serve()
    reader, writer = await connect(site.port)
    assert await get_on(reader, writer) == 200
    lasted = await wait_closed(reader, FAST.keepalive_timeout + SLACK)
    writer.close()
    assert lasted >= FAST.keepalive_timeout - 0.05  # and so not header_timeout's 0.5 s


def never_reading_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the buffers fill with little data
    sock.setblocking(False)
    return sock


async def wait_for_no_connections(site: GuardedSite, limit: float) -> None:
    assert site.runner.server is not None
    async with asyncio.timeout(limit):
        while site.runner.server.connections or site.guard.connections_from(HOST):
            await asyncio.sleep(0.01)


async def test_a_stream_the_client_never_reads_is_dropped(serve: Serve) -> None:
    site = await serve(write_timeout=30.0)  # the connection's stall guard stays out of it
    loop = asyncio.get_running_loop()
    with never_reading_socket() as sock:
        await loop.sock_connect(sock, (HOST, site.port))
        await loop.sock_sendall(sock, b"GET /stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        log = site.runner.app[STREAM]
        async with asyncio.timeout(STREAM_TIMEOUT + SLACK + 1.0):  # + the time to fill the buffers
            await log.ended.wait()
        assert isinstance(log.error, StalledClient)
        await wait_for_no_connections(site, SLACK)  # the handler and the connection are gone
        assert site.guard.write_stalls == 0


async def test_a_response_the_client_never_reads_is_dropped_by_the_stall_guard(serve: Serve) -> None:
    site = await serve()
    loop = asyncio.get_running_loop()
    with never_reading_socket() as sock:
        await loop.sock_connect(sock, (HOST, site.port))
        await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(SLACK):
            while not site.guard.connections_from(HOST):  # accepted: the kernel connects before that
                await asyncio.sleep(0.01)
        await wait_for_no_connections(site, FAST.write_timeout + SLACK + 1.0)
        assert site.guard.write_stalls == 1


async def test_stopping_lets_a_request_in_flight_finish(serve: Serve) -> None:
    site = await serve()

    async def fetch_slow() -> tuple[int, object]:
        async with aiohttp.ClientSession() as session, session.get(f"http://{HOST}:{site.port}/slow") as response:
            return response.status, await response.json()

    slow = asyncio.create_task(fetch_slow())
    await asyncio.sleep(0.1)  # the request is in its handler
    await site.stop()
    assert await slow == (200, {"ok": True})
    with pytest.raises(OSError):  # and nothing listens any more
        await connect(site.port)


SERVER_SCRIPT = """
import sys
from aiohttp import web
from coordinator.web.guard import GuardLimits, body_deadline, run_guarded

async def hello(request):
    return web.json_response({"ok": True})

async def goodbye(app):
    print("cleaned up", flush=True)

app = web.Application(middlewares=[body_deadline])
app.router.add_get("/", hello)
app.on_cleanup.append(goodbye)
run_guarded(app, host="127.0.0.1", port=int(sys.argv[1]), limits=GuardLimits(header_timeout=0.5))
print("exited", flush=True)
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_run_guarded_serves_guarded_until_a_signal(stop: signal.Signals) -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER_SCRIPT, str(port),
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    reader, writer = await connect(port)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        assert await get_on(reader, writer) == 200
        slow_reader, slow_writer = await connect(port)
        slow_writer.write(b"GET / HTTP/1.1\r\n")
        assert await wait_closed(slow_reader, 0.5 + SLACK) >= 0.45
        server.send_signal(stop)
        async with asyncio.timeout(10):
            out, _ = await server.communicate()
        assert server.returncode == 0
        assert out.decode().split() == ["cleaned", "up", "exited"]
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


@pytest.mark.parametrize(("name", "value"), [
    ("header_timeout", 0), ("header_timeout", -1.0), ("body_timeout", 0.0), ("body_timeout", float("nan")),
    ("keepalive_timeout", float("inf")), ("write_timeout", "10"), ("write_timeout", True),
    ("max_connections_per_client", 0), ("max_connections_per_client", 2.5), ("max_connections_per_client", True),
])
def test_limits_must_be_positive(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"GuardLimits.{name} must be a positive"):
        GuardLimits(**{name: value})  # type: ignore[arg-type]


def test_the_default_cap_lets_the_loopback_benchmark_through() -> None:
    # 200 concurrent clients, all 127.0.0.1, each with a connection or two kept alive
    assert GuardLimits().max_connections_per_client >= 256
    assert GuardLimits(header_timeout=1, max_connections_per_client=1).header_timeout == 1
