"""Riding out a Sentinel failover: which Redis commands may be sent again, and a client
that sends them again (redis-py's Retry, with backoff) until the promoted replica
answers.

A command that failed is one of three kinds:
- certainly not applied: it never reached a primary (no primary known while the
  sentinels elect one, the connection refused) or the server refused it (READONLY from
  a demoted primary, NOREPLICAS under `min-replicas-to-write`, LOADING, MASTERDOWN).
  FailoverConnection raises these as StoreNotApplied; every command is sent again.
- in doubt: it was sent and the answer was lost (the primary died mid-command). Only a
  command whose repetition changes nothing is sent again (REPEATABLE, or one of the
  store's scripts in REPEATABLE_SCRIPTS); any other fails as before (StoreError: the
  caller's retry, the outbox's lease or the client's new request takes it from there).
  `SET key value NX` (a stream's surge opened once) is read back instead: our value
  there means it was applied.
- an answer: passed on.

PING and INFO are never repeated: they are the readiness probe's, which must say
"unreachable" during a failover instead of waiting it out."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from redis.asyncio.client import Pipeline, Redis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StoreNotApplied
from .complaints import _ADD_COMPLAINTS
from .deliveries import _ADD_DELIVERY, _CLAIM, _SPLIT_OUTBOX, _UPDATE_DELIVERIES
from .drills import _LEASE
from .incidents import _CLAIM_STEP, _FINISH_STEP, _RECORD_ACK

# Reads, and writes that leave the same state and an answer nobody reads when repeated.
# SET is repeatable unless NX/XX/GET make its answer a decision (open_stream_surge).
REPEATABLE = frozenset({
    "GET", "MGET", "HGET", "HMGET", "HGETALL", "HVALS", "HKEYS", "HLEN", "EXISTS", "TYPE", "TTL", "PTTL",
    "SMEMBERS", "SISMEMBER", "SCARD", "ZCARD", "ZSCORE", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE",
    "ZREVRANGEBYSCORE", "LRANGE", "LLEN", "SCAN", "DBSIZE", "WAIT", "SCRIPT EXISTS", "SCRIPT LOAD",
    "SET", "HSET", "HMSET", "ZADD", "ZREM", "SADD", "SREM", "DEL", "UNLINK", "EXPIRE", "PEXPIRE",
})
_DECIDING_SET = frozenset({"NX", "XX", "GET", "IFEQ", "IFNE", "IFDEQ", "IFDNE"})

# The store's scripts that may run twice: every write is guarded (SET NX, HSETNX,
# EXISTS, a status that only moves forward, a lease its owner renews), so the second
# run changes nothing; its answer may then say "known" / "not moved", which is what a
# client's own retry of the request would hear too. Compare-and-set scripts
# (save_incident, stream state, drill runs and cursors) and counters are not here: a
# second run would report a conflict for the caller's own write, or count twice.
REPEATABLE_SCRIPTS = frozenset(
    hashlib.sha1(source.encode()).hexdigest()
    for source in (_ADD_COMPLAINTS, _ADD_DELIVERY, _CLAIM, _UPDATE_DELIVERIES, _SPLIT_OUTBOX, _RECORD_ACK,
                   _CLAIM_STEP, _FINISH_STEP, _LEASE)
)

# The readiness probe's commands (connection.ping): sent once, never again.
_PROBES = frozenset({"PING", "INFO"})

# Replies by which a server refuses a write it did not apply (besides READONLY).
_REFUSALS = ("NOREPLICAS", "MASTERDOWN", "LOADING")


def _set_if_absent(args: Sequence[Any]) -> bool:
    """SET key value NX, nothing else (no GET, no expiry)."""
    return (str(args[0]).upper() == "SET" and len(args) == 4 and str(args[3]).upper() == "NX"
            and isinstance(args[2], str))


def repeatable(args: Sequence[Any]) -> bool:
    """Whether sending the command `args` twice leaves the store as sending it once."""
    name = str(args[0]).upper()
    if name in ("EVALSHA", "EVALSHA_RO"):
        return len(args) > 1 and str(args[1]) in REPEATABLE_SCRIPTS
    if name == "SET":
        return not any(str(a).upper() in _DECIDING_SET for a in args[3:])
    return name in REPEATABLE


def failover_retry(seconds: float) -> Retry:
    """Send again for about `seconds`: 0.05 s doubling to at most 0.5 s between tries (a
    failover on the documented timings takes 2-5 s)."""
    backoff = ExponentialBackoff(cap=0.5, base=0.05)
    waited, tries = 0.0, 0
    while waited < seconds:
        tries += 1
        waited += backoff.compute(tries)
    return Retry(backoff, tries, supported_errors=(RedisConnectionError, RedisTimeoutError, StoreNotApplied))


async def _nothing(error: Exception) -> None:
    """redis-py's failure hook: the failed connection was already closed and released."""


class FailoverConnection(SentinelManagedConnection):
    """A connection to whichever server the sentinels call the primary, telling a
    command that certainly did nothing (StoreNotApplied) from one in doubt."""

    async def connect(self) -> None:
        """Through the sentinels (a pool's new or dropped connection)."""
        try:
            await super().connect()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreNotApplied(f"no Redis primary reached: {exc}") from exc

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        """To the address known (also what redis-py does to a connection dropped
        between check-out and send): nothing of a command has gone out yet."""
        try:
            await super().connect_check_health(check_health, retry_socket_connect)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreNotApplied(f"no Redis primary reached: {exc}") from exc

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except BusyLoadingError as exc:
            await self.disconnect()
            raise StoreNotApplied(f"Redis refused the command: {exc}") from exc
        except RedisConnectionError as exc:
            if isinstance(exc.__context__, ReadOnlyError):  # a demoted primary (redis-py disconnected)
                raise StoreNotApplied(f"Redis refused the command: {exc.__context__}") from exc
            raise
        except ResponseError as exc:
            if str(exc).startswith(_REFUSALS):
                # A pipeline's other answers are still on the wire: start afresh.
                await self.disconnect()
                raise StoreNotApplied(f"Redis refused the command: {exc}") from exc
            raise


class FailoverPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (the primary looked up anew for each new connection; idle ones
    to a former primary dropped), blocking like the plain store's: past
    `max_connections` a call waits up to `timeout` for a connection. `failover`: how
    long and how often FailoverRedis sends a command again."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, *, failover: Retry, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.failover = failover


class FailoverRedis(Redis):
    """A client over a FailoverPool (Sentinel.master_for's `redis_class`) that repeats
    what may be repeated (see the module's docstring) with the pool's `failover` policy,
    each try on a connection checked out anew, so it reaches whichever primary the
    sentinels name by then. Closing it closes the sentinels' connections too."""

    connection_pool: FailoverPool

    @property
    def _failover(self) -> Retry:
        return self.connection_pool.failover

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.connection_pool.sentinel_manager.aclose()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in _PROBES:
            return await super().execute_command(*args, **options)
        if _set_if_absent(args):
            return await self._set_if_absent(*args, **options)
        return await self._sent(args, options, _deciding(lambda: repeatable(args)))

    async def _sent(self, args: Sequence[Any], options: dict[str, Any], again: Callable[[Exception], bool]) -> Any:
        return await self._failover.call_with_retry(
            lambda: super(FailoverRedis, self).execute_command(*args, **options), _nothing, is_retryable=again)

    async def _set_if_absent(self, *args: Any, **options: Any) -> Any:
        """`SET key value NX` whose answer was lost, or that found the key taken, is read
        back once a primary answers: our value there means ours was applied (True, as
        its answer would have said; an earlier try of ours may have landed late), none
        means it was lost with the former primary (sent again), another value means
        someone else's came first (None). Its answer is a decision (a stream's surge
        opened once), which sending it blindly again would get wrong."""
        for _ in range(3):
            try:
                if await self._sent(args, options, _deciding(lambda: False)):
                    return True
            except (RedisConnectionError, RedisTimeoutError):
                pass
            current = await self.execute_command("GET", args[1])
            if current is not None:
                return True if current == str(args[2]) else None
        raise StoreNotApplied(f"SET NX of {args[1]!r}: neither applied nor refused after 3 tries")

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> "FailoverPipeline":
        return FailoverPipeline(self._failover, self.connection_pool, self.response_callbacks, transaction,
                                shard_hint)


class FailoverPipeline(Pipeline):
    """A pipeline sent again whole when every command in it may be repeated (all of the
    store's are), or when it certainly did nothing."""

    def __init__(self, retry: Retry, *args: Any) -> None:
        super().__init__(*args)
        self._failover = retry

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        # Pipeline.execute empties the pipeline whatever happens: each try refills it.
        stack, scripts = list(self.command_stack), set(self.scripts)

        async def attempt() -> list[Any]:
            self.command_stack, self.scripts = list(stack), set(scripts)
            try:
                return await Pipeline.execute(self, raise_on_error)
            except BaseException:
                # A failure while loading the scripts keeps the (dropped) connection,
                # which would reconnect to the former primary: hand it back, so that the
                # next try checks one out through the sentinels.
                await self.reset()
                raise

        again = _deciding(lambda: all(repeatable(command) for command, _ in stack))
        return await self._failover.call_with_retry(attempt, _nothing, is_retryable=again)


def _deciding(in_doubt: Callable[[], bool]) -> Callable[[Exception], bool]:
    def decide(error: Exception) -> bool:
        return isinstance(error, StoreNotApplied) or in_doubt()
    return decide
