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

__all__ = ['Match', 'MatchStatus', 'StampedBuffer', 'StreamState', 'StreamWatch', 'StudentHold', 'ToFPairer',
           'stamp_ns']

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

    def newest_usable(self) -> int | None:
        """Stamp of the newest buffered ToF frame that can be fused (with its confidence, when used)."""
        usable = [s for s, _ in self.depth if not self.use_confidence or self.confidence.exact(s) is not None]
        return usable[-1] if usable else None

    def alone(self, stamp: int, last: int) -> tuple[Any, Any] | None:
        """The (depth, confidence or None) of ``stamp`` to publish alone after the frame stamped ``last``
        was; None when it is incomplete, already published or older than ``last`` - unless the stamps
        jumped back by more than a second (a restarted camera, a bag looping on its own stamps)."""
        depth, confidence = self.depth.exact(stamp), self.confidence.exact(stamp)
        if last - NS_PER_S < stamp <= last or depth is None or (self.use_confidence and confidence is None):
            return None
        return depth, confidence if self.use_confidence else None

    def clear(self) -> None:
        self.depth.clear()
        self.confidence.clear()


class StudentHold:
    """When a student frame is paired: the pairing rule in time, independent of callback order.

    A student frame is matched at once when the newest usable ToF frame is at or after its stamp (nothing
    nearer can come), when the ToF stream is silent, or when ``max_time_diff`` is 0. Otherwise it is held,
    because a ToF frame nearer in stamp may still be on its way (the topics are independent, and an
    executor may serve them in any order): it is matched when a usable ToF at or after its stamp arrives
    (``poll`` after each ToF or confidence image), when ``max_time_diff`` seconds of arrival time have
    passed (``poll`` from a timer at ``deadline``), or when the next student frame arrives. At most one
    frame is held. Each method returns the ``(item, Match)`` pairs ready to fuse, oldest first.
    """

    def __init__(self, pairer: ToFPairer) -> None:
        self.pairer = pairer
        self._held: tuple[int, Any, float] | None = None  # stamp, item, deadline (monotonic seconds)

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which the held frame must be matched; None when none is held."""
        return self._held[2] if self._held else None

    def _ready(self, stamp: int, now: float) -> bool:
        newest = self.pairer.newest_usable()
        return (self.pairer.max_time_diff <= 0.0 or (newest is not None and newest >= stamp)
                or self.pairer.watch.state(now) is StreamState.SILENT)

    def offer(self, stamp: int, item: Any, now: float) -> list[tuple[Any, Match]]:
        """A student frame arrived: the held one (if any) is matched now, this one now or later."""
        out = self._release(now)
        if self._ready(stamp, now):
            out.append((item, self.pairer.match(stamp, now)))
        else:
            self._held = (stamp, item, now + self.pairer.max_time_diff)
        return out

    def poll(self, now: float) -> list[tuple[Any, Match]]:
        """Match the held frame if a usable ToF at or after it has arrived or its time is up."""
        if self._held and (now >= self._held[2] or self._ready(self._held[0], now)):
            return self._release(now)
        return []

    def _release(self, now: float) -> list[tuple[Any, Match]]:
        if self._held is None:
            return []
        stamp, item, _ = self._held
        self._held = None
        return [(item, self.pairer.match(stamp, now))]
