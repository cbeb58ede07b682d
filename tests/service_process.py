"""`coordinator serve` as a real process for the fault tests: started with its settings in
the environment, killed with SIGKILL (as a crash or the OOM killer does), restarted on
the same port so that providers' callbacks reach it again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from .processes import kill9, stop

ADMIN_TOKEN = "fault-admin-token-0123456789"


class ServeProcess:
    def __init__(self, config: Path, store_url: str, port: int, log: Path, **env: str) -> None:
        self.config, self.store_url, self.port, self.log = config, store_url, port, log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMTP_", "COORDINATOR_"))}
        self.env.update({
            "COORDINATOR_ADMIN_TOKEN": ADMIN_TOKEN,
            "COORDINATOR_PUBLIC_URL": self.url,
            "COORDINATOR_SUBSCRIBER_KEY": "fault-subscriber-key",
            "COORDINATOR_ACK_SECRET": "fault-ack-secret",
            **env,
        })
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.commands.cli", "serve", "--port", str(self.port), "--config",
                 str(self.config), "--store", self.store_url],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(timeout):
                while True:
                    if self.proc.poll() is not None:
                        raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
                    try:
                        async with session.get(f"{self.url}/healthz") as resp:
                            if resp.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

    def kill9(self) -> None:
        kill9(self.proc)
        self.proc = None

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            async with session.get(f"{self.url}{path}") as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            async with session.post(f"{self.url}{path}", json=body) as resp:
                return resp.status, await resp.json()
