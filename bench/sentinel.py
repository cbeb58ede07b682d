"""Redis Sentinel failover under intake, measured (issue 21; results in bench/RESULTS.md,
"Redis Sentinel failover (issue 21)").

    .venv/bin/python -m bench.sentinel [--runs 3] [--clients 8] [--replicas 2] [--after 8]

Each run starts a fresh deployment (tests/sentinel_cluster.py: a primary, `--replicas`
replicas, three sentinels, quorum 2, down-after 1 s, the durability settings of
docs/ops/redis-ha.md) and a real `coordinator serve` on it (sandbox providers, so that
it is ready); `--clients` clients POST batches of 5 complaints in a loop; after 2 s the
primary is killed with SIGKILL; the clients go on for `--after` seconds more. Reported:
complaints POSTed, answered 200, answered 503 (and anything else), found on the promoted
primary afterwards (of those answered 200: lost), when writes resumed (the first request
sent after the kill that was answered 200; and the longest gap between two answers 200),
and how long /readyz said not ready.

`--cost` measures what confirming each write by a replica (WAIT) costs instead: the same
writes through the store with `wait_replicas=1` and `=0` (single complaints one at a
time and 16 at once, batches of 100 four at once)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import aiohttp

from coordinator.sandbox import Delivery, SmtpInbox, TwilioSandbox
from coordinator.store import Store, open_store
from coordinator.store.redis.keys import RedisKeys
from tests.conftest import REPO
from tests.redis_server import free_port
from tests.sentinel_cluster import SentinelCluster
from tests.service_process import ServeProcess
from tests.store.builders import complaint
from tests.test_faults import FROM, SID, TOKEN, Providers


@dataclass
class Run:
    posted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    answered: set[str] = field(default_factory=set)
    found: int = 0
    resumed_after: float | None = None
    longest_gap: float = 0.0
    not_ready: float = 0.0
    failover: float = 0.0
    refusals: Counter[str] = field(default_factory=Counter)  # why the service answered 503 (its log)


async def one_run(tmp: Path, providers: Providers, clients: int, replicas: int, after: float) -> Run:
    cluster = SentinelCluster(tmp / "sentinel", replicas=replicas).start()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    service = ServeProcess(REPO, cluster.url(query=f"prefix={prefix}"), free_port(), tmp / "serve.log",
                           **providers.env())
    run = Run()
    oks: list[tuple[float, float]] = []  # (sent, answered) of every 200
    ready: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def post(worker: int) -> None:
        n = 0
        async with aiohttp.ClientSession(headers=service.headers) as session:
            while not stop.is_set():
                now = datetime.now(timezone.utc).isoformat()
                items = [{"id": f"w{worker}-{n}-{k}", "received_at": now, "channel": "hotline",
                          "category": "broadband", "region": "ningbo"} for k in range(5)]
                n += 1
                sent = time.monotonic()
                try:
                    async with session.post(f"{service.url}/api/complaints", json=items,
                                            timeout=aiohttp.ClientTimeout(total=60)) as resp:
                        status = resp.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = 0
                run.posted += len(items)
                run.statuses[status] += len(items)
                if status == 200:
                    run.answered.update(i["id"] for i in items)
                    oks.append((sent, time.monotonic()))
                await asyncio.sleep(0.01)

    async def probe() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(f"{service.url}/readyz", timeout=aiohttp.ClientTimeout(total=10)) as r:
                        ready.append((time.monotonic(), r.status))
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ready.append((time.monotonic(), 0))
                await asyncio.sleep(0.05)

    try:
        await service.start()
        tasks = [asyncio.create_task(post(w)) for w in range(clients)] + [asyncio.create_task(probe())]
        await asyncio.sleep(2.0)
        old = await asyncio.to_thread(cluster.kill_primary)
        killed = time.monotonic()
        new = await asyncio.to_thread(cluster.wait_for_failover, old)
        run.failover = time.monotonic() - killed
        await asyncio.sleep(after)
        stop.set()
        await asyncio.gather(*tasks)
        started_after = [done for sent, done in oks if sent > killed]
        run.resumed_after = min(started_after) - killed if started_after else None
        answers = sorted(done for _, done in oks)
        run.longest_gap = max((b - a for a, b in zip(answers, answers[1:])), default=0.0)
        down = [at for at, status in ready if at > killed and status != 200]
        run.not_ready = (max(down) - min(down) + 0.05) if down else 0.0
        keys = RedisKeys(prefix)
        with new.client() as primary:
            with primary.pipeline(transaction=False) as pipe:
                for cid in run.answered:
                    pipe.exists(keys.complaint(cid))
                run.found = sum(int(x) for x in pipe.execute())
    finally:
        stop.set()
        service.stop()
        cluster.stop()
    run.refusals = Counter(line.split("store unavailable: ", 1)[1][:120] for line in service.output().splitlines()
                           if "store unavailable: " in line)
    return run


async def failovers(args: argparse.Namespace) -> None:
    inbox = SmtpInbox()
    await inbox.start()
    sandbox = TwilioSandbox(SID, TOKEN, numbers=(FROM,), seed=7, inbox=inbox, delivery=Delivery())
    await sandbox.start()
    try:
        print("| run | POSTed | 200 | 503 | other | answered 200 found after | lost | failover (s) | writes resumed (s) "
              "| longest gap (s) | /readyz not ready (s) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for i in range(args.runs):
            tmp = Path(tempfile.mkdtemp(prefix="bench-sentinel-"))
            r = await one_run(tmp, Providers(sandbox, inbox), args.clients, args.replicas, args.after)
            if r.longest_gap > 5 or r.found < len(r.answered) or r.statuses[503]:
                print(f"    (logs kept in {tmp})", flush=True)  # the service's, each server's, each sentinel's
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            other = sum(n for s, n in r.statuses.items() if s not in (200, 503))
            resumed = f"{r.resumed_after:.2f}" if r.resumed_after is not None else "never"
            print(f"| {i + 1} | {r.posted} | {r.statuses[200]} | {r.statuses[503]} | {other} | {r.found} "
                  f"| {len(r.answered) - r.found} | {r.failover:.2f} | {resumed} | {r.longest_gap:.2f} "
                  f"| {r.not_ready:.2f} |", flush=True)
            for why, n in r.refusals.most_common():
                print(f"    503 x{n}: {why}", flush=True)
    finally:
        await sandbox.stop()
        await inbox.stop()


async def cost(args: argparse.Namespace) -> None:
    """Single-complaint writes through the store, one at a time and 16 at once."""
    with tempfile.TemporaryDirectory(prefix="bench-sentinel-") as tmp:
        cluster = SentinelCluster(Path(tmp), replicas=args.replicas).start()
        try:
            print("| wait_replicas | writes | one at a time: p50 / p99 (ms) | 16 at once: writes/s "
                  "| batches of 100, 4 at once: complaints/s |")
            print("| ---: | ---: | --- | ---: | ---: |")
            for wait in (0, 1):
                store = await open_store(cluster.url(query=f"prefix=cost{wait}:&wait_replicas={wait}"), 300)
                try:
                    latencies = []
                    for i in range(args.writes):
                        started = time.perf_counter()
                        await store.add_complaints([complaint(f"s{i}")])
                        latencies.append((time.perf_counter() - started) * 1000)
                    q = statistics.quantiles(latencies, n=100)
                    started = time.perf_counter()
                    counter = iter(range(args.writes))
                    await asyncio.gather(*(_singles(store, counter) for _ in range(16)))
                    rate = args.writes / (time.perf_counter() - started)
                    batches = iter(range(args.writes // 100))
                    started = time.perf_counter()
                    await asyncio.gather(*(_batches(store, batches) for _ in range(4)))
                    batched = (args.writes // 100) * 100 / (time.perf_counter() - started)
                finally:
                    await store.close()
                print(f"| {wait} | {args.writes} | {q[49]:.2f} / {q[98]:.2f} | {rate:.0f} | {batched:.0f} |", flush=True)
        finally:
            cluster.stop()


async def _singles(store: Store, numbers: Iterator[int]) -> None:
    for i in numbers:
        await store.add_complaints([complaint(f"c{i}")])


async def _batches(store: Store, numbers: Iterator[int]) -> None:
    for b in numbers:
        await store.add_complaints([complaint(f"b{b}-{k}") for k in range(100)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--after", type=float, default=8.0, help="seconds of intake after the failover")
    parser.add_argument("--cost", action="store_true", help="measure what WAIT costs instead")
    parser.add_argument("--writes", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(cost(args) if args.cost else failovers(args))


if __name__ == "__main__":
    main()
