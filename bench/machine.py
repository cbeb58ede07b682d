"""How fast this machine runs Python right now, so that results from different sessions
can be compared: the same code on the same nominal hardware has measured ~2x apart on
different days (a shared host).

Two fixed workloads, each the best of three: integer arithmetic in a loop (CPU only),
and object churn (200,000 small dicts through json, a sort and an index: allocation and
memory traffic, closer to what the service does)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable


def _arithmetic() -> None:
    total = 0
    for i in range(10_000_000):
        total += i * i


def _churn() -> None:
    rng = random.Random(1)
    people = [{"id": f"p{i}", "phone": f"+86137{i:08d}", "teams": ["shop", "hotline"], "score": rng.random()}
              for i in range(200_000)]
    back = json.loads(json.dumps(people))
    back.sort(key=lambda p: p["score"])
    index = {p["id"]: p for p in back}
    assert len(index) == len(people)


def _best(work: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def describe(rounds: int = 3) -> str:
    return f"arithmetic {_best(_arithmetic, rounds):.2f} s, object churn {_best(_churn, rounds):.2f} s"


if __name__ == "__main__":
    print(describe())
