"""How well the student agrees with the ToF, frame by frame, and whether its fill is trusted (pure).

Where the ToF reading is valid it is the truth for the student: every fused frame compares the student
depth (after the mode's correction) with the ToF on the pixels where both are valid (``Accuracy``), and
``TrustGate`` smooths those figures over frames and decides whether the student may fill the ToF's holes:

* the fill is withheld when the smoothed delta1 falls below ``min_delta1`` and given back when it rises to
  ``min_delta1 + hysteresis`` or above (no flapping around the threshold);
* a frame whose overlap (share of the output pixels where both depths are valid) is below ``min_overlap``
  cannot be judged (the ToF is nearly blind, or absent): ``when_blind`` says what to do then: ``trust``
  (fill), ``withhold`` (no fill) or ``last`` (keep the last verdict; fill before any verdict). Such frames
  do not move the smoothed figures;
* ``min_delta1`` 0 turns the gate off (the student always fills).

Times are the frames' header stamps (integer nanoseconds), so the gate is testable with constructed numbers
and follows a replayed recording's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['BLIND_POLICIES', 'Accuracy', 'TrustGate', 'Verdict', 'measure_accuracy']

BLIND_POLICIES = ('last', 'trust', 'withhold')


@dataclass(frozen=True)
class Accuracy:
    """Student ``d`` against ToF ``t`` over the (sampled) pixels where both are valid: AbsRel (mean
    ``|d - t| / t``), delta1 (the share with ``max(d / t, t / d) < 1.25``), the share of the pixels looked
    at that such pixels are, and how many there were."""

    absrel: float
    delta1: float
    overlap: float
    pixels: int


def measure_accuracy(student: np.ndarray, tof: np.ndarray, total: int) -> Accuracy:
    """``Accuracy`` of ``student`` against ``tof`` (metres, the pixels where both are valid) out of
    ``total`` pixels looked at (NaN figures when none overlap)."""
    n = int(student.size)
    if n == 0:
        return Accuracy(math.nan, math.nan, 0.0, 0)
    d = np.asarray(student, np.float64)
    t = np.asarray(tof, np.float64)
    ratio = d / t
    delta1 = float(np.count_nonzero(np.maximum(ratio, 1.0 / ratio) < 1.25)) / n
    return Accuracy(float(np.mean(np.abs(ratio - 1.0))), delta1, n / total if total else 0.0, n)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision for one frame: fill or not, why, since when (stamp ns of the last change), the
    smoothed figures (None before the first judged frame) and whether this frame could be judged."""

    fill: bool
    reason: str
    since_ns: int | None
    smoothed: Accuracy | None
    judged: bool

    def held_for(self, stamp_ns: int) -> float:
        """Seconds the current verdict has held at ``stamp_ns`` (0 when unknown)."""
        return max(0.0, (stamp_ns - self.since_ns) / 1e9) if self.since_ns is not None else 0.0


class TrustGate:
    """See the module docstring. ``smoothing``: weight of the previous smoothed value (0 = this frame's)."""

    def __init__(self, min_delta1: float, hysteresis: float, min_overlap: float, when_blind: str,
                 smoothing: float) -> None:
        self.configure(min_delta1, hysteresis, min_overlap, when_blind, smoothing)
        self._smoothed: Accuracy | None = None
        self._fill = True
        self._since: int | None = None

    def configure(self, min_delta1: float, hysteresis: float, min_overlap: float, when_blind: str,
                  smoothing: float) -> None:
        if when_blind not in BLIND_POLICIES:
            raise ValueError(f"when_blind must be one of {', '.join(BLIND_POLICIES)}, got {when_blind!r}")
        self.min_delta1, self.hysteresis, self.min_overlap = min_delta1, hysteresis, min_overlap
        self.when_blind, self.smoothing = when_blind, smoothing

    def _smooth(self, acc: Accuracy) -> Accuracy:
        prev, w = self._smoothed, self.smoothing
        if prev is None:
            return acc
        return Accuracy(w * prev.absrel + (1 - w) * acc.absrel, w * prev.delta1 + (1 - w) * acc.delta1,
                        w * prev.overlap + (1 - w) * acc.overlap, acc.pixels)

    def _set(self, fill: bool, stamp_ns: int) -> None:
        if fill != self._fill or self._since is None:
            self._since = stamp_ns
        self._fill = fill

    def update(self, acc: Accuracy | None, stamp_ns: int) -> Verdict:
        """Judge one frame (``acc`` None: no ToF to compare with)."""
        overlap = acc.overlap if acc is not None else 0.0
        if acc is None or overlap < self.min_overlap or acc.pixels == 0:
            fill = {'trust': True, 'withhold': False, 'last': self._fill}[self.when_blind]
            self._set(fill, stamp_ns)
            reason = (f'too little overlap with the ToF to judge the student ({100 * overlap:.1f} % < '
                      f'{100 * self.min_overlap:g} %): {self.when_blind} '
                      f"({'filling' if fill else 'fill withheld'})")
            return Verdict(fill, reason, self._since, self._smoothed, False)
        self._smoothed = s = self._smooth(acc)
        if self.min_delta1 <= 0.0:
            self._set(True, stamp_ns)
            return Verdict(True, 'trust gate off (min_student_delta1 0)', self._since, s, True)
        if self._fill and s.delta1 < self.min_delta1:
            self._set(False, stamp_ns)
        elif not self._fill and s.delta1 >= self.min_delta1 + self.hysteresis:
            self._set(True, stamp_ns)
        else:
            self._set(self._fill, stamp_ns)
        if self._fill:
            reason = f'student agrees with the ToF (delta1 {s.delta1:.2f} >= {self.min_delta1:g})'
        else:
            reason = (f'student disagrees with the ToF (delta1 {s.delta1:.2f}, fill returns at '
                      f'{self.min_delta1 + self.hysteresis:g})')
        return Verdict(self._fill, reason, self._since, s, True)
