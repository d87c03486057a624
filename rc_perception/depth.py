"""Depth image conventions (REP 118), pure numpy.

Float depth is metres along the optical Z axis with NaN for "no reading"; integer depth (16UC1/mono16)
is millimetres with 0 for "no reading". Everything downstream works on float32 metres with NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = ['DEPTH_ENCODINGS', 'MM_ENCODINGS', 'to_metres']

#: Integer encodings carrying millimetres, 0 = invalid.
MM_ENCODINGS = frozenset({'16UC1', 'mono16'})
#: Encodings accepted as depth images.
DEPTH_ENCODINGS = MM_ENCODINGS | {'32FC1'}

_TINY = np.float32(np.finfo(np.float32).tiny)
_HUGE = np.float32(np.finfo(np.float32).max)


def to_metres(depth: np.ndarray, encoding: str, range_min: float = 0.0,
              range_max: float = float('inf')) -> np.ndarray:
    """float32 metres, NaN wherever there is no usable reading.

    A reading is usable when it is finite, strictly positive and within ``[range_min, range_max]``;
    so 0 mm, NaN, +-Inf and non-positive floats all become NaN. Returns a new array, never a view.

    Raises:
        ValueError: an encoding that is not a depth encoding.
    """
    if encoding in MM_ENCODINGS:
        z = np.multiply(depth, np.float32(0.001), dtype=np.float32)
    elif encoding == '32FC1':
        z = np.array(depth, dtype=np.float32, copy=True)
    else:
        raise ValueError(f"depth image encoding must be one of {', '.join(sorted(DEPTH_ENCODINGS))}, "
                         f"got '{encoding}'")
    lo = max(np.float32(range_min), _TINY)
    hi = min(np.float32(range_max), _HUGE)
    # NaN compares false both ways and stays NaN; 0, negatives, -Inf fall below lo; +Inf lies above hi.
    with np.errstate(invalid='ignore'):
        z[(z < lo) | (z > hi)] = np.nan
    return z
