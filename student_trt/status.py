"""What student_trt_node counts and how it reports it on /diagnostics. Pure: no rclpy.

``FrameBook`` is shared by the camera callback and the inference worker: one slot for the newest
unprocessed frame (a frame that replaces an unprocessed one is counted stale, never queued), the counts,
the recent inference times and the last failure (a repeat of the same failure within ``FAILURE_WINDOW`` is
not logged again). ``report`` turns a ``FrameBook.snapshot`` into the (level, message, values) of the
node's DiagnosticStatus:

========================================================  ======  ==========================================
condition (first that holds)                              level   message
========================================================  ======  ==========================================
an inference failed within the last ``FAILURE_WINDOW`` s  ERROR   ``inference failing: <what failed>``
no image received yet                                     OK      ``waiting for images on <topic>``
images received, every one dropped as unusable            WARN    ``every image so far was dropped (see
                                                                  last drop reason)``
otherwise                                                 OK      ``publishing``
========================================================  ======  ==========================================
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus

from student_trt.geometry import FrameGeometry

__all__ = ['FAILURE_WINDOW', 'FrameBook', 'Snapshot', 'facts', 'report']

#: Seconds a failed inference keeps /diagnostics at ERROR, and within which a repeat of the same failure
#: is not logged again.
FAILURE_WINDOW = 5.0
#: Inference times kept for the percentiles on /diagnostics.
INFERENCE_WINDOW = 300
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclass(frozen=True)
class Snapshot:
    """The counts at one moment; once idle, ``received == processed + dropped_stale + dropped_bad + failed
    + dropped_at_shutdown`` (``dropped_bad`` is the node's BadInput total, added by the node)."""

    received: int
    processed: int
    dropped_stale: int
    failed: int
    dropped_at_shutdown: int
    pending: int            #: 1 while a frame waits or is being processed
    inference_p50: float    #: ms, NaN before the first inference
    inference_p99: float
    last_failure: str
    failing: bool           #: a failure within the last FAILURE_WINDOW seconds


class FrameBook:
    """The newest-frame slot and the counts of one node (thread-safe; see module doc)."""

    def __init__(self, failure_window: float = FAILURE_WINDOW) -> None:
        self._cond = threading.Condition()
        self._failure_window = failure_window
        self._pending: Any = None
        self._busy = self._stopping = False
        self._counts = dict.fromkeys(('received', 'processed', 'dropped_stale', 'failed',
                                      'dropped_at_shutdown'), 0)
        self._inference_ms: deque[float] = deque(maxlen=INFERENCE_WINDOW)
        self._last_failure, self._last_failure_time = '', -math.inf

    def put(self, frame: Any) -> int:
        """Store ``frame`` as the newest. When it replaces one not yet taken (counted stale), returns the
        number of stale drops so far; else 0."""
        with self._cond:
            self._counts['received'] += 1
            stale = self._pending is not None
            self._counts['dropped_stale'] += stale
            self._pending = frame
            self._cond.notify_all()
            return self._counts['dropped_stale'] if stale else 0

    def take(self) -> Any:
        """Wait for a frame and take it (the book counts it as in hand until ``idle``); None once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is not None or self._stopping)
            if self._stopping:
                return None
            frame, self._pending, self._busy = self._pending, None, True
            return frame

    def idle(self) -> None:
        """The frame in hand is finished (published, dropped or failed)."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def stop(self) -> None:
        """Make ``take`` return None (the worker exits after the frame in hand)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def processed(self, inference_ms: float) -> None:
        with self._cond:
            self._counts['processed'] += 1
            self._inference_ms.append(inference_ms)

    def dropped_at_shutdown(self) -> None:
        """A frame whose outputs could not be published because the node is shutting down."""
        with self._cond:
            self._counts['dropped_at_shutdown'] += 1

    def failed(self, text: str, now: float | None = None) -> bool:
        """Count a failed frame; True when it is to be logged (not a repeat within the failure window)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            self._counts['failed'] += 1
            repeat = text == self._last_failure and now - self._last_failure_time < self._failure_window
            self._last_failure, self._last_failure_time = text, now
        return not repeat

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = time.monotonic() if now is None else now
        with self._cond:
            times = np.asarray(self._inference_ms, np.float64)
            counts, pending = dict(self._counts), int(self._pending is not None or self._busy)
            failure, failing = self._last_failure, now - self._last_failure_time < self._failure_window
        p50, p99 = (float(v) for v in np.percentile(times, (50, 99))) if times.size else (math.nan, math.nan)
        return Snapshot(**counts, pending=pending, inference_p50=p50, inference_p99=p99, last_failure=failure,
                        failing=failing)


def facts(backend, output_size: str, geometry: FrameGeometry | None) -> dict[str, str]:
    """What the node runs and on which grid it publishes (``geometry``: of the last frame, None before)."""
    spec = backend.spec
    grid = '-' if geometry is None else \
        f'{geometry.grid[1]}x{geometry.grid[0]} from {geometry.camera[1]}x{geometry.camera[0]} camera images'
    return {'backend': backend.name, 'backend detail': backend.description,
            'backend choice': backend.selection_reason or '-', 'model': str(backend.model_path),
            'input size': f'{spec.width}x{spec.height}', 'precision': backend.precision,
            'output size': output_size, 'output grid': grid}


def report(snap: Snapshot, *, dropped_bad: int, last_drop: str, topic: str, facts: dict[str, Any],
           rates: tuple[float, float], latency: dict[str, float]) -> tuple[Any, str, dict[str, Any]]:
    """(level, message, values) of the node's DiagnosticStatus (see module doc).

    Args:
        snap: ``FrameBook.snapshot()``.
        dropped_bad: images dropped as unusable (the node's BadInput total); last_drop: the last reason.
        topic: the resolved camera topic.
        facts: what does not change per frame (backend, model, sizes), shown first.
        rates: input and output frames per second.
        latency: ``rc_perception.latency.LatencyWindow.values()`` (per-phase p50/p99).
    """
    values = {
        **facts,
        'inference p50 (ms)': snap.inference_p50,
        'inference p99 (ms)': snap.inference_p99,
        **latency,
        'input rate (Hz)': rates[0],
        'output rate (Hz)': rates[1],
        'frames in': snap.received,
        'frames out': snap.processed,
        'dropped stale': snap.dropped_stale,
        'dropped bad': dropped_bad,
        'inference failures': snap.failed,
        'last drop reason': last_drop or '-',
        'last failure': snap.last_failure or '-',
    }
    if snap.failing:
        return ERROR, f'inference failing: {snap.last_failure}', values
    if snap.received == 0:
        return OK, f'waiting for images on {topic}', values
    if snap.processed == 0 and dropped_bad:
        return WARN, 'every image so far was dropped (see last drop reason)', values
    return OK, 'publishing', values
