"""Ending the processes the tests start (redis-server, coordinator serve): SIGKILL, as a
crash or the OOM killer does, or a polite stop."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def kill9(proc: subprocess.Popen[Any] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill9(proc)
