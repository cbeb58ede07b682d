"""Frontline staff behind the sandbox's phones, for drills in sandbox mode and tests:
each message that asks for a reply ("回复1") is answered "1" by its phone after a
delay drawn per message, unless that person is among those who never answer (or the
draw for the share who answer says no). Replies go through the sandbox's inbound
endpoint, signed, so the service sees exactly what a real reply looks like."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..clock import Clock
from .twilio import TwilioSandbox

ASKS_FOR_REPLY = "回复1"


@dataclass
class SimulatedStaff:
    sandbox: TwilioSandbox
    clock: Clock
    # The sandbox number the service sends from (replies go to it).
    number: str
    answer_share: float = 0.9
    delay: tuple[float, float] = (30.0, 600.0)  # seconds after the message, uniform
    never: frozenset[str] = frozenset()  # phones that never answer
    seed: int = 0
    _seen: set[str] = field(default_factory=set)
    _due: list[tuple[datetime, str]] = field(default_factory=list)
    replies: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def step(self) -> int:
        """Read what arrived since the last step, plan the answers, send those due by
        the clock now. Returns how many were sent."""
        for message in self.sandbox.messages:
            if message.direction == "inbound" or message.sid in self._seen:
                continue
            self._seen.add(message.sid)
            if ASKS_FOR_REPLY not in message.body or message.to in self.never:
                continue
            if self._rng.random() >= self.answer_share:
                continue
            at = message.date_created + timedelta(seconds=self._rng.uniform(*self.delay))
            self._due.append((at, message.to))
        now = self.clock.now()
        due = sorted((d for d in self._due if d[0] <= now), key=lambda d: d[0])
        self._due = [d for d in self._due if d[0] > now]
        for _, phone in due:
            await self.sandbox.reply(phone, self.number, "1")
        self.replies += len(due)
        return len(due)
