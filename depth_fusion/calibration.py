"""Fitting ``d_metric = alpha * d_student + beta`` and the calibration file (pure: no ROS imports).

One robust fit serves both the offline tool (``calibrate_fusion``, over many recorded frames) and the
node's ``online_affine`` mode (per frame, on a subsample of pixels):

1. hypotheses: the ratio of medians (``alpha = median(tof) / median(student)``, ``beta = 0``) and lines
   through ``hypotheses - 1`` random pixel pairs (seeded, so the fit is reproducible), each scored by how
   many of up to ``score_pixels`` pixels it explains; the best one starts the fit (RANSAC-style: a good
   start even with a large share of outliers and an offset the median ratio cannot see);
2. inliers: the pixels whose residual ``|alpha * x + beta - y|`` is at most ``outlier_threshold * y`` (a
   share of the ToF depth: ToF and learned depth errors both grow with distance);
3. least squares on those inliers; repeat 2-3 a few times; report the final inliers.

The fit fails (``ok`` False, with the reason) when fewer than ``min_inliers`` pixels agree, when the
inliers' student depths spread less than ``min_spread`` metres (alpha and beta are then not separable:
a single wall at one distance fits any line through one point), or when the result is not a positive
finite scale within ``ALPHA_RANGE`` and an offset within ``BETA_RANGE`` (the ranges that the node's
parameters and ``read_calibration`` accept, so a fit never yields a file the node refuses).

The calibration file is YAML with top-level ``alpha`` and ``beta`` and a ``fit`` mapping that records how
they were obtained (informative only; the node reads alpha and beta).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    'ALPHA_RANGE', 'BETA_RANGE', 'AffineFit', 'Calibration', 'CalibrationError', 'CalibrationFile',
    'PixelPairs',
    'least_squares', 'median_scale', 'read_calibration', 'rmse', 'robust_affine_fit', 'write_calibration',
]

#: Accepted scale and offset, for the node's parameters and for calibration files alike.
ALPHA_RANGE = (0.01, 100.0)
BETA_RANGE = (-100.0, 100.0)  # metres


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class AffineFit:
    """Result of ``robust_affine_fit``. When ``ok`` is False, alpha and beta are the last estimate (may be
    NaN) and must not be used; ``reason`` says why."""

    alpha: float
    beta: float
    ok: bool
    reason: str
    inliers: int
    pixels: int

    @property
    def inlier_share(self) -> float:
        return self.inliers / self.pixels if self.pixels else float('nan')


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ordinary least squares ``y ~ alpha * x + beta`` (float64). Raises ValueError when x is constant or
    fewer than two pixels are given."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size < 2:
        raise ValueError(f'least squares needs at least 2 pixels, got {x.size}')
    mx, my = x.mean(), y.mean()
    dx = x - mx
    var = float(np.dot(dx, dx))
    if var <= 0.0:
        raise ValueError('least squares: all student depths are equal')
    alpha = float(np.dot(dx, y - my)) / var
    return alpha, float(my - alpha * mx)


def median_scale(x: np.ndarray, y: np.ndarray) -> float:
    """``median(y) / median(x)``: the per-frame median scaling of the evaluation scripts; NaN if empty."""
    if len(x) == 0:
        return float('nan')
    mx = float(np.median(x))
    return float(np.median(y)) / mx if mx > 0 else float('nan')


def rmse(x: np.ndarray, y: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> float:
    """Root mean square of ``alpha * x + beta - y`` in metres; NaN if empty."""
    if len(x) == 0:
        return float('nan')
    r = alpha * np.asarray(x, np.float64) + beta - np.asarray(y, np.float64)
    return float(np.sqrt(np.dot(r, r) / r.size))


def _best_hypothesis(x: np.ndarray, y: np.ndarray, outlier_threshold: float, hypotheses: int,
                     score_pixels: int, seed: int) -> tuple[float, float]:
    """The line explaining most pixels among the median ratio and lines through random pixel pairs."""
    rng = np.random.default_rng(seed)
    n = x.size
    alphas, betas = [median_scale(x, y)], [0.0]
    if hypotheses > 1:
        i, j = rng.integers(0, n, (2, hypotheses - 1))
        dx = x[j] - x[i]
        with np.errstate(divide='ignore', invalid='ignore'):
            a = (y[j] - y[i]) / dx
        b = y[i] - a * x[i]
        keep = np.isfinite(a) & np.isfinite(b) & (a >= ALPHA_RANGE[0]) & (a <= ALPHA_RANGE[1])
        alphas.extend(a[keep])
        betas.extend(b[keep])
    alpha_h, beta_h = np.array(alphas), np.array(betas)
    if n > score_pixels:
        pick = rng.choice(n, score_pixels, replace=False)
        xs, ys = x[pick], y[pick]
    else:
        xs, ys = x, y
    with np.errstate(invalid='ignore'):
        residual = np.abs(alpha_h[:, None] * xs[None, :] + beta_h[:, None] - ys[None, :])
        scores = np.count_nonzero(residual <= outlier_threshold * ys[None, :], axis=1)
    best = int(np.argmax(scores))
    return float(alpha_h[best]), float(beta_h[best])


def robust_affine_fit(x: np.ndarray, y: np.ndarray, *, outlier_threshold: float = 0.15,
                      min_inliers: int = 2, min_spread: float = 0.0, iterations: int = 4,
                      hypotheses: int = 64, score_pixels: int = 512, seed: int = 0) -> AffineFit:
    """Fit ``y ~ alpha * x + beta`` with outlier rejection (see the module docstring).

    Args:
        x: student depths (metres, all valid).
        y: ToF depths at the same pixels (metres, all valid).
        outlier_threshold: inlier when ``|alpha * x + beta - y| <= outlier_threshold * y``.
        min_inliers: fewer inliers fail the fit.
        min_spread: the inliers' student depths must have at least this standard deviation (metres).
        iterations: rounds of inlier selection and least squares.
        hypotheses: starting lines scored (the median ratio plus random pixel pairs).
        score_pixels: pixels each hypothesis is scored on (a random subset when there are more).
        seed: seed of the random pairs and subset.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = int(x.size)
    need = max(int(min_inliers), 2)
    if n < need:
        return AffineFit(float('nan'), float('nan'), False, f'too few pixels ({n} < {need})', 0, n)
    alpha, beta = _best_hypothesis(x, y, outlier_threshold, hypotheses, score_pixels, seed)
    if not (math.isfinite(alpha) and alpha > 0):
        return AffineFit(float('nan'), float('nan'), False, 'no positive scale among the hypotheses', 0, n)
    tol = outlier_threshold * y
    for _ in range(iterations):
        keep = np.abs(alpha * x + beta - y) <= tol
        inliers = int(np.count_nonzero(keep))
        if inliers < need:
            return AffineFit(alpha, beta, False, f'too few inliers ({inliers} < {need})', inliers, n)
        xs = x[keep]
        spread = float(xs.std())
        if spread < min_spread or spread == 0.0:
            return AffineFit(alpha, beta, False,
                             f'ill-conditioned: student depths of the inliers spread {spread:.3f} m '
                             f'(< {min_spread:g} m)', inliers, n)
        alpha, beta = least_squares(xs, y[keep])
    keep = np.abs(alpha * x + beta - y) <= tol
    inliers = int(np.count_nonzero(keep))
    if not (math.isfinite(alpha) and ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]
            and math.isfinite(beta) and BETA_RANGE[0] <= beta <= BETA_RANGE[1]):
        return AffineFit(alpha, beta, False, f'ill-conditioned: alpha {alpha:.4g}, beta {beta:.4g} m outside '
                         f'{list(ALPHA_RANGE)}, {list(BETA_RANGE)}', inliers, n)
    if inliers < need:
        return AffineFit(alpha, beta, False, f'too few inliers ({inliers} < {need})', inliers, n)
    return AffineFit(alpha, beta, True, 'ok', inliers, n)


class PixelPairs:
    """Accumulates (student, ToF) depth pairs of many frames, at most ``per_frame`` random pixels each.

    Args:
        per_frame: pixels kept per frame (0 = all); a seeded random subset keeps memory bounded.
        seed: seed of that subset, so a calibration is reproducible.
    """

    def __init__(self, per_frame: int = 20000, seed: int = 0) -> None:
        self.per_frame = per_frame
        self._rng = np.random.default_rng(seed)
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self.frames = 0
        self.frames_without_overlap = 0

    def add(self, student: np.ndarray, tof: np.ndarray) -> int:
        """Add one frame: float metres on the same grid, NaN (or <= 0) where invalid. Returns the pixels
        kept from it."""
        if student.shape != tof.shape:
            raise ValueError(f'student {student.shape} and ToF {tof.shape} differ in shape')
        with np.errstate(invalid='ignore'):
            both = np.isfinite(student) & (student > 0) & np.isfinite(tof) & (tof > 0)
        idx = np.flatnonzero(both)
        self.frames += 1
        if idx.size == 0:
            self.frames_without_overlap += 1
            return 0
        if self.per_frame and idx.size > self.per_frame:
            idx = np.sort(self._rng.choice(idx, self.per_frame, replace=False))
        self._x.append(student.reshape(-1)[idx].astype(np.float64))
        self._y.append(tof.reshape(-1)[idx].astype(np.float64))
        return int(idx.size)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._x:
            return np.empty(0), np.empty(0)
        return np.concatenate(self._x), np.concatenate(self._y)


@dataclass(frozen=True)
class Calibration:
    """alpha, beta and how they were obtained (``fit``: pairs, pixels, RMSE before/after, ...)."""

    alpha: float
    beta: float
    fit: dict = field(default_factory=dict)


def _number(value, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalibrationError(f'calibration file {path}: {key} must be a number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        raise CalibrationError(f'calibration file {path}: {key} must be finite, got {value}')
    return value


def read_calibration(path: str | Path) -> Calibration:
    """Load a calibration file written by ``calibrate_fusion`` (or by hand: ``alpha: 1.0`` / ``beta: 0.0``).

    Raises:
        CalibrationError: missing or unreadable file, not YAML, not a mapping, alpha or beta missing, not
            finite numbers, or out of ``ALPHA_RANGE`` / ``BETA_RANGE``; the message names the file.
    """
    import yaml
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CalibrationError(f'calibration file {path} does not exist (write one with calibrate_fusion '
                               '--output, or set calibration_file to an empty string)') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f'calibration file {path} cannot be read: {exc}') from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, 'problem_mark', None)
        line = f' (line {where.line + 1})' if where is not None else ''
        raise CalibrationError(f'calibration file {path} is not valid YAML{line}') from None
    if not isinstance(data, dict):
        raise CalibrationError(f'calibration file {path}: expected a mapping with alpha and beta, '
                               f'got {type(data).__name__}')
    missing = [k for k in ('alpha', 'beta') if k not in data]
    if missing:
        raise CalibrationError(f"calibration file {path}: missing {' and '.join(missing)} "
                               f"(has {', '.join(map(str, data)) or 'no keys'})")
    alpha = _number(data['alpha'], 'alpha', path)
    beta = _number(data['beta'], 'beta', path)
    if not ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]:
        raise CalibrationError(f'calibration file {path}: alpha {alpha:g} outside '
                               f'[{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}]')
    if not BETA_RANGE[0] <= beta <= BETA_RANGE[1]:
        raise CalibrationError(f'calibration file {path}: beta {beta:g} outside '
                               f'[{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}] m')
    fit = data.get('fit') or {}
    return Calibration(alpha, beta, dict(fit) if isinstance(fit, dict) else {})


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """Write the YAML that ``read_calibration`` and the node's ``calibration_file`` load."""
    import yaml
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def plain(v):
        if isinstance(v, (np.floating, float)):
            return round(float(v), 6)
        if isinstance(v, np.integer):
            return int(v)
        return v

    fit = {k: plain(v) for k, v in calibration.fit.items()}
    fit.setdefault('created', datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    body = yaml.safe_dump({'alpha': float(calibration.alpha), 'beta': float(calibration.beta), 'fit': fit},
                          sort_keys=False)
    header = ('# depth_fusion calibration: d_metric = alpha * d_student + beta (metres).\n'
              '# Written by calibrate_fusion; depth_fusion_node loads it (parameter calibration_file).\n')
    path.write_text(header + body)


class CalibrationFile:
    """The node's ``calibration_file`` parameter: a new path is read when the change is validated
    (``check``), and the same reading applied when the change is accepted (``adopt``); empty: none."""

    def __init__(self) -> None:
        self.path = ''
        self.calibration: Calibration | None = None
        self._checked: tuple[str, Calibration] | None = None

    def check(self, path: str) -> str | None:
        """Why ``path`` cannot be used (the file's problem), or None."""
        path = path.strip()
        if path and path != self.path:
            try:
                self._checked = (path, read_calibration(path))
            except CalibrationError as exc:
                return str(exc)
        return None

    def adopt(self, path: str) -> bool:
        """Use ``path`` (checked before; read now otherwise). Returns whether a new file was loaded.

        Raises:
            CalibrationError: an unchecked file that cannot be used.
        """
        path = path.strip()
        changed = path != self.path
        if not path:
            self.calibration = None
        elif changed:
            checked = self._checked if self._checked and self._checked[0] == path else None
            self.calibration = checked[1] if checked else read_calibration(path)
        self.path, self._checked = path, None
        return changed and self.calibration is not None

    def alpha_beta(self, alpha: float, beta: float) -> tuple[float, float]:
        """The file's alpha, beta when one is loaded, else the given (parameter) values."""
        return (self.calibration.alpha, self.calibration.beta) if self.calibration else (alpha, beta)
