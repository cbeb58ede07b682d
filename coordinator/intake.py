"""Complaint intake: parse a body (one object, a JSON array, or NDJSON), validate each
item on its own, store the good ones idempotently, and say why each bad one was refused.
A bad item never costs a good one its place; nothing of a refused item is stored."""

from __future__ import annotations

from . import metrics

import hmac
import json
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Iterable

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from .clock import Clock
from .errors import BodyError, JsonNumberRefused, TrailingData
from .models import Channel, Complaint
from .store import ComplaintStore

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


@dataclass(frozen=True)
class Rejection:
    line: int
    id: str | None
    field: str | None
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "field": self.field, "reason": self.reason}


@dataclass
class IntakeResult:
    accepted: int = 0
    duplicate: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    new: list[Complaint] = field(default_factory=list)
    # Accepted complaints whose subscriber complained within the repeat window.
    repeats: int = 0
    # Accepted complaints too late for surge detection (streams.Observed.late).
    late: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": len(self.rejected),
            "repeats": self.repeats,
            "late": self.late,
            "errors": [r.as_json() for r in self.rejected],
        }


@dataclass(frozen=True)
class Limits:
    max_items: int = 10_000
    max_age: timedelta = timedelta(days=90)
    max_future: timedelta = timedelta(minutes=5)
    repeat_window: timedelta = timedelta(days=7)


_NoControl = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]+$")]
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_text(value: Any) -> Any:
    """`received_at` is ISO-8601 text with a UTC offset, as documented. pydantic would
    also take a number, or a string of digits, as Unix time: a source sending epoch
    milliseconds, or local time as epoch seconds, would be stored wrong without a word."""
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        return value
    got = "a number" if isinstance(value, (int, float, str)) and not isinstance(value, bool) else type(value).__name__
    raise PydanticCustomError("iso_datetime", "not ISO-8601 text", {"got": got})


_IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]


class ComplaintIn(BaseModel):
    """What a client sends. Unknown extra fields are ignored (CRMs send plenty)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: Annotated[_NoControl, StringConstraints(min_length=1, max_length=128)]
    received_at: _IsoDatetime
    channel: Channel
    category: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    subscriber: Annotated[_NoControl, StringConstraints(max_length=64)] | None = None
    text: str = Field(default="", max_length=2000)


class SubscriberHasher:
    """Keyed hash of a subscriber number: the same subscriber always maps to the same
    value (repeat complainants), while a stolen database cannot be reversed by trying
    every phone number, as a plain hash could."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __call__(self, subscriber: str) -> str:
        return hmac.digest(self._key, normalise_subscriber(subscriber).encode(), "sha256").hex()[:32]


_SEPARATORS = re.compile(r"[\s\-()]")
_CN_MOBILE = re.compile(r"(?:\+?86)?(1\d{10})")


def normalise_subscriber(raw: str) -> str:
    """'138 0000 0000', '+86-13800000000' and '13800000000' are one subscriber."""
    compact = _SEPARATORS.sub("", raw)
    mobile = _CN_MOBILE.fullmatch(compact)
    return "+86" + mobile.group(1) if mobile else compact


# Deeper than any body this service reads (a complaint is an object of strings), and far
# below the interpreter's recursion limit, which json.loads, repr and friends would
# otherwise meet on a value nested a thousand deep.
MAX_DEPTH = 32


def read_json(text: str) -> Any:
    """json.loads for what anyone may send. Everything it cannot take is a BodyError
    `invalid_json` whose message says why, never another exception: syntax errors,
    nesting deeper than MAX_DEPTH (RecursionError in the parser, or later in whatever
    walks the value), integers past Python's 4,300-digit limit (ValueError), and NaN or
    infinite numbers (not JSON; they would be answered back as invalid JSON)."""
    try:
        value = json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    except json.JSONDecodeError as exc:
        error = TrailingData if exc.msg == "Extra data" else BodyError
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        raise error("invalid_json", f"not JSON: {exc.msg} at {where}") from None
    except RecursionError:
        raise BodyError("invalid_json", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except JsonNumberRefused as exc:
        raise BodyError("invalid_json", f"not JSON this service reads: {exc}") from None
    except ValueError:  # what else json.loads raises: the int() of an integer too long
        raise BodyError("invalid_json", "not JSON this service reads: an integer of more than "
                                        f"{sys.get_int_max_str_digits()} digits") from None
    if _deeper_than(value, MAX_DEPTH):
        raise BodyError("invalid_json", f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _not_a_number(name: str) -> Any:
    raise JsonNumberRefused(f"{name} is not a JSON number")


def _finite(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise JsonNumberRefused(f"the number {literal if len(literal) <= 24 else literal[:24] + '…'} is too large")
    return number


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def holds_lone_surrogate(text: str, value: Any) -> bool:
    """Whether a string of `value` (read from `text`) holds half of a surrogate pair: JSON
    lets `\\ud800` through, but it is no character, and UTF-8 cannot encode it (a template,
    a hash or a store then fails). Looked for only when `text` has such an escape."""
    if not _SURROGATE_ESCAPE.search(text):
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _deeper_than(value: Any, limit: int) -> bool:
    """Level by level, without recursion; only containers are visited."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(limit):
        below: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            below.extend(c for c in children if isinstance(c, (dict, list)))
        if not below:
            return False
        level = below
    return True


def parse_body(body: bytes, content_type: str, max_items: int) -> list[tuple[int, Any]]:
    """Items with their 1-based line (NDJSON) or position (array). An NDJSON line that is
    not JSON comes back as a BodyError in the item's place, so the others still count."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError("invalid_body", f"body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise BodyError("empty_body", "the body is empty: send a complaint object, an array of them, or NDJSON")
    ndjson = content_type in NDJSON_TYPES
    if not ndjson:
        try:
            data = read_json(text)
        except TrailingData as exc:
            # Several JSON documents one per line, sent as plain JSON: read as NDJSON.
            if "\n" not in text.strip():
                raise BodyError(exc.code, f"body is {exc}") from None
            ndjson = True
        except BodyError as exc:
            raise BodyError(exc.code, f"body is {exc}") from None
    if ndjson:
        items: list[tuple[int, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((number, read_json(line)))
            except BodyError as exc:
                items.append((number, exc))
    elif isinstance(data, list):
        items = list(enumerate(data, start=1))
    elif isinstance(data, dict):
        items = [(1, data)]
    else:
        raise BodyError("invalid_body", "body must be a complaint object, an array of them, or NDJSON")
    if not items:
        raise BodyError("empty_body", "body holds no complaints")
    if len(items) > max_items:
        raise BodyError("too_many_items", f"{len(items)} complaints in one request; the limit is {max_items}")
    return items


class Intake:
    def __init__(
        self,
        store: ComplaintStore,
        *,
        categories: Iterable[str],
        hasher: SubscriberHasher,
        clock: Clock,
        limits: Limits = Limits(),
    ) -> None:
        self.store = store
        self.categories = frozenset(categories)
        self.hasher = hasher
        self.clock = clock
        self.limits = limits

    async def submit(self, items: list[tuple[int, Any]], *, drill: bool = False) -> IntakeResult:
        """Check and store complaints; a drill's synthetic ones (`drill`) count into the
        drill's own streams only."""
        now = self.clock.now()
        result = IntakeResult()
        good: list[Complaint] = []
        for line, item in items:
            checked = self.check(line, item, now)
            if isinstance(checked, Rejection):
                result.rejected.append(checked)
            else:
                good.append(checked.model_copy(update={"drill": True}) if drill else checked)
        if good:
            added = await self.store.add_complaints(good, self.limits.repeat_window)
            result.new = [c for c, a in zip(good, added) if a.new]
            result.repeats = sum(a.repeat for a in added)
            result.accepted = len(result.new)
            result.duplicate = len(good) - result.accepted
        for complaint in result.new:
            metrics.COMPLAINTS.labels(complaint.category, complaint.channel.value).inc()
        for rejection in result.rejected:
            metrics.REFUSED.labels(rejection.field or "item").inc()
        return result

    def check(self, line: int, item: Any, now: datetime) -> Complaint | Rejection:
        if isinstance(item, BodyError):
            return Rejection(line, None, None, str(item))
        if not isinstance(item, dict):
            return Rejection(line, None, None, f"expected a JSON object, got {type(item).__name__}")
        raw_id = item.get("id") if isinstance(item.get("id"), str) else None
        try:
            parsed = ComplaintIn.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or None
            return Rejection(line, raw_id, name, _reason(err))
        if parsed.category not in self.categories:
            known = ", ".join(sorted(self.categories))
            return Rejection(line, parsed.id, "category", f"unknown category '{parsed.category}' (known: {known})")
        if parsed.received_at > now + self.limits.max_future:
            return Rejection(line, parsed.id, "received_at", f"received_at {parsed.received_at.isoformat()} is in the future")
        if parsed.received_at < now - self.limits.max_age:
            return Rejection(
                line, parsed.id, "received_at",
                f"received_at {parsed.received_at.isoformat()} is older than {self.limits.max_age.days} days",
            )
        # Validated again on the way in, which pydantic-core does in ~1.6 us: half what
        # `model_construct`'s Python loop over the fields takes.
        return Complaint.model_validate({
            "id": parsed.id,
            "received_at": parsed.received_at,
            "channel": parsed.channel,
            "category": parsed.category,
            "region": parsed.region,
            "subscriber_hash": self.hasher(parsed.subscriber) if parsed.subscriber else None,
            "text": parsed.text,
            "ingested_at": now,
        })


def _reason(err: Any) -> str:
    kind, loc = err["type"], err["loc"]
    name = ".".join(str(p) for p in loc)
    if kind == "missing":
        return f"missing required field '{name}'"
    if kind == "timezone_aware":
        return f"{name} needs a UTC offset, e.g. 2026-11-24T10:00:00+08:00"
    if kind == "iso_datetime":
        return (f"{name} must be an ISO-8601 time with a UTC offset, e.g. 2026-11-24T10:00:00+08:00, "
                f"not {err['ctx']['got']} (Unix time is not taken)")
    if kind == "enum":
        return f"unknown {name} {_shown(err['input'])} (known: {', '.join(c.value for c in Channel)})"
    if kind == "string_pattern_mismatch" and name == "region":
        return f"region must be a lowercase id (a-z, 0-9, '-', '_'), got {_shown(err['input'])}"
    if kind == "string_pattern_mismatch":
        return f"{name} must not contain control characters"
    return f"{name}: {err['msg']}"


def _shown(value: Any, limit: int = 80) -> str:
    """What the client sent, as a reason quotes it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
