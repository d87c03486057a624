"""Where a frame's milliseconds go inside one node, for /diagnostics (pure: no ROS imports).

Every node times each frame it publishes in the same phases, so that the stages of the pipeline can be
compared and added up (the demo's latency table reads these keys):

* ``input age``: camera stamp -> the node receives the message (upstream stages + DDS transit);
* ``wait``: received -> the node starts working on it (the student's hand-over to its worker; 0 for nodes
  that work in the callback);
* ``compute``: work started -> the output is ready to publish (decode, inference or fusion, encode);
* ``publish``: the ``publish`` call(s) (serialization and the hand-over to the middleware);
* ``output age``: camera stamp -> published.

Ages use the node's clock (ROS time: the camera's clock, or /clock with ``use_sim_time``), durations a
monotonic clock. ``LatencyWindow.values()`` gives p50 and p99 over the last ``window`` frames as
``'<phase> p50 (ms)'`` / ``'<phase> p99 (ms)'`` keys.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

__all__ = ['PHASES', 'FrameTimer', 'LatencyWindow', 'latency_key']

PHASES = ('input age', 'wait', 'compute', 'publish', 'output age')
_NS_PER_MS = 1e6


def latency_key(phase: str, percentile: int) -> str:
    """The /diagnostics key of one figure, e.g. ``latency_key('compute', 99) == 'compute p99 (ms)'``."""
    return f'{phase} p{percentile} (ms)'


class FrameTimer:
    """The timing of one frame: created on receipt, then ``start()``, ``publishing()``, ``done()``."""

    __slots__ = ('_clock', '_stamp_ns', '_t', '_window')

    def __init__(self, window: LatencyWindow, stamp_ns: int, clock_ns: int) -> None:
        self._window = window
        self._stamp_ns = stamp_ns
        self._clock = clock_ns  # node clock at receipt
        self._t = [time.perf_counter_ns(), 0, 0]  # received, started, publishing

    def start(self) -> FrameTimer:
        """Work on the frame begins (call from the worker; nodes that work in the callback may skip it)."""
        self._t[1] = time.perf_counter_ns()
        return self

    def publishing(self) -> None:
        """The outputs are computed; publishing begins."""
        self._t[2] = time.perf_counter_ns()

    def done(self) -> None:
        """Published: record the frame in the window."""
        end = time.perf_counter_ns()
        received, started, publishing = self._t
        started = started or received
        publishing = publishing or end
        input_age = self._clock - self._stamp_ns
        output_age = input_age + (end - received)
        self._window.add((input_age, started - received, publishing - started, end - publishing, output_age))


class LatencyWindow:
    """p50/p99 of each phase over the last ``window`` published frames (thread-safe).

    Args:
        clock_ns: the node's clock in integer nanoseconds, e.g.
            ``lambda: node.get_clock().now().nanoseconds``.
        window: frames kept.
    """

    def __init__(self, clock_ns: Callable[[], int], window: int = 300) -> None:
        self._clock_ns = clock_ns
        self._samples: deque[tuple[int, ...]] = deque(maxlen=window)
        self._lock = threading.Lock()

    def frame(self, stamp_ns: int) -> FrameTimer:
        """Start timing a frame whose header stamp is ``stamp_ns``, received now."""
        return FrameTimer(self, stamp_ns, self._clock_ns())

    def add(self, sample: tuple[int, ...]) -> None:
        with self._lock:
            self._samples.append(sample)

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def values(self) -> dict[str, float]:
        """``{'input age p50 (ms)': ..., 'input age p99 (ms)': ..., ...}``; NaN before the first frame."""
        with self._lock:
            samples = np.array(self._samples, dtype=np.float64).reshape(-1, len(PHASES))
        out = {}
        for i, phase in enumerate(PHASES):
            if samples.shape[0]:
                p50, p99 = np.percentile(samples[:, i], (50, 99)) / _NS_PER_MS
            else:
                p50 = p99 = float('nan')
            out[latency_key(phase, 50)] = float(p50)
            out[latency_key(phase, 99)] = float(p99)
        return out
