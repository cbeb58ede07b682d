"""How a long-running process of the service treats the garbage collector.

Two things, done once the configuration is loaded (`coordinator serve`, the sandbox's
provider process of the benchmark):

- What is loaded then (the catalog: ~120,000 objects with 10,000 people) lives as long
  as the process, so it is frozen out of the collector's sight: otherwise every full
  collection walks it again, ~70 ms that can land between a surge and its first SMS.
- The youngest generation is collected every 20,000 net new container objects instead
  of CPython's 700. A fan-out holds thousands of sends in flight (tasks, futures, HTTP
  requests), and at 700 the collector ran ~2,500 times in a 10,000 x 2 fan-out, walking
  them again and promoting them into older generations that it then walked too: 15-20%
  of the service's CPU. At 20,000 it runs a dozen or two times (~10 ms each). What this holds
  back is only cyclic garbage, freed at the next collection: a few MB at most.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Freeze what is alive now and collect the young generation less often. Call it
    once, after loading the configuration."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
