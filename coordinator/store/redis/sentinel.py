"""The Redis store behind Sentinel: `redis+sentinel://` URLs, read into SentinelTarget,
and a store over redis-py's Sentinel client (`Sentinel.master_for`) that follows the
primary through a failover (failover.py) and answers a complaint as stored only once
a replica holds it too (connection.Confirmation). docs/ops/redis-ha.md tells the
deployment this expects.

    redis+sentinel://[[user:]password@]host:port[,host:port...]/service[/db][?option=value&...]

The password (and user) are the Redis servers' (`requirepass` / an ACL user); the
sentinels' own, if they have one, is `sentinel_password`. Options:

    prefix=coord:            namespace of every key (as for redis://)
    wait_replicas=1          replicas that must confirm a complaint before it is answered
                             as stored (WAIT); 0 answers on the primary's word alone
    wait_timeout_ms=1000     how long one WAIT waits
    failover_seconds=20      how long a command is sent again while a failover runs
    socket_timeout=5         seconds for a Redis or sentinel answer
    socket_connect_timeout=2 seconds to connect to one
    sentinel_password=...    the sentinels' `requirepass`, if any
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio.sentinel import Sentinel

from .connection import Confirmation
from .failover import FailoverConnection, FailoverPool, FailoverRedis, failover_retry
from .store import DEFAULT_CONNECTIONS, RedisStore

SCHEME = "redis+sentinel"
_FORM = f"{SCHEME}://[password@]host:port[,host:port...]/service[/db]"
_NUMBERS = {"wait_replicas": int, "wait_timeout_ms": int, "failover_seconds": float, "socket_timeout": float,
            "socket_connect_timeout": float}


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    prefix: str = "coord:"
    wait_replicas: int = 1
    wait_timeout_ms: int = 1000
    failover_seconds: float = 20.0
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 2.0

    @classmethod
    def parse(cls, url: str) -> "SentinelTarget":
        """Raises ValueError naming what is wrong (the URL itself is not repeated: it may
        hold a password)."""
        parts = urlsplit(url)
        if parts.scheme != SCHEME:
            raise ValueError(f"a Sentinel store URL starts with {SCHEME}:// ({_FORM})")
        credentials, _, hosts = parts.netloc.rpartition("@")
        username, password = _credentials(credentials)
        sentinels = tuple(_address(h) for h in hosts.split(","))
        path = [unquote(p) for p in parts.path.split("/")[1:]]
        if not path or not path[0] or len(path) > 2:
            raise ValueError(f"the Sentinel store URL names no service ({_FORM})")
        if len(path) == 2 and not path[1].isdigit():
            raise ValueError(f"the Sentinel store URL's database must be a number, not {path[1]!r}")
        options: dict[str, object] = {}
        for name, values in parse_qs(parts.query, keep_blank_values=True).items():
            value = values[-1]
            if name in ("prefix", "sentinel_password"):
                options[name] = value
            elif name in _NUMBERS:
                try:
                    options[name] = _NUMBERS[name](value)
                except ValueError:
                    raise ValueError(f"the Sentinel store URL's {name} must be a number, not {value!r}") from None
            else:
                known = ", ".join(sorted(["prefix", "sentinel_password", *_NUMBERS]))
                raise ValueError(f"unknown option {name!r} in the Sentinel store URL (known: {known})")
        target = cls(sentinels, path[0], int(path[1]) if len(path) == 2 and path[1] else 0, username, password,
                     **options)  # type: ignore[arg-type]
        target.check()
        return target

    def check(self) -> None:
        if self.wait_replicas < 0:
            raise ValueError("wait_replicas must be 0 or more")
        for name in ("wait_timeout_ms", "failover_seconds", "socket_timeout", "socket_connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0")
        if self.wait_timeout_ms >= self.socket_timeout * 1000:
            raise ValueError("wait_timeout_ms must be shorter than socket_timeout, or every WAIT times out the socket")

    @property
    def confirmation(self) -> Confirmation:
        return Confirmation(self.wait_replicas, self.wait_timeout_ms, self.failover_seconds)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis://password@host, as redis-py reads a lone userinfo
        return None, unquote(user)
    return unquote(user) or None, unquote(password)


def _address(host_port: str) -> tuple[str, int]:
    host, colon, port = host_port.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the Sentinel store URL lists {host_port!r}, not host:port ({_FORM})")
    return host.strip("[]"), int(port)


def sentinel_client(target: SentinelTarget, *, max_connections: int, pool_timeout: float = 20.0) -> FailoverRedis:
    """A client of whichever server the sentinels call `target.service`'s primary."""
    sentinel_kwargs: dict[str, object] = {"socket_timeout": target.socket_timeout,
                                          "socket_connect_timeout": target.socket_connect_timeout}
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs,
                        socket_timeout=target.socket_timeout, socket_connect_timeout=target.socket_connect_timeout)
    client = sentinel.master_for(
        target.service, redis_class=FailoverRedis, connection_pool_class=FailoverPool,
        connection_class=FailoverConnection, failover=failover_retry(target.failover_seconds),
        max_connections=max_connections, timeout=pool_timeout, db=target.db, username=target.username,
        password=target.password, decode_responses=True)
    assert isinstance(client, FailoverRedis)
    return client


async def open_sentinel_store(url: str, bucket_seconds: int, *,
                              max_connections: int = DEFAULT_CONNECTIONS) -> RedisStore:
    target = SentinelTarget.parse(url)
    client = sentinel_client(target, max_connections=max_connections)
    return await RedisStore.over(client, bucket_seconds, target.prefix, confirmation=target.confirmation)
