"""Confidence-gated ToF / student depth fusion (pure numpy; no ROS imports).

Per pixel of the output grid:

* the **ToF** reading is valid when, in metres, it is finite, > 0 and within ``[range_min, range_max]``
  (16UC1 / mono16 millimetres are converted as ``float32(mm) * 0.001``, so 0 mm is invalid), and, when a
  confidence image is given, its confidence is ``>= confidence_threshold`` in the confidence image's own
  units (mono8 / mono16 / 16UC1 integers, or 32FC1; NaN confidence fails);
* the **student** depth, after the correction of ``mode``, is valid when finite and > 0;
* output = the ToF reading where it is valid, else the corrected student depth where that is valid,
  else NaN (never 0.0). The source map says which: 0 none, 1 ToF, 2 student.

A valid ToF pixel is therefore never replaced by the student, whatever the correction.

Corrections of the student depth (``mode``):

* ``gated``: none (the student depth as is);
* ``affine``: ``alpha * d + beta`` with fixed alpha, beta (parameters or a calibration file);
* ``median``: per frame, ``median(ToF) / median(student)`` over pixels where both are valid, when at least
  ``median_min_pixels`` such pixels exist, else no correction;
* ``online_affine``: per frame, ``depth_fusion.calibration.robust_affine_fit`` on the pixels where both are
  valid, smoothed over frames (``online_smoothing``); a frame whose fit fails (too few inliers,
  ill-conditioned, no ToF) contributes the calibrated alpha, beta instead, so the estimate returns to the
  calibration while fits keep failing.

``median`` and ``online_affine`` look at ``fit_sample_size`` pixel positions of the output grid, drawn once
per grid size (seeded, so results are reproducible) rather than all of them: the fit of two numbers from a
few thousand pixels is as good as from 300,000 and costs ~2 ms instead of ~18 ms at 480x640.
Their pixel counts (``median_min_pixels``, ``online_min_inliers``) count pixels among those positions.

Resolution: the output grid is the student's by default; a ToF image of another size is resampled to it by
nearest neighbour when the sizes differ by one integer factor on both axes (no interpolation, so invalid
pixels are never blended into valid ones). ``output_grid='tof'`` resamples the student to the ToF grid
instead. Downsampling by ``f`` takes source pixel ``f * i + f // 2`` (the one nearest the output pixel's
centre; for an even ``f`` the later of the two equally near); upsampling repeats each pixel ``f`` times.
Any other size pair raises ``GridError`` naming both.

Cost (benchmarks/bench_fusion.py): ``Fuser`` keeps its scratch and output arrays between frames and uses
``out=`` ufuncs. The output is written chunk by chunk (about ``CHUNK_PIXELS`` pixels, so that a chunk's
temporaries stay in the L2 cache between passes: ~20 % faster than whole-frame passes at 480x640), and the
ToF / student selection is a branch-free blend of the float bit patterns (``_blend``), whose cost does not
depend on the mask's pattern. Returned arrays belong to the ``Fuser`` and are overwritten by its next
call: publish or copy them first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from depth_fusion.calibration import ALPHA_RANGE, BETA_RANGE, median_scale, robust_affine_fit
from rc_perception.camera import integer_factor
from rc_perception.depth import DEPTH_ENCODINGS, MM_ENCODINGS, MM_TO_M, metre_bounds

__all__ = [
    'CONFIDENCE_ENCODINGS', 'MODES', 'OUTPUT_GRIDS', 'SOURCE_NONE', 'SOURCE_STUDENT', 'SOURCE_TOF',
    'Correction', 'Fuser', 'FusionConfig', 'FusionResult', 'GridError', 'fuse', 'grid_scale',
    'resample_nearest', 'tof_valid',
]

MODES = ('gated', 'affine', 'median', 'online_affine')
OUTPUT_GRIDS = ('student', 'tof')
SOURCE_NONE, SOURCE_TOF, SOURCE_STUDENT = 0, 1, 2
#: Encodings accepted for the ToF confidence image (threshold in the image's own units).
CONFIDENCE_ENCODINGS = ('mono8', '8UC1', 'mono16', '16UC1', '32FC1')
#: Seed of the pixel positions that median and online_affine sample.
SAMPLE_SEED = 0

_POS_MIN, _FLT_MAX = metre_bounds()  # a depth is a reading when _POS_MIN <= d <= _FLT_MAX (> 0, finite)
_NAN = np.float32(np.nan)
_NAN_ARRAY_SCALAR = np.array(_NAN)  # 0-d, so that .view(np.uint32) gives an array
_NAN_ARRAY_SCALAR.flags.writeable = False  # shared by every Fuser
_U8 = np.uint8
_UINT_MAX = {1: 255, 2: 65535}


class GridError(ValueError):
    """Two images that cannot be put on one grid; the message names both sizes."""


def _size(shape: tuple[int, ...]) -> str:
    return f'{shape[1]}x{shape[0]}'


@dataclass(frozen=True)
class FusionConfig:
    """Fusion settings; the field names are the node's parameter names."""

    mode: str = 'gated'
    range_min: float = 0.1
    range_max: float = 4.0
    confidence_threshold: float = 50.0  # mono8 confidence (0-255); see the node parameter
    alpha: float = 1.0
    beta: float = 0.0
    median_min_pixels: int = 100
    fit_sample_size: int = 8192
    online_smoothing: float = 0.8
    online_min_inliers: int = 200
    online_outlier_threshold: float = 0.15
    online_min_spread: float = 0.2
    output_grid: str = 'student'

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with these settings, or None."""
        if self.mode not in MODES:
            return f"mode must be one of {', '.join(MODES)}, got {self.mode!r}"
        if self.output_grid not in OUTPUT_GRIDS:
            return f"output_grid must be one of {', '.join(OUTPUT_GRIDS)}, got {self.output_grid!r}"
        if not (0.0 <= self.range_min < self.range_max):
            return f'range_min ({self.range_min}) must be >= 0 and smaller than range_max ({self.range_max})'
        if not ALPHA_RANGE[0] <= self.alpha <= ALPHA_RANGE[1]:
            return f'alpha must be within [{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}], got {self.alpha}'
        if not BETA_RANGE[0] <= self.beta <= BETA_RANGE[1]:
            return f'beta must be within [{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}], got {self.beta}'
        if not 0.0 <= self.online_smoothing < 1.0:
            return f'online_smoothing must be in [0, 1), got {self.online_smoothing}'
        if self.online_outlier_threshold <= 0.0:
            return f'online_outlier_threshold must be > 0, got {self.online_outlier_threshold}'
        if self.fit_sample_size < 0 or self.median_min_pixels < 1 or self.online_min_inliers < 2:
            return ('fit_sample_size must be >= 0, median_min_pixels >= 1 and online_min_inliers >= 2, got '
                    f'{self.fit_sample_size}, {self.median_min_pixels}, {self.online_min_inliers}')
        return None

    @classmethod
    def from_values(cls, values, **overrides) -> FusionConfig:
        """Build from any object with attributes named like the fields (e.g. a node's parameters)."""
        kwargs = {f.name: getattr(values, f.name) for f in fields(cls) if hasattr(values, f.name)}
        kwargs.update(overrides)
        return cls(**kwargs)


@dataclass(frozen=True)
class Correction:
    """The student correction applied to one frame: ``alpha * d + beta``.

    ``status``: ``none`` (gated, or median without enough pixels), ``calibrated`` (affine), ``median``,
    ``fit`` (online fit used), ``fallback`` (online fit failed; calibrated values fed to the smoother).
    ``detail`` says why; ``inlier_share`` and ``pixels`` describe the fit (NaN / 0 when none was made).
    """

    alpha: float
    beta: float
    status: str
    detail: str = ''
    inlier_share: float = float('nan')
    pixels: int = 0


@dataclass(frozen=True)
class FusionResult:
    """Fused depth (float32 metres, NaN where neither source is valid), the source map (uint8; None when
    not asked for), the correction used and the ToF validity on the output grid (None without ToF). The
    arrays belong to the Fuser (see the module docstring)."""

    depth: np.ndarray
    source: np.ndarray | None
    correction: Correction
    tof_valid: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------- grids

def grid_scale(src_shape: tuple[int, ...], dst_shape: tuple[int, ...], src_name: str = 'image',
               dst_name: str = 'output grid') -> tuple[int, int]:
    """``(up, down)`` such that ``dst = src * up / down`` on both axes, one of them 1.

    Raises:
        GridError: the sizes are not related by the same whole factor on both axes (names both sizes).
    """
    src_shape, dst_shape = tuple(src_shape[:2]), tuple(dst_shape[:2])
    if src_shape == dst_shape:
        return 1, 1
    fy = integer_factor(src_shape[0], dst_shape[0])
    fx = integer_factor(src_shape[1], dst_shape[1])
    if fx is None or fy is None or fx != fy:
        raise GridError(f'{src_name} is {_size(src_shape)} and {dst_name} {_size(dst_shape)}: not an '
                        'integer-factor resize (the same whole factor on both axes)')
    return (int(fx), 1) if fx >= 1 else (1, round(1.0 / fx))


def _upsample(img: np.ndarray, factor: int, out: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """Repeat each pixel ``factor`` times on both axes into ``out`` (two broadcast copies via ``mid``)."""
    h, w = img.shape
    np.copyto(mid.reshape(h, w, factor), img[:, :, None])
    np.copyto(out.reshape(h, factor, w * factor), mid[:, None, :])
    return out


def resample_nearest(img: np.ndarray, shape: tuple[int, int], src_name: str = 'image',
                     dst_name: str = 'output grid') -> np.ndarray:
    """Nearest-neighbour resample of a 2-D image to ``shape`` (an integer factor away).

    Returns ``img`` itself for the same size, a strided view when downsampling (pixel ``f * i + f // 2``)
    and a new array when upsampling.

    Raises:
        GridError: not an integer-factor resize.
    """
    up, down = grid_scale(img.shape, shape, src_name, dst_name)
    if down > 1:
        o = down // 2
        return img[o::down, o::down]
    if up > 1:
        h, w = img.shape
        return _upsample(img, up, np.empty(shape, img.dtype), np.empty((h, w * up), img.dtype))
    return img


# ------------------------------------------------------------------------------------------ validity

@lru_cache(maxsize=32)
def _mm_bounds(range_min: float, range_max: float) -> tuple[np.uint16, np.uint16]:
    """Integer millimetre bounds equivalent to testing ``float32(mm) * MM_TO_M`` against
    ``metre_bounds``, so 16UC1 and 32FC1 inputs of the same depths agree to the last pixel."""
    lo, hi = metre_bounds(range_min, range_max)
    metres = np.arange(65536, dtype=np.float32) * MM_TO_M
    ok = np.flatnonzero((metres >= lo) & (metres <= hi))
    if ok.size == 0:
        return np.uint16(1), np.uint16(0)  # empty interval
    return np.uint16(ok[0]), np.uint16(ok[-1])


def _check_tof(tof: np.ndarray, encoding: str) -> bool:
    """Validate a ToF array against its encoding; returns True for millimetres."""
    if tof.ndim != 2:
        raise ValueError(f'ToF depth must be 2-D (H, W), got shape {tof.shape}')
    if encoding in MM_ENCODINGS:
        if tof.dtype.kind != 'u' or tof.dtype.itemsize != 2:
            raise ValueError(f"ToF encoding '{encoding}' needs uint16 millimetres, got {tof.dtype}")
        return True
    if encoding == '32FC1':
        if tof.dtype != np.float32:  # native byte order too: the selection works on the bit patterns
            raise ValueError(f"ToF encoding '32FC1' needs float32 metres (native byte order), got "
                             f"{tof.dtype}")
        return False
    raise ValueError(f"ToF depth encoding must be one of {', '.join(sorted(DEPTH_ENCODINGS))}, "
                     f"got '{encoding}'")


def _check_confidence(confidence: np.ndarray, tof_shape: tuple[int, ...]) -> None:
    if confidence.ndim != 2:
        raise ValueError(f'confidence image must be 2-D (H, W), got shape {confidence.shape}')
    if confidence.shape != tof_shape:
        raise GridError(f'confidence image is {_size(confidence.shape)} and its ToF depth '
                        f'{_size(tof_shape)}: they must be the same size')
    kind, size = confidence.dtype.kind, confidence.dtype.itemsize
    if not ((kind == 'u' and size in (1, 2)) or (kind == 'f' and size == 4)):
        raise ValueError(f'confidence image must be uint8, uint16 or float32, got {confidence.dtype}')


def _range_pass(tof: np.ndarray, is_mm: bool, range_min: float, range_max: float, out: np.ndarray,
                tmp: np.ndarray) -> None:
    lo, hi = _mm_bounds(range_min, range_max) if is_mm else metre_bounds(range_min, range_max)
    np.greater_equal(tof, lo, out=out)      # NaN, 0, negatives, -inf fail here
    np.less_equal(tof, hi, out=tmp)         # NaN, +inf fail here
    np.logical_and(out, tmp, out=out)


def _confidence_pass(confidence: np.ndarray, threshold: float, out: np.ndarray, tmp: np.ndarray) -> None:
    if confidence.dtype.kind == 'u':
        t = math.ceil(threshold)  # integer c >= threshold  <=>  c >= ceil(threshold)
        if t <= 0:
            return  # every value passes
        if t > _UINT_MAX[confidence.dtype.itemsize]:
            out.fill(False)
            return
        np.greater_equal(confidence, confidence.dtype.type(t), out=tmp)
    else:
        np.greater_equal(confidence, np.float32(threshold), out=tmp)  # NaN fails
    np.logical_and(out, tmp, out=out)


def tof_valid(tof: np.ndarray, encoding: str, range_min: float, range_max: float,
              confidence: np.ndarray | None = None, confidence_threshold: float = 0.0) -> np.ndarray:
    """Boolean validity of each ToF pixel (see the module docstring), at the ToF's own size.

    Raises:
        ValueError: an encoding that is not a depth encoding, or a dtype that does not fit it.
        GridError: a confidence image of another size.
    """
    is_mm = _check_tof(tof, encoding)
    out = np.empty(tof.shape, bool)
    tmp = np.empty(tof.shape, bool)
    _range_pass(tof, is_mm, range_min, range_max, out, tmp)
    if confidence is not None:
        _check_confidence(confidence, tof.shape)
        _confidence_pass(confidence, confidence_threshold, out, tmp)
    return out


def _gather(img: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """``img`` at flat pixel indices (of its own 2-D shape); strided views are handled too."""
    if img.flags.c_contiguous:
        return np.take(img.reshape(-1), flat)
    rows, cols = np.divmod(flat, img.shape[1])
    return img[rows, cols]


#: Pixels per chunk of the output loop: the chunk's temporaries stay in the CPU's L2 cache between passes.
CHUNK_PIXELS = 65536


def _blend(out: np.ndarray, base, src: np.ndarray, mask: np.ndarray, diff: np.ndarray) -> None:
    """``out = src where mask else base`` for float32 (``base`` may be a 0-d array; ``out`` may be ``base``),
    bit-exact and NaN-safe: ``out = base + mask * (src - base)`` on the uint32 bit patterns, with
    wrap-around arithmetic and the bool mask's bytes as the 0/1 factor. ``diff``: uint32 scratch, out's shape.

    Why not a masked copy: numpy's ``copyto(where=)``, ``putmask``, boolean indexing and ``np.where``
    branch on every mask byte, so their cost follows the mask's pattern. These three passes cost the same
    whatever the mask: about as much as ``copyto(where=)`` on the coherent holes of a real ToF image and
    ~4x less on a salt-and-pepper one (the 'selection' table of benchmarks/bench_fusion.py), so a scene
    that breaks the ToF into speckle cannot blow the frame budget.
    """
    base_bits = base.view(np.uint32)
    np.subtract(src.view(np.uint32), base_bits, out=diff)
    np.multiply(diff, mask.view(_U8), out=diff)
    np.add(base_bits, diff, out=out.view(np.uint32))


def _chunk_rows(shape: tuple[int, int]) -> int:
    """Rows per chunk: the frame split into equal chunks of at most about CHUNK_PIXELS pixels."""
    height, width = shape
    chunks = max(1, -(-height * width // CHUNK_PIXELS))
    return max(1, -(-height // chunks))


def _invalid_to_nan(depth: np.ndarray, bad: np.ndarray, tmp: np.ndarray, diff: np.ndarray) -> None:
    """NaN (in place) where a student depth is 0, negative or infinite (scratch arrays of its shape)."""
    np.less(depth, _POS_MIN, out=bad)      # 0, negatives, -inf; NaN compares false and stays NaN
    np.greater(depth, _FLT_MAX, out=tmp)   # +inf
    np.logical_or(bad, tmp, out=bad)
    if bad.any():
        _blend(depth, depth, _NAN_ARRAY_SCALAR, bad, diff)


def _corrected_student(st: np.ndarray, alpha: np.float32, beta: np.float32, scratch: np.ndarray,
                       bad: np.ndarray, tmp: np.ndarray, diff: np.ndarray) -> tuple[np.ndarray, bool]:
    """``alpha * st + beta`` with NaN where that is no depth reading, and whether every pixel was one.

    ``st`` itself is returned when nothing changes it (identity correction, all pixels valid); otherwise
    the result is written to ``scratch`` (``bad``, ``tmp``, ``diff``: scratch arrays of the same shape).
    """
    base = st
    if alpha != 1.0 or beta != 0.0:
        np.multiply(st, alpha, out=scratch)
        if beta != 0.0:
            np.add(scratch, beta, out=scratch)
        base = scratch
    # min and max propagate NaN: two reductions tell whether any pixel needs checking (a network's output
    # usually needs none).
    if np.minimum.reduce(base, axis=None) >= _POS_MIN and np.maximum.reduce(base, axis=None) <= _FLT_MAX:
        return base, True
    if base is st:
        np.copyto(scratch, st)
        base = scratch
    _invalid_to_nan(base, bad, tmp, diff)
    return base, False


def _source_chunk(src: np.ndarray, out: np.ndarray, tv: np.ndarray | None, has_student: bool,
                  all_student_valid: bool, has: np.ndarray) -> None:
    """Source map of one chunk, by arithmetic on the masks' 0/1 bytes: SOURCE_TOF (1) where the ToF is
    valid (``tv``), else SOURCE_STUDENT (2) where ``out`` has a value, else SOURCE_NONE (0).
    ``has``: bool scratch of the chunk's shape."""
    if not has_student:
        np.copyto(src, tv.view(_U8))                                 # 1 where ToF, else 0
    elif all_student_valid and tv is None:
        src.fill(SOURCE_STUDENT)
    elif all_student_valid:
        np.subtract(_U8(SOURCE_STUDENT), tv.view(_U8), out=src)      # 2, or 2 - 1 where ToF
    else:
        np.equal(out, out, out=has)                                  # has a value (not NaN)
        np.add(has.view(_U8), has.view(_U8), out=src)                # 2 where a value, else 0
        if tv is not None:
            np.subtract(src, tv.view(_U8), out=src)                  # ToF pixels (all valued): 1


# -------------------------------------------------------------------------------------------- fusion

class Fuser:
    """Fuses frames with one configuration, reusing its arrays; holds the online_affine state.

    Not thread-safe: one caller at a time (the node serializes calls).
    """

    def __init__(self, config: FusionConfig | None = None) -> None:
        self._bufs: dict[str, np.ndarray] = {}
        self._samples: dict[tuple, np.ndarray | None] = {}
        self.config = config or FusionConfig()
        self._online: tuple[float, float] | None = None

    def configure(self, config: FusionConfig) -> None:
        """Use new settings. The online_affine estimate restarts from the calibrated values when the mode,
        alpha or beta change."""
        old = self.config
        self.config = config
        if (old.mode, old.alpha, old.beta) != (config.mode, config.alpha, config.beta):
            self._online = None
        if old.fit_sample_size != config.fit_sample_size:
            self._samples.clear()

    def reset(self) -> None:
        """Forget the online_affine estimate."""
        self._online = None

    # -- buffers
    def _buf(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        arr = self._bufs.get(name)
        if arr is None or arr.shape != shape or arr.dtype != dtype:
            arr = np.empty(shape, dtype)
            self._bufs[name] = arr
        return arr

    def _sample_positions(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Fixed random flat pixel indices of this grid (sorted); None means every pixel."""
        n = self.config.fit_sample_size
        key = (shape, n)
        if key not in self._samples:
            total = shape[0] * shape[1]
            if n == 0 or n >= total:
                self._samples[key] = None
            else:
                rng = np.random.default_rng(SAMPLE_SEED)
                self._samples[key] = np.sort(rng.choice(total, n, replace=False))
        return self._samples[key]

    # -- the pieces
    def _tof_on_grid(self, tof, is_mm, confidence, grid, dst_name):
        """ToF validity on the output grid and the ToF values there (uint16 mm or float32 m views)."""
        cfg = self.config
        up, down = grid_scale(tof.shape, grid, 'ToF depth', dst_name)
        tv = self._buf('tof_valid', grid, bool)
        tmp = self._buf('tof_tmp', grid, bool)
        if up == 1:  # same size or downsampling: work on strided views, only the output pixels
            if down > 1:
                o = down // 2
                tof = tof[o::down, o::down]
                confidence = None if confidence is None else confidence[o::down, o::down]
            _range_pass(tof, is_mm, cfg.range_min, cfg.range_max, tv, tmp)
            if confidence is not None:
                _confidence_pass(confidence, cfg.confidence_threshold, tv, tmp)
            return tv, tof, is_mm
        # Upsampling: validity and metres at the ToF's size, NaN where invalid, then repeat the pixels.
        small_valid = self._buf('tof_small_valid', tof.shape, bool)
        small_tmp = self._buf('tof_small_tmp', tof.shape, bool)
        _range_pass(tof, is_mm, cfg.range_min, cfg.range_max, small_valid, small_tmp)
        if confidence is not None:
            _confidence_pass(confidence, cfg.confidence_threshold, small_valid, small_tmp)
        small = self._buf('tof_small_m', tof.shape, np.float32)
        if is_mm:
            np.multiply(tof, MM_TO_M, out=small, dtype=np.float32)
        else:
            np.copyto(small, tof)
        np.logical_not(small_valid, out=small_tmp)
        np.copyto(small, _NAN, where=small_tmp)
        metres = _upsample(small, up, self._buf('tof_up_m', grid, np.float32),
                           self._buf('tof_up_mid', (tof.shape[0], grid[1]), np.float32))
        np.equal(metres, metres, out=tv)  # not NaN
        return tv, metres, False

    def _student_on_grid(self, student, grid, dst_name):
        up, down = grid_scale(student.shape, grid, 'student depth', dst_name)
        if down > 1:
            o = down // 2
            return student[o::down, o::down]
        if up > 1:
            return _upsample(student, up, self._buf('student_up', grid, np.float32),
                             self._buf('student_up_mid', (student.shape[0], grid[1]), np.float32))
        return student

    def _overlap(self, st, tv, values, is_mm, grid) -> tuple[np.ndarray, np.ndarray]:
        """Student and ToF depths (float64 metres) at the sampled pixels where both are valid."""
        flat = self._sample_positions(grid)
        if flat is None:
            xs, tvs, ys = st, tv, values
        else:
            xs, tvs, ys = (_gather(a, flat) for a in (st, tv, values))
        with np.errstate(invalid='ignore'):
            both = tvs & (xs > 0) & (xs <= _FLT_MAX)
        x = xs[both].astype(np.float64)
        y = ys[both].astype(np.float64)
        if is_mm:
            y *= 0.001
        return x, y

    def _correction(self, st, tv, values, is_mm, grid) -> Correction:
        cfg = self.config
        if cfg.mode == 'gated':
            return Correction(1.0, 0.0, 'none', 'gated: student depth as is')
        if cfg.mode == 'affine':
            return Correction(cfg.alpha, cfg.beta, 'calibrated', 'affine: calibrated alpha, beta')
        if st is None:  # ToF-only frame: nothing to correct, the estimate is left as it is
            if cfg.mode == 'online_affine':
                alpha, beta = self._online or (cfg.alpha, cfg.beta)
            else:
                alpha, beta = 1.0, 0.0
            return Correction(alpha, beta, 'none', 'no student depth')
        x, y = self._overlap(st, tv, values, is_mm, grid) if tv is not None else (np.empty(0), np.empty(0))
        n = int(x.size)
        if cfg.mode == 'median':
            if tv is None:
                return Correction(1.0, 0.0, 'none', 'median: no ToF, student depth as is')
            if n < cfg.median_min_pixels:
                return Correction(1.0, 0.0, 'none', f'median: too few pixels with both depths '
                                  f'({n} < {cfg.median_min_pixels}), student depth as is', pixels=n)
            scale = median_scale(x, y)
            if not (math.isfinite(scale) and ALPHA_RANGE[0] <= scale <= ALPHA_RANGE[1]):
                return Correction(1.0, 0.0, 'none', f'median: unusable scale {scale:.4g}', pixels=n)
            return Correction(scale, 0.0, 'median', f'median of {n} pixels', pixels=n)
        # online_affine
        if tv is None:
            ok, target, detail, share = False, (cfg.alpha, cfg.beta), 'no ToF', float('nan')
        else:
            fit = robust_affine_fit(x, y, outlier_threshold=cfg.online_outlier_threshold,
                                    min_inliers=cfg.online_min_inliers, min_spread=cfg.online_min_spread)
            ok, detail, share = fit.ok, fit.reason, fit.inlier_share
            target = (fit.alpha, fit.beta) if fit.ok else (cfg.alpha, cfg.beta)
        prev = self._online or (cfg.alpha, cfg.beta)
        s = cfg.online_smoothing
        self._online = (s * prev[0] + (1.0 - s) * target[0], s * prev[1] + (1.0 - s) * target[1])
        return Correction(self._online[0], self._online[1], 'fit' if ok else 'fallback',
                          detail if ok else f'fit failed: {detail}; calibrated values used',
                          inlier_share=share, pixels=n)

    # -- the frame
    def fuse(self, student: np.ndarray | None, tof: np.ndarray | None = None, tof_encoding: str = '32FC1',
             confidence: np.ndarray | None = None, *, source_map: bool = True,
             shape: tuple[int, int] | None = None) -> FusionResult:
        """Fuse one frame.

        Args:
            student: float32 metres (H, W); NaN, <= 0 or infinite where invalid. None: ToF-only output.
            tof: the ToF depth (uint16 mm for 16UC1/mono16, float32 m for 32FC1), or None: student-only.
            tof_encoding: the ToF image's encoding.
            confidence: the ToF confidence image (same size as ``tof``); None: no confidence gating.
            source_map: also compute the source map (0 none, 1 ToF, 2 student).
            shape: output grid of a ToF-only frame (default the ToF's size); ignored otherwise.

        Raises:
            GridError: sizes that cannot share a grid (the message names both).
            ValueError: wrong dimensions, dtypes or encodings.
        """
        if student is None and tof is None:
            raise ValueError('nothing to fuse: neither a student depth nor a ToF depth was given')
        if student is not None:
            if student.ndim != 2:
                raise ValueError(f'student depth must be 2-D (H, W), got shape {student.shape}')
            if student.dtype != np.float32:
                raise ValueError(f'student depth must be float32 metres (native byte order), got '
                                 f'{student.dtype}')
        is_mm = False
        if tof is not None:
            is_mm = _check_tof(tof, tof_encoding)
            if confidence is not None:
                _check_confidence(confidence, tof.shape)
        cfg = self.config
        if student is None:
            grid, dst_name = tuple(shape or tof.shape), 'the output grid (student depth size)'
        elif tof is None or cfg.output_grid == 'student':
            grid, dst_name = student.shape, 'student depth'
        else:
            grid, dst_name = tof.shape, 'ToF depth'
        grid = tuple(int(v) for v in grid)

        tv = values = st = None
        if tof is not None:
            tv, values, is_mm = self._tof_on_grid(tof, is_mm, confidence, grid, dst_name)
        if student is not None:
            st = self._student_on_grid(student, grid, dst_name)
        corr = self._correction(st, tv, values, is_mm, grid)

        out = self._buf('out', grid, np.float32)
        source = self._buf('source', grid, _U8) if source_map else None
        # The rest runs chunk by chunk (rows), so that each chunk's temporaries stay in cache.
        rows = _chunk_rows(grid)
        chunk = (rows, grid[1])
        scratch_s = self._buf('chunk_student', chunk, np.float32)
        scratch_t = self._buf('chunk_tof', chunk, np.float32)
        diff = self._buf('chunk_diff', chunk, np.uint32)
        mask_a = self._buf('chunk_mask_a', chunk, bool)
        mask_b = self._buf('chunk_mask_b', chunk, bool)
        alpha, beta = np.float32(corr.alpha), np.float32(corr.beta)
        for r0 in range(0, grid[0], rows):
            r1 = min(r0 + rows, grid[0])
            n = r1 - r0
            o = out[r0:r1]
            tv_c = None if tv is None else tv[r0:r1]
            if st is None:
                base, clean = _NAN_ARRAY_SCALAR, False
            else:
                base, clean = _corrected_student(st[r0:r1], alpha, beta, scratch_s[:n], mask_a[:n],
                                                 mask_b[:n], diff[:n])
            if tv_c is None:
                np.copyto(o, base)
            else:
                tof_c = values[r0:r1]
                if is_mm:  # cast, then a float32 multiply: to_metres' arithmetic, faster than one mixed pass
                    np.copyto(scratch_t[:n], tof_c, casting='safe')
                    np.multiply(scratch_t[:n], MM_TO_M, out=scratch_t[:n])
                    tof_c = scratch_t[:n]
                _blend(o, base, tof_c, tv_c, diff[:n])
            if source is not None:
                _source_chunk(source[r0:r1], o, tv_c, st is not None, clean, mask_a[:n])
        return FusionResult(out, source, corr, tv)


def fuse(student: np.ndarray | None, tof: np.ndarray | None = None, tof_encoding: str = '32FC1',
         confidence: np.ndarray | None = None, config: FusionConfig | None = None, *,
         source_map: bool = True, shape: tuple[int, int] | None = None) -> FusionResult:
    """One frame with a fresh ``Fuser`` (no online_affine history); the arrays returned are new.

    See ``Fuser.fuse`` for the arguments.
    """
    return Fuser(config).fuse(student, tof, tof_encoding, confidence, source_map=source_map, shape=shape)
