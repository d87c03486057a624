"""Confidence-gated ToF / student depth fusion on any pair of grids (pure: no ROS imports; doc/fusion.md).

Per output pixel (``depth_fusion.kernel`` holds the rule): the **ToF** reading where it is valid (finite,
> 0 and within ``[range_min, range_max]`` in metres, 16UC1 / mono16 millimetres as ``float32(mm) / 1000``)
and, with a confidence image, its confidence ``>= confidence_threshold`` in that image's units; else the
**student** depth after the correction of ``mode``, unless the trust gate withholds the fill
(``depth_fusion.trust``); else NaN. The source map says which: 0 none, 1 ToF, 2 student. With
``ground_tolerance`` > 0 the student's floor is then placed on the ToF's floor plane
(``depth_fusion.ground``). A valid ToF pixel is never replaced, whatever the correction.

Corrections (``mode``): ``gated`` none; ``affine`` fixed ``alpha * d + beta``; ``median`` the per-frame ratio
of medians; ``online_affine`` a per-frame robust fit (``calibration.robust_affine_fit``), smoothed, the
calibrated values where it fails; ``local`` that fit, then each hole (a 4-connected region without a valid
ToF reading) scaled by the median ToF / student ratio on its valid border (``kernel.hole_scales``; needs the
compiled kernel). The fits and the floor plane look at ``fit_sample_size`` fixed, seeded pixel positions of
the output grid; the live accuracy at about as many pixels on evenly spaced rows, inside the fusion pass.

Grids: the output grid is the student's (``output_grid='student'``) or the ToF's; the other image is read by
nearest neighbour on ``rc_perception.camera.axis_map``'s convention (any sizes and aspects; nothing is
interpolated). ``Fuser`` keeps its output arrays between frames: the next call overwrites a result's arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np

from depth_fusion import kernel
from depth_fusion.calibration import ALPHA_RANGE, BETA_RANGE, median_scale, robust_affine_fit
from depth_fusion.ground import GroundPlane, fit_ground, ground_contact, snap_to_ground
from depth_fusion.trust import BLIND_POLICIES, Accuracy, TrustGate, Verdict
from rc_perception.camera import axis_map
from rc_perception.depth import DEPTH_ENCODINGS, MM_ENCODINGS, MM_PER_M, metre_bounds

__all__ = ['CONFIDENCE_ENCODINGS', 'MODES', 'OUTPUT_GRIDS', 'SOURCE_NONE', 'SOURCE_STUDENT', 'SOURCE_TOF',
           'Correction', 'Fuser', 'FusionConfig', 'FusionResult', 'fuse', 'resample_nearest', 'tof_valid']

MODES = ('gated', 'affine', 'median', 'online_affine', 'local')
OUTPUT_GRIDS = ('student', 'tof')
SOURCE_NONE, SOURCE_TOF, SOURCE_STUDENT = 0, 1, 2
CONFIDENCE_ENCODINGS = ('mono8', '8UC1', 'mono16', '16UC1', '32FC1')
SAMPLE_SEED = 0  # seed of the pixel positions the fits and the floor plane look at
_NAN_IMAGE = np.full((1, 1), np.nan, np.float32)  # stands in for a missing image: never a reading
_NAN_IMAGE.flags.writeable = False
# (lo, hi, tdiv, cthr) of a missing ToF (the NaN stand-in, zero confidence): lo > hi, none passes
_NO_RULE = (np.float32(1.0), np.float32(0.0), np.float32(1.0), np.uint8(0))


@dataclass(frozen=True)
class FusionConfig:
    """Fusion settings; the field names are the node's parameter names."""

    mode: str = 'local'
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
    local_min_ring: int = 20
    output_grid: str = 'student'
    min_student_delta1: float = 0.75
    trust_hysteresis: float = 0.05
    trust_min_overlap: float = 0.05
    trust_when_blind: str = 'last'
    accuracy_smoothing: float = 0.7
    ground_tolerance: float = 0.25
    ground_contact: bool = False

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with these settings, or None."""
        for name, allowed in (('mode', MODES), ('output_grid', OUTPUT_GRIDS), ('trust_when_blind',
                                                                                BLIND_POLICIES)):
            if getattr(self, name) not in allowed:
                return f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
        if not (0.0 <= self.range_min < self.range_max):
            return f'range_min ({self.range_min}) must be >= 0 and smaller than range_max ({self.range_max})'
        if not ALPHA_RANGE[0] <= self.alpha <= ALPHA_RANGE[1]:
            return f'alpha must be within [{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}], got {self.alpha}'
        if not BETA_RANGE[0] <= self.beta <= BETA_RANGE[1]:
            return f'beta must be within [{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}], got {self.beta}'
        if not (0.0 <= self.online_smoothing < 1.0 and 0.0 <= self.accuracy_smoothing < 1.0):
            return ('online_smoothing and accuracy_smoothing must be in [0, 1), got '
                    f'{self.online_smoothing}, {self.accuracy_smoothing}')
        if not 0.0 <= self.ground_tolerance < 1.0:
            return f'ground_tolerance must be in [0, 1), got {self.ground_tolerance}'
        if self.online_outlier_threshold <= 0.0:
            return f'online_outlier_threshold must be > 0, got {self.online_outlier_threshold}'
        if min(self.fit_sample_size, self.median_min_pixels - 1, self.online_min_inliers - 2,
               self.local_min_ring - 1) < 0:
            return ('fit_sample_size must be >= 0, median_min_pixels >= 1, online_min_inliers >= 2 and '
                    f'local_min_ring >= 1, got {self.fit_sample_size}, {self.median_min_pixels}, '
                    f'{self.online_min_inliers}, {self.local_min_ring}')
        return None

    @classmethod
    def from_values(cls, values, **overrides) -> FusionConfig:
        """Build from any object with attributes named like the fields (e.g. a node's parameters)."""
        kwargs = {f.name: getattr(values, f.name) for f in fields(cls) if hasattr(values, f.name)}
        kwargs.update(overrides)
        return cls(**kwargs)


@dataclass(frozen=True)
class Correction:
    """The student correction of one frame, ``alpha * d + beta``. ``status``: ``none``, ``calibrated``,
    ``median``, ``fit`` or ``fallback`` (online fit failed: calibrated values fed to the smoother);
    ``detail`` says why; ``holes`` / ``holes_scaled``: local mode's holes and those scaled by their border."""

    alpha: float
    beta: float
    status: str
    detail: str = ''
    inlier_share: float = float('nan')
    pixels: int = 0
    holes: int = 0
    holes_scaled: int = 0


@dataclass(frozen=True)
class FusionResult:
    """Fused depth (float32 m, NaN where no source is valid), source map (uint8), the correction, the
    pixel counts taken from each source, the student's accuracy against the ToF in this frame (None
    without both), the trust gate's verdict, the floor plane fitted to the ToF (None: none, or off) and the
    student pixels placed on it. The arrays belong to the Fuser."""

    depth: np.ndarray
    source: np.ndarray
    correction: Correction
    tof_pixels: int
    student_pixels: int
    accuracy: Accuracy | None
    verdict: Verdict
    ground: GroundPlane | None = None
    ground_pixels: int = 0
    contact_pixels: int = 0


_NO_STUDENT = (Correction(1.0, 0.0, 'none', 'no student depth'), None,
               Verdict(True, 'no student depth', None, None, False))


@lru_cache(maxsize=32)
def _mm_bounds(range_min: float, range_max: float) -> tuple[int, int]:
    """Integer millimetre bounds equivalent to testing ``float32(mm) / MM_PER_M`` against ``metre_bounds``
    (16UC1 and 32FC1 inputs of the same depths agree to the last pixel); (1, 0) when none passes."""
    lo, hi = metre_bounds(range_min, range_max)
    metres = np.arange(65536, dtype=np.float32) / MM_PER_M
    ok = np.flatnonzero((metres >= lo) & (metres <= hi))
    return (int(ok[0]), int(ok[-1])) if ok.size else (1, 0)


def _tof_rule(tof: np.ndarray, encoding: str, confidence: np.ndarray | None, cfg) -> tuple:
    """(lo, hi, tdiv, cthr) of ``kernel``'s rule for this ToF; checks dtypes and sizes."""
    if tof.ndim != 2:
        raise ValueError(f'ToF depth must be 2-D (H, W), got shape {tof.shape}')
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"ToF depth encoding must be one of {', '.join(sorted(DEPTH_ENCODINGS))}, got "
                         f"'{encoding}'")
    want = np.dtype(np.uint16 if encoding in MM_ENCODINGS else np.float32)
    if tof.dtype != want:  # native byte order too
        raise ValueError(f"ToF encoding '{encoding}' needs {want} (native byte order), got {tof.dtype}")
    if confidence is not None and confidence.shape != tof.shape:
        raise ValueError(f'confidence image is {_size(confidence.shape)} and its ToF depth '
                         f'{_size(tof.shape)}: they must be the same size')
    if confidence is not None and confidence.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16),
                                                           np.dtype(np.float32)):
        raise ValueError(f'confidence image must be uint8, uint16 or float32, got {confidence.dtype}')
    return _rule(want, None if confidence is None else confidence.dtype, cfg.range_min, cfg.range_max,
                 cfg.confidence_threshold)


@lru_cache(maxsize=32)
def _rule(tof_dtype: np.dtype, confidence_dtype: np.dtype | None, range_min: float, range_max: float,
          threshold: float) -> tuple:
    """The rule's bounds in the ToF's dtype and its threshold in the confidence's (compared there exactly)."""
    if tof_dtype.kind == 'u':
        (lo, hi), tdiv = _mm_bounds(range_min, range_max), MM_PER_M
    else:
        (lo, hi), tdiv = metre_bounds(range_min, range_max), np.float32(1.0)
    if confidence_dtype is None:
        cthr = np.uint8(0)  # the stand-in zeros pass 0
    elif confidence_dtype.kind == 'f':
        cthr = np.float32(threshold)
    elif threshold <= np.iinfo(confidence_dtype).max:  # an integer passes where it passes the ceiling
        cthr = confidence_dtype.type(max(math.ceil(threshold), 0))
    else:                                                # above every integer (or NaN): none passes
        lo, hi, cthr = 1, 0, confidence_dtype.type(0)
    return tof_dtype.type(lo), tof_dtype.type(hi), tdiv, cthr


def _size(shape) -> str:
    return f'{shape[1]}x{shape[0]}'


def tof_valid(tof: np.ndarray, encoding: str, range_min: float, range_max: float,
              confidence: np.ndarray | None = None, confidence_threshold: float = 0.0) -> np.ndarray:
    """Boolean validity of each ToF pixel at the ToF's own size (the fusion's ToF rule).

    Raises:
        ValueError: a non-depth encoding, a dtype that does not fit it, or a confidence of another size.
    """
    cfg = FusionConfig(range_min=range_min, range_max=range_max, confidence_threshold=confidence_threshold)
    lo, hi, _, cthr = _tof_rule(tof, encoding, confidence, cfg)
    return kernel.tof_reading_ok(tof, confidence, lo, hi, cthr)


@lru_cache(maxsize=64)
def _index_map(src: int, dst: int) -> np.ndarray:
    rows = axis_map(src, dst).nearest(dst, src)
    rows.flags.writeable = False
    return rows


def resample_nearest(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``img`` on a ``shape`` grid by nearest neighbour (``axis_map``'s convention), a new array."""
    return img[np.ix_(_index_map(img.shape[0], shape[0]), _index_map(img.shape[1], shape[1]))]


@lru_cache(maxsize=16)
def _sample_positions(grid: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random (rows, cols) of ``n`` pixels of the grid, in raster order; every pixel for n = 0."""
    total = grid[0] * grid[1]
    flat = np.arange(total) if n == 0 or n >= total else \
        np.sort(np.random.default_rng(SAMPLE_SEED).choice(total, n, replace=False))
    return np.divmod(flat, grid[1])


@lru_cache(maxsize=16)
def _sample_index(shape: tuple[int, int], grid: tuple[int, int], n: int) -> np.ndarray:
    """Flat indices into an image of ``shape`` of the sampled positions of the output grid."""
    rows, cols = _sample_positions(grid, n)
    return _index_map(shape[0], grid[0])[rows] * shape[1] + _index_map(shape[1], grid[1])[cols]


@lru_cache(maxsize=16)
def _accuracy_rows(grid: tuple[int, int], n: int) -> tuple[int, int]:
    """(step, pixels): the live accuracy looks at every step-th row of the grid (``kernel``), the step the
    largest that still gives about ``n`` pixels (every row for n = 0), that many pixels in all."""
    step = min(max(grid[0] * grid[1] // n, 1), grid[0]) if n else 1
    return step, len(range(step // 2, grid[0], step)) * grid[1]


@lru_cache(maxsize=8)
def _stand_ins(grid: tuple[int, int], tof_shape: tuple[int, int] | None) -> tuple:
    """Index maps that read pixel (0, 0) of a 1 x 1 stand-in for every output pixel, and the confidence of
    a ToF without one: zeros, which pass the threshold 0 of ``_tof_rule``."""
    arrays = (np.zeros(grid[0], np.int64), np.zeros(grid[1], np.int64),
              np.zeros(tof_shape or (1, 1), np.uint8))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _reading(d: np.ndarray) -> np.ndarray:
    return (d >= kernel.POS_MIN) & (d <= kernel.FLT_MAX)


class Fuser:
    """Fuses frames with one configuration, reusing its arrays; holds the online fit and the trust gate.

    Args:
        config: the settings.
        compiled: use the numba pass (default: when it compiled); False runs the numpy specification.

    Not thread-safe: one caller at a time (the node serializes calls).
    """

    def __init__(self, config: FusionConfig | None = None, compiled: bool | None = None) -> None:
        self.config = config or FusionConfig()
        self.compiled = kernel.COMPILED if compiled is None else bool(compiled) and kernel.COMPILED
        self._bufs: dict[str, np.ndarray] = {}
        self._online: tuple[float, float] | None = None
        c = self.config
        self.gate = TrustGate(c.min_student_delta1, c.trust_hysteresis, c.trust_min_overlap,
                              c.trust_when_blind, c.accuracy_smoothing)

    def configure(self, config: FusionConfig) -> None:
        """New settings; the online estimate restarts from the calibration when mode, alpha or beta change."""
        old, self.config = self.config, config
        if (old.mode, old.alpha, old.beta) != (config.mode, config.alpha, config.beta):
            self._online = None
        self.gate.configure(config.min_student_delta1, config.trust_hysteresis, config.trust_min_overlap,
                            config.trust_when_blind, config.accuracy_smoothing)

    def _buf(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        arr = self._bufs.get(name)
        if arr is None or arr.shape != shape or arr.dtype != dtype:
            arr = self._bufs[name] = np.empty(shape, dtype)
        return arr

    def _kernel(self, inputs: tuple, alpha, beta, step: int, out, source) -> tuple:
        student, smap, tof, tmap, conf, (lo, hi, tdiv, cthr) = inputs
        run = kernel.fuse_compiled if self.compiled else kernel.fuse_reference
        return run(student, *smap, tof, *tmap, conf, cthr, lo, hi, tdiv, np.float32(alpha),
                   np.float32(beta), step, out, source)

    def _sampled(self, inputs: tuple, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Student and ToF depths (float64 metres) at the sampled positions where both are valid."""
        student, _, tof, _, conf, (lo, hi, tdiv, cthr) = inputs
        n = self.config.fit_sample_size
        x = student.reshape(-1).take(_sample_index(student.shape, grid, n))
        at_tof = _sample_index(tof.shape, grid, n)
        t = tof.reshape(-1).take(at_tof)
        both = kernel.tof_reading_ok(t, conf.reshape(-1).take(at_tof), lo, hi, cthr) & _reading(x)
        return x[both].astype(np.float64), (t[both].astype(np.float32) / tdiv).astype(np.float64)

    def _correction(self, inputs: tuple, grid: tuple[int, int], has_tof: bool) -> Correction:
        """The mode's correction of this frame's student depth (the fits from the sampled pixels)."""
        cfg = self.config
        if cfg.mode == 'gated':
            return Correction(1.0, 0.0, 'none', 'gated: student depth as is')
        if cfg.mode == 'affine':
            return Correction(cfg.alpha, cfg.beta, 'calibrated', 'affine: calibrated alpha, beta')
        x, y = self._sampled(inputs, grid) if has_tof else (np.empty(0), np.empty(0))
        n = int(x.size)
        if cfg.mode == 'median':
            scale = median_scale(x, y) if n >= cfg.median_min_pixels else math.nan
            if n < cfg.median_min_pixels or not ALPHA_RANGE[0] <= scale <= ALPHA_RANGE[1]:
                why = f'too few pixels with both depths ({n} < {cfg.median_min_pixels})' \
                    if n < cfg.median_min_pixels else f'unusable scale {scale:.4g}'
                return Correction(1.0, 0.0, 'none', f'median: {why}, student depth as is', pixels=n)
            return Correction(scale, 0.0, 'median', f'median of {n} pixels', pixels=n)
        fit = robust_affine_fit(x, y, outlier_threshold=cfg.online_outlier_threshold,
                                min_inliers=cfg.online_min_inliers, min_spread=cfg.online_min_spread)
        target = (fit.alpha, fit.beta) if fit.ok else (cfg.alpha, cfg.beta)
        prev, s = self._online or (cfg.alpha, cfg.beta), cfg.online_smoothing
        self._online = (s * prev[0] + (1.0 - s) * target[0], s * prev[1] + (1.0 - s) * target[1])
        detail = fit.reason if fit.ok else f"fit failed: {fit.reason if has_tof else 'no ToF'}; calibrated " \
                                           'values used'
        return Correction(*self._online, 'fit' if fit.ok else 'fallback', detail, fit.inlier_share, n)

    def _local(self, inputs: tuple, out: np.ndarray, source: np.ndarray, corr: Correction):
        """Each hole of the fused frame scaled by its border's ratio (``kernel.hole_scales``): the correction
        with the hole counts, and how many student pixels stopped being readings."""
        student, (srow, scol) = inputs[:2]
        labels = self._buf('labels', out.shape, np.int32)
        scales = kernel.hole_scales(out, source, student, srow, scol, np.float32(corr.alpha),
                                    np.float32(corr.beta), labels, self.config.local_min_ring)
        alphas = scales * corr.alpha
        ok = np.isfinite(alphas) & (alphas >= ALPHA_RANGE[0]) & (alphas <= ALPHA_RANGE[1])
        lost = kernel.scale_holes(out, source, labels, np.where(ok, scales, 1.0).astype(np.float32))
        return replace(corr, holes=scales.size - 1, holes_scaled=int(np.count_nonzero(ok))), lost

    def fuse(self, student: np.ndarray | None, tof: np.ndarray | None = None, tof_encoding: str = '32FC1',
             confidence: np.ndarray | None = None, *, shape: tuple[int, int] | None = None,
             stamp_ns: int = 0) -> FusionResult:
        """Fuse one frame.

        Args:
            student: float32 metres (H, W); NaN, <= 0 or infinite where invalid. None: ToF-only output.
            tof: the ToF depth (uint16 mm for 16UC1/mono16, float32 m for 32FC1), or None: student-only.
            tof_encoding: the ToF image's encoding.
            confidence: the ToF confidence image (same size as ``tof``); None: no confidence gating.
            shape: output grid of a ToF-only frame (default the ToF's size); ignored otherwise.
            stamp_ns: the frame's stamp, for the trust gate's timing.

        Raises:
            ValueError: nothing to fuse, wrong dimensions, dtypes, encodings or confidence size.
        """
        if student is None and tof is None:
            raise ValueError('nothing to fuse: neither a student depth nor a ToF depth was given')
        if student is not None and (student.ndim != 2 or student.dtype != np.float32):
            raise ValueError(f'student depth must be 2-D float32 metres (native byte order), got shape '
                             f'{student.shape} {student.dtype}')
        cfg = self.config
        rule = _tof_rule(tof, tof_encoding, confidence, cfg) if tof is not None else _NO_RULE
        # The compiled pass reads C-contiguous images (a padded message row is the one case that copies).
        student, tof, confidence = (None if a is None else np.ascontiguousarray(a) for a in (student, tof,
                                                                                             confidence))
        if student is None:
            grid = tuple(shape or tof.shape)
        else:
            grid = tof.shape if tof is not None and cfg.output_grid == 'tof' else student.shape
        grid = (int(grid[0]), int(grid[1]))
        *no_map, no_confidence = _stand_ins(grid, None if tof is None else tof.shape)
        inputs = (_NAN_IMAGE, no_map) if student is None else \
            (student, (_index_map(student.shape[0], grid[0]), _index_map(student.shape[1], grid[1])))
        inputs += (_NAN_IMAGE, no_map, no_confidence, _NO_RULE) if tof is None else \
            (tof, (_index_map(tof.shape[0], grid[0]), _index_map(tof.shape[1], grid[1])),
             no_confidence if confidence is None else confidence, rule)
        out, source = self._buf('out', grid, np.float32), self._buf('source', grid, np.uint8)
        step, measured = _accuracy_rows(grid, cfg.fit_sample_size)
        corr, acc, verdict = _NO_STUDENT
        if student is not None:
            corr = self._correction(inputs, grid, tof is not None)
        n_tof, n_student, *sums = self._kernel(inputs, corr.alpha, corr.beta, step, out, source)
        if student is not None:
            acc = Accuracy.from_sums(*sums, measured) if tof is not None else None
            verdict = self.gate.update(acc, stamp_ns)
            if not verdict.fill and n_student:  # again without a student reading (NaN * d)
                n_student = self._kernel(inputs, math.nan, 0.0, step, out, source)[1]
            if cfg.mode == 'local' and tof is not None and self.compiled:
                corr, lost = self._local(inputs, out, source, corr)
                n_student -= lost
        ground = self._ground(out, source, grid) if cfg.ground_tolerance > 0.0 and n_tof and n_student \
            else None
        return FusionResult(out, source, corr, n_tof, n_student, acc, verdict, *(ground or (None, 0, 0)))

    def _ground(self, out: np.ndarray, source: np.ndarray, grid: tuple[int, int]):
        """(the floor plane of the valid ToF at the sampled positions, student pixels placed on it), or None
        when no floor-like plane fits (``depth_fusion.ground``)."""
        rows, cols = _sample_positions(grid, self.config.fit_sample_size)
        flat = rows * grid[1] + cols
        tof = source.reshape(-1).take(flat) == SOURCE_TOF
        plane = fit_ground(cols[tof], rows[tof], out.reshape(-1).take(flat)[tof], grid)
        if plane is None:
            return None
        snap = kernel.snap_compiled if self.compiled else snap_to_ground
        contact = self.config.ground_contact
        if contact:  # the student's depth before the snap: the contact rule reads it
            raw = self._buf('raw', grid, np.float32)
            np.copyto(raw, out)
        snapped = snap(out, source, plane, self.config.ground_tolerance)
        return plane, snapped, ground_contact(out, raw, source, plane) if contact else 0


def fuse(student: np.ndarray | None, tof: np.ndarray | None = None, tof_encoding: str = '32FC1',
         confidence: np.ndarray | None = None, config: FusionConfig | None = None, *,
         shape: tuple[int, int] | None = None) -> FusionResult:
    """One frame with a fresh ``Fuser`` (no history); see ``Fuser.fuse`` for the arguments."""
    return Fuser(config).fuse(student, tof, tof_encoding, confidence, shape=shape)
