"""The per-pixel fusion rule, written once as a numpy specification and once as a compiled pass.

For output pixel ``(r, c)`` (``srow``/``scol`` and ``trow``/``tcol`` name the student and ToF pixels it
reads, see ``rc_perception.camera.AxisMap.nearest``):

* the ToF reading ``t`` is valid when ``lo <= t <= hi`` (bounds in the ToF's own units, so that 0 mm,
  NaN and infinities fail) and ``confidence >= cthr``; its value in metres is ``float32(t) * tscale``;
* else the student depth, corrected as ``d * alpha + beta`` in float32, is used when ``fill`` is set and
  it is finite and > 0;
* else NaN. ``source`` says which: 0 none, 1 ToF, 2 student.

A missing image is given as a 1 x 1 stand-in that never passes (``depth_fusion.fusion`` makes them: a NaN
student, a ToF with ``lo > hi``, a confidence with ``cthr`` 0). ``fuse_reference``
is the executable specification (plain numpy; the tests compare the compiled pass against it on random
inputs); ``fuse_compiled`` is the same rule as one numba pass over the output pixels. ``hole_scales``
(local alignment) labels the connected regions without a valid ToF reading and returns, per region, the
median ratio of ToF to corrected student depth over the valid ToF pixels bordering it.
"""

from __future__ import annotations

import numpy as np

from rc_perception.depth import metre_bounds

__all__ = ['COMPILED', 'COMPILE_PROBLEM', 'fuse_compiled', 'fuse_reference', 'hole_scales', 'scale_holes',
           'tof_reading_ok']

POS_MIN, FLT_MAX = (float(v) for v in metre_bounds())  # a depth d is a reading when POS_MIN <= d <= FLT_MAX
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
NAN32 = np.float32(np.nan)

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
        return numba.njit(signatures, cache=True, nogil=True, error_model='numpy')(fn)
    except RuntimeError:  # "cannot cache ...: no locator available": no writable cache directory
        return numba.njit(signatures, nogil=True, error_model='numpy')(fn)


def tof_reading_ok(t: np.ndarray, confidence: np.ndarray | None, lo: float, hi: float,
                   cthr: float) -> np.ndarray:
    """ToF validity of readings ``t`` (and their confidences, or None): the first half of the rule."""
    ok = (t >= lo) & (t <= hi)
    if confidence is not None:
        ok &= confidence >= cthr
    return ok


def fuse_reference(student, srow, scol, tof, trow, tcol, confidence, cthr, lo, hi, tscale, alpha, beta, fill,
                   out, source) -> tuple[int, int]:
    """The rule in numpy (see the module docstring); writes ``out``/``source``, returns (ToF, student)
    pixel counts."""
    grid = np.ix_(trow, tcol)
    t = tof[grid]
    tof_ok = tof_reading_ok(t, confidence[grid], lo, hi, cthr)
    with np.errstate(over='ignore', invalid='ignore'):  # huge * alpha: inf, then not a reading
        d = student[np.ix_(srow, scol)] * alpha + beta
    student_ok = ~tof_ok & (d >= POS_MIN) & (d <= FLT_MAX) & fill
    out[...] = np.where(tof_ok, t.astype(np.float32) * tscale, np.where(student_ok, d, np.float32(np.nan)))
    source[...] = np.where(tof_ok, 1, np.where(student_ok, 2, 0))
    return int(tof_ok.sum()), int(student_ok.sum())


def _fuse_loop(student, srow, scol, tof, trow, tcol, confidence, cthr, lo, hi, tscale, alpha, beta, fill,
               out, source):
    """The same rule as ``fuse_reference``, one pass over the output pixels, written as selects (no
    branch on the data) so that the compiler vectorizes it; identity index maps are read directly."""
    h, w = out.shape
    same_t = tof.shape[1] == w and tcol[w - 1] == w - 1
    same_s = student.shape[1] == w and scol[w - 1] == w - 1
    if not fill:
        alpha = NAN32  # every student depth NaN: no reading
    n_tof = n_student = 0
    for r in range(h):
        t_row, c_row, s_row = tof[trow[r]], confidence[trow[r]], student[srow[r]]
        for c in range(w):
            tc = c if same_t else tcol[c]
            t = t_row[tc]
            ok = (t >= lo) & (t <= hi) & (c_row[tc] >= cthr)
            d = s_row[c if same_s else scol[c]] * alpha + beta
            reading = (d >= POS_MIN) & (d <= FLT_MAX)
            out[r, c] = np.float32(t) * tscale if ok else (d if reading else NAN32)
            source[r, c] = 1 if ok else (2 if reading else 0)
            n_tof += ok
            n_student += reading & (not ok)
    return n_tof, n_student


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


@_jit
def _scale_holes(depth, labels, factors):
    for r in range(depth.shape[0]):
        for c in range(depth.shape[1]):
            depth[r, c] *= factors[labels[r, c]] if labels[r, c] > 0 else np.float32(1.0)


def _compile():
    """The compiled entry points (explicit signatures: compiled, or loaded from the cache, at import) and
    what went wrong instead."""
    if _NUMBA_PROBLEM:
        return None, None, _NUMBA_PROBLEM

    def arr(dtype, dims=2):  # C-contiguous: the layout the compiler vectorizes (Fuser makes sure of it)
        return types.Array(dtype, dims, 'C', readonly=True)

    idx, f32, f64 = arr(types.int64, 1), types.float32, types.float64
    out = (types.Array(f32, 2, 'C'), types.Array(types.uint8, 2, 'C'))
    fuse_sigs = [types.UniTuple(types.int64, 2)(arr(f32), idx, idx, arr(t), idx, idx, arr(c), f64, f64, f64,
                                                f32, f32, f32, types.boolean, *out)
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


def scale_holes(depth: np.ndarray, labels: np.ndarray, factors: np.ndarray) -> None:
    """Multiply ``depth`` in place by ``factors[label]`` where ``labels`` (of ``hole_scales``) is > 0."""
    _scale_holes(depth, labels, factors)


def hole_scales(tof_m: np.ndarray, tof_ok: np.ndarray, corrected: np.ndarray, labels: np.ndarray,
                min_ring: int) -> np.ndarray | None:
    """Per-hole scales (see ``_hole_scales``), or None without the compiled pass."""
    if _hole_scales_compiled is None:
        return None
    return _hole_scales_compiled(tof_m, tof_ok, corrected, labels, min_ring)
