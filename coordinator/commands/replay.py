"""`coordinator replay FILE`: complaints from a CSV or NDJSON file, into a running
service (over HTTP) or straight into the store (to load history), at a chosen speed.

With `--live`, each complaint's `received_at` becomes the moment it is sent, so a past
surge plays out again now; without it the original times are kept (history)."""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Protocol

import aiohttp

from ..clock import Clock
from ..errors import BodyError, ReplayError
from ..intake import read_json

FIELDS = ("id", "received_at", "channel", "category", "region", "subscriber", "text")


def read_complaints(path: Path) -> list[dict[str, Any]]:
    """Complaint objects from `path`: NDJSON (`.ndjson`, `.jsonl`) or CSV with a header
    naming the fields. Ordered by `received_at`, as replay needs. Whatever the file
    holds, the only error is a ReplayError naming the line."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix in (".ndjson", ".jsonl", ".json"):
                items = _ndjson_items(path, handle)
            else:
                items = _csv_items(path, handle)
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ReplayError(f"{path}: not UTF-8 (byte {exc.start})") from None
    for number, item in items:
        when = item.get("received_at")
        try:
            # The same rule as intake: ISO-8601 text, never a number taken as Unix time.
            item["_at"] = datetime.fromisoformat(when) if isinstance(when, str) else None
        except ValueError:
            item["_at"] = None
        if item["_at"] is None:
            raise ReplayError(f"{path}:{number}: received_at {_shown(when)} is not an ISO-8601 time")
        if item["_at"].tzinfo is None:
            raise ReplayError(f"{path}:{number}: received_at needs a UTC offset")
    return sorted((item for _, item in items), key=lambda i: i["_at"])


def _ndjson_items(path: Path, lines: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = read_json(line)
        except BodyError as exc:
            raise ReplayError(f"{path}:{number}: {exc}") from None
        if not isinstance(item, dict):
            raise ReplayError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
        items.append((number, item))
    return items


def _csv_items(path: Path, handle: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(handle)
    try:
        missing = [f for f in ("id", "received_at") if f not in (reader.fieldnames or [])]
        if missing:
            raise ReplayError(f"{path}:1: the header lacks {', '.join(missing)} (fields: {', '.join(FIELDS)})")
        # A row with more cells than the header has the rest under None (a list): left out.
        return [(reader.line_num, {k: v for k, v in row.items() if k and isinstance(v, str) and v})
                for row in reader]
    except csv.Error as exc:  # a NUL byte, a field past csv's size limit, an unclosed quote
        raise ReplayError(f"{path}:{reader.line_num}: not CSV: {exc}") from None


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


class Sink(Protocol):
    async def send(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        """Deliver a batch; returns the accepted/duplicate/rejected/late counts."""
        ...


class HttpSink:
    """POSTs batches as NDJSON to a running service's /api/complaints."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None = None) -> None:
        self.session = session
        self.url = url.rstrip("/") + "/api/complaints"
        self.headers = {"Content-Type": "application/x-ndjson"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def send(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        body = "\n".join(json.dumps(item, ensure_ascii=False) for item in batch)
        async with self.session.post(self.url, data=body.encode(), headers=self.headers) as resp:
            answer = await resp.json(content_type=None)
            if resp.status >= 500 or "accepted" not in answer:
                raise ReplayError(f"{self.url} answered {resp.status}: {answer}")
            # `late` is absent from the answers of services older than it.
            return {k: int(answer.get(k, 0)) for k in ("accepted", "duplicate", "rejected", "late")}


class PipelineSink:
    """Hands batches to the pipeline in this process (to load history into the store)."""

    def __init__(self, receive: Callable[[list[tuple[int, Any]]], Awaitable[Any]]) -> None:
        self.receive = receive

    async def send(self, batch: list[dict[str, Any]]) -> dict[str, int]:
        result = await self.receive(list(enumerate(batch, start=1)))
        return {"accepted": result.accepted, "duplicate": result.duplicate, "rejected": len(result.rejected),
                "late": result.late}


@dataclass
class ReplayStats:
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    late: int = 0  # accepted after their bucket was fed to surge detection


async def replay(
    items: list[dict[str, Any]],
    sink: Sink,
    *,
    clock: Clock,
    speed: float = 0.0,
    live: bool = False,
    batch_size: int = 500,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    progress: Callable[[int], None] = lambda n: None,
) -> ReplayStats:
    """Send `items` in order. `speed` is complaint time per wall time (60: an hour of
    complaints in a minute); 0 sends as fast as the sink takes them. A batch never
    spans more than a second of replay time, so pacing stays true at any speed."""
    stats = ReplayStats()
    if not items:
        return stats
    first = items[0]["_at"]
    start = clock.now()
    batch: list[dict[str, Any]] = []
    due = start

    async def flush() -> None:
        if not batch:
            return
        counts = await sink.send(batch)
        stats.sent += len(batch)
        stats.accepted += counts["accepted"]
        stats.duplicate += counts["duplicate"]
        stats.rejected += counts["rejected"]
        stats.late += counts["late"]
        progress(len(batch))
        batch.clear()

    for item in items:
        offset = (item["_at"] - first) / speed if speed > 0 else timedelta(0)
        when = start + offset
        if speed > 0 and (when - due >= timedelta(seconds=1) or len(batch) >= batch_size):
            await flush()
            wait = (when - clock.now()).total_seconds()
            if wait > 0:
                await sleep(wait)
            due = when
        elif len(batch) >= batch_size:
            await flush()
        payload = {k: v for k, v in item.items() if k != "_at"}
        if live:
            payload["received_at"] = (when if speed > 0 else clock.now()).isoformat()
        batch.append(payload)
    await flush()
    return stats
