"""The event loop `coordinator serve` runs on: uvloop when it is installed, else asyncio's.

uvloop (libuv under the asyncio API, the loop of choice of aiohttp and uvicorn
deployments) takes about a fifth off the service's CPU per fanned-out message: its
transports, timers and selector are in C. It is optional (`pip install
coordinator[fast]`): nothing in the service depends on which loop runs, and without it
(or on a platform it does not support) the standard loop is used. COORDINATOR_LOOP=asyncio
forces the standard one."""

from __future__ import annotations

import asyncio
import os
from typing import Callable


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of new event loops: uvloop's if available and not turned off."""
    if os.environ.get("COORDINATOR_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
