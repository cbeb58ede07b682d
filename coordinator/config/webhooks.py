"""webhooks.yaml (optional, in the config directory): who is told of an incident's
lifecycle events by outgoing webhook, and how. Each subscriber's signing secret is read
from the environment variable the file names (never from the file itself); a missing or
malformed secret is a problem of the config, reported where the file names it.

    source: /coordinator/gd-prod          # the CloudEvents source (default /coordinator)
    max_age_hours: 24                     # undelivered this long: dropped, counted, logged
    subscribers:
      - id: crm
        url: https://crm.example.com/hooks/coordinator
        secret_env: COORDINATOR_WEBHOOK_CRM_SECRET   # whsec_<base64 of 24-64 random bytes>
        events: [cn.coordinator.incident.opened, cn.coordinator.incident.resolved]  # default: all
        timeout_seconds: 5
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ..webhooks.events import EVENT_TYPES
from .yamlsource import Reader, format_loc

FILE = "webhooks.yaml"
SECRET_PREFIX = "whsec_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubscriberEntry(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    url: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    secret_env: str
    events: list[str] | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("secret_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", value):
            raise ValueError(f"must name an environment variable (A-Z, 0-9, '_'), got {value!r}")
        return value


class WebhooksFile(_Strict):
    source: Annotated[str, StringConstraints(min_length=1, pattern=r"^\S+$")] = "/coordinator"
    max_age_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    subscribers: list[Any] = Field(default_factory=list)  # each checked on its own


@dataclass(frozen=True)
class Subscriber:
    id: str
    url: str
    secret: str = field(repr=False)  # whsec_..., as the Standard Webhooks libraries take it
    events: frozenset[str]
    timeout_seconds: float


@dataclass(frozen=True)
class Webhooks:
    source: str = "/coordinator"
    max_age_seconds: float = 24 * 3600.0
    subscribers: tuple[Subscriber, ...] = ()

    def subscriber(self, subscriber_id: str) -> Subscriber | None:
        return next((s for s in self.subscribers if s.id == subscriber_id), None)

    def wanting(self, event_type: str) -> list[Subscriber]:
        return [s for s in self.subscribers if event_type in s.events]


def secret_problem(value: str | None) -> str | None:
    """Why `value` is not a usable signing secret, or None."""
    if not value:
        return "is not set"
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not 24 <= len(key) <= 64:
        return (f"is not a Standard Webhooks secret: {SECRET_PREFIX} followed by the base64 of 24 to 64 random "
                "bytes (docs/ops/install.md says how to make one)")
    return None


def load_webhooks(root: Path, reader: Reader, environ: Mapping[str, str]) -> Webhooks:
    """webhooks.yaml under `root` (none: no subscribers); problems go to `reader.problems`."""
    path = root / FILE
    if not path.is_file():
        return Webhooks()
    doc = reader.read(path)
    parsed = reader.validate(WebhooksFile, doc.data, doc) if doc is not None else None
    if doc is None or parsed is None:
        return Webhooks()
    subscribers: list[Subscriber] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(parsed.subscribers):
        entry = reader.validate(SubscriberEntry, raw, doc, ("subscribers", i))
        if entry is None:
            continue

        def problem(key: tuple[str | int, ...], message: str) -> None:
            assert doc is not None
            reader.problems.append(doc.problem(("subscribers", i, *key),
                                               f"{format_loc(['subscribers', i, *key])}: {message}"))

        if entry.id in seen:
            problem(("id",), f"duplicate subscriber id '{entry.id}' (first at subscribers[{seen[entry.id]}])")
        seen.setdefault(entry.id, i)
        url = urlsplit(entry.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            problem(("url",), f"must be an http:// or https:// URL, got {entry.url!r}")
        for j, event_type in enumerate(entry.events or []):
            if event_type not in EVENT_TYPES:
                problem(("events", j), f"unknown event type {event_type!r} (one of {', '.join(EVENT_TYPES)})")
        why = secret_problem(environ.get(entry.secret_env))
        if why is not None:
            problem(("secret_env",), f"environment variable {entry.secret_env} {why}")
            continue
        subscribers.append(Subscriber(id=entry.id, url=entry.url, secret=environ[entry.secret_env],
                                      events=frozenset(entry.events if entry.events is not None else EVENT_TYPES),
                                      timeout_seconds=entry.timeout_seconds))
    return Webhooks(source=parsed.source, max_age_seconds=parsed.max_age_hours * 3600,
                    subscribers=tuple(subscribers))
