"""settle_heap: the collector settings of a long-running process (coordinator/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from coordinator.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_heap_freezes_what_is_alive_and_collects_the_young_generation_less_often(restored_gc: None) -> None:
    loaded = [{"person": i} for i in range(1000)]  # a catalog, say
    _, older, oldest = gc.get_threshold()
    frozen_before = gc.get_freeze_count()

    settle_heap()

    assert gc.get_freeze_count() >= frozen_before + len(loaded)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, older, oldest)
    assert not any(obj is loaded for obj in gc.get_objects())  # out of the collector's sight


def test_cyclic_garbage_is_still_collected_after_it(restored_gc: None) -> None:
    settle_heap()

    class Node:
        pass

    collected = []
    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    watch = weakref.ref(a, lambda _: collected.append(True))
    del a, b
    gc.collect(0)
    assert watch() is None and collected
