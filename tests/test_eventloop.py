from __future__ import annotations

import asyncio

import pytest

from coordinator.eventloop import loop_factory, loop_name


def test_uvloop_when_installed_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import uvloop  # noqa: F401
        expected = "uvloop"
    except ImportError:
        expected = "asyncio"
    loop = loop_factory()()
    try:
        assert loop_name(loop) == expected
    finally:
        loop.close()
    monkeypatch.setenv("COORDINATOR_LOOP", "asyncio")
    assert loop_factory() is asyncio.new_event_loop
