"""What an SMS provider pushes over its own connection is acknowledged to it only once
the service has handled it: a handler's failure, no service to take it, or a stopping
service each fail the channel's wait, so the provider delivers it again."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.channels.pushed import Pushed


async def test_handed_over_handled_and_failures_told_back() -> None:
    pushed: Pushed[str, str] = Pushed(wait_seconds=1.0)
    seen: list[str] = []
    stop = asyncio.Event()

    async def on_message(message: str) -> None:
        if message == "bad":
            raise ValueError("cannot record it")
        seen.append(message)

    async def on_receipt(receipt: str) -> None:
        seen.append(f"receipt {receipt}")

    serving = asyncio.create_task(pushed.serve(on_receipt=on_receipt, on_message=on_message, stop=stop))
    await pushed.message("1 K7Q")
    await pushed.receipt("id:1 stat:DELIVRD")
    with pytest.raises(ValueError, match="cannot record it"):
        await pushed.message("bad")
    assert seen == ["1 K7Q", "receipt id:1 stat:DELIVRD"]
    stop.set()
    await serving
    with pytest.raises(ConnectionError):
        await pushed.message("after the stop")
    assert seen == ["1 K7Q", "receipt id:1 stat:DELIVRD"]


async def test_nobody_serving_fails_the_wait_and_the_item_is_not_handled_later() -> None:
    pushed: Pushed[str, str] = Pushed(wait_seconds=0.05)
    with pytest.raises(TimeoutError):
        await pushed.message("early")
    seen: list[str] = []
    stop = asyncio.Event()

    async def on_message(message: str) -> None:
        seen.append(message)

    async def ignore(receipt: str) -> None: ...

    serving = asyncio.create_task(pushed.serve(on_receipt=ignore, on_message=on_message, stop=stop))
    await pushed.message("later")
    stop.set()
    await serving
    assert seen == ["later"]  # "early" was given up on: the provider sends it again


async def test_receipts_are_handled_side_by_side() -> None:
    pushed: Pushed[str, str] = Pushed(wait_seconds=2.0)
    stop = asyncio.Event()
    in_flight = peak = 0
    release = asyncio.Event()

    async def on_receipt(receipt: str) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()  # a slow store write
        in_flight -= 1

    async def on_message(message: str) -> None: ...

    serving = asyncio.create_task(pushed.serve(on_receipt=on_receipt, on_message=on_message, stop=stop))
    waits = [asyncio.create_task(pushed.receipt(f"r{i}")) for i in range(10)]
    for _ in range(50):
        await asyncio.sleep(0)
    assert peak == 10  # none waited for another's write
    release.set()
    await asyncio.gather(*waits)
    stop.set()
    await serving
