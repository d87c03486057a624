"""The per-pixel work of the fusion: the rule as a numpy specification and as one compiled pass, and the
hole labelling of local alignment.

For output pixel ``(r, c)`` (``srow``/``scol`` and ``trow``/``tcol`` name the student and ToF pixels it
reads, see ``rc_perception.camera.AxisMap.nearest``):

* the ToF reading ``t`` is valid when ``lo <= t <= hi`` and ``confidence >= cthr``, each compared in its
  image's dtype (``depth_fusion.fusion`` turns the ranges into such bounds, so that 0 mm, NaN and infinities
  fail); its value in metres is ``float32(t) / tdiv`` (1000 for millimetres, correctly rounded);
* else the student depth, corrected as ``d * alpha + beta`` in float32, is used where it is finite and > 0;
* else NaN. ``source`` says which: 0 none, 1 ToF, 2 student.

On the rows ``r % step == step // 2`` the pass also measures the student against the valid ToF (the live
accuracy): the pixels with both, those within a factor 1.25 (delta1: ``d - t < t / 4`` and ``t - d < d / 4``,
exact in float32) and the sum of ``|d - t| / t``.

A missing image is a 1 x 1 stand-in that never passes (a NaN student, a ToF with ``lo > hi``).
``fuse_reference`` is the executable specification (the tests compare the compiled pass with it on random
inputs); the floor plane's passes have theirs in ``depth_fusion.ground``; local alignment
(``hole_scales``, ``scale_holes``) exists compiled only. Without numba the compiled names are None.
"""

from __future__ import annotations

import numpy as np

from rc_perception.depth import metre_bounds

__all__ = ['COMPILED', 'COMPILE_PROBLEM', 'fuse_compiled', 'fuse_reference', 'hole_scales', 'plane_support',
           'scale_holes', 'snap_compiled', 'tof_reading_ok']

POS_MIN, FLT_MAX = metre_bounds()  # float32: a depth d is a reading when POS_MIN <= d <= FLT_MAX
NAN32 = np.float32(np.nan)
_NONE, _TOF, _STUDENT = np.uint8(0), np.uint8(1), np.uint8(2)
_QUARTER = np.float32(0.25)

try:
    import numba
    from numba import types
    _NUMBA_PROBLEM = 'NUMBA_DISABLE_JIT is set' if numba.config.DISABLE_JIT else ''
except ImportError as exc:
    _NUMBA_PROBLEM = f'numba cannot be imported ({exc})'


def _jit(fn=None, signatures=None, **options):
    """numba.njit with its on-disk cache where one is writable (else compiled anew at each start); the
    function itself without numba."""
    if fn is None:
        return lambda f: _jit(f, signatures, **options)
    if _NUMBA_PROBLEM:
        return fn
    options.update(nogil=True, error_model='numpy')
    try:
        return numba.njit(signatures, cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache ...: no locator available": no writable cache directory
        return numba.njit(signatures, **options)(fn)


def tof_reading_ok(t: np.ndarray, confidence: np.ndarray | None, lo, hi, cthr) -> np.ndarray:
    """ToF validity of readings ``t`` (and their confidences, or None): the first half of the rule."""
    ok = (t >= lo) & (t <= hi)
    if confidence is not None:
        ok &= confidence >= cthr
    return ok


def fuse_reference(student, srow, scol, tof, trow, tcol, confidence, cthr, lo, hi, tdiv, alpha, beta, step,
                   out, source) -> tuple[int, int, int, int, float]:
    """The rule in numpy (see the module docstring); writes ``out``/``source``, returns the ToF and student
    pixel counts and, on the measured rows, the pixels with both, those within delta1, and the AbsRel sum."""
    grid = np.ix_(trow, tcol)
    t = tof[grid]
    tof_ok = tof_reading_ok(t, confidence[grid], lo, hi, cthr)
    tm = t.astype(np.float32) / tdiv
    with np.errstate(over='ignore', invalid='ignore', divide='ignore'):  # huge * alpha: inf, not a reading
        d = student[np.ix_(srow, scol)] * alpha + beta
        student_ok = (d >= POS_MIN) & (d <= FLT_MAX)
        out[...] = np.where(tof_ok, tm, np.where(student_ok, d, NAN32))
        source[...] = np.where(tof_ok, _TOF, np.where(student_ok, _STUDENT, _NONE))
        rows = slice(step // 2, None, step)
        both = (tof_ok & student_ok)[rows]
        d, tm = d[rows][both], tm[rows][both]
        delta1 = (d - tm < _QUARTER * tm) & (tm - d < _QUARTER * d)
        absrel = float(np.sum(np.abs(d - tm) / tm, dtype=np.float64))
    return int(tof_ok.sum()), int((student_ok & ~tof_ok).sum()), int(both.sum()), int(delta1.sum()), absrel


@_jit(inline='always')
def _fuse_row(s_row, t_row, c_row, cthr, lo, hi, tdiv, alpha, beta, o_row, src_row, measure):
    """One output row of the rule, from rows of the three inputs on the output grid."""
    n_tof = n_student = n_both = n_delta1 = np.int32(0)  # int32 keeps the loop in full-width vectors
    absrel = 0.0  # float64: the sum of a row of float32 terms may exceed float32's range
    for c in range(o_row.size):
        t = t_row[c]
        ok = (t >= lo) & (t <= hi) & (c_row[c] >= cthr)
        d = s_row[c] * alpha + beta
        reading = (d >= POS_MIN) & (d <= FLT_MAX)
        tm = np.float32(t) / tdiv
        value, src = NAN32, _NONE
        if reading:
            value, src = d, _STUDENT
        if ok:
            value, src = tm, _TOF
        o_row[c] = value
        src_row[c] = src
        n_tof = np.int32(n_tof + ok)
        n_student = np.int32(n_student + (reading & (not ok)))
        if measure:
            both = ok & reading
            n_both = np.int32(n_both + both)
            n_delta1 = np.int32(n_delta1 + (both & (d - tm < _QUARTER * tm) & (tm - d < _QUARTER * d)))
            absrel += np.abs(d - tm) / tm if both else np.float32(0.0)
    return n_tof, n_student, n_both, n_delta1, absrel


@_jit(inline='always')
def _identity(index, size):
    if index.size != size:
        return False
    for i in range(size):
        if index[i] != i:
            return False
    return True


def _fuse_loop(student, srow, scol, tof, trow, tcol, confidence, cthr, lo, hi, tdiv, alpha, beta, step,
               out, source):
    """``fuse_reference`` as one pass over the output rows: rows of images on the output grid are read in
    place, others are first gathered into a row buffer, so that the rule always runs as one vector loop."""
    h, w = out.shape
    direct = _identity(scol, student.shape[1]) and _identity(tcol, tof.shape[1])
    s_buf, t_buf, c_buf = np.empty(w, student.dtype), np.empty(w, tof.dtype), np.empty(w, confidence.dtype)
    n_tof = n_student = n_both = n_delta1 = 0
    absrel = 0.0
    for r in range(h):
        sr, tr, measure = srow[r], trow[r], r % step == step // 2
        if direct:
            counts = _fuse_row(student[sr], tof[tr], confidence[tr], cthr, lo, hi, tdiv, alpha, beta,
                               out[r], source[r], measure)
        else:
            for c in range(w):
                s_buf[c], t_buf[c], c_buf[c] = student[sr, scol[c]], tof[tr, tcol[c]], confidence[tr, tcol[c]]
            counts = _fuse_row(s_buf, t_buf, c_buf, cthr, lo, hi, tdiv, alpha, beta, out[r], source[r],
                               measure)
        n_tof += counts[0]
        n_student += counts[1]
        n_both += counts[2]
        n_delta1 += counts[3]
        absrel += counts[4]
    return n_tof, n_student, n_both, n_delta1, absrel


@_jit
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@_jit
def _label_holes(source, labels, pix, lab):
    """4-connected regions of pixels without a valid ToF reading (``source`` != 1) into ``labels`` (1..n in
    the raster order of their first pixels; 0 elsewhere), and every (valid ToF pixel, neighbouring hole)
    adjacency, each seen once: the pixel's flat index into ``pix``, the hole into ``lab``. Returns n and the
    number of adjacencies."""
    h, w = source.shape
    parent = np.empty(h * w // 2 + 2, np.int32)  # union-find over provisional labels (<= every other pixel)
    nxt = 1
    k = 0
    for r in range(h):
        for c in range(w):
            up = labels[r - 1, c] if r > 0 else -1  # -1: outside the image, 0: a valid ToF pixel
            left = labels[r, c - 1] if c > 0 else -1
            if source[r, c] == _TOF:
                labels[r, c] = 0
                for other in (up, left):
                    if other > 0:
                        pix[k], lab[k] = r * w + c, other
                        k += 1
                continue
            a, b = max(up, 0), max(left, 0)
            if a == 0 and b == 0:
                parent[nxt] = label = nxt
                nxt += 1
            elif a == 0 or b == 0 or a == b:
                label = max(a, b)
            else:
                a, b = _find(parent, a), _find(parent, b)
                label = parent[max(a, b)] = min(a, b)
            labels[r, c] = label
            if up == 0:
                pix[k], lab[k] = (r - 1) * w + c, label
                k += 1
            if left == 0:
                pix[k], lab[k] = r * w + c - 1, label
                k += 1
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
    for i in range(k):
        lab[i] = final[lab[i]]
    return n, k


def _hole_scales(out, source, student, srow, scol, alpha, beta, labels, min_ring):
    """Local alignment's scale of each hole (a 4-connected region without a valid ToF reading) of a fused
    frame (``out``, ``source``): the median of ToF / corrected student depth over the valid ToF pixels
    bordering it (the student ``d * alpha + beta``, float32, read through the index maps), NaN where fewer
    than ``min_ring`` such pixels. Fills ``labels`` (1..n, 0 on valid ToF); returns n + 1 scales (index 0
    unused)."""
    h, w = labels.shape
    pix, lab = np.empty(2 * h * w, np.int32), np.empty(2 * h * w, np.int32)
    n, k = _label_holes(source, labels, pix, lab)
    count = np.zeros(n + 2, np.int64)  # adjacencies per hole; then, for those with enough, where they go
    for i in range(k):
        count[lab[i]] += 1
    start = np.full(n + 2, -1, np.int64)
    total = 0
    for hole in range(1, n + 1):
        if count[hole] >= min_ring:  # a border pixel may touch a hole up to 4 times: a bound
            start[hole] = total
            total += count[hole]
    border, pos = np.empty(total, np.int32), start.copy()
    for i in range(k):
        if pos[lab[i]] >= 0:
            border[pos[lab[i]]] = pix[i]
            pos[lab[i]] += 1
    seen = np.zeros(h * w, np.int32)  # the hole a border pixel was last counted for
    ratios = np.empty(total)
    scales = np.full(n + 1, np.nan)
    for hole in range(1, n + 1):
        m = 0
        for j in range(start[hole], pos[hole]):
            p = border[j]
            r, c = p // w, p % w
            s = student[srow[r], scol[c]] * alpha + beta
            if seen[p] != hole and POS_MIN <= s <= FLT_MAX:
                ratios[m] = out[r, c] / s
                m += 1
            seen[p] = hole
        if m >= min_ring and start[hole] >= 0:
            scales[hole] = np.median(ratios[:m])
    return scales


def _scale_holes(out, source, labels, factors):
    """Multiply the student pixels (source 2) of ``out`` by ``factors[label]`` in place (each row's factors
    gathered first: the update runs as one vector loop); those that are no reading afterwards become NaN,
    source 0. Returns how many did."""
    w = out.shape[1]
    row_factors = np.empty(w, np.float32)
    lost = 0
    for r in range(out.shape[0]):
        for c in range(w):
            row_factors[c] = factors[labels[r, c]]
        lost_row = np.int32(0)
        for c in range(w):
            d = out[r, c] * row_factors[c]
            student = source[r, c] == _STUDENT
            gone = student & ~((d >= POS_MIN) & (d <= FLT_MAX))
            value = out[r, c]
            if student:
                value = d
            if gone:
                value = NAN32
            out[r, c] = value
            source[r, c] = _NONE if gone else source[r, c]
            lost_row = np.int32(lost_row + gone)
        lost += lost_row
    return lost


def _snap_loop(out, source, a, b, c, keep):
    """``ground.snap_to_ground`` as one pass, the plane's inverse depth computed as ``inverse_depth`` does."""
    snapped = 0
    for r in range(out.shape[0]):
        row_inverse = np.float32(r) * b + c
        snapped_row = np.int32(0)
        for col in range(out.shape[1]):
            inverse = row_inverse + np.float32(col) * a
            snap = (out[r, col] * inverse >= keep) & (source[r, col] == _STUDENT)
            out[r, col] = np.float32(1.0) / inverse if snap else out[r, col]
            snapped_row = np.int32(snapped_row + snap)
        snapped += snapped_row
    return snapped


def _plane_support(u, v, inv, limit, planes):
    """``ground.plane_support`` compiled."""
    counts = np.zeros(planes.shape[0], np.int64)
    for k in range(planes.shape[0]):
        a, b, c = planes[k, 0], planes[k, 1], planes[k, 2]
        for i in range(u.size):
            counts[k] += np.abs(u[i] * a + v[i] * b + c - inv[i]) <= limit[i]
    return counts


def _compile() -> tuple[dict, str]:
    """The compiled entry points (explicit signatures: compiled, or loaded from the cache, at import) and
    what went wrong instead."""
    if _NUMBA_PROBLEM:
        return {}, _NUMBA_PROBLEM

    def arr(dtype, dims=2, readonly=True):  # C-contiguous: the layout the compiler vectorizes
        return types.Array(dtype, dims, 'C', readonly=readonly)

    i64, f32, f64, u8 = types.int64, types.float32, types.float64, types.uint8
    idx, out, src = arr(i64, 1), arr(f32, readonly=False), arr(u8, readonly=False)
    counts = types.Tuple((i64, i64, i64, i64, f64))
    fuse_sigs = [counts(arr(f32), idx, idx, arr(t), idx, idx, arr(c), c, t, t, f32, f32, f32, i64, out, src)
                 for t in (types.uint16, f32) for c in (u8, types.uint16, f32)]
    labels = arr(types.int32, readonly=False)
    try:
        return {'fuse': _jit(_fuse_loop, fuse_sigs, fastmath={'reassoc'}),  # reassoc: the AbsRel sums
                'hole_scales': _jit(_hole_scales, [arr(f64, 1, False)(out, src, arr(f32), idx, idx, f32, f32,
                                                                      labels, i64)]),
                'scale_holes': _jit(_scale_holes, [i64(out, src, labels, arr(f32, 1))]),
                'snap': _jit(_snap_loop, [i64(out, arr(u8), f32, f32, f32, f32)]),
                'plane_support': _jit(_plane_support, [arr(i64, 1, False)(*[arr(f64, 1)] * 4, arr(f64))])}, ''
    except Exception as exc:  # an odd platform or a numba bug: the numpy rule still works
        return {}, f'numba could not compile the fusion kernel ({type(exc).__name__}: {exc})'


_COMPILED, COMPILE_PROBLEM = _compile()
#: True when the compiled passes are available (else ``fuse_reference`` serves and local alignment is off).
COMPILED = bool(_COMPILED)
fuse_compiled, hole_scales, scale_holes, plane_support = (_COMPILED.get(name) for name in (
    'fuse', 'hole_scales', 'scale_holes', 'plane_support'))


def snap_compiled(out: np.ndarray, source: np.ndarray, plane, tolerance: float) -> int:
    """``ground.snap_to_ground`` compiled (same arguments and result)."""
    return _COMPILED['snap'](out, source, np.float32(plane.a), np.float32(plane.b), np.float32(plane.c),
                             np.float32(1.0 - tolerance))
