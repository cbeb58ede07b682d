"""Fault benchmark: `.venv/bin/python -m bench.faults [--parts ...] [--people N]`.

Runs the fault scenarios at full size (bench/faults/scenarios.py), prints each result
and writes the "## Faults" section of bench/RESULTS.md. See bench/faults/README.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.machine import describe

from . import scenarios
from .harness import Fleet

PARTS = ("storm", "kill", "peer", "burst", "instances", "sigkill")
RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fleet = Fleet(tmp, args.people)
    await fleet.start()
    try:
        for part in args.parts:
            print(f"-- {part}", flush=True)
            started = time.perf_counter()
            if part == "storm":
                out["storm"] = [await scenarios.ack_storm(fleet, kind, args.replies, args.clients, args.profile)
                                for kind in args.stores]
            elif part == "kill":
                out["kill"] = [await scenarios.kill_and_restart(fleet, kind) for kind in args.stores]
            elif part == "peer":
                out["peer"] = await scenarios.peer_takeover(fleet)
            elif part == "burst":
                out["burst"] = await scenarios.intake_burst(fleet, clients=200, requests=20, batch=20)
            elif part == "sigkill":
                out["sigkill"] = await scenarios.redis_killed_during_intake(fleet, total=20_000)
            elif part == "instances":
                out["instances"] = {}
                for latency in (0.1, 0.0):
                    net = Fleet(tmp, args.people)
                    net.redis = fleet.durable_redis()
                    await net.start(api_latency=latency)
                    try:
                        out["instances"][str(latency)] = [await scenarios.fan_out_with(net, n) for n in (1, 2)]
                    finally:
                        await net.stop()
            print(f"   {json.dumps(out[part], ensure_ascii=False)}", flush=True)
            print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        await fleet.stop()
        if fleet.redis is not None:
            fleet.redis.stop()
    return out


def section(results: dict[str, Any], seconds: float, machine: str) -> str:
    lines = ["## Faults", "",
             f"`.venv/bin/python -m bench.faults` ({date.today().isoformat()}, {seconds:.0f} s; {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}; machine speed: {machine}); every scenario "
             "against real `coordinator serve` processes, the providers (Twilio sandbox, SMTP inbox) in a process of "
             "their own, Redis with appendonly yes / appendfsync everysec; what is measured: bench/faults/README.md.",
             ""]
    add = lines.append
    if "kill" in results:
        add("### kill -9 during a 10,000 x 2 fan-out, then a restart")
        add("")
        add("| store | sent when killed | restart ready | all sent after restart | statuses final | SMS lost / dup | email lost / dup |")
        add("| --- | --- | --- | --- | --- | --- | --- |")
        for r in results["kill"]:
            add(f"| {r['store']} | {r['out_at_kill']:,} | {r['restart_s']:.1f} s | {r['sent_after_restart_s']:.1f} s | "
                f"{r['statuses_final_after_restart_s']:.0f} s | {r['sms_lost']} / {r['sms_duplicates']} | "
                f"{r['email_lost']} / {r['email_duplicates']} |")
        add("")
    if "peer" in results:
        r = results["peer"]
        add("### A live peer finishes a killed instance's publication (Redis)")
        add("")
        add(f"A was killed with {r['written_at_kill']:,} of {r['of']:,} deliveries written; B had written every one "
            f"{r['published_after_kill_s']:.1f} s after the kill and sent all {r['sent_after_kill_s']:.1f} s after it; "
            f"`script_sent` events: {r['script_sent_events']}; SMS lost {r['sms_lost']}, duplicated "
            f"{r['sms_duplicates']}; email lost {r['email_lost']}, duplicated {r['email_duplicates']}.")
        add("")
    if "storm" in results:
        add("### Ack storm: one reply from each of 10,000 people, signed, 50 clients at once")
        add("")
        add("| store | replies/s | p50 | p99 | max | answers | on the right incident |")
        add("| --- | --- | --- | --- | --- | --- | --- |")
        for r in results["storm"]:
            add(f"| {r['store']} | {r['per_s']:,.0f} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | "
                f"{answers(r['statuses'])} | {'yes' if r['right_incident'] else 'NO'} ({r['drill_acks']:,} drill, "
                f"{r['real_acks']:,} real) |")
        add("")
    if "burst" in results:
        r = results["burst"]
        add(f"### {r['clients']} intake clients at once on Redis")
        add("")
        add(f"{r['requests']:,} requests, {r['errors']} errors ({answers(r['statuses'])}), {r['complaints_per_s']:,.0f} "
            "complaints/s.")
        add("")
    if "instances" in results:
        add("### One instance against two on one Redis (10,000 x 2)")
        add("")
        add("| Twilio answers after | 1 instance | 2 instances | ratio |")
        add("| --- | --- | --- | --- |")
        for latency, (one, two) in results["instances"].items():
            add(f"| {float(latency) * 1000:.0f} ms | {one['per_s']:,.0f} msg/s | {two['per_s']:,.0f} msg/s | "
                f"{two['per_s'] / one['per_s']:.2f}x |")
        add("")
    if "sigkill" in results:
        r = results["sigkill"]
        add("### redis-server killed (SIGKILL) during intake")
        add("")
        add(f"{r['answered']:,} complaints answered 200, {r['stored']:,} stored after the restart: {r['lost']} lost; "
            f"{r['refused_meanwhile']} requests refused (503) while Redis was down, all retried.")
        add("")
    return "\n".join(lines)


def answers(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n:,} x {status}" for status, n in sorted(statuses.items()))


def write_section(text: str) -> None:
    old = RESULTS.read_text("utf-8") if RESULTS.exists() else ""
    start = old.find("## Faults")
    if start < 0:
        RESULTS.write_text(old.rstrip("\n") + "\n\n" + text + "\n", "utf-8")
        return
    end = old.find("\n## ", start + 1)
    RESULTS.write_text(old[:start] + text + ("\n" + old[end:] if end >= 0 else "\n"), "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=lambda s: s.split(","), default=list(PARTS))
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--replies", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--stores", type=lambda s: s.split(","), default=["sqlite", "redis"])
    parser.add_argument("--profile", help="py-spy the service during the ack storm: collapsed stacks to PREFIX-STORE.txt")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    machine = describe()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    text = section(results, time.perf_counter() - started, machine)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), "utf-8")
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
