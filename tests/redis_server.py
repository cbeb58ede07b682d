"""A real redis-server the tests start on a free port: with the persistence the README
asks for (append-only file) or without, and killed or restarted when a test wants a
fault."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from coordinator.commands.sandboxed import free_port

from .processes import kill9, stop


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Redis is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Redis not available: {reason}")


class RedisServer:
    """`durable`: appendonly yes, appendfsync everysec (the README's settings: nothing a
    client was answered is lost when the process dies); else nothing kept at all."""

    def __init__(self, workdir: Path, *, durable: bool = True, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not on PATH")
        self.binary = str(binary)
        self.workdir = workdir
        self.durable = durable
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    return self
                except (redis.ConnectionError, redis.BusyLoadingError):
                    time.sleep(0.05)
        finally:
            client.close()
        self.kill()
        unavailable(f"redis-server on port {self.port} did not start")
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does."""
        kill9(self.proc)
        self.proc = None

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()
