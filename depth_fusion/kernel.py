"""The per-pixel fusion rule, written once as a numpy specification and once as a compiled pass.

For output pixel ``(r, c)`` (``srow``/``scol`` and ``trow``/``tcol`` name the student and ToF pixels it
reads, see ``rc_perception.camera.AxisMap.nearest``):

* the ToF reading ``t`` is valid when ``lo <= t <= hi`` (bounds in the ToF's own units, so that 0 mm,
  NaN and infinities fail) and, with a confidence image, ``confidence >= cthr``; its value in metres is
  ``float32(t) * tscale``;
* else the student depth, corrected as ``d * alpha + beta`` in float32 (per hole with ``labels``: label
  ``l > 0`` uses ``lalpha[l]``, ``lbeta[l]``), is used where it is finite and > 0;
* else NaN. ``source`` says which: 0 none, 1 ToF, 2 student.

The same pass measures the student against the ToF where both are valid (the live accuracy).

An empty (0 x 0) ``student``, ``tof``, ``confidence`` or ``labels`` means "not given". ``fuse_reference``
is the executable specification (plain numpy; the tests compare the compiled pass against it on random
inputs); ``fuse_compiled`` is the same rule as one numba pass over the output pixels. ``hole_scales``
(local alignment) labels the connected regions without a valid ToF reading and returns, per region, the
median ratio of ToF to corrected student depth over the valid ToF pixels bordering it.
"""

from __future__ import annotations

import numpy as np

from rc_perception.depth import metre_bounds

__all__ = ['COMPILED', 'COMPILE_PROBLEM', 'fuse_compiled', 'fuse_reference', 'hole_scales', 'tof_reading_ok']

POS_MIN, FLT_MAX = (float(v) for v in metre_bounds())  # a depth d is a reading when POS_MIN <= d <= FLT_MAX
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
NAN32 = np.float32(np.nan)
DELTA_LO, DELTA_HI = np.float32(0.8), np.float32(1.25)  # delta1: 0.8 < d / t < 1.25, in float32

try:
    import numba
    from numba import types
    _NUMBA_PROBLEM = 'NUMBA_DISABLE_JIT is set' if numba.config.DISABLE_JIT else ''
except ImportError as exc:
    _NUMBA_PROBLEM = f'numba cannot be imported ({exc})'


def _jit(fn, signatures=None):
    """numba.njit with its on-disk cache where one is writable (else compiled anew at each start); the
    function itself without numba."""
    if _NUMBA_PROBLEM:
        return fn
    try:
        return numba.njit(signatures, cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache ...: no locator available": no writable cache directory
        return numba.njit(signatures, nogil=True)(fn)


def tof_reading_ok(t: np.ndarray, confidence: np.ndarray | None, lo: float, hi: float,
                   cthr: float) -> np.ndarray:
    """ToF validity of readings ``t`` (and their confidences, or None): the first half of the rule."""
    ok = (t >= lo) & (t <= hi)
    if confidence is not None:
        ok &= confidence >= cthr
    return ok


def fuse_reference(student, srow, scol, tof, trow, tcol, confidence, cthr, lo, hi, tscale, alpha, beta,
                   labels, lalpha, lbeta, out, source) -> tuple:
    """The rule in numpy (see the module docstring); writes ``out``/``source``. Returns the ToF and the
    student pixel counts, and over the pixels where both are valid: their count, how many have
    ``0.8 < d / t < 1.25`` and the sum of ``|d / t - 1|`` (float32 ratios)."""
    tof_ok = np.zeros(out.shape, bool)
    out.fill(np.nan)
    v = np.full(out.shape, np.nan, np.float32)
    if tof.size:
        grid = np.ix_(trow, tcol)
        t = tof[grid]
        tof_ok = tof_reading_ok(t, confidence[grid] if confidence.size else None, lo, hi, cthr)
        v[tof_ok] = t[tof_ok].astype(np.float32) * tscale
        out[tof_ok] = v[tof_ok]
    reading = np.zeros(out.shape, bool)
    if student.size:
        a = np.full(out.shape, alpha, np.float32)
        b = np.full(out.shape, beta, np.float32)
        if labels.size:
            a = np.where(labels > 0, lalpha[labels], a)
            b = np.where(labels > 0, lbeta[labels], b)
        with np.errstate(over='ignore', invalid='ignore'):  # huge * alpha: inf, then not a reading
            d = student[np.ix_(srow, scol)] * a + b
        reading = (d >= POS_MIN) & (d <= FLT_MAX)
        out[~tof_ok & reading] = d[~tof_ok & reading]
    source[...] = np.where(tof_ok, 1, np.where(reading, 2, 0))
    both = tof_ok & reading
    with np.errstate(over='ignore'):  # a huge student depth over a small ToF one: inf
        q = d[both] / v[both] if both.any() else np.empty(0, np.float32)
        err = float(np.abs(q - np.float32(1)).astype(np.float64).sum())
    return (int(tof_ok.sum()), int((~tof_ok & reading).sum()), int(both.sum()),
            int(np.count_nonzero((q > DELTA_LO) & (q < DELTA_HI))), err)


def _fuse_loop(student, srow, scol, tof, trow, tcol, confidence, cthr, lo, hi, tscale, alpha, beta,
               labels, lalpha, lbeta, out, source):
    """The same rule as ``fuse_reference``, pixel by pixel: compiled by numba into one pass."""
    has_tof, has_conf = tof.shape[0] > 0, confidence.shape[0] > 0
    has_student, local = student.shape[0] > 0, labels.shape[0] > 0
    n_tof = n_student = n_both = n_close = 0
    err = 0.0
    for r in range(out.shape[0]):
        tr = trow[r] if has_tof else 0
        sr = srow[r] if has_student else 0
        for c in range(out.shape[1]):
            ok, v, d = False, NAN32, NAN32
            if has_tof:
                t = tof[tr, tcol[c]]
                ok = lo <= t <= hi and (not has_conf or confidence[tr, tcol[c]] >= cthr)
                v = np.float32(t) * tscale
            if has_student:
                a, b = alpha, beta
                if local and labels[r, c] > 0:
                    a, b = lalpha[labels[r, c]], lbeta[labels[r, c]]
                d = student[sr, scol[c]] * a + b
            reading = POS_MIN <= d <= FLT_MAX
            if ok:
                out[r, c], source[r, c] = v, 1
                n_tof += 1
                if reading:
                    q = d / v
                    n_both += 1
                    n_close += DELTA_LO < q < DELTA_HI
                    err += abs(q - np.float32(1))
            elif reading:
                out[r, c], source[r, c] = d, 2
                n_student += 1
            else:
                out[r, c], source[r, c] = NAN32, 0
    return n_tof, n_student, n_both, n_close, err


@_jit
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@_jit
def _label_holes(tof_ok, labels):
    """4-connected regions of ``~tof_ok`` into ``labels`` (1..n; 0 where the ToF is valid); returns n."""
    h, w = tof_ok.shape
    parent = np.arange(h * w + 1, dtype=np.int32)  # union-find over provisional labels
    nxt = 1
    for r in range(h):
        for c in range(w):
            if tof_ok[r, c]:
                labels[r, c] = 0
                continue
            up = labels[r - 1, c] if r > 0 else 0
            left = labels[r, c - 1] if c > 0 else 0
            if up == 0 and left == 0:
                labels[r, c] = nxt
                nxt += 1
            elif up == 0 or left == 0 or up == left:
                labels[r, c] = max(up, left)
            else:
                a, b = _find(parent, up), _find(parent, left)
                parent[max(a, b)] = min(a, b)
                labels[r, c] = min(a, b)
    final = np.zeros(nxt, np.int32)
    n = 0
    for i in range(1, nxt):
        root = _find(parent, i)
        if root == i:
            n += 1
            final[i] = n
        else:
            final[i] = final[root]
    for r in range(h):
        for c in range(w):
            labels[r, c] = final[labels[r, c]]
    return n


@_jit
def _visit_ring(tof_m, tof_ok, corrected, labels, count, ratios, pos, write):
    """Each valid ToF pixel with a student depth, once per distinct hole among its 4-neighbours: counts
    it for that hole (``write`` False) or stores its ToF / student ratio at the hole's next slot."""
    h, w = tof_ok.shape
    for r in range(h):
        for c in range(w):
            s = corrected[r, c]
            if not tof_ok[r, c] or not POS_MIN <= s <= FLT_MAX:
                continue
            seen0 = seen1 = seen2 = 0
            for dr, dc in _NEIGHBOURS:
                rr, cc = r + dr, c + dc
                if rr < 0 or rr >= h or cc < 0 or cc >= w:
                    continue
                lab = labels[rr, cc]
                if lab == 0 or lab == seen0 or lab == seen1 or lab == seen2:
                    continue
                seen0, seen1, seen2 = lab, seen0, seen1
                if write:
                    ratios[pos[lab]] = tof_m[r, c] / s
                    pos[lab] += 1
                else:
                    count[lab] += 1


def _hole_scales(tof_m, tof_ok, corrected, labels, min_ring):
    """Label the holes, then per hole the median of ToF / corrected student over its valid ToF border
    (4-neighbours of the hole); NaN where fewer than ``min_ring`` such pixels. Index 0 is unused."""
    n = _label_holes(tof_ok, labels)
    count = np.zeros(n + 1, np.int64)
    _visit_ring(tof_m, tof_ok, corrected, labels, count, np.empty(0), count, False)
    start = np.zeros(n + 2, np.int64)
    start[1:] = np.cumsum(count)
    ratios = np.empty(start[n + 1], np.float64)
    pos = start[:n + 1].copy()
    _visit_ring(tof_m, tof_ok, corrected, labels, count, ratios, pos, True)
    scales = np.full(n + 1, np.nan)
    for lab in range(1, n + 1):
        if count[lab] >= min_ring:
            scales[lab] = np.median(ratios[start[lab]:start[lab + 1]])
    return scales


def _compile():
    """The compiled entry points (explicit signatures: compiled, or loaded from the cache, at import) and
    what went wrong instead."""
    if _NUMBA_PROBLEM:
        return None, None, _NUMBA_PROBLEM

    def arr(dtype, dims=2):
        return types.Array(dtype, dims, 'A', readonly=True)

    idx, f32, f64 = arr(types.int64, 1), types.float32, types.float64
    out = (types.Array(f32, 2, 'C'), types.Array(types.uint8, 2, 'C'))
    counts = types.Tuple((types.int64, types.int64, types.int64, types.int64, f64))
    fuse_sigs = [counts(arr(f32), idx, idx, arr(t), idx, idx, arr(c), f64, f64, f64, f32, f32, f32,
                        arr(types.int32), arr(f32, 1), arr(f32, 1), *out)
        for t in (types.uint16, f32) for c in (types.uint8, types.uint16, f32)]
    scale_sig = types.Array(f64, 1, 'C')(arr(f32), arr(types.boolean), arr(f32),
                                         types.Array(types.int32, 2, 'C'), types.int64)
    try:
        return _jit(_fuse_loop, fuse_sigs), _jit(_hole_scales, [scale_sig]), ''
    except Exception as exc:  # an odd platform or a numba bug: the numpy rule still works
        return None, None, f'numba could not compile the fusion kernel ({type(exc).__name__}: {exc})'


fuse_compiled, _hole_scales_compiled, COMPILE_PROBLEM = _compile()
#: True when the compiled pass is available (else ``fuse_reference`` serves and local alignment is off).
COMPILED = fuse_compiled is not None


def hole_scales(tof_m: np.ndarray, tof_ok: np.ndarray, corrected: np.ndarray, labels: np.ndarray,
                min_ring: int) -> np.ndarray | None:
    """Per-hole scales (see ``_hole_scales``), or None without the compiled pass."""
    if _hole_scales_compiled is None:
        return None
    return _hole_scales_compiled(tof_m, tof_ok, corrected, labels, min_ring)
