"""A real Redis Sentinel deployment on loopback for the tests and the bench: a primary, its
replicas and three sentinels (quorum 2), each a `redis-server` process in its own folder
on a free port, set up as docs/ops/redis-ha.md asks (append-only file, `min-replicas-to-
write 1`), with short Sentinel timings so that a failover completes in a few seconds.
The primary can be killed with SIGKILL, as a crash or the OOM killer does, and started
again (it then comes back as a replica of whoever was promoted)."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from coordinator.commands.sandboxed import free_port

from .processes import kill9, stop
from .redis_server import unavailable

SERVICE = "coord"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
# What the service's URL asks of every write it confirms (docs/ops/redis-ha.md).
DURABLE = ["--appendonly", "yes", "--appendfsync", "everysec", "--min-replicas-to-write", "1",
           "--min-replicas-max-lag", "10", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]


@dataclass
class Node:
    name: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=2)


class SentinelCluster:
    """`replicas` replicas of one primary, watched by three sentinels. Two replicas is
    what docs/ops/redis-ha.md asks for: after the primary dies one is promoted and the
    other still confirms every write (with one, writes wait for the dead primary to come
    back as a replica)."""

    def __init__(self, workdir: Path, *, replicas: int = 2, service: str = SERVICE) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not on PATH")
        self.binary = str(binary)
        self.workdir = workdir
        self.service = service
        self.servers = [self._node(f"redis-{i}") for i in range(replicas + 1)]
        self.sentinels = [self._node(f"sentinel-{i}") for i in range(3)]

    def _node(self, name: str) -> Node:
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        return Node(name, free_port(), folder)

    def url(self, db: int = 0, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/{db}" + (f"?{query}" if query else "")

    # Starting.

    def start(self) -> "SentinelCluster":
        primary, *replicas = self.servers
        self._start_server(primary, None)
        for replica in replicas:
            self._start_server(replica, primary)
        for replica in replicas:
            self._until(lambda r=replica: self._info(r).get("master_link_status") == "up", 20,
                        f"{replica.name} to sync with the primary")
        for sentinel in self.sentinels:
            self._start_sentinel(sentinel, primary)
        self._until(self._sentinels_agree, 30, "the sentinels to see each other and every replica")
        return self

    def _start_server(self, node: Node, primary: Node | None) -> None:
        follow = ["--replicaof", "127.0.0.1", str(primary.port)] if primary is not None else []
        node.proc = subprocess.Popen(
            [self.binary, "--port", str(node.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(node.workdir),
             *DURABLE, *follow],
            stdout=(node.workdir / "log").open("ab"), stderr=subprocess.STDOUT)
        self._until(lambda: self._answers(node), 10, f"{node.name} to start")

    def _start_sentinel(self, node: Node, primary: Node) -> None:
        conf = node.workdir / "sentinel.conf"  # Sentinel rewrites its config: one of its own
        conf.write_text(
            f"port {node.port}\nbind 127.0.0.1\ndir {node.workdir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {primary.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.service} 1\n")
        node.proc = subprocess.Popen([self.binary, str(conf), "--sentinel"],
                                     stdout=(node.workdir / "log").open("ab"), stderr=subprocess.STDOUT)
        self._until(lambda: self._answers(node), 10, f"{node.name} to start")

    def _sentinels_agree(self) -> bool:
        want = len(self.servers) - 1
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                try:
                    state = client.sentinel_master(self.service)
                except redis.RedisError:
                    return False
            if state["num-other-sentinels"] < len(self.sentinels) - 1 or state["num-slaves"] < want:
                return False
        return True

    # Faults.

    def primary(self) -> Node:
        """The node the sentinels call the primary now."""
        _, port = self.primary_address()
        return next(n for n in self.servers if n.port == port)

    def primary_address(self) -> tuple[str, int]:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                try:
                    found = client.sentinel_get_master_addr_by_name(self.service)
                except redis.RedisError:
                    continue
            if found:
                return str(found[0]), int(found[1])
        raise AssertionError("no sentinel names a primary")

    def kill_primary(self) -> Node:
        """SIGKILL the primary; returns it (dead) for `restart`."""
        node = self.primary()
        kill9(node.proc)
        node.proc = None
        return node

    def wait_for_failover(self, old: Node, timeout: float = 30.0) -> Node:
        """Until the sentinels name a primary other than `old` and it takes writes."""
        def promoted() -> bool:
            try:
                node = self.primary()
            except (AssertionError, StopIteration):
                return False
            return node is not old and self._info(node).get("role") == "master"
        self._until(promoted, timeout, "a replica to be promoted")
        return self.primary()

    def restart(self, node: Node) -> None:
        """Start a killed server again as it was configured; the sentinels turn it into
        a replica of the promoted primary."""
        self._start_server(node, None)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.servers]:
            stop(node.proc, timeout=5)
            node.proc = None

    # Looking.

    def _info(self, node: Node) -> dict[str, object]:
        if node.proc is None:
            return {}
        with node.client() as client:
            try:
                return dict(client.info("replication"))
            except redis.RedisError:
                return {}

    @staticmethod
    def _answers(node: Node) -> bool:
        with node.client() as client:
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

    def _until(self, check: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(check) and check():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"timed out waiting for {what} (logs in {self.workdir})")
