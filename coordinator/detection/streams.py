"""Streams: each complaint counts into its category x region stream and the
category-wide one (the store keeps the bucket counts, so restarts and instances
sharing Redis see the same numbers). The monitor feeds each stream's closed buckets to
its detector, whose state lives in the store, and peeks at the bucket still filling, so
a surge is seen on the complaint that crosses the threshold rather than minutes later.
Each surge is reported once, by whichever instance marks it open first."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from ..clock import Clock
from ..models import ALL_REGIONS, DRILL_PREFIX, Complaint, Surge, bucket_start, utc
from ..store import Store
from .config import DetectorConfig
from .detector import Detector, Observation
from .prior import Known, Prior, prior_for

log = logging.getLogger(__name__)

SAMPLES = 5


@dataclass(frozen=True)
class Found:
    """A surge the monitor saw; `fresh` unless it lies in history being caught up on
    (a replay, a long restart): those are recorded but open no incident."""

    surge: Surge
    fresh: bool


@dataclass(frozen=True)
class Observed:
    """What the monitor made of a batch of stored complaints: the surges it saw, and how
    many complaints came too late for detection (their bucket had already been fed to
    the stream's detector: they count in the stream's totals, not in its baseline or
    alarms)."""

    found: list[Found]
    late: int


@dataclass(frozen=True)
class Learning:
    """What detection can do on a stream yet: while `young` (its first day of history)
    it alarms only on overwhelming surges, judged against `prior` (what it started
    from: None for a stream older than priors)."""

    young: bool
    learned_hours: float
    warmup_hours: float
    prior: Prior | None


@dataclass(frozen=True)
class StreamStatus:
    stream: str
    current_count: int  # complaints in the bucket now filling
    last_count: int  # complaints in the last closed bucket
    expected: float  # the baseline for the bucket now filling
    score: float  # 0..1, 1 at the alarm level
    surge: Surge | None  # the open surge, if any
    total_24h: int
    repeats_24h: int
    learning: Learning

    @property
    def repeat_share(self) -> float:
        return self.repeats_24h / self.total_24h if self.total_24h else 0.0


def detector_config(bucket_seconds: int, min_count: float = 0.0, min_ratio: float = 1.0,
                    typical_per_hour: float | None = None,
                    typical_day: tuple[float, ...] | None = None) -> DetectorConfig:
    return DetectorConfig(bucket_seconds=float(bucket_seconds), min_count=min_count, min_ratio=min_ratio,
                          typical_per_hour=typical_per_hour, typical_day=typical_day)


class StreamMonitor:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        config_for: Callable[[str], DetectorConfig],
        history: timedelta = timedelta(weeks=8),
        fresh_within: timedelta = timedelta(hours=1),
        grace: timedelta = timedelta(minutes=10),
        tz: ZoneInfo = ZoneInfo("Asia/Shanghai"),
        attempts: int = 5,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config_for = config_for
        self.width = store.bucket_seconds
        self.history = history
        self.fresh_within = fresh_within
        # A bucket is fed to the stored state only `grace` after it closed, so complaints
        # that arrive late (a channel that uploads every few minutes) still count; until
        # then it is only peeked at, so waiting costs no detection time.
        if not timedelta(0) <= grace < fresh_within:
            raise ValueError(f"grace {grace} must be at least 0 and shorter than fresh_within {fresh_within}")
        self.grace = grace
        self.tz = tz
        self.attempts = attempts
        # stream -> (saved state, version): never handed to a detector unforked.
        self._cache: dict[str, tuple[dict[str, Any] | None, int]] = {}
        # stream -> the bucket before which a stream without state had no counts when last
        # read: while its first buckets are in their grace time, nothing is read again
        # (what lands before it later came too late, as for any stream).
        self._empty_until: dict[str, int] = {}
        # stream -> whether the store marks a surge open on it (trusted when single_process).
        self._surge_open: dict[str, bool] = {}
        # (stream, configured figure and day) -> the prior of a stream without state, read once.
        self._priors: dict[tuple[str, float | None, tuple[float, ...] | None], Prior] = {}
        # stream -> (learning, alarming) when last checked (every tick checks every stream).
        self._census: dict[str, tuple[bool, bool]] = {}

    async def observe(self, complaints: Sequence[Complaint]) -> Observed:
        """After intake stored `complaints`: check every stream they count into."""
        samples: dict[str, list[str]] = {}
        for c in complaints:
            for stream in c.streams():
                samples.setdefault(stream, []).append(c.id)
        now = self.clock.now()
        # What each stream's peek reads (the buckets in their grace time and the one
        # filling), for all of them in one round trip: one query per stream was most of a
        # batch's fixed cost.
        since = self._first_unfed(now)
        recent = await self.store.bucket_counts_many(list(samples), utc(since), utc(self._peek_end(now)))
        found: list[Found] = []
        fed_until: dict[str, int] = {}
        for stream, ids in samples.items():
            reported, fed_until[stream] = await self._check(stream, ids[:SAMPLES], now, (since, recent[stream]))
            found += reported
        return Observed(found, self._late(complaints, fed_until))

    def _late(self, complaints: Sequence[Complaint], fed_until: dict[str, int]) -> int:
        """How many of `complaints` fall in a bucket their stream had already been fed."""
        if not complaints:
            return 0
        if bucket_start(min(c.received_at for c in complaints), self.width) >= max(fed_until.values()):
            return 0  # the usual batch: nothing late, known without a look at each
        return sum(
            1 for c in complaints
            if any(bucket_start(c.received_at, self.width) < fed_until[s] for s in c.streams())
        )

    async def refresh_all(self) -> list[Found]:
        """The tick: close the buckets of quiet streams too (a sparse stream's empty
        buckets teach its baseline, and an open surge can end without complaints)."""
        found: list[Found] = []
        for stream in await self.store.stream_names():
            found += await self.check(stream, [])
        return found

    async def seed(self, stream: str, source: str) -> bool:
        """Give `stream` (a drill's) the detector state of `source` (the real stream it stands
        in for), and close any surge left open on it. False when `source` has learned nothing:
        `stream` then starts now from `source`'s prior, a young stream's unmistakable surges only."""
        state, _ = await self.store.load_stream_state(source)
        learned = state is not None
        if state is None:
            config = self.config_for(source)
            after = self._local(bucket_start(self.clock.now(), self.width) - self.width)  # from now on
            state = Detector(config, await self._prior(source, config), after=after).to_dict()
        for _ in range(self.attempts):
            _, version = await self.store.load_stream_state(stream)
            if await self.store.save_stream_state(stream, state, version + 1):
                break
        self._cache.pop(stream, None)
        self._surge_open.pop(stream, None)
        await self.store.close_stream_surge(stream)
        return learned

    async def check(self, stream: str, samples: list[str], *, now: datetime | None = None,
                    recent: tuple[int, dict[int, int]] | None = None) -> list[Found]:
        """Advance the stream's detector over its closed buckets and peek at the open
        ones; `recent`: (since, counts) already read for the buckets from `since` on."""
        reported, _ = await self._check(stream, samples, now or self.clock.now(), recent)
        return reported

    async def _check(self, stream: str, samples: list[str], now: datetime,
                     recent: tuple[int, dict[int, int]] | None) -> tuple[list[Found], int]:
        """`check`, and the first bucket the stored state had not seen before it: a
        complaint stored before this call in an earlier bucket came too late."""
        detector, committed, fed_until = await self._advance(stream, now)
        found = [
            await self._surge(stream, obs, now, samples, fresh=utc(obs.ts.timestamp() + self.width) >= now - self.fresh_within)
            for obs in committed
            if obs.alarm
        ]
        peek, alarmed = await self._peek(stream, detector, now, recent)
        if not stream.startswith(DRILL_PREFIX):
            self._census[stream] = (detector.young, peek.surge_open)
        if alarmed is not None:
            found.append(await self._surge(stream, alarmed, now, samples, fresh=True))
        reported = [f for f in found if await self.store.open_stream_surge(f.surge)]
        if reported:
            self._surge_open[stream] = True
        elif not peek.surge_open and await self._has_open_surge(stream):
            await self.store.close_stream_surge(stream)
            self._surge_open[stream] = False
        return reported, fed_until

    def census(self) -> tuple[int, int, int]:
        """The real streams (drills apart) as last checked: how many, how many learning
        (in their first day), how many alarming (a surge open). GET /metrics."""
        seen = list(self._census.values())
        return len(seen), sum(young for young, _ in seen), sum(alarming for _, alarming in seen)

    async def _has_open_surge(self, stream: str) -> bool:
        if self.store.single_process and stream in self._surge_open:
            return self._surge_open[stream]
        self._surge_open[stream] = await self.store.stream_surge(stream) is not None
        return self._surge_open[stream]

    async def status(self, stream: str) -> StreamStatus:
        now = self.clock.now()
        detector, _, _ = await self._advance(stream, now)
        peek, _ = await self._peek(stream, detector, now)
        current = bucket_start(now, self.width)
        day = (now - timedelta(days=1), now + timedelta(seconds=self.width))  # the filling bucket too
        counts = await self.store.bucket_counts(stream, utc(current - self.width), now + timedelta(seconds=self.width))
        return StreamStatus(
            stream=stream,
            current_count=counts.get(current, 0),
            last_count=counts.get(current - self.width, 0),
            expected=peek.expected,
            score=peek.score,
            surge=await self.store.stream_surge(stream),
            total_24h=sum((await self.store.bucket_counts(stream, *day)).values()),
            repeats_24h=sum((await self.store.bucket_counts(stream, *day, kind="repeat")).values()),
            learning=Learning(detector.young, detector.learned_seconds / 3600.0,
                              detector.config.warmup_seconds / 3600.0, detector.prior),
        )

    async def _advance(self, stream: str, now: datetime) -> tuple[Detector, list[Observation], int]:
        """Feed the closed buckets the stored state has not seen; save by compare-and-set
        (another instance that advanced first wins, and this one starts over). Returns a
        detector of its own for the caller to use up, the observations, and the first
        bucket the stored state had not seen before (counts stored in earlier buckets
        were missed)."""
        config = self.config_for(stream)
        current = self._first_unfed(now)
        for _ in range(self.attempts):
            state, version = await self._state(stream)
            prior = await self._prior(stream, config) if state is None else None
            detector = self._restore(stream, state, config, prior)
            if detector.last_ts is not None:
                start = fed_until = int(detector.last_ts.timestamp()) + self.width
                counts = await self.store.bucket_counts(stream, utc(start), utc(current)) if start < current else {}
            else:
                # A new stream: its history, or what came since it was last found empty.
                fed_until = self._empty_until.get(stream) or bucket_start(now - self.history, self.width)
                counts = await self.store.bucket_counts(stream, utc(fed_until), utc(current)) if fed_until < current else {}
                start = min(counts, default=current)
                if not counts:
                    self._empty_until[stream] = current
            observations = [detector.observe(self._local(t), counts.get(t, 0)) for t in range(start, current, self.width)]
            if not observations:
                return detector, [], fed_until
            saved = detector.to_dict()
            if await self.store.save_stream_state(stream, saved, version + 1):
                self._cache[stream] = (json.loads(json.dumps(saved)), version + 1)
                return Detector.from_dict(_fork(saved)), observations, fed_until
            self._cache.pop(stream, None)
        return detector, observations, fed_until

    def _restore(self, stream: str, state: dict[str, Any] | None, config: DetectorConfig,
                 prior: Prior | None) -> Detector:
        """The stored state, with today's playbook minimums (the baseline does not depend
        on them); a new detector from `prior` without one. A state this version cannot
        read is dropped: the counts are in the store, so the detector relearns the
        stream from them (from the default prior)."""
        if state is None:
            return Detector(config, prior)
        try:
            return Detector.from_dict(_fork({**state, "config": asdict(config)}))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("stream %s: saved detector state unreadable (%s); relearning from stored counts", stream, exc)
            return Detector(config)

    async def _prior(self, stream: str, config: DetectorConfig) -> Prior:
        """Where a stream without state starts (prior.py): from the streams of its
        category and region that have learned a day, or the configured figure. A drill's
        stream starts as the real one would."""
        key = (stream, config.typical_per_hour, config.typical_day)
        if key not in self._priors:
            real = stream.removeprefix(DRILL_PREFIX)
            category, _, region = real.partition("/")
            names = [n for n in await self.store.stream_names() if not n.startswith(DRILL_PREFIX)]
            regions = {n.partition("/")[2] for n in names} | {region}
            known: dict[str, Known] = {}
            for name in names:
                other, _, where = name.partition("/")
                if name != real and (other == category or where in (region, ALL_REGIONS)):
                    state, _ = await self._state(name)
                    lent = self._restore(name, state, config, None).known() if state is not None else None
                    if lent is not None:
                        known[name] = lent
            self._priors[key] = prior_for(real, known, len(regions - {ALL_REGIONS}), config.typical_per_hour,
                                          config.bucket_seconds, config.typical_day)
        return self._priors[key]

    async def _state(self, stream: str) -> tuple[dict[str, Any] | None, int]:
        """The stream's saved state, from memory when the store is this process's alone
        (SQLite); from the store otherwise, as another instance may have moved it."""
        if self.store.single_process and stream in self._cache:
            return self._cache[stream]
        state, version = await self.store.load_stream_state(stream)
        if state is not None or self.store.single_process:
            self._cache[stream] = (state, version)
        return state, version

    def _local(self, epoch: int) -> datetime:
        """Bucket start in the operator's time zone: the detector's daily and weekly
        rhythm follows local days (its hour and weekday come from the timestamp)."""
        return utc(epoch).astimezone(self.tz)

    def _first_unfed(self, now: datetime) -> int:
        """The first bucket not fed to the stored state yet: the one still in its grace time."""
        return bucket_start(now - self.grace, self.width)

    def _peek_end(self, now: datetime) -> int:
        return bucket_start(now, self.width) + self.width

    async def _peek(self, stream: str, detector: Detector, now: datetime,
                    recent: tuple[int, dict[int, int]] | None = None) -> tuple[Observation, Observation | None]:
        """The buckets not yet fed (in their grace time, and the one filling): the filling
        one's observation, and the one that alarmed if any (counts only grow: an alarm now
        stands). It consumes `detector` (its state is saved: the store never sees these
        buckets before they are final). Reads the counts unless `recent` holds them."""
        start = int(detector.last_ts.timestamp()) + self.width if detector.last_ts else bucket_start(now, self.width)
        end = self._peek_end(now)
        if recent is not None and recent[0] <= start:
            counts = recent[1]
        else:
            counts = await self.store.bucket_counts(stream, utc(start), utc(end))
        alarmed: Observation | None = None  # as of its bucket: one still filling has few counts yet
        for t in range(start, end, self.width):
            obs = detector.observe(self._local(t), counts.get(t, 0))
            alarmed = alarmed or (obs if obs.alarm else None)
        return obs, alarmed

    async def _surge(self, stream: str, obs: Observation, now: datetime, samples: list[str], fresh: bool) -> Found:
        category, _, region = stream.removeprefix(DRILL_PREFIX).partition("/")
        onset = obs.onset or obs.ts
        regulator = await self.store.bucket_counts(
            stream, onset, utc(obs.ts.timestamp() + self.width), kind="regulator"
        )
        surge = Surge(
            key=stream,
            category=category,
            region=region or ALL_REGIONS,
            onset=onset,
            detected_at=now,
            observed=int(obs.observed_total),
            expected=round(obs.expected_total, 3),
            ratio=round(obs.ratio, 3),
            score=round(obs.score, 4),
            regulator=sum(regulator.values()),
            samples=samples,
            drill=stream.startswith(DRILL_PREFIX),
        )
        return Found(surge, fresh)


def _fork(value: Any) -> Any:
    """A copy of JSON-shaped data deep enough that a detector built from it shares no
    list with the original (a structural copy: ~10x cheaper than copy.deepcopy)."""
    if isinstance(value, list):
        return [_fork(v) for v in value] if value and isinstance(value[0], (list, dict)) else list(value)
    if isinstance(value, dict):
        return {k: _fork(v) for k, v in value.items()}
    return value


def trigger_minimums(
    triggers: Iterable[tuple[list[str], list[str] | None, int, float]], stream: str
) -> tuple[float, float]:
    """The smallest minimum count and ratio among the playbook triggers covering
    `stream`, so the detector alarms as soon as some playbook would take the surge;
    (0, 1) when none covers it (then it alarms for visibility only). A drill's stream
    has the minimums of the real stream it stands in for."""
    category, _, region = stream.removeprefix(DRILL_PREFIX).partition("/")
    covering = [
        (count, ratio)
        for categories, regions, count, ratio in triggers
        if category in categories and (regions is None or (region != ALL_REGIONS and region in regions))
    ]
    if not covering:
        return 0.0, 1.0
    return float(min(c for c, _ in covering)), min(r for _, r in covering)
