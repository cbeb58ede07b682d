"""Issue #18's targets for SMS over SMPP: the 10,000-person fan-out through the service's
SMPP channel (one bind) to the sandbox SMSC in the provider process, as is, against an
SMSC that throttles past a rate, and against one that drops the connection mid fan-out;
the Twilio path with the same script beside it, in the same run.

Everything else is as in fanout.py: `POST /api/incidents` (broadband-outage, ningbo),
the service's own outbox worker, the SQLite store, email through aiosmtplib to the
inbox. The script's parameters are chosen so that its SMS is 2 UCS-2 segments (2
submit_sm with a concatenation header); each scenario gets a fresh store and a fresh
provider process. Receipts come back as deliver_sm 0.3 s after each submit_sm (as late
as the Twilio sandbox's "delivered" callback) and move each delivery to delivered."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from coordinator.config.catalog import Catalog
from coordinator.models import DeliveryStatus

from .fanout import cpu_s, fan_out, fresh_db, trigger
from .harness import RssSampler, Service
from .providers import Subprocess

# A shorter cause and recovery than the playbook's defaults: 2 UCS-2 segments
# (67 characters each), where the defaults make 3.
PARAMS = {"cause": "机房供电中断", "expected_recovery": "预计21时前恢复"}
SCRIPT_MARK = "【统一口径v1】"  # in the script's text, not in the role notices'
FINAL = (DeliveryStatus.delivered, DeliveryStatus.undelivered, DeliveryStatus.failed)


def rate_in(times: list[float], start: float, seconds: float) -> float:
    return sum(1 for t in times if start <= t < start + seconds) / seconds


def per_second(times: list[float], origin: float) -> list[int]:
    if not times:
        return []
    buckets = [0] * (int(max(times) - origin) + 1)
    for t in times:
        buckets[int(t - origin)] += 1
    return buckets


async def settled(service: Service, incident: str, timeout: float) -> tuple[list[Any], float]:
    """The incident's deliveries once every SMS has a final status (the receipts were
    applied), or as they are after `timeout` seconds; and how long that took."""
    started = time.perf_counter()
    while True:
        deliveries = await service.services.store.deliveries(incident)
        sms = [d for d in deliveries if d.key.medium == "sms"]
        if all(d.status in FINAL for d in sms) or time.perf_counter() - started > timeout:
            return deliveries, time.perf_counter() - started
        await asyncio.sleep(0.1)


async def smpp_fan_out(catalog: Catalog, work: Path, *, window: int | None = None, throttle_rate: float = 0.0,
                       drop_after: int | None = None, measure: float = 10.0, warmup: float = 2.0,
                       region: str = "ningbo") -> dict[str, Any]:
    """The 10k x 2 fan-out with SMS over SMPP until the outbox is empty and every SMS has
    its final status. `throttle_rate`: the SMSC answers ESME_RTHROTTLED past that many
    submit_sm a second (the rate is read in a window of `measure` seconds, `warmup`
    seconds after the first submit_sm). `drop_after`: the SMSC takes that many
    submit_sm, then reads one more, keeps it and closes the connection unanswered."""
    providers = Subprocess(smsc=True, smsc_throttle_rate=throttle_rate)
    await providers.start()
    service = Service(catalog, fresh_db(work, f"smpp-{throttle_rate:g}-{drop_after}"), providers, smpp=True,
                      smpp_window=window)
    services = await service.start()
    result: dict[str, Any] = {"window": service.settings.smpp_window, "throttle_rate": throttle_rate,
                              "drop_after": drop_after, "sms_concurrency": service.settings.sms_concurrency}
    try:
        if drop_after is not None:
            await providers.ask_smsc(f"drop-after {drop_after}")
        sampler = RssSampler()
        sampler.start()
        cpu0 = cpu_s()
        wall0 = time.time()
        body, t0, t_answer = await trigger(service, region, PARAMS)
        incident = body["id"]
        await service.drained(timeout=900)
        t_drained = time.perf_counter()
        cpu1 = cpu_s()
        smsc = await providers.ask_smsc("settle")
        deliveries, waited = await settled(service, incident, timeout=120)
        t_final = time.perf_counter()
        await sampler.stop()
        v1 = (await services.store.get_incident(incident)).script(1)
        assert v1 is not None
        tally = await providers.ask_smsc(f"tally {SCRIPT_MARK}")
        result["provider_stats"] = {k: v for k, v in (await providers.stats()).items() if k in ("cpu_s", "hwm_kb", "emails")}
        channel = service.smpp_channel
        result.update({
            "incident": incident, "segments": v1.sms_segments, "script": v1.sms,
            "trigger_answer_s": t_answer - t0, "drained_s": t_drained - t0, "final_s": t_final - t0,
            "service_cpu_s": cpu1 - cpu0, "rss_peak_kb": sampler.peak_kb,
            "session": vars(channel.stats) if channel is not None else {},
            "smsc": {k: v for k, v in smsc.items() if k != "taken_at"},
        })
        result.update(_submits([t - wall0 for t in smsc["taken_at"]], throttle_rate, warmup, measure))
        result.update(_accepted(service, incident, t0))
        result.update(_outcome(deliveries, tally))
    finally:
        await service.stop()
        await providers.stop()
    return result


def _submits(taken: list[float], throttle_rate: float, warmup: float, measure: float) -> dict[str, Any]:
    """submit_sm taken by the SMSC, in seconds from the start of the trigger."""
    first, last = min(taken), max(taken)
    out: dict[str, Any] = {
        "submits": len(taken), "first_submit_s": first, "last_submit_s": last,
        "submit_rate_from_trigger": len(taken) / last,
        "submit_rate_first_to_last": len(taken) / (last - first) if last > first else 0.0,
        "submits_per_second": per_second(taken, 0.0),
    }
    if throttle_rate:
        start = first + warmup
        out["measured_window"] = [start, min(measure, last - start)]
        out["window_rate"] = rate_in(taken, start, min(measure, last - start))
        out["window_error"] = out["window_rate"] / throttle_rate - 1
        out["window_seconds"] = [sum(1 for t in taken if start + k <= t < start + k + 1)
                                 for k in range(int(min(measure, last - start)))]
    return out


def _accepted(service: Service, incident: str, t0: float) -> dict[str, Any]:
    accepts = service.recorder.of(incident + ":")
    sms = [a.at - t0 for a in accepts if a.medium == "sms"]
    emails = [a.at - t0 for a in accepts if a.medium == "email"]
    last = max(sms + emails)
    return {"accepted_sms": len(sms), "accepted_email": len(emails), "first_sms_s": min(sms, default=None),
            "last_sms_s": max(sms, default=None), "last_accept_s": last,
            "sms_rate_from_trigger": len(sms) / max(sms) if sms else 0.0,
            "messages_rate_from_trigger": (len(sms) + len(emails)) / last}


def _outcome(deliveries: list[Any], tally: dict[str, Any]) -> dict[str, Any]:
    """Per person of the script's SMS: lost (the SMSC has no whole message for them and
    the delivery is not in doubt), duplicated (more than one), in doubt (the channel
    refused to send again), and what the SMSC holds for those in doubt."""
    script = [d for d in deliveries if d.key.version == 1 and d.key.purpose == "" and d.key.medium == "sms"]
    got: dict[str, int] = tally["messages"]
    parts: dict[str, int] = tally["parts"]
    phone = {d.key.person_id: d.address.lstrip("+") for d in script}
    doubt = [d for d in script if d.error == "in-doubt"]
    doubt_ids = {d.key.person_id for d in doubt}
    lost = [p for p, n in phone.items() if not got.get(n) and p not in doubt_ids]
    dup = [p for p, n in phone.items() if got.get(n, 0) > 1 and p not in doubt_ids]
    emails = {d.key.person_id for d in deliveries if d.key.medium == "email" and d.status != DeliveryStatus.queued}
    return {
        "script_sms": len(script),
        "statuses": dict(Counter(d.status.value for d in script)),
        "errors": dict(Counter(d.error for d in script if d.error)),
        "delivered": sum(1 for d in script if d.status == DeliveryStatus.delivered),
        "lost": len(lost), "lost_people": lost[:10],
        "duplicated": len(dup), "duplicated_people": dup[:10],
        "in_doubt": len(doubt),
        "in_doubt_whole_at_smsc": sum(1 for d in doubt if got.get(phone[d.key.person_id])),
        "in_doubt_twice_at_smsc": sum(1 for d in doubt if got.get(phone[d.key.person_id], 0) > 1),
        "in_doubt_some_parts": sum(1 for d in doubt if parts.get(phone[d.key.person_id])
                                   and not got.get(phone[d.key.person_id])),
        "in_doubt_with_email": sum(1 for d in doubt if d.key.person_id in emails),
    }


async def compare(catalogs: dict[str, Catalog], work: Path, *, runs: int, window: int | None) -> dict[str, Any]:
    """The unlimited fan-out by each path, `runs` times per config, in turns (Twilio
    first in even runs, SMPP first in odd ones), so that both see the machine alike."""
    out: dict[str, Any] = {}
    for mode, catalog in catalogs.items():
        pairs = []
        for run in range(runs):
            done: dict[str, Any] = {}
            for path in (("twilio", "smpp") if run % 2 == 0 else ("smpp", "twilio")):
                print(f"   {mode} run {run + 1}/{runs}: {path}", flush=True)
                if path == "twilio":
                    done[path] = await fan_out(catalog, work, naive=0, params=PARAMS)
                    done[path].pop("per_second", None)
                else:
                    done[path] = await smpp_fan_out(catalog, work, window=window)
            pairs.append(done)
        out[mode] = pairs
    return out
