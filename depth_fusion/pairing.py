"""Time matching of student depth, ToF depth and ToF confidence (pure: no ROS imports).

The fusion node fuses when a student depth image arrives. It pairs it with the ToF depth whose header stamp
is nearest, taken from a small buffer of recent ToF frames, if that stamp lies within ``max_time_diff``; the
confidence image must carry exactly the ToF depth's stamp (a camera driver stamps both with one exposure),
and when confidence is used, a ToF frame whose confidence image has not arrived yet is passed over for the
next nearest complete one within ``max_time_diff``.
Stamps are integer nanoseconds (``stamp_ns``); arrival times, which only silence detection uses, are
monotonic seconds passed in by the caller, so everything here is testable with constructed numbers.

``calibrate_fusion`` pairs recorded messages with the same ``ToFPairer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

__all__ = ['Match', 'MatchStatus', 'StampedBuffer', 'StreamState', 'StreamWatch', 'ToFPairer', 'stamp_ns']

T = TypeVar('T')

NS_PER_S = 1_000_000_000


def stamp_ns(sec: int, nanosec: int) -> int:
    """A ``builtin_interfaces/Time`` (sec, nanosec) as integer nanoseconds."""
    return int(sec) * NS_PER_S + int(nanosec)


class StampedBuffer(Generic[T]):
    """The last ``capacity`` items by arrival, looked up by stamp (integer nanoseconds).

    Adding an item with a stamp already present replaces it (a re-sent frame) and makes it the newest
    arrival; when full, the oldest arrival is evicted. The items live in a dict, whose order is the arrival
    order; lookups scan its ``capacity`` entries (a handful).
    """

    def __init__(self, capacity: int = 10) -> None:
        self._items: dict[int, T] = {}
        self.resize(capacity)

    def resize(self, capacity: int) -> None:
        """Change the capacity, keeping the newest arrivals."""
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self._capacity = capacity
        while len(self._items) > capacity:
            del self._items[next(iter(self._items))]  # the oldest arrival

    def add(self, stamp: int, item: T) -> None:
        self._items.pop(stamp, None)
        self._items[stamp] = item
        self.resize(self._capacity)

    def exact(self, stamp: int) -> T | None:
        """The item with exactly this stamp, or None."""
        return self._items.get(stamp)

    def by_distance(self, stamp: int, max_diff: int | None = None) -> list[int]:
        """Buffered stamps within ``max_diff`` nanoseconds of ``stamp`` (all when None), nearest first; on
        a tie the earlier stamp first."""
        return sorted((s for s in self._items if max_diff is None or abs(s - stamp) <= max_diff),
                      key=lambda s: (abs(s - stamp), s))

    def nearest(self, stamp: int, max_diff: int | None = None) -> tuple[int, T] | None:
        """(stamp, item) nearest in time to ``stamp``; None when empty or the nearest is further than
        ``max_diff`` nanoseconds. On a tie the earlier stamp wins."""
        near = self.by_distance(stamp, max_diff)
        return (near[0], self._items[near[0]]) if near else None

    def newest_stamp(self) -> int | None:
        return max(self._items) if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[int, T]]:
        """(stamp, item) in stamp order."""
        return ((s, self._items[s]) for s in sorted(self._items))


class StreamState(str, Enum):
    WAITING = 'waiting'  # nothing received yet
    OK = 'ok'
    SILENT = 'silent'    # nothing received for longer than the timeout


class StreamWatch:
    """Silence detection for one stream from arrival times (monotonic seconds, given by the caller).

    A stream that never delivered counts as silent once ``timeout`` has passed since ``start``.
    """

    def __init__(self, timeout: float, start: float) -> None:
        self.timeout = timeout
        self._start = start
        self._last: float | None = None
        self.count = 0

    def tick(self, now: float) -> None:
        self._last = now
        self.count += 1

    def state(self, now: float) -> StreamState:
        if self._last is None:
            return StreamState.SILENT if now - self._start > self.timeout else StreamState.WAITING
        return StreamState.SILENT if now - self._last > self.timeout else StreamState.OK

    def silent_for(self, now: float) -> float:
        """Seconds since the last arrival (since ``start`` when none yet)."""
        return now - (self._start if self._last is None else self._last)

    def reset(self, start: float) -> None:
        """Forget the stream's history (e.g. after a clock jump)."""
        self._start = start
        self._last = None


class MatchStatus(str, Enum):
    MATCHED = 'matched'
    WAITING = 'no ToF received yet'
    SILENT = 'ToF silent'
    NO_MATCH = 'no ToF within max_time_diff'
    NO_CONFIDENCE = 'no confidence image with the ToF stamp'


@dataclass(frozen=True)
class Match:
    """The result of pairing one student stamp.

    ``tof`` / ``confidence`` are the buffered items (None unless MATCHED); ``dt`` is student stamp minus
    ToF stamp in seconds, for the nearest buffered ToF even when it was too far (None if none buffered).
    """

    status: MatchStatus
    tof: Any = None
    confidence: Any = None
    tof_stamp: int | None = None
    dt: float | None = None

    @property
    def matched(self) -> bool:
        return self.status is MatchStatus.MATCHED


class ToFPairer:
    """ToF depth and confidence buffers plus silence detection: pairs student stamps with ToF frames.

    Args:
        max_time_diff: largest |student stamp - ToF stamp| accepted, in seconds.
        capacity: ToF frames (and confidence images) kept.
        use_confidence: a ToF frame is only usable together with its confidence image (same stamp).
        timeout: the ToF stream is silent after this many seconds without a ToF depth.
        start: monotonic time of creation (silence of a stream that never delivered counts from here).
    """

    def __init__(self, max_time_diff: float, capacity: int = 10, use_confidence: bool = False,
                 timeout: float = 1.0, start: float = 0.0) -> None:
        self.max_time_diff = max_time_diff
        self.use_confidence = use_confidence
        self.depth: StampedBuffer = StampedBuffer(capacity)
        self.confidence: StampedBuffer = StampedBuffer(capacity)
        self.watch = StreamWatch(timeout, start)

    def configure(self, max_time_diff: float, capacity: int, use_confidence: bool, timeout: float) -> None:
        self.max_time_diff = max_time_diff
        self.use_confidence = use_confidence
        self.depth.resize(capacity)
        self.confidence.resize(capacity)
        self.watch.timeout = timeout

    def add_depth(self, stamp: int, item: Any, now: float) -> None:
        self.depth.add(stamp, item)
        self.watch.tick(now)

    def add_confidence(self, stamp: int, item: Any) -> None:
        self.confidence.add(stamp, item)

    def match(self, stamp: int, now: float) -> Match:
        """Pair a student stamp with the nearest usable buffered ToF frame within ``max_time_diff``.

        With ``use_confidence`` a ToF frame is usable once its confidence image has arrived: when the
        nearest one still lacks it (depth and confidence are separate topics, so either may come first),
        the next nearest complete frame within the tolerance is used; NO_CONFIDENCE only when there is none.
        """
        nearest = self.depth.nearest(stamp)
        if nearest is None:
            state = self.watch.state(now)
            status = MatchStatus.SILENT if state is StreamState.SILENT else MatchStatus.WAITING
            return Match(status)
        tof_stamp, tof = nearest
        dt = (stamp - tof_stamp) / NS_PER_S
        tolerance = round(self.max_time_diff * NS_PER_S)
        if abs(stamp - tof_stamp) > tolerance:
            silent = self.watch.state(now) is StreamState.SILENT
            return Match(MatchStatus.SILENT if silent else MatchStatus.NO_MATCH, tof_stamp=tof_stamp, dt=dt)
        if not self.use_confidence:
            return Match(MatchStatus.MATCHED, tof, None, tof_stamp, dt)
        for s in self.depth.by_distance(stamp, tolerance):
            confidence = self.confidence.exact(s)
            if confidence is not None:
                return Match(MatchStatus.MATCHED, self.depth.exact(s), confidence, s, (stamp - s) / NS_PER_S)
        return Match(MatchStatus.NO_CONFIDENCE, tof_stamp=tof_stamp, dt=dt)

    def clear(self) -> None:
        self.depth.clear()
        self.confidence.clear()
