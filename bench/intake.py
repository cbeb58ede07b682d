"""Intake with detection: complaints per second through POST /api/complaints (JSON
batches, the real HTTP stack on loopback), on each store.

    .venv/bin/python -m bench.intake [--complaints 100000] [--batch 1000] [--redis redis://127.0.0.1:6379/0]

Complaints spread over 9 categories x 3 regions (so 36 streams with the category-wide
ones), timestamps over the last ten minutes (the detection grace: every complaint
reaches its streams' detectors, none is late), after an untimed warm-up that gives every
stream a detector state; every batch runs the stream monitor on the
streams it touched, as in production, on the event loop `coordinator serve` runs on
(uvloop when installed; COORDINATOR_LOOP=asyncio for the standard one). The client
posting the batches runs in the same process and loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

from coordinator.app import create_app
from coordinator.config.catalog import load_catalog
from coordinator.clock import SystemClock
from coordinator.eventloop import loop_factory, loop_name
from coordinator.heap import settle_heap
from coordinator.config.settings import Settings

REPO = Path(__file__).resolve().parent.parent
INTAKE_TOKEN = "bench-intake-token-0123456789"  # the service wants one; intake is what is measured
CATEGORIES = ["outage", "broadband", "billing", "vas", "network_quality", "service", "install", "spam", "porting"]
REGIONS = ["hangzhou", "ningbo", "wenzhou"]
CHANNELS = ["hotline", "app", "web", "shop", "social"]


def batches(total: int, size: int, seed: int = 1, ago: tuple[int, int] = (0, 600)) -> list[bytes]:
    """JSON bodies of `size` complaints, stamped `ago` seconds (from, to) before now."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    run = uuid.uuid4().hex[:8]
    out, batch = [], []
    for i in range(total):
        batch.append({
            "id": f"bench-{run}-{i}",
            "received_at": (now - timedelta(seconds=rng.randrange(*ago))).isoformat(),
            "channel": rng.choice(CHANNELS), "category": rng.choice(CATEGORIES), "region": rng.choice(REGIONS),
            "subscriber": f"139{rng.randrange(10**8):08d}", "text": "宽带断网，客服电话打不进",
        })
        if len(batch) == size:
            out.append(json.dumps(batch, ensure_ascii=False).encode())
            batch = []
    if batch:
        out.append(json.dumps(batch, ensure_ascii=False).encode())
    return out


async def measure(store_url: str, total: int, size: int) -> float:
    settings = Settings(store_url=store_url, config_dir=REPO, subscriber_key="bench", tick_seconds=0,
                        max_items=max(size, 10_000), intake_token=INTAKE_TOKEN)
    catalog = load_catalog(REPO)
    settle_heap()  # as `coordinator serve` does once the catalog is loaded
    app = create_app(settings, clock=SystemClock(), catalog=catalog)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    bodies = batches(total, size)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {INTAKE_TOKEN}"}) as session:
            url = f"http://127.0.0.1:{port}/api/complaints"
            # Untimed: the streams' first complaints, past their grace time, so that every
            # stream has a detector state to advance, as in a running service.
            for body in batches(2000, 2000, seed=2, ago=(900, 2700)):
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 200, await resp.text()
            started = time.perf_counter()
            accepted = 0
            for body in bodies:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    answer = await resp.json()
                    accepted += answer["accepted"]
            elapsed = time.perf_counter() - started
    finally:
        await runner.cleanup()
    assert accepted == total, f"only {accepted} of {total} accepted"
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--complaints", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner(loop_factory=loop_factory()) as runner:
        sqlite_rate = runner.run(measure(f"sqlite:///{tmp}/bench.db", args.complaints, args.batch))
        print(f"sqlite: {sqlite_rate:,.0f} complaints/s ({args.complaints} in batches of {args.batch}, "
              f"{loop_name(runner.get_loop())})")
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        redis_rate = runner.run(measure(f"{args.redis}?prefix={prefix}", args.complaints, args.batch))
        print(f"redis:  {redis_rate:,.0f} complaints/s ({args.complaints} in batches of {args.batch})")
    import redis as redis_sync

    client = redis_sync.Redis.from_url(args.redis)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


if __name__ == "__main__":
    main()
