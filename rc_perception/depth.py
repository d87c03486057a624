"""Depth image conventions (REP 118), pure numpy.

Float depth is metres along the optical Z axis with NaN for "no reading"; integer depth (16UC1/mono16)
is millimetres with 0 for "no reading". Everything downstream works on float32 metres with NaN.

One definition of "a reading" serves every consumer (``to_metres``, the fusion's ToF and student
validity, the point cloud): finite, strictly positive and within ``[range_min, range_max]``, compared in
float32 after millimetres are converted as ``float32(mm) / MM_PER_M``, correctly rounded: the float32
nearest to the exact mm / 1000, so a reading of 700 mm is exactly ``float32(0.7)`` (``metre_bounds``).
"""

from __future__ import annotations

import numpy as np

__all__ = ['DEPTH_ENCODINGS', 'MM_ENCODINGS', 'MM_PER_M', 'metre_bounds', 'to_metres']

#: Integer encodings carrying millimetres, 0 = invalid.
MM_ENCODINGS = frozenset({'16UC1', 'mono16'})
#: Encodings accepted as depth images.
DEPTH_ENCODINGS = MM_ENCODINGS | {'32FC1'}
#: Millimetres per metre: integer depth converts as ``float32(mm) / MM_PER_M``, one correctly rounded
#: float32 division (multiplying by float32(0.001) lands one float32 step high for most values).
MM_PER_M = np.float32(1000.0)

_SMALLEST = np.nextafter(np.float32(0), np.float32(1))   # smallest float32 > 0
_LARGEST = np.finfo(np.float32).max                      # largest finite float32


def metre_bounds(range_min: float = 0.0, range_max: float = float('inf')) -> tuple[np.float32, np.float32]:
    """float32 ``(lo, hi)`` such that a float32 depth ``d`` is a reading exactly when ``lo <= d <= hi``.

    ``lo`` is at least the smallest positive float32 and ``hi`` at most the largest finite one, so 0,
    negatives, NaN and +-Inf fail both ways whatever the range.
    """
    return np.float32(max(np.float32(range_min), _SMALLEST)), np.float32(min(np.float32(range_max), _LARGEST))


def to_metres(depth: np.ndarray, encoding: str, range_min: float = 0.0,
              range_max: float = float('inf')) -> np.ndarray:
    """float32 metres, NaN wherever there is no usable reading.

    A reading is usable when it is finite, strictly positive and within ``[range_min, range_max]``;
    so 0 mm, NaN, +-Inf and non-positive floats all become NaN. Returns a new array, never a view.

    Raises:
        ValueError: an encoding that is not a depth encoding.
    """
    if encoding in MM_ENCODINGS:
        z = np.divide(depth, MM_PER_M, dtype=np.float32)
    elif encoding == '32FC1':
        z = np.array(depth, dtype=np.float32, copy=True)
    else:
        raise ValueError(f"depth image encoding must be one of {', '.join(sorted(DEPTH_ENCODINGS))}, "
                         f"got '{encoding}'")
    lo, hi = metre_bounds(range_min, range_max)
    # NaN compares false both ways and stays NaN; 0, negatives, -Inf fall below lo; +Inf lies above hi.
    with np.errstate(invalid='ignore'):
        z[(z < lo) | (z > hi)] = np.nan
    return z
