"""What happens to a sent message after the API accepted it: its status steps and the
status callbacks that report them. Planned up front, purely, from a seeded random
source, so a seed replays the same fates, duplicates and reorderings."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from coordinator.sandbox.messages import DELIVERY_ERRORS

# Codes that end a message as `failed` (never handed to the carrier); the other
# delivery errors come back in the carrier's receipt, after `sent`, as `undelivered`.
FAILED_CODES = frozenset({30008})


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value}")


@dataclass(frozen=True)
class Delivery:
    """How sent messages fare and how their status callbacks arrive.

    Delays are real seconds (the callbacks go over real HTTP); keep them small in tests.
    """

    step_delay: float = 0.05
    """Seconds before each step up to `sent` (queued, sending, sent, or failed)."""
    receipt_delay: float = 0.2
    """Seconds from `sent` to the carrier's receipt (delivered or undelivered)."""
    failures: Mapping[str, int] = field(default_factory=dict)
    """Recipient number -> delivery error code (30003..30008) it always gets."""
    failure_rate: float = 0.0
    """Share of the other recipients' messages that fail, with a code drawn from `failure_codes`."""
    failure_codes: tuple[int, ...] = tuple(DELIVERY_ERRORS)
    duplicate_rate: float = 0.0
    """Share of status callbacks POSTed twice (same payload and idempotency token)."""
    reorder_rate: float = 0.0
    """Share of messages whose final callback (e.g. delivered) is POSTed before the one
    for the step before it (e.g. sent)."""

    def __post_init__(self) -> None:
        for number, code in self.failures.items():
            if code not in DELIVERY_ERRORS:
                raise ValueError(f"unknown delivery error {code} for {number}")
        if not self.failure_codes or any(code not in DELIVERY_ERRORS for code in self.failure_codes):
            raise ValueError(f"failure_codes must be among {sorted(DELIVERY_ERRORS)}")
        for name in ("failure_rate", "duplicate_rate", "reorder_rate"):
            _check_rate(name, getattr(self, name))
        if self.step_delay < 0 or self.receipt_delay < 0:
            raise ValueError("delays must not be negative")


@dataclass(frozen=True)
class Step:
    status: str
    error_code: int | None = None


@dataclass(frozen=True)
class Apply:
    """Wait `delay` seconds, then move the message to `step`."""

    delay: float
    step: Step


@dataclass(frozen=True)
class Notify:
    """POST the status callback reporting `step`."""

    step: Step


Action = Apply | Notify


def draw_fate(to: str, delivery: Delivery, rng: random.Random) -> int | None:
    """The delivery error this recipient's message will get, or None if delivered."""
    if to in delivery.failures:
        return delivery.failures[to]
    if rng.random() < delivery.failure_rate:
        return rng.choice(delivery.failure_codes)
    return None


def plan_delivery(
    *, via_service: bool, error_code: int | None, delivery: Delivery, rng: random.Random
) -> list[Action]:
    """The steps after creation, each followed by its callback(s), in the order they happen.

    The first status (queued, or accepted with a Messaging Service) gets no callback,
    as with Twilio; with a Messaging Service, `queued` is the first step.
    """
    steps: list[tuple[float, Step]] = []
    if via_service:
        steps.append((delivery.step_delay, Step("queued")))
    steps.append((delivery.step_delay, Step("sending")))
    if error_code in FAILED_CODES:
        steps.append((delivery.step_delay, Step("failed", error_code)))
    else:
        steps.append((delivery.step_delay, Step("sent")))
        final = Step("delivered") if error_code is None else Step("undelivered", error_code)
        steps.append((delivery.receipt_delay, final))

    reorder = rng.random() < delivery.reorder_rate
    groups: list[list[Action]] = []
    for delay, step in steps:
        group: list[Action] = [Apply(delay, step), Notify(step)]
        if rng.random() < delivery.duplicate_rate:
            group.append(Notify(step))
        groups.append(group)
    if reorder:
        # Hold the last-but-one step's callbacks until the last step's have gone out.
        before, last = groups[-2], groups[-1]
        groups[-2:] = [before[:1], last + before[1:]]
    return [action for group in groups for action in group]
