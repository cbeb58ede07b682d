"""The Redis client every Redis mixin works through, and how its failures are named."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StoreError
from ...models import Delivery
from .keys import RedisKeys


@asynccontextmanager
async def reachable() -> AsyncIterator[None]:
    """Turn a lost connection into StoreError (retryable); script errors pass through."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreError(f"Redis store unavailable: {exc}") from exc


class RedisConnection:
    # Several instances share it: anything may have changed since the last read.
    single_process = False

    def __init__(self, client: aioredis.Redis, bucket_seconds: int, prefix: str = "coord:") -> None:
        # decode_responses=True: every answer is str, which the client's stubs cannot express.
        self._r: Any = client
        self.bucket_seconds = bucket_seconds
        self.keys = RedisKeys(prefix)

    async def close(self) -> None:
        await self._r.aclose()

    async def ping(self) -> None:
        async with reachable():
            await self._r.ping()

    async def _docs(self, ids: Sequence[str]) -> list[Delivery]:
        """The deliveries of `ids` that exist, in order (deliveries and the SMS indexes)."""
        if not ids:
            return []
        async with reachable():
            async with self._r.pipeline(transaction=False) as pipe:
                for did in ids:
                    pipe.hget(self.keys.delivery(did), "doc")
                docs = await pipe.execute()
        return [Delivery.model_validate_json(d) for d in docs if d]
