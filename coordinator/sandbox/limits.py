"""Per-sender rate limits and injected request faults for the create-Message endpoint."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Fault = Literal["too_many_requests", "server_error", "slow"]
_WINDOW = timedelta(seconds=1)


@dataclass(frozen=True)
class RateLimit:
    """At most `per_second` messages (or segments) per sender (From, or the
    MessagingServiceSid when given) in any one-second window, by the sandbox's clock;
    over it the request is answered 429 with code 20429 and nothing is created."""

    per_second: float | None = None
    unit: Literal["messages", "segments"] = "messages"

    def __post_init__(self) -> None:
        if self.per_second is not None and self.per_second <= 0:
            raise ValueError("RateLimit.per_second must be positive")


class SenderRateLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self._limit = limit
        self._recent: dict[str, deque[tuple[datetime, int]]] = {}

    def admit(self, sender: str, segments: int, now: datetime) -> bool:
        """Count the message against `sender` and return True, or return False if it
        would exceed the limit. A message larger than the whole limit passes when the
        window is empty, so it is slow rather than impossible to send."""
        if self._limit.per_second is None:
            return True
        cost = segments if self._limit.unit == "segments" else 1
        recent = self._recent.setdefault(sender, deque())
        while recent and recent[0][0] <= now - _WINDOW:
            recent.popleft()
        if recent and sum(c for _, c in recent) + cost > self._limit.per_second:
            return False
        recent.append((now, cost))
        return True


@dataclass(frozen=True)
class Faults:
    """Shares of create requests answered badly, drawn from the seeded random source,
    one draw per request."""

    too_many_requests_rate: float = 0.0
    """Answered 429 (code 20429); nothing is created."""
    server_error_rate: float = 0.0
    """Answered 500 (code 20500) before the message is created: nothing is recorded."""
    slow_rate: float = 0.0
    """The message is created, but the answer comes only after `slow_seconds` (meant to
    outlast the client's timeout: the case where a retry would send it twice)."""
    slow_seconds: float = 30.0

    def __post_init__(self) -> None:
        rates = (self.too_many_requests_rate, self.server_error_rate, self.slow_rate)
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be non-negative and add up to at most 1")

    def draw(self, rng: random.Random) -> Fault | None:
        table: tuple[tuple[Fault, float], ...] = (
            ("too_many_requests", self.too_many_requests_rate),
            ("server_error", self.server_error_rate),
            ("slow", self.slow_rate),
        )
        roll = rng.random()
        for fault, rate in table:
            if roll < rate:
                return fault
            roll -= rate
        return None
