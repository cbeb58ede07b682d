"""One part of the benchmark in a process of its own (so that its RSS is its own):

    python -m bench.fanout.part service --json OUT [--people N --naive N --window S --rates R,R --api-latency S]
    python -m bench.fanout.part inproc  --json OUT [--people N]
    python -m bench.fanout.part latency --json OUT [--rounds N --days N]
    python -m bench.fanout.part smpp    --json OUT --config DIR --sms-config DIR [--runs N --window N ...]
    python -m bench.fanout.part smpp-latency --json OUT [--rounds N --latency-rounds N --days N]

`service`: the 10k x 2 fan-out with the providers in their own process (rate, RSS),
the naive loop, the rate-limited windows, the window with simulated API latency, and a
few detection-to-first-SMS trials with the 10k audience. `inproc`: the same 10k x 2
fan-out with the providers in the service's event loop. `latency`: detection to first
SMS over many fresh stores with the shipped contacts. `smpp`, `smpp-latency`: issue
#18's targets for SMS over SMPP (bench/fanout/smpp.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from . import fanout, latency, smpp
from coordinator.config.catalog import load_catalog
from coordinator.eventloop import loop_factory, loop_name
from coordinator.heap import settle_heap

from .config import make_config, write_config
from .providers import vm_kb


def _load(work: Path, people: int, config: Path | None) -> tuple[Any, dict[str, Any]]:
    """The catalog: from `config` (written by the parent process, see write_config),
    else generated here."""
    target = work / "config"
    if config is None:
        target.mkdir()
        write_config(target, people)
    else:
        target = config
    started = time.perf_counter()
    catalog = load_catalog(target)
    settle_heap()  # as `coordinator serve` does once the catalog is loaded (coordinator/heap.py)
    return catalog, {"people_generated": people, "people": len(catalog.contacts.people),
                     "load_catalog_s": time.perf_counter() - started, "rss_after_catalog_kb": vm_kb("VmRSS")}


async def service_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    catalog, out = _load(work, args.people, args.config)
    out["fanout"] = await fanout.fan_out(catalog, work, naive=args.naive)
    out["windows"] = []
    for rate in args.rates:
        out["windows"].append(await fanout.windowed(catalog, work, sms_rate=rate, window=args.window))
    if args.api_latency > 0:
        # The same 10k x 2 fan-out with every Twilio answer late as over a real network,
        # and the naive loop against the same sandbox, in one run.
        out["fanout_net"] = await fanout.fan_out(catalog, work, naive=args.api_naive, api_latency=args.api_latency,
                                                 sms_concurrency=args.net_sms_concurrency)
    if args.latency_rounds:
        out["latency_10k"] = await latency.run(catalog, work, rounds=args.latency_rounds, days=args.days,
                                               pairs=[("broadband", "ningbo")], drain=False)
    if args.profile:
        # A separate, smaller fan-out under cProfile (it slows everything down): the
        # shares of the event loop's time, not the rate, are what it is for.
        small = work / "profiled"
        small.mkdir()
        profiled = make_config(small, args.profile_people)
        out["profiled"] = await fanout.fan_out(profiled, work, naive=0, profile=True)
    return out


async def inproc_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    catalog, out = _load(work, args.people, args.config)
    out["fanout"] = await fanout.fan_out(catalog, work, in_process=True, naive=0)
    return out


async def latency_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    catalog, out = _load(work, 0, None)
    out["latency"] = await latency.run(catalog, work, rounds=args.rounds, days=args.days)
    return out


async def smpp_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    mix, out = _load(work, args.people, args.config)
    sms_only = load_catalog(args.sms_config)  # the same people without an email address
    catalogs = {"sms": sms_only, "mix": mix}
    out["compare"] = await smpp.compare(catalogs, work, runs=args.runs, window=args.smpp_window)
    for mode in args.fault_configs:
        print(f"   {mode}: throttled at {args.throttle_rate:g}/s; connection dropped after {args.drop_after}",
              flush=True)
        out[f"throttled_{mode}"] = await smpp.smpp_fan_out(catalogs[mode], work, window=args.smpp_window,
                                                           throttle_rate=args.throttle_rate, measure=args.window)
        out[f"dropped_{mode}"] = await smpp.smpp_fan_out(catalogs[mode], work, window=args.smpp_window,
                                                         drop_after=args.drop_after)
    if args.latency_rounds:
        out["latency_10k"] = await latency.run(mix, work, rounds=args.latency_rounds, days=args.days,
                                               pairs=[("broadband", "ningbo")], drain=False, smpp=True)
    return out


async def smpp_latency_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    catalog, out = _load(work, 0, None)
    out["latency"] = await latency.run(catalog, work, rounds=args.rounds, days=args.days, smpp=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["service", "inproc", "latency", "smpp", "smpp-latency"])
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--config", type=Path, help="a config written by write_config (else generated here)")
    parser.add_argument("--naive", type=int, default=300)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",") if x], default=[200.0, 500.0, 1000.0])
    parser.add_argument("--api-latency", type=float, default=0.1)
    parser.add_argument("--api-naive", type=int, default=50)
    parser.add_argument("--net-sms-concurrency", type=int, default=250)
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-people", type=int, default=2000)
    parser.add_argument("--sms-config", type=Path, help="smpp: the same people, SMS only")
    parser.add_argument("--runs", type=int, default=3, help="smpp: paired runs of each path per config")
    parser.add_argument("--smpp-window", type=int, default=10)
    parser.add_argument("--throttle-rate", type=float, default=500.0)
    parser.add_argument("--drop-after", type=int, default=8000)
    parser.add_argument("--fault-configs", type=lambda s: [x for x in s.split(",") if x], default=["sms", "mix"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    run = {"service": service_part, "inproc": inproc_part, "latency": latency_part, "smpp": smpp_part,
           "smpp-latency": smpp_latency_part}[args.part]
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        started = time.perf_counter()
        with asyncio.Runner(loop_factory=loop_factory()) as runner:  # the loop serve runs on
            result = runner.run(run(args, Path(tmp)))
            result["loop"] = loop_name(runner.get_loop())
        result["part_seconds"] = time.perf_counter() - started
    args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False), "utf-8")


if __name__ == "__main__":
    main()
