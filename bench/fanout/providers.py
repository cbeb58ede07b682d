"""The provider side of the benchmark: the project's Twilio-compatible sandbox and its
SMTP inbox, either in a process of their own (the default: the machine has 2 cores, so
the service and the providers each get one and do not share an event loop) or in the
service's own event loop (`InProcess`, to see what sharing costs).

As a process: `python -m bench.fanout.providers [--step-delay S] [--receipt-delay S] [--api-latency S]
[--smsc [--smsc-throttle-rate N]]` prints one JSON line `{"twilio": base_url, "smtp": [host, port],
"smpp": port}` and then answers commands on stdin, one JSON line each on stdout:

    stats    counts (messages by status, emails, callbacks and their answers) and
             this process's CPU seconds and peak RSS
    settle   waits until every status step and callback went out, then answers stats
    count    how many messages the sandbox has and emails the inbox took (cheap: for polling)
    tally S E  per phone, the SMS whose text holds S; per mailbox, the emails whose
             Message-ID holds E (the fault benchmark's duplicates and losses: S the
             incident's code with its script version, E the incident's id)
    smsc ... the sandbox SMSC's (`--smsc`, bench/fanout/smsc.py)
    quit     stops both servers and exits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from collections import Counter
from typing import Any

from coordinator.eventloop import loop_factory
from coordinator.heap import settle_heap
from coordinator.sandbox import Delivery, SmtpInbox, TwilioSandbox

from .smsc import SmscSide

ACCOUNT_SID = "AC" + "be" * 16
AUTH_TOKEN = "bench-sandbox-token"
SENDER = "+15005550006"
# Twilio-like pacing of a message's status steps (queued -> sending -> sent) and the
# carrier's receipt (delivered); each step is a signed status callback to the service.
STEP_DELAY = 0.05
RECEIPT_DELAY = 0.2


def vm_kb(field: str, pid: str = "self") -> int:
    """VmRSS / VmHWM of a process in kB, from /proc (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5), so that a
    later VmHWM is the peak of what came after; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class InProcess:
    """Sandbox and inbox in the caller's event loop."""

    where = "in-process"

    def __init__(self, step_delay: float = STEP_DELAY, receipt_delay: float = RECEIPT_DELAY, seed: int = 7,
                 api_latency: float = 0.0, smsc: bool = False, smsc_throttle_rate: float = 0.0) -> None:
        # The SMSC's receipt comes as late as the sandbox's "delivered" callback.
        self.smsc = SmscSide(receipt_delay=2 * step_delay + receipt_delay,
                             throttle_rate=smsc_throttle_rate) if smsc else None
        self.inbox = SmtpInbox()
        # api_latency > 0: every answer comes that many seconds late, standing in for the
        # round trip to Twilio over a real network.
        self.sandbox = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, numbers=(SENDER,), seed=seed, inbox=self.inbox,
                                     delivery=Delivery(step_delay=step_delay, receipt_delay=receipt_delay),
                                     latency=api_latency)
        self.twilio_base_url = ""
        self.smtp: tuple[str, int] = ("", 0)
        self.smpp_port: int | None = None

    async def start(self) -> None:
        await self.inbox.start()
        await self.sandbox.start()
        self.twilio_base_url = self.sandbox.base_url
        self.smtp = self.inbox.address
        if self.smsc is not None:
            await self.smsc.start()
            self.smpp_port = self.smsc.port

    async def ask_smsc(self, command: str) -> dict[str, Any]:
        assert self.smsc is not None
        return await self.smsc.command(command.split())

    async def stats(self) -> dict[str, Any]:
        return collect(self.sandbox, self.inbox)

    async def settle(self) -> dict[str, Any]:
        await self.sandbox.settled()
        return collect(self.sandbox, self.inbox)

    async def tally(self, sms: str, email: str) -> dict[str, Any]:
        return tally(self.sandbox, self.inbox, sms, email)

    async def count(self) -> dict[str, Any]:
        return {"messages": len(self.sandbox.messages), "emails": sum(map(len, self.inbox.mailboxes().values()))}

    async def stop(self) -> None:
        if self.smsc is not None:
            await self.smsc.stop()
        await self.sandbox.stop()
        await self.inbox.stop()


class Subprocess:
    """Sandbox and inbox in a child process, driven over its stdin and stdout."""

    where = "separate process"

    def __init__(self, step_delay: float = STEP_DELAY, receipt_delay: float = RECEIPT_DELAY, seed: int = 7,
                 api_latency: float = 0.0, smsc: bool = False, smsc_throttle_rate: float = 0.0) -> None:
        self.args = ["--step-delay", str(step_delay), "--receipt-delay", str(receipt_delay), "--seed", str(seed),
                     "--api-latency", str(api_latency)]
        if smsc:
            self.args += ["--smsc", "--smsc-throttle-rate", str(smsc_throttle_rate)]
        self.proc: asyncio.subprocess.Process | None = None
        self.twilio_base_url = ""
        self.smtp: tuple[str, int] = ("", 0)
        self.smpp_port: int | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fanout.providers", *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**24)
        hello = await self._read()
        self.twilio_base_url = hello["twilio"]
        self.smtp = (hello["smtp"][0], int(hello["smtp"][1]))
        self.smpp_port = hello.get("smpp")

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the provider process exited")
        return dict(json.loads(line))

    async def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            return await self._read()

    async def stats(self) -> dict[str, Any]:
        return await self._ask("stats")

    async def settle(self) -> dict[str, Any]:
        return await self._ask("settle")

    async def tally(self, sms: str, email: str) -> dict[str, Any]:
        return await self._ask(f"tally {sms} {email}")

    async def count(self) -> dict[str, Any]:
        return await self._ask("count")

    async def ask_smsc(self, command: str) -> dict[str, Any]:
        return await self._ask(f"smsc {command}")

    async def stop(self) -> None:
        if self.proc is None:
            return
        try:
            await asyncio.wait_for(self._ask("quit"), 10)
        except (TimeoutError, RuntimeError, ConnectionError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()  # our own child, by its handle
            await self.proc.wait()


def tally(sandbox: TwilioSandbox, inbox: SmtpInbox, sms_mark: str, email_mark: str) -> dict[str, Any]:
    sms = Counter(m.to for m in sandbox.messages if m.direction == "outbound-api" and sms_mark in m.body)
    # The Message-ID searched for in the raw bytes: parsing 20,000 emails each time would
    # make the providers the fan-out's bottleneck.
    needle = email_mark.encode()
    email = Counter(address for address, box in inbox.mailboxes().items() for mail in box if needle in mail.raw)
    return {"sms": dict(sms), "email": dict(email)}


def collect(sandbox: TwilioSandbox, inbox: SmtpInbox) -> dict[str, Any]:
    outbound = [m for m in sandbox.messages if m.direction != "inbound"]
    answers = Counter(str(c.answer) for c in sandbox.callbacks)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "messages": len(outbound),
        "statuses": dict(Counter(m.status for m in outbound)),
        "emails": sum(len(box) for box in inbox.mailboxes().values()),
        "callbacks": len(sandbox.callbacks),
        "callback_answers": dict(answers),
        "callback_errors": dict(Counter((c.error or "")[:60] for c in sandbox.callbacks if c.answer is None)),
        "peak_concurrency": sandbox.peak_concurrency,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "hwm_kb": vm_kb("VmHWM"),
    }


async def serve(args: argparse.Namespace) -> None:
    providers = InProcess(args.step_delay, args.receipt_delay, args.seed, args.api_latency, args.smsc,
                          args.smsc_throttle_rate)
    await providers.start()
    out = sys.stdout
    out.write(json.dumps({"twilio": providers.twilio_base_url, "smtp": list(providers.smtp),
                          "smpp": providers.smpp_port}) + "\n")
    out.flush()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = (await reader.readline()).decode().strip()
            if line in ("", "quit"):
                if line == "quit":
                    out.write(json.dumps({"bye": True}) + "\n")
                    out.flush()
                return
            if line == "count":
                answer = await providers.count()
            elif line.startswith("smsc"):
                answer = await providers.ask_smsc(line.removeprefix("smsc").strip())
            elif line.startswith("tally "):
                _, sms_mark, email_mark = line.split(" ")
                answer = await providers.tally(sms_mark, email_mark)
            else:
                answer = await (providers.settle() if line == "settle" else providers.stats())
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        await providers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-delay", type=float, default=STEP_DELAY)
    parser.add_argument("--receipt-delay", type=float, default=RECEIPT_DELAY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-latency", type=float, default=0.0)
    parser.add_argument("--smsc", action="store_true", help="also run the sandbox SMSC (bench/fanout/smsc.py)")
    parser.add_argument("--smsc-throttle-rate", type=float, default=0.0, help="its submit_sm limit per second")
    settle_heap()  # the stand-in for Twilio and the relay must not be what limits the fan-out
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
