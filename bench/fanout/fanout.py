"""Targets 1, 2 and 4: the 10,000 x 2 fan-out with no rate limit (its rate, the
service's RSS), a naive sequential loop over the twilio client for comparison, and the
SMS rate limit held over a long run.

Each measurement gets a fresh SQLite store and a fresh provider process; the catalog
(the shipped samples plus the synthetic staff) is loaded once per process."""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import resource
import time
from pathlib import Path
from typing import Any

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from coordinator.config.catalog import Catalog
from coordinator.models import DeliveryStatus
from coordinator.sandbox import point_client

from .harness import Accept, RssSampler, Service
from .providers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SENDER,
    InProcess,
    Subprocess,
    reset_hwm,
    vm_kb,
)

PLAYBOOK = "broadband-outage"


def fresh_db(work: Path, stem: str) -> Path:
    n = 0
    while (work / f"{stem}-{n}.db").exists():
        n += 1
    return work / f"{stem}-{n}.db"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def naive_loop(count: int, body: str, callback_url: str | None, providers: Any) -> dict[str, Any]:
    """`await client.messages.create_async(...)` one after another: the same request the
    SMS channel makes (To, From, Body, ValidityPeriod, StatusCallback)."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=AsyncTwilioHttpClient())
    point_client(client, providers.twilio_base_url)
    extra = {"status_callback": callback_url} if callback_url else {}
    try:
        await client.messages.create_async(to="+8613600000000", from_=SENDER, body=body, validity_period=3600, **extra)
        started = time.perf_counter()
        for i in range(1, count + 1):
            await client.messages.create_async(to=f"+{8613600000000 + i}", from_=SENDER, body=body,
                                               validity_period=3600, **extra)
        elapsed = time.perf_counter() - started
    finally:
        await client.http_client.close()  # type: ignore[attr-defined]
    return {"messages": count, "seconds": elapsed, "rate": count / elapsed}


async def trigger(service: Service, region: str,
                  params: dict[str, str] | None = None) -> tuple[dict[str, Any], float, float]:
    """`params`: the script's parameters (the playbook's defaults for those not given)."""
    async with aiohttp.ClientSession(headers=service.auth) as http:
        started = time.perf_counter()
        async with http.post(f"{service.public}/api/incidents",
                             json={"playbook": PLAYBOOK, "region": region, "by": "chen-li",
                                   **({"params": params} if params else {})}) as resp:
            body = await resp.json()
            answered = time.perf_counter()
            assert resp.status == 201, body
    return body, started, answered


# Where the event loop's time goes: inclusive time of a few functions (cProfile counts a
# coroutine only while it runs, so waiting is excluded). Parts may overlap a little
# (the store calls inside a callback are in "status callbacks" and in "store").
PROFILE_PARTS: list[tuple[str, list[tuple[str, str]]]] = [
    ("event loop total", [("asyncio/base_events.py", "_run_once")]),
    ("email: MIME composition (compose_email + as_bytes)", [("coordinator/channels/email.py", "compose_email"),
                                                           ("email/message.py", "as_bytes")]),
    ("email: SMTP conversation (aiosmtplib sendmail, NOOP on checkout, connect)",
     [("aiosmtplib/smtp.py", "sendmail"), ("aiosmtplib/smtp.py", "noop"), ("coordinator/channels/email.py", "_connect")]),
    ("SMS: twilio client create_async (request, aiohttp, answer)", [("coordinator/channels/sms.py", "send_sms")]),
    ("status callbacks: whole handler (form, signature, store)", [("coordinator/web/hooks.py", "twilio_status")]),
    ("publish: creating the deliveries", [("coordinator/publication.py", "publish")]),
    ("store calls (SqliteStore, all callers)", [("coordinator/store/sqlite/", "*")]),
    ("aiosqlite thread hand-off (_execute)", [("aiosqlite/core.py", "_execute")]),
]


def breakdown(stats: pstats.Stats) -> list[tuple[str, float]]:
    raw = stats.stats  # type: ignore[attr-defined]
    out = []
    for label, wanted in PROFILE_PARTS:
        total = 0.0
        for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in raw.items():
            for suffix, name in wanted:
                if _matches(filename, suffix) and (name == "*" or func == name):
                    if name == "*" and not _outermost(func, filename, raw):
                        continue
                    total += ct
        out.append((label, total))
    return out


def _matches(filename: str, suffix: str) -> bool:
    """A file by its path's end, or any file in a folder named with a trailing "/"."""
    return suffix in filename if suffix.endswith("/") else filename.endswith(suffix)


def _outermost(func: str, filename: str, raw: dict[Any, Any]) -> bool:
    """A SqliteStore method called from outside the store (not a helper of another)."""
    for (f2, _l, _fn), (_cc, _nc, _tt, _ct, callers) in raw.items():
        if f2 == filename and _fn == func:
            return any("coordinator/store/sqlite/" not in c[0] for c in callers)
    return False


def per_second(accepts: list[Accept], origin: float, weight: str = "messages") -> list[int]:
    if not accepts:
        return []
    buckets = [0] * (int(max(a.at for a in accepts) - origin) + 1)
    for a in accepts:
        buckets[int(a.at - origin)] += a.segments if weight == "segments" else 1
    return buckets


async def fan_out(catalog: Catalog, work: Path, *, region: str = "ningbo", in_process: bool = False,
                  naive: int = 300, profile: bool = False, api_latency: float = 0.0,
                  sms_concurrency: int | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    """Trigger broadband-outage in `region` over HTTP; measure until every delivery was
    handed to a provider, then until every status callback landed. With `api_latency`
    every Twilio answer (the naive loop's too) comes that many seconds late."""
    providers = InProcess(api_latency=api_latency) if in_process else Subprocess(api_latency=api_latency)
    await providers.start()
    stem = f"fanout-{region}-{'in' if in_process else 'out'}-{api_latency:g}"
    service = Service(catalog, fresh_db(work, stem), providers, sms_concurrency=sms_concurrency)
    services = await service.start()
    result: dict[str, Any] = {"providers": providers.where, "region": region, "api_latency": api_latency,
                              "sms_concurrency": service.settings.sms_concurrency}
    try:
        hwm_before = vm_kb("VmHWM")  # includes loading the catalog
        rss_before = vm_kb("VmRSS")
        hwm_reset = reset_hwm()
        sampler = RssSampler()
        sampler.start()
        cpu0 = cpu_s()
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        body, t0, t_answer = await trigger(service, region, params)
        incident = body["id"]
        await service.drained(timeout=600)
        t_drained = time.perf_counter()
        if prof:
            prof.disable()
        cpu1 = cpu_s()
        settled = await providers.settle()
        t_settled = time.perf_counter()
        await asyncio.sleep(0.2)  # the last callbacks' handlers finish their writes
        await sampler.stop()
        # Read now: the checks below load all 20,000 deliveries at once, which is the
        # harness's doing, not the fan-out's.
        hwm_after = vm_kb("VmHWM")
        accepts = service.recorder.of(incident + ":")
        deliveries = await services.store.deliveries(incident)
        script = [d for d in deliveries if d.key.version == 1]
        statuses: dict[str, int] = {}
        for d in script:
            k = f"{d.key.channel}:{d.status.value}"
            statuses[k] = statuses.get(k, 0) + 1
        sms = [a for a in accepts if a.medium == "sms"]
        emails = [a for a in accepts if a.medium == "email"]
        first = min(a.at for a in accepts)
        last = max(a.at for a in accepts)
        v1_sms = [a.at for a in accepts if a.medium == "sms" and ":1:" in a.delivery_id]
        result.update({
            "incident": incident,
            "recipients": len({d.key.person_id for d in script}),
            "deliveries": len(deliveries),
            "script_deliveries": len(script),
            "accepted": len(accepts), "accepted_sms": len(sms), "accepted_email": len(emails),
            "not_sent": sum(1 for d in deliveries if d.status in (DeliveryStatus.queued, DeliveryStatus.failed)),
            "trigger_answer_s": t_answer - t0,
            "first_accept_s": first - t0,
            "first_v1_sms_s": (min(v1_sms) - t0) if v1_sms else None,
            "last_accept_s": last - t0,
            "drained_s": t_drained - t0,
            "callbacks_settled_s": t_settled - t0,
            "rate_from_trigger": len(accepts) / (last - t0),
            "rate_first_to_last": len(accepts) / (last - first),
            "sms_rate_from_trigger": len(sms) / (last - t0),
            "per_second": per_second(accepts, t0),
            "sms_delivered": sum(1 for d in script if d.key.channel == "sms" and d.status == DeliveryStatus.delivered),
            "statuses": statuses,
            "provider_stats": settled,
            "service_cpu_s": cpu1 - cpu0,
            "rss_before_kb": rss_before,
            "hwm_before_kb": hwm_before,
            "rss_peak_kb": sampler.peak_kb,
            "hwm_reset": hwm_reset,
            # With the reset: the peak since the fan-out started; without: since the start.
            "hwm_kb": hwm_after,
        })
        if naive:
            # Same provider process, same request shape, the script's own text.
            v1 = (await services.store.get_incident(incident)).script(1)
            assert v1 is not None
            result["naive"] = await naive_loop(naive, v1.sms, f"{service.public}/hooks/twilio/status", providers)
            result["naive"]["segments"] = v1.sms_segments
            await providers.settle()
        if prof:
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("cumulative").print_stats(40)
            result["profile"] = out.getvalue()
            result["profile_parts"] = breakdown(stats)
    finally:
        await service.stop()
        await providers.stop()
    return result


async def windowed(catalog: Catalog, work: Path, *, region: str = "ningbo", sms_rate: float = 0.0,
                   warmup: float = 2.0, window: float = 15.0) -> dict[str, Any]:
    """The same fan-out under `sms_rate`, watched for `window` seconds once `warmup`
    seconds have passed since the first SMS was accepted, then stopped (the store is
    thrown away): the achieved SMS segments and messages per second in that window."""
    providers = Subprocess()
    await providers.start()
    service = Service(catalog, fresh_db(work, f"window-{region}-{sms_rate:g}"), providers, sms_rate=sms_rate)
    await service.start()
    result: dict[str, Any] = {"region": region, "sms_rate": sms_rate, "warmup": warmup, "window": window}
    http = aiohttp.ClientSession(headers=service.auth)
    try:
        t0 = time.perf_counter()
        post = asyncio.create_task(http.post(f"{service.public}/api/incidents",
                                             json={"playbook": PLAYBOOK, "region": region, "by": "chen-li"}))
        while not any(a.medium == "sms" for a in service.recorder.accepted):
            if time.perf_counter() - t0 > 60:
                raise TimeoutError("no SMS accepted within 60 s")
            await asyncio.sleep(0.01)
        first = min(a.at for a in service.recorder.accepted if a.medium == "sms")
        start, end = first + warmup, first + warmup + window
        await asyncio.sleep(max(0.0, end - time.perf_counter()) + 0.05)
        inside = [a for a in service.recorder.accepted if start <= a.at < end]
        sms = [a for a in inside if a.medium == "sms"]
        seconds = [0] * int(window)
        for a in sms:
            k = int(a.at - start)
            if k < len(seconds):
                seconds[k] += a.segments
        result.update({
            "first_sms_s": first - t0,
            "sms": len(sms), "emails": len(inside) - len(sms),
            "segments_per_sms": sorted({a.segments for a in sms}),
            "sms_per_s": len(sms) / window,
            "segments_per_s": sum(a.segments for a in sms) / window,
            "messages_per_s": len(inside) / window,
            "per_second_segments": seconds,
            "publish_done": post.done(),
        })
        if sms_rate:
            result["error"] = result["segments_per_s"] / sms_rate - 1
    finally:
        if not post.done():
            post.cancel()
        await asyncio.gather(post, return_exceptions=True)
        await http.close()
        await service.stop(cut_short=True)
        await providers.stop()
    return result
