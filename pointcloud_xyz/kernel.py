"""The point cloud's per-pixel passes compiled with numba: the veiling test (``veiling.veiling_points`` is
its numpy specification) and the write of an organized cloud (``projection``'s numpy write is its). Explicit
signatures, ``cache=True``: compiled, or loaded from numba's cache, at import. Where numba cannot compile,
``COMPILED`` is False, ``COMPILE_PROBLEM`` says why, and the callers run the numpy versions.
"""

from __future__ import annotations

import numpy as np

__all__ = ['COMPILED', 'COMPILE_PROBLEM', 'organize', 'veiling']

try:
    import numba
    _NUMBA_PROBLEM = 'NUMBA_DISABLE_JIT is set' if numba.config.DISABLE_JIT else ''
except ImportError as exc:
    _NUMBA_PROBLEM = f'numba cannot be imported ({exc})'


def _veiling_pass(z, keep, rx, ry, cos2, window, points, flags):
    """``keep`` cleared at its veiling points: the readings' points laid out in rows padded with ``window``
    NaN columns on each side (``points``: x, y, z; no pair then wraps from one row to the next), then one
    vector loop over the whole image per neighbour offset, marking ``flags``."""
    h, w = z.shape
    pad = max(window, 0)
    nan = np.float32(np.nan)
    points[:, :, :pad] = points[:, :, w + pad:] = nan
    flags[:] = 0
    for r in range(h):
        for c in range(w):
            v = z[r, c] if keep[r, c] else nan  # no reading: NaN, which compares False, no part in a pair
            points[0, r, c + pad], points[1, r, c + pad] = v * rx[r, c], v * ry[r, c]
            points[2, r, c + pad] = v
    px, py, pz, veiling = points[0].ravel(), points[1].ravel(), points[2].ravel(), flags.ravel()
    for d in range(1, pad + 1):
        for shift in (-d, d, -d * (w + 2 * pad), d * (w + 2 * pad)):  # along the row, along the column
            first, second = max(-shift, 0), max(shift, 0)  # provably >= 0: no wraparound code, vectors
            for k in range(pz.size - first - second):  # point i against point j = i + shift
                i, j = first + k, second + k
                dx, dy, dz = px[i] - px[j], py[i] - py[j], pz[i] - pz[j]
                dot = dx * px[i] + dy * py[i] + dz * pz[i]
                seg2 = dx * dx + dy * dy + dz * dz
                norm2 = px[i] * px[i] + py[i] * py[i] + pz[i] * pz[i]
                veiling[i] = veiling[i] | np.uint8((dz > 0) & (dot > 0) & (dot * dot > cos2 * seg2 * norm2))
    for r in range(h):
        for c in range(w):
            keep[r, c] &= not flags[r, c + pad]


def _organize(z, keep, rx, ry, points):
    """The organized cloud: ``z * (rx, ry, 1)`` at the kept pixels, NaN x, y, z elsewhere."""
    nan = np.float32(np.nan)
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            v = z[r, c] if keep[r, c] else nan
            points[r, c, 0], points[r, c, 1], points[r, c, 2] = v * rx[r, c], v * ry[r, c], v


def _compile() -> tuple[dict, str]:
    """The compiled passes and what went wrong instead."""
    if _NUMBA_PROBLEM:
        return {}, _NUMBA_PROBLEM
    f32 = numba.types.Array(numba.float32, 2, 'C', readonly=True)
    mask, cloud = numba.types.Array(numba.boolean, 2, 'C'), numba.types.Array(numba.float32, 3, 'C')
    signatures = {_veiling_pass: numba.void(f32, mask, f32, f32, numba.float32, numba.int64, cloud,
                                            numba.types.Array(numba.uint8, 2, 'C')),
                  _organize: numba.void(f32, mask, f32, f32, cloud)}
    options = dict(nogil=True, error_model='numpy')
    try:
        try:
            return {fn: numba.njit([sig], cache=True, **options)(fn) for fn, sig in signatures.items()}, ''
        except RuntimeError:  # "cannot cache ...: no locator available": no writable cache directory
            return {fn: numba.njit([sig], **options)(fn) for fn, sig in signatures.items()}, ''
    except Exception as exc:  # an odd platform or a numba bug: the numpy versions still work
        return {}, f'numba could not compile the point cloud passes ({type(exc).__name__}: {exc})'


_PASSES, COMPILE_PROBLEM = _compile()
#: True when the compiled passes are available.
COMPILED = bool(_PASSES)
#: ``veiling(z, keep, rx, ry, cos2, window, points, flags)``: ``keep`` cleared at its veiling points.
veiling = _PASSES.get(_veiling_pass)
#: ``organize(z, keep, rx, ry, points)``: the organized cloud of the kept readings into ``points``.
organize = _PASSES.get(_organize)
