"""Password guessing against a real `coordinator serve`: 190 wrong passwords for one user
from one client, ten at a time, then the right one; prints the answers and the CPU the
service spent (argon2 is the cost a guesser imposes). Run by hand:

    .venv/bin/python -m bench.logins
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin" / "coordinator"
PASSWORD = "correct horse battery"
PORT = 18931


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def guess(base: str, pid: int, wrong: int = 190, burst: int = 10) -> str:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies from 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        page = await (await session.get(f"{base}/login")).text()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page
        csrf = found.group(1)
        statuses: dict[int, int] = {}

        async def one(password: str) -> int:
            answer = await session.post(f"{base}/login", allow_redirects=False,
                                        data={"name": "chen-li", "password": password, "csrf_token": csrf})
            return answer.status

        start_cpu, start = cpu_seconds(pid), time.monotonic()
        for first in range(0, wrong, burst):
            for status in await asyncio.gather(*(one(f"wrong-{i:04d}") for i in range(first, first + burst))):
                statuses[status] = statuses.get(status, 0) + 1
        right = await one(PASSWORD)
        return (f"{wrong} wrong: {dict(sorted(statuses.items()))}; then the right one: {right}; "
                f"service CPU {cpu_seconds(pid) - start_cpu:.2f} s over {time.monotonic() - start:.1f} s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, COORDINATOR_USERS_FILE=f"{tmp}/users.yaml", COORDINATOR_NO_CHANNELS="1",
                   COORDINATOR_TICK_SECONDS="0")
        subprocess.run([BIN, "user", "add", "chen-li", "--role", "leader", "--password-stdin"],
                       input=f"{PASSWORD}\n".encode(), env=env, check=True, cwd=REPO, capture_output=True)
        service = subprocess.Popen([BIN, "serve", "--port", str(PORT), "--store", f"sqlite:///{tmp}/s.db",
                                    "--config", str(REPO)], env=env, cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(4)
            print(asyncio.run(guess(f"http://127.0.0.1:{PORT}", service.pid)))
        finally:
            service.terminate()
            service.wait()


if __name__ == "__main__":
    main()
