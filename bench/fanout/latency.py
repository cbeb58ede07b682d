"""Target 3: from the complaint that crosses the detection threshold to the first SMS
the provider accepted, on the real system clock.

A few days of ordinary history for several streams (broadband and outage in three
regions: both have auto-approved playbooks) is loaded once into a template store
(`services.intake.submit` + `services.pipeline.catch_up()`, as the demo does). Each
round copies the template to a fresh SQLite file and starts a service on it; each trial
then posts complaints of one category and region one by one over HTTP to
/api/complaints until an incident opens. The latency runs from the start of the POST of
the complaint after which the incident existed to the moment the first SMS of that
incident (any: the role notices go first) and the first SMS of script v1 came back
accepted from the sandbox (stamped by the channel wrapper, see harness.py)."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from coordinator.config.catalog import Catalog
from coordinator.sampling import poisson

from .harness import Service
from .providers import Subprocess

CATEGORIES = ("broadband", "outage")  # broadband-outage and mobile-outage: approval auto
REGIONS = ("hangzhou", "ningbo", "wenzhou")
CHANNELS = ("hotline", "hotline", "app", "shop", "web")


def history(now: datetime, days: int, rng: random.Random) -> list[dict[str, Any]]:
    """Ordinary traffic with a daily rhythm (as in coordinator/commands/demo.py), per stream."""
    items = []
    start = now - timedelta(days=days)
    for b in range(days * 288):
        at = start + timedelta(minutes=5 * b)
        if at >= now:
            break
        hour = (at.hour + 8) % 24  # Shanghai
        for category in CATEGORIES:
            rate = (0.4 + 0.8 * (8 <= hour <= 22)) * (1.0 if category == "broadband" else 1.5)
            for region in REGIONS:
                for k in range(poisson(rng, rate)):
                    received = min(at + timedelta(seconds=rng.randrange(300)), now - timedelta(seconds=1))
                    items.append(complaint(f"hist-{category}-{region}-{b}-{k}", received, category, region, rng))
    return items


def complaint(cid: str, at: datetime, category: str, region: str, rng: random.Random,
              channel: str = "hotline") -> dict[str, Any]:
    return {"id": cid, "received_at": at.isoformat(), "channel": channel, "category": category, "region": region,
            "subscriber": f"1380000{rng.randrange(10000):04d}", "text": "家里宽带断网，光猫LOS灯红"}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def build_template(catalog: Catalog, path: Path, providers: Subprocess, days: int, seed: int,
                         smpp: bool = False) -> dict[str, Any]:
    service = Service(catalog, path, providers, tick_seconds=0, smpp=smpp)
    services = await service.start()
    rng = random.Random(seed)
    started = time.perf_counter()
    try:
        items = history(datetime.now(UTC), days, rng)
        for i in range(0, len(items), 2000):
            await services.intake.submit(list(enumerate(items[i:i + 2000], start=1)))
        await services.pipeline.catch_up()
        opened = await services.store.list_incidents()
        streams = await services.store.stream_names()
    finally:
        await service.stop()
    if opened:
        raise RuntimeError(f"the history itself opened {len(opened)} incident(s)")
    return {"complaints": len(items), "streams": len(streams), "seconds": time.perf_counter() - started}


async def trial(service: Service, http: aiohttp.ClientSession, category: str, region: str, rng: random.Random,
                tag: str, limit: int = 200, drain: bool = True) -> dict[str, Any]:
    store = service.services.store
    before = {i.id for i in await store.list_incidents()}
    url = f"{service.public}/api/complaints"
    for n in range(1, limit + 1):
        item = complaint(f"{tag}-{category}-{region}-{n}", datetime.now(UTC), category, region, rng,
                         rng.choice(CHANNELS))
        mark = len(service.recorder.accepted)
        started = time.perf_counter()
        post = asyncio.create_task(_post(http, url, item))
        # With a large audience the POST that opens the incident answers only after
        # every delivery was created, while the outbox already sends: an SMS of a new
        # incident accepted during this POST marks it as the crossing one.
        incident_id = None
        while incident_id is None and not post.done():
            fresh = [a for a in service.recorder.accepted[mark:] if a.delivery_id.split(":")[0] not in before]
            if fresh:
                incident_id = fresh[0].delivery_id.split(":")[0]
            else:
                await asyncio.sleep(0.002)
        if incident_id is None:
            await post
            new = [i for i in await store.list_incidents(open_only=True) if i.id not in before]
            if not new:
                continue
            incident_id = new[0].id
        answered = await post if drain else None
        deadline = time.perf_counter() + 60
        first_any = first_v1 = None
        while time.perf_counter() < deadline:
            sms = service.recorder.of(incident_id + ":", "sms")
            first_any = min((a.at for a in sms), default=None)
            first_v1 = min((a.at for a in sms if a.delivery_id.startswith(incident_id + ":1:")), default=None)
            if first_v1 is not None:
                break
            await asyncio.sleep(0.002)
        if drain:
            await service.drained(timeout=60, every=0.02)
        else:
            post.cancel()
            await asyncio.gather(post, return_exceptions=True)
        incident = await store.get_incident(incident_id)
        return {
            "category": category, "region": region, "complaints": n, "key": incident.surge_key,
            "post_s": None if answered is None else answered - started,
            "first_sms_s": None if first_any is None else first_any - started,
            "first_v1_sms_s": None if first_v1 is None else first_v1 - started,
            "v1_recipients": len({a.delivery_id for a in service.recorder.of(incident_id + ":1:", "sms")}),
        }
    return {"category": category, "region": region, "complaints": limit, "key": None}


async def _post(http: aiohttp.ClientSession, url: str, item: dict[str, Any]) -> float:
    async with http.post(url, json=item) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"POST /api/complaints answered {resp.status}")
    return time.perf_counter()


async def run(catalog: Catalog, work: Path, *, rounds: int = 8, days: int = 3, seed: int = 11,
              pairs: list[tuple[str, str]] | None = None, drain: bool = True, smpp: bool = False) -> dict[str, Any]:
    """`rounds` fresh stores, each with one trial per (category, region) pair in random
    order. `drain=False` (one pair, a large audience): the round ends once the first
    script SMS was accepted, and the rest of the fan-out is dropped with the store.
    `smpp`: SMS over SMPP to the sandbox SMSC (accepted: every part's submit_sm answered)."""
    pairs = pairs or [(c, g) for c in CATEGORIES for g in REGIONS]
    providers = Subprocess(smsc=smpp)
    await providers.start()
    template = work / f"latency-template{'-smpp' if smpp else ''}.db"
    try:
        built = await build_template(catalog, template, providers, days, seed, smpp)
        rng = random.Random(seed)
        trials: list[dict[str, Any]] = []
        for r in range(rounds):
            path = work / f"latency-{'smpp-' if smpp else ''}{r}.db"
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{template}{suffix}").exists():
                    shutil.copy(f"{template}{suffix}", f"{path}{suffix}")
            service = Service(catalog, path, providers, smpp=smpp)
            await service.start()
            try:
                async with aiohttp.ClientSession(headers=service.auth) as http:
                    order = list(pairs)
                    rng.shuffle(order)
                    wide: set[str] = set()
                    for i, (category, region) in enumerate(order):
                        if category in wide:
                            # The category-wide stream crossed first and opened one
                            # incident for every region: a regional surge now only
                            # attaches to it, so there is nothing to time here.
                            continue
                        result = await trial(service, http, category, region, rng, f"r{r}", drain=drain)
                        result["round"], result["nth_in_store"] = r, i + 1
                        trials.append(result)
                        if str(result.get("key") or "").endswith("/*"):
                            wide.add(category)
                        if drain:
                            await providers.settle()
            finally:
                await service.stop(cut_short=not drain)
    finally:
        await providers.stop()
    v1 = [t["first_v1_sms_s"] for t in trials if t.get("first_v1_sms_s") is not None]
    any_ = [t["first_sms_s"] for t in trials if t.get("first_sms_s") is not None]
    return {
        "history": built, "trials": trials, "opened": sum(1 for t in trials if t.get("key")),
        "v1": {"n": len(v1), "p50": percentile(v1, 0.5), "p99": percentile(v1, 0.99), "max": max(v1, default=None)},
        "any": {"n": len(any_), "p50": percentile(any_, 0.5), "p99": percentile(any_, 0.99),
                "max": max(any_, default=None)},
        "complaints_to_cross": sorted(t["complaints"] for t in trials),
    }
