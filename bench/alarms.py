"""Alarms in (issue 21): from an Alertmanager `firing` to the first script SMS of its
incident. Run by hand:

    .venv/bin/python -m bench.alarms [--trials 100] [--no-write]

A real `coordinator serve` (its own process, the shipped samples with their alerts.yaml,
a fresh SQLite store, the outbox worker on) sends SMS with the real twilio client to the
project's Twilio sandbox and email to its SMTP inbox, both running in this process on
loopback. Each trial POSTs one Alertmanager webhook (payload version 4) with a
BaseStationDown alert for one of the three cities in turn, carrying a unique site name
that the mobile-outage script puts in `affected_area`. The latency runs from the moment
before the POST to the `date_created` the sandbox stamped on the first SMS holding that
site name and "统一口径v1" (script version 1, not a role notice). Then the trial sends
the alert `resolved` (the sample rule resolves the incident when its alarms cleared,
which sends the stand-down) and waits until the sandbox has been quiet for half a
second, so that no trial's SMS competes with the next one's. Two warm-up trials are not
counted. The result is printed and written as the "## Alarms in (issue 21)" section of
bench/RESULTS.md (replacing an earlier one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.fanout.latency import percentile
from bench.machine import describe
from coordinator.sandbox import Delivery, SmtpInbox, TwilioSandbox

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
HEADING = "## Alarms in (issue 21)"
SID, TOKEN, FROM = "AC" + "a1" * 16, "bench-alarm-sandbox-token", "+15005550006"
AM_TOKEN = "bench-alertmanager-token-0123"
ADMIN = "bench-admin-token-0123456789"
CITIES = ("HZ", "NB", "WZ")
TARGET_P99 = 1.0
WARMUP = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook(i: int, status: str) -> dict[str, Any]:
    labels = {"alertname": "BaseStationDown", "severity": "critical", "city": CITIES[i % len(CITIES)],
              "site_name": site(i)}
    return {"version": "4", "groupKey": '{}:{alertname="BaseStationDown"}', "status": status,
            "receiver": "coordinator", "groupLabels": {"alertname": "BaseStationDown"}, "commonLabels": labels,
            "commonAnnotations": {"summary": "基站退服"}, "externalURL": "http://alertmanager:9093",
            "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "基站退服"},
                        "startsAt": datetime.now(UTC).isoformat(), "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus:9090/graph", "fingerprint": f"bench{i:06d}"}]}


def site(i: int) -> str:
    return f"压测站{i:05d}号"


async def quiet(sandbox: TwilioSandbox, seconds: float = 0.5, limit: float = 60.0) -> None:
    """Until the sandbox took no new message for `seconds`."""
    deadline = time.monotonic() + limit
    count, since = len(sandbox.messages), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if len(sandbox.messages) != count:
            count, since = len(sandbox.messages), time.monotonic()
        elif time.monotonic() - since >= seconds:
            return


async def trial(session: aiohttp.ClientSession, url: str, sandbox: TwilioSandbox, i: int) -> tuple[float, float]:
    """(firing -> first script SMS, the webhook's own answer time), in seconds."""
    marker = site(i)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    async with session.post(f"{url}/hooks/alertmanager", json=webhook(i, "firing")) as resp:
        answer = await resp.json()
        answered = time.perf_counter() - clock
    if resp.status != 200 or answer["alerts"][0]["outcome"] != "opened":
        raise SystemExit(f"trial {i}: the firing did not open an incident: {resp.status} {answer}")
    async with asyncio.timeout(30):
        while True:
            found = [m.date_created for m in sandbox.messages if marker in m.body and "统一口径v1" in m.body]
            if found:
                break
            await asyncio.sleep(0.002)
    latency = (min(found) - started).total_seconds()
    async with session.post(f"{url}/hooks/alertmanager", json=webhook(i, "resolved")) as resp:
        outcome = (await resp.json())["alerts"][0]["outcome"]
        if outcome != "resolved":
            raise SystemExit(f"trial {i}: the clear did not resolve the incident: {outcome}")
    await quiet(sandbox)
    return latency, answered


async def run(trials: int) -> dict[str, Any]:
    inbox = SmtpInbox()
    await inbox.start()
    sandbox = TwilioSandbox(SID, TOKEN, numbers=(FROM,), inbox=inbox, delivery=Delivery())
    await sandbox.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        host, smtp_port = inbox.address
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMTP_", "COORDINATOR_"))}
        env.update({"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM": FROM,
                    "COORDINATOR_TWILIO_BASE_URL": sandbox.base_url, "SMTP_HOST": host, "SMTP_PORT": str(smtp_port),
                    "COORDINATOR_ALERTMANAGER_TOKEN": AM_TOKEN, "COORDINATOR_ADMIN_TOKEN": ADMIN,
                    "COORDINATOR_PUBLIC_URL": url, "COORDINATOR_USERS_FILE": f"{tmp}/users.yaml",
                    "COORDINATOR_SUBSCRIBER_KEY": "bench", "COORDINATOR_ACK_SECRET": "bench",
                    "COORDINATOR_SESSION_KEY": "m4QGJ5TvfgSN6x0JUp0cQdF9P5OGhbhRVVXyq1ZF2Tw="})
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            service = subprocess.Popen([sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(port),
                                        "--config", str(REPO), "--store", f"sqlite:///{tmp}/alarms.db"],
                                       env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {AM_TOKEN}"}) as session:
                async with asyncio.timeout(30):
                    while True:
                        try:
                            async with session.get(f"{url}/healthz") as resp:
                                if resp.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.1)
                latencies, answers = [], []
                for i in range(trials + WARMUP):
                    latency, answered = await trial(session, url, sandbox, i)
                    if i >= WARMUP:
                        latencies.append(latency)
                        answers.append(answered)
                    print(f"trial {i:3d}{' (warm-up)' if i < WARMUP else ''}: first script SMS after "
                          f"{latency * 1000:.0f} ms (webhook answered in {answered * 1000:.0f} ms)", flush=True)
        finally:
            service.terminate()
            service.wait(10)
            output = log.read_text("utf-8", errors="replace")
        await sandbox.stop()
        await inbox.stop()
    return {"latencies": latencies, "answers": answers, "sms": len(sandbox.messages),
            "tracebacks": output.count("Traceback")}


def report(result: dict[str, Any], trials: int, seconds: float, machine: str) -> str:
    lat, ans = result["latencies"], result["answers"]
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    met = "**met**" if p99 <= TARGET_P99 else "**not met**"
    return "\n".join([
        HEADING,
        "",
        f"`.venv/bin/python -m bench.alarms --trials {trials}` ({date.today().isoformat()}, {seconds:.0f} s; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; machine speed "
        f"(bench/machine.py): {machine}). What is measured and how: the docstring of bench/alarms.py (a real "
        "`coordinator serve` on the samples and SQLite, the real twilio client to the Twilio sandbox and SMTP to "
        "the inbox over loopback, both in the benchmark's process; one Alertmanager firing at a time, resolved "
        "and left to settle before the next).",
        "",
        "| measure | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        f"| Alertmanager `firing` POST -> first script SMS at the sandbox | {p50 * 1000:.0f} ms | "
        f"{p99 * 1000:.0f} ms | {max(lat) * 1000:.0f} ms |",
        f"| the webhook's answer (incident opened, roles notified, script v1 published) | "
        f"{percentile(ans, 0.5) * 1000:.0f} ms | {percentile(ans, 0.99) * 1000:.0f} ms | {max(ans) * 1000:.0f} ms |",
        "",
        f"Target (issue 21): an Alertmanager `firing` to the first script SMS p99 <= 1 s: {met} "
        f"({len(lat)} trials; {result['sms']} SMS in all, stand-downs included; tracebacks in the service's log: "
        f"{result['tracebacks']}).",
        "",
    ])


def write(section: str) -> None:
    text = RESULTS.read_text("utf-8")
    start = text.find(HEADING)
    if start < 0:
        RESULTS.write_text(text.rstrip("\n") + "\n\n" + section, "utf-8")
        return
    end = text.find("\n## ", start + len(HEADING))
    rest = text[end + 1:] if end >= 0 else ""
    RESULTS.write_text(text[:start] + section + ("\n" + rest if rest else ""), "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    machine = describe()
    started = time.monotonic()
    result = asyncio.run(run(args.trials))
    section = report(result, args.trials, time.monotonic() - started, machine)
    print("\n" + section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
