"""The shape of the store: narrow protocols (at most 15 methods each, apscheduler's
`DataStore` has about 14), every backend implementing every method of every one with the
protocol's signature, and no store module over 400 lines."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import pytest

from coordinator.store import Store
from coordinator.store.protocols import PROTOCOLS
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

STORE_DIR = Path(__file__).resolve().parents[2] / "coordinator" / "store"
BACKENDS = [SqliteStore, RedisStore]


def methods(protocol: type) -> dict[str, Callable[..., Any]]:
    """The methods a protocol declares itself (not those it inherits)."""
    return {name: value for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")}


def parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_each_protocol_is_narrow(protocol: type) -> None:
    assert 0 < len(methods(protocol)) <= 15, sorted(methods(protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_each_protocol_says_what_it_raises(protocol: type) -> None:
    assert "StoreError" in (protocol.__doc__ or "")


def test_store_is_the_protocols_together() -> None:
    """Each method belongs to exactly one narrow protocol; `Store` adds only its own few."""
    seen: dict[str, str] = {}
    for protocol in PROTOCOLS:
        assert protocol in Store.__mro__
        for name in methods(protocol):
            assert name not in seen, f"{name} is in both {seen[name]} and {protocol.__name__}"
            seen[name] = protocol.__name__
    assert set(methods(Store)) == {"close", "ping"}


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("protocol", [*PROTOCOLS, Store], ids=lambda p: p.__name__)
def test_backends_implement_every_method(backend: type, protocol: type) -> None:
    for name, declared in methods(protocol).items():
        implemented = getattr(backend, name, None)
        assert implemented is not None, f"{backend.__name__} lacks {protocol.__name__}.{name}"
        assert inspect.iscoroutinefunction(implemented), f"{backend.__name__}.{name} is not async"
        assert parameters(implemented) == parameters(declared), f"{backend.__name__}.{name}: signature differs"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.__name__)
def test_backends_have_the_store_attributes(backend: type) -> None:
    assert isinstance(backend.single_process, bool)
    assert "bucket_seconds" in inspect.signature(backend).parameters


def test_no_store_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(STORE_DIR)): len(p.read_text().splitlines()) for p in STORE_DIR.rglob("*.py")}
    assert sizes and not {p: n for p, n in sizes.items() if n > 400}
