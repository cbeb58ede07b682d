"""Lifecycle events out, measured: how fast the webhook sender empties a subscriber's
queue to a loopback receiver answering 200, with a second subscriber that never answers
alongside (it must cost the first nothing), on SQLite and on Redis; and what queueing an
event costs the incident path (LifecycleEvents.incident, two subscribers).

    .venv/bin/python -m bench.webhooks [--events 2000]

Run by hand; results in bench/RESULTS.md."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

from bench.machine import describe
from coordinator.clock import SystemClock
from coordinator.commands.sandboxed import free_port
from coordinator.config.webhooks import Subscriber, Webhooks
from coordinator.webhooks.events import EVENT_TYPES, LifecycleEvents
from coordinator.models import Incident, TimelineEvent
from coordinator.store import Store
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore
from coordinator.webhooks.sender import WebhookSender
from tests.redis_server import RedisServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def receiver(hang: bool) -> tuple[web.AppRunner, str, list[int]]:
    got: list[int] = []
    forever = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        got.append(1)
        if hang:
            await forever.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/", got


def incident() -> Incident:
    now = datetime.now(timezone.utc)
    return Incident(id="INC-20261124-bench0", playbook="broadband-outage", title="宽带故障", severity="major",
                    category="broadband", region="ningbo", surge_key="broadband/ningbo", code="B1", opened_at=now,
                    opened_by="bench", updated_at=now)


async def run(store: Store, events: int) -> dict[str, float]:
    fast, fast_url, delivered = await receiver(hang=False)
    dead, dead_url, _ = await receiver(hang=True)
    config = Webhooks(subscribers=(Subscriber("crm", fast_url, SECRET, frozenset(EVENT_TYPES), 5.0),
                                   Subscriber("dead", dead_url, SECRET, frozenset(EVENT_TYPES), 30.0)))
    wake = asyncio.Event()
    lifecycle = LifecycleEvents(store=store, webhooks=lambda: config, wake=wake)
    inc = incident()
    started = time.perf_counter()
    for i in range(events):
        event = TimelineEvent(at=datetime.now(timezone.utc), kind="role_acked", actor="p1",
                              data={"role": "leader", "via": "sms", "level": 0})
        await lifecycle.incident(inc, [event], f"r{i}")
    queue_seconds = time.perf_counter() - started
    sender = WebhookSender(store=store, webhooks=lambda: config, clock=SystemClock(), wake=wake, worker="bench")
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(sender.run(stop))
    while len(delivered) < events:
        await asyncio.sleep(0.01)
    send_seconds = time.perf_counter() - started
    stop.set()
    await task
    await fast.cleanup()
    await dead.cleanup()
    return {"queue_us": queue_seconds / events * 1e6, "sent_per_s": events / send_seconds}


async def main(events: int) -> None:
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await SqliteStore.open(Path(tmp) / "bench.db", 300)
        result = await run(sqlite, events)
        await sqlite.close()
        print(f"SQLite: queueing {result['queue_us']:.0f} us/event (2 subscribers), "
              f"sent {result['sent_per_s']:.0f} events/s to one subscriber beside a dead one")
        server = RedisServer(Path(tmp)).start()
        try:
            redis_store = await RedisStore.open(server.url, 300, prefix="bench:")
            result = await run(redis_store, events)
            await redis_store.close()
        finally:
            server.stop()
        print(f"Redis: queueing {result['queue_us']:.0f} us/event (2 subscribers), "
              f"sent {result['sent_per_s']:.0f} events/s to one subscriber beside a dead one")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    asyncio.run(main(parser.parse_args().events))
