"""The fault scenarios at full size, each against real `coordinator serve` processes:
kill -9 mid fan-out and restart, a live peer taking over a dead instance's publication,
the ack storm, a burst of intake clients, one against two instances, and redis-server
killed during intake. Each returns its counts and times."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp
import redis.asyncio as aioredis
from yarl import URL

from bench.fanout.providers import ACCOUNT_SID, AUTH_TOKEN, SENDER
from coordinator.sandbox import twilio_signature
from coordinator.sandbox.webhooks import WebhookPoster
from coordinator.store.redis.keys import RedisKeys

from .harness import Fleet, board, converged, fanout_env, percentile, trigger, wait_for


async def kill_and_restart(fleet: Fleet, kind: str) -> dict[str, Any]:
    """SIGKILL once about a third of the 10,000 x 2 went out; start again on the same store."""
    service = fleet.service(fleet.store_url(kind, f"kill-{uuid.uuid4().hex[:6]}"), f"kill-{kind}", **fanout_env())
    await service.start()
    expected = fleet.expected()
    before = await fleet.total()
    incident = await trigger(service)

    async def a_third_out() -> bool:
        return await fleet.total() - before >= sum(expected) // 3

    await wait_for(a_third_out, 120, "a third of the fan-out", every=0.02)
    service.kill9()
    at_kill = await fleet.total() - before
    started = time.perf_counter()
    await service.start()
    ready = time.perf_counter() - started

    async def final() -> bool:
        return converged(await board(service, incident), expected)

    to_sent = await fleet.everyone_reached(service, incident, 600, since=before)
    to_final = await wait_for(final, 600, "every status final", every=1.0)
    counts = await fleet.losses_and_duplicates(service, incident)
    service.stop()
    return {"store": kind, "out_at_kill": at_kill,
            "restart_s": ready, "sent_after_restart_s": ready + to_sent,
            "statuses_final_after_restart_s": ready + to_sent + to_final, **counts}


async def peer_takeover(fleet: Fleet) -> dict[str, Any]:
    """Two instances on one Redis; A is killed while it writes the script's deliveries."""
    prefix = f"peer-{uuid.uuid4().hex[:6]}"
    url = fleet.store_url("redis", prefix)
    a = fleet.service(url, "peer-a", **fanout_env())
    b = fleet.service(url, "peer-b", **fanout_env())
    await a.start()
    await b.start()
    keys = RedisKeys(f"{prefix}:")
    assert fleet.redis is not None
    client = aioredis.Redis.from_url(fleet.redis.url, decode_responses=True)
    expected = fleet.expected()
    written = 0
    before = await fleet.total()
    try:
        posting = asyncio.create_task(trigger(a))

        async def writing() -> bool:
            nonlocal written
            ids = await client.zrange(keys.incidents(), 0, -1)
            written = await client.scard(keys.deliveries(ids[0])) if ids else 0
            return written > 2000

        await wait_for(writing, 60, "A writing the script's deliveries", every=0.002)
        a.kill9()
        killed = time.perf_counter()
        try:
            await posting
        except (aiohttp.ClientError, RuntimeError, AssertionError):
            pass  # A's answer never came: it was killed
        [incident] = await client.zrange(keys.incidents(), 0, -1)

        async def published() -> bool:  # every delivery written (watched in Redis, not asked of B)
            return int(await client.scard(keys.deliveries(incident))) == sum(expected) + 4

        await wait_for(published, 120, "B finishing the publication", every=0.05)
        to_published = time.perf_counter() - killed
        await fleet.everyone_reached(b, incident, 600, since=before)
        to_sent = time.perf_counter() - killed
        timeline = (await b.get(f"/api/incidents/{incident}"))["timeline"]
        published_events = sum(1 for e in timeline if e["kind"] == "script_sent")
        counts = await fleet.losses_and_duplicates(b, incident)
    finally:
        await client.aclose()
        a.stop()
        b.stop()
    return {"written_at_kill": written, "of": sum(expected) + 4, "published_after_kill_s": to_published,
            "sent_after_kill_s": to_sent, "script_sent_events": published_events, **counts}


async def ack_storm(fleet: Fleet, kind: str, replies: int, clients: int, profile: str | None = None) -> dict[str, Any]:
    """A real incident and a drill to the same 10,000; then every person replies: half a
    bare "1" (the newest message: the drill's), half "1 CODE" of the real one."""
    service = fleet.service(fleet.store_url(kind, f"storm-{uuid.uuid4().hex[:6]}"), f"storm-{kind}",
                            **fanout_env())
    await service.start()
    expected = fleet.expected()
    real = await trigger(service)
    await wait_for(lambda: _final(service, real, expected), 600, "the real script delivered", every=1.0)
    drill = await trigger(service, drill=True)
    # the drill's receipts too: the storm is measured alone, not beside a fan-out's callbacks
    await wait_for(lambda: _final(service, drill, expected), 600, "the drill's script delivered", every=1.0)
    real_code = (await service.get(f"/api/incidents/{real}"))["code"]
    people = [(pid, phone) for pid, phone, _ in fleet.in_scope() if phone][:replies]
    random.Random(5).shuffle(people)
    url = f"{service.url}/hooks/twilio/inbound"
    # Signed bodies made before the clock starts, sent over kept-alive connections by the
    # sandbox's own lean poster: the load generator shares this 2-core machine, and what
    # is measured is the service's work, not the generator's.
    requests = []
    for i, (_, phone) in enumerate(people):
        params = {"From": phone, "To": SENDER, "Body": "1" if i % 2 == 0 else f"1 {real_code}",
                  "AccountSid": ACCOUNT_SID, "MessageSid": f"SM{i:032x}", "NumSegments": "1"}
        requests.append((urlencode(params).encode(), {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, params),
                                                       "Content-Type": "application/x-www-form-urlencoded"}))
    poster = WebhookPoster(clients)
    target = URL(url)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    spy = None
    if profile:  # py-spy on the service while the replies arrive (collapsed stacks)
        assert service.proc is not None
        spy = await asyncio.create_subprocess_exec("py-spy", "record", "--format", "raw", "--rate", "200",
                                                   "-o", f"{profile}-{kind}.txt", "--pid", str(service.proc.pid),
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1)

    gate = asyncio.Semaphore(clients)  # each client sends its next reply when the last one was answered

    async def reply(body: bytes, headers: dict[str, str]) -> None:
        async with gate:
            started = time.perf_counter()
            status, _ = await poster.post(target, body, headers)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(reply(body, headers) for body, headers in requests))
    wall = time.perf_counter() - started
    poster.close()
    if spy is not None:
        spy.send_signal(2)
        await spy.wait()
    bare = {pid for i, (pid, _) in enumerate(people) if i % 2 == 0}
    coded = {pid for i, (pid, _) in enumerate(people) if i % 2 == 1}
    drill_board = await service.get(f"/api/incidents/{drill}/deliveries")
    real_board = await service.get(f"/api/incidents/{real}/deliveries")
    # right incident: the drill has the bare ones' acks and no one else's, the real one the coded ones'
    drill_acked = set(p for p, _ in people) - set(drill_board["not_acknowledged"])
    real_acked = set(p for p, _ in people) - set(real_board["not_acknowledged"])
    service.stop()
    return {"store": kind, "replies": len(people), "clients": clients, "wall_s": wall,
            "per_s": len(people) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "max_ms": max(latencies) * 1000,
            "statuses": statuses, "right_incident": drill_acked == bare and real_acked == coded,
            "drill_acks": len(drill_acked), "real_acks": len(real_acked)}


async def _final(service: Any, incident: str, expected: tuple[int, int]) -> bool:
    return converged(await board(service, incident), expected)


async def intake_burst(fleet: Fleet, clients: int, requests: int, batch: int) -> dict[str, Any]:
    """`clients` at once posting complaints to one instance on Redis."""
    service = fleet.service(fleet.store_url("redis", f"burst-{uuid.uuid4().hex[:6]}"), "burst", **fanout_env())
    await service.start()
    statuses: dict[int, int] = {}
    now = time.time()
    async with aiohttp.ClientSession(headers=service.headers,
                                     connector=aiohttp.TCPConnector(limit=clients)) as session:
        async def client(c: int) -> None:
            for r in range(requests):
                items = [{"id": f"b{c}-{r}-{k}", "channel": "app", "category": "broadband", "region": "ningbo",
                          "received_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))}
                         for k in range(batch)]
                async with session.post(f"{service.url}/api/complaints", json=items) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        wall = time.perf_counter() - started
    service.stop()
    total = clients * requests
    return {"clients": clients, "requests": total, "errors": total - statuses.get(200, 0), "statuses": statuses,
            "complaints_per_s": total * batch / wall}


async def fan_out_with(fleet: Fleet, instances: int) -> dict[str, Any]:
    """The 10,000 x 2 fan-out by `instances` services sharing one Redis."""
    url = fleet.store_url("redis", f"inst{instances}-{uuid.uuid4().hex[:6]}")
    services = [fleet.service(url, f"inst{instances}-{i}", **fanout_env(COORDINATOR_SMS_CONCURRENCY=250))
                for i in range(instances)]
    for service in services:
        await service.start()
    expected = fleet.expected()
    before = await fleet.total()
    started = time.perf_counter()
    incident = await trigger(services[0])
    await fleet.everyone_reached(services[0], incident, 600, since=before, every=0.05)
    seconds = time.perf_counter() - started
    for service in services:
        service.stop()
    return {"instances": instances, "messages": sum(expected), "seconds": seconds, "per_s": sum(expected) / seconds}


async def redis_killed_during_intake(fleet: Fleet, total: int) -> dict[str, Any]:
    """redis-server SIGKILLed and started again while 20 clients post; every complaint
    answered 200 must be there afterwards (appendonly yes, appendfsync everysec)."""
    prefix = f"sigkill-{uuid.uuid4().hex[:6]}"
    service = fleet.service(fleet.store_url("redis", prefix), "sigkill", **fanout_env())
    await service.start()
    redis = fleet.durable_redis()
    answered: set[str] = set()
    refused = 0
    batch, clients = 100, 20
    async with aiohttp.ClientSession(headers=service.headers) as session:
        async def client(c: int) -> None:
            nonlocal refused
            for r in range(total // batch // clients):
                items = [{"id": f"k{c}-{r}-{k}", "channel": "app", "category": "billing", "region": "ningbo",
                          "received_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())}
                         for k in range(batch)]
                while True:
                    try:
                        async with session.post(f"{service.url}/api/complaints", json=items) as resp:
                            await resp.read()
                            if resp.status == 200:
                                answered.update(i["id"] for i in items)
                                break
                            refused += 1
                    except aiohttp.ClientError:
                        refused += 1
                    await asyncio.sleep(0.05)

        posting = asyncio.gather(*(client(c) for c in range(clients)))
        await asyncio.sleep(1.0)
        redis.kill()
        down = time.perf_counter()
        await asyncio.sleep(1.0)
        redis.start()
        await posting
        recovered = time.perf_counter() - down
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    kept = int(await client.get(RedisKeys(f"{prefix}:").complaint_count()) or 0)
    await client.aclose()
    service.stop()
    return {"answered": len(answered), "stored": kept, "lost": len(answered) - kept, "refused_meanwhile": refused,
            "until_all_answered_s": recovered}
