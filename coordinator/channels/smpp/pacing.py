"""How fast the session submits once the SMSC has throttled it (ESME_RTHROTTLED,
ESME_RMSGQFUL): SMSCs hold each bind to a rate in their contract, and answer
"throttled" past it; they do not say what the rate is.

Pure: the session passes the loop's time in. Until the first throttle nothing is
paced (the window alone bounds what is outstanding). A throttle then:

- learns the rate: what the SMSC accepted in the last second, less 3% (requests sent
  evenly at exactly the SMSC's rate still meet it in bunches, after the network and
  two event loops), and spaces every later request by it. The rate grows by 2% each
  second in which the pacing held requests back, so it follows an SMSC that allows
  more again, and is cut again at the next throttle.
- pauses the whole session, doubling from `min_pause` to `max_pause` while throttles
  follow one another with nothing accepted between them, except for the first
  throttle when already paced: that is the learned rate met in a bunch, and the cut
  is enough. A pause lets the SMSC's own window empty, so that the paced requests
  after it are taken.
- counts once per burst: the answers to requests sent before the session reacted say
  nothing new (a window of ten requests in flight is throttled ten times at once).
  "Before" is by `epoch`, which each reaction moves on, not by the clock: the loop's
  clock stands still while it writes and reads many requests in one pass.
"""

from __future__ import annotations

from collections import deque

LEARN_FROM = 10  # accepted in the last second, at least, to read a rate from them
BELOW = 0.97
GROWTH = 1.02
EARLY = 0.001  # a place this close is taken at once: the loop's timers (uvloop's) count whole milliseconds


class Pacing:
    def __init__(self, *, min_pause: float, max_pause: float) -> None:
        self._min_pause, self._max_pause = min_pause, max_pause
        self.rate: float | None = None
        """Requests per second the session holds itself to; None: not paced."""
        self._next = 0.0  # the earliest time of the next request
        self._accepted: deque[float] = deque()  # when requests were accepted, the last second's
        self.epoch = 0
        """Moves on at each throttle acted on; a request carries the one it was placed in."""
        self.schedule = 0
        """Moves on when a pause begins: places taken before it are void (a cut is not
        enough: giving up the places taken ahead would leave a gap)."""
        self._grown_at = 0.0
        self._held_back = False
        self.streak = 0
        """Throttles acted on since something was last accepted."""

    def book(self, now: float) -> float:
        """Takes the next place for a request: seconds until it (0: go now). Places are
        taken ahead on the rate's grid, so that a loop that wakes late sends those that
        came due together. Whoever waited should look at `schedule` again: a pause
        begun meanwhile calls for a new place. (Catching up on places missed longer ago, when no request was waiting,
        was tried: the bursts met the SMSC's window and were throttled.)"""
        at = max(now, self._next)
        if self.rate:
            self._next = at + 1 / self.rate
        if at - now <= EARLY:
            return 0.0
        self._held_back = True
        return at - now

    def accepted(self, now: float) -> None:
        self.streak = 0
        self._accepted.append(now)
        self._forget(now)
        if self.rate and self._held_back and now - self._grown_at >= 1.0:
            self.rate *= GROWTH
            self._grown_at, self._held_back = now, False

    def throttled(self, now: float, sent_in: int) -> float:
        """A request sent in epoch `sent_in` was throttled; returns the pause begun (0: none)."""
        if sent_in < self.epoch:
            return 0.0
        self.epoch += 1
        paced = self.rate is not None
        self.streak += 1
        self._forget(now)
        if len(self._accepted) >= LEARN_FROM:
            self.rate = len(self._accepted) * BELOW
            self._grown_at, self._held_back = now, False
        if paced and self.streak == 1:
            return 0.0
        pause = min(self._min_pause * 2 ** (self.streak - 1 - paced), self._max_pause)
        self._next = max(self._next, now + pause)
        self.schedule += 1
        return pause

    def _forget(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
