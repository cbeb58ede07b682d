"""The Redis client every Redis mixin works through, how its failures are named, and how
a write is confirmed by replicas before it counts as stored."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ReplicasBehind, StoreError
from ...models import Delivery
from .keys import RedisKeys


@asynccontextmanager
async def reachable() -> AsyncIterator[None]:
    """Turn a lost connection into StoreError (retryable); script errors pass through."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreError(f"Redis store unavailable: {exc}") from exc


@dataclass(frozen=True)
class Confirmation:
    """How many replicas must hold a complaint before intake answers that it is stored
    (WAIT `replicas` `timeout_ms` after the write), and for how long to try again while
    fewer do (a failover's promoted primary waits for its replica). 0: no waiting (a
    single Redis, where the append-only file is what keeps an answered write)."""

    replicas: int = 0
    timeout_ms: int = 1000
    seconds: float = 0.0

    def retry(self) -> Retry:
        tries = max(0, int(self.seconds * 1000 // max(1, self.timeout_ms)))
        return Retry(NoBackoff(), tries, supported_errors=(ReplicasBehind,))


class RedisConnection:
    # Several instances share it: anything may have changed since the last read.
    single_process = False

    def __init__(self, client: aioredis.Redis, bucket_seconds: int, prefix: str = "coord:", *,
                 confirmation: Confirmation = Confirmation()) -> None:
        # decode_responses=True: every answer is str, which the client's stubs cannot express.
        self._r: Any = client
        self.bucket_seconds = bucket_seconds
        self.keys = RedisKeys(prefix)
        self.confirmation = confirmation

    async def close(self) -> None:
        await self._r.aclose()

    async def reach(self) -> None:
        """The store answers now (a Sentinel client does not wait out a failover here)."""
        async with reachable():
            await self._r.ping()

    async def ping(self) -> None:
        """The readiness probe's: the store answers now, and, when complaints must be
        confirmed by replicas, the primary has that many (without them intake answers
        503; the service still starts, and reads work)."""
        await self.reach()
        if self.confirmation.replicas <= 0:
            return
        async with reachable():
            replication = await self._r.info("replication")
        have = int(replication.get("connected_slaves", 0))
        if have < self.confirmation.replicas:
            raise StoreError(f"the Redis primary has {have} of the {self.confirmation.replicas} replicas that must "
                             "confirm each complaint (wait_replicas): intake cannot store any")

    async def _confirmed(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a write script and answer only once `confirmation.replicas` replicas hold
        it: the script, a fence (a write every earlier write precedes, so a complaint
        another request already stored is covered too) and WAIT go in one pipeline, on
        one connection, as WAIT requires. The script must be safe to run twice
        (failover.REPEATABLE_SCRIPTS): a try the replicas did not confirm runs again.
        Raises ReplicasBehind when they never do within `confirmation.seconds`."""
        want = self.confirmation.replicas
        if want <= 0:
            async with reachable():
                return await script(keys=keys, args=args)

        async def attempt() -> Any:
            async with reachable():
                async with self._r.pipeline(transaction=False) as pipe:
                    await script(keys=keys, args=args, client=pipe)
                    pipe.set(self.keys.replication_fence(), "1")
                    pipe.wait(want, self.confirmation.timeout_ms)
                    result, _, confirmed = await pipe.execute()
            if int(confirmed) < want:
                raise ReplicasBehind(want, int(confirmed), self.confirmation.timeout_ms)
            return result

        async def again(error: Exception) -> None:
            """Nothing to undo: the next try repeats the write, which changes nothing."""

        return await self.confirmation.retry().call_with_retry(attempt, again)

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
