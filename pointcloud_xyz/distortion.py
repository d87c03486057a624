"""Lens distortion of a ROS CameraInfo, and its inversion (pure numpy; no ROS imports).

``CameraInfo.distortion_model`` names the model and ``CameraInfo.d`` holds its coefficients, in this order
(sensor_msgs/distortion_models.hpp; OpenCV's models of the same coefficients):

=====================  ================================  ===========================================
model                  d                                 forward model, (x, y) = (X / Z, Y / Z)
=====================  ================================  ===========================================
plumb_bob              k1 k2 p1 p2 k3                    rational_polynomial with k4 = k5 = k6 = 0
rational_polynomial    k1 k2 p1 p2 k3 k4 k5 k6           r2 = x^2 + y^2, radial =
                                                         (1 + k1 r2 + k2 r2^2 + k3 r2^3) /
                                                         (1 + k4 r2 + k5 r2^2 + k6 r2^3),
                                                         xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2),
                                                         yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y
equidistant            k1 k2 k3 k4                       theta = atan(r), theta_d = theta (1 + k1 theta^2
                                                         + k2 theta^4 + k3 theta^6 + k4 theta^8),
                                                         (xd, yd) = theta_d / r (x, y)
=====================  ================================  ===========================================

and the pixel is ``(fx xd + cx, fy yd + cy)``. ``Distortion.undistort`` inverts the forward model by
Newton's method for every pixel at once. A strong lens model folds back beyond some radius (its distorted
radius stops growing, as ``r (1 - 0.5 r^2)`` does past r = 0.82), so a pixel near the rim can have two rays
or none: where Newton's method does not converge, or converges beyond that radius, the ray is NaN and such
pixels never become points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ['MODELS', 'Distortion', 'DistortionError']

#: Supported models and the names of their coefficients, in CameraInfo.d order.
MODELS: dict[str, tuple[str, ...]] = {
    'plumb_bob': ('k1', 'k2', 'p1', 'p2', 'k3'),
    'rational_polynomial': ('k1', 'k2', 'p1', 'p2', 'k3', 'k4', 'k5', 'k6'),
    'equidistant': ('k1', 'k2', 'k3', 'k4'),
}
_FIX = 'or feed the rectified depth image and set rectified:=true (then P is used and d ignored)'
#: Convergence: the forward model of the returned ray lands within this of the pixel (normalized units,
#: about 1e-6 pixel at a focal length of 1000 px).
TOLERANCE = 1e-9
_ITERATIONS = 30
_STEP = 1e-7  # finite-difference step of the Jacobian (normalized units)


class DistortionError(ValueError):
    """A distortion model or coefficient list this package cannot invert."""


@dataclass(frozen=True)
class Distortion:
    """A lens distortion: a model of ``MODELS`` and its coefficients (padded with zeros to the full set)."""

    model: str
    coeffs: tuple[float, ...]

    @classmethod
    def from_camera_info(cls, model: str, d: Sequence[float]) -> Distortion | None:
        """The distortion of a CameraInfo, or None when every coefficient is zero (a pinhole camera,
        whatever the model is called).

        Trailing coefficients may be left out (they are zero) or given as zeros.

        Raises:
            DistortionError: non-finite coefficients, an unknown model with non-zero coefficients, or
                non-zero coefficients beyond the model's; the message names the fix.
        """
        coeffs = tuple(float(c) for c in d)
        if not any(coeffs):
            return None
        if not all(math.isfinite(c) for c in coeffs):
            raise DistortionError(f'distortion coefficients must be finite, got d = {list(coeffs)}')
        names = MODELS.get(model)
        if names is None:
            raise DistortionError(
                f"distortion model '{model}' with non-zero d = {list(coeffs)} is not supported (supported: "
                f"{', '.join(MODELS)}); publish the camera's calibration in one of those, {_FIX}")
        if any(coeffs[len(names):]):
            raise DistortionError(
                f"'{model}' takes {len(names)} coefficients ({' '.join(names)}), got {len(coeffs)} with "
                f'non-zero ones beyond them: d = {list(coeffs)}; {_FIX}')
        return cls(model, coeffs[:len(names)] + (0.0,) * (len(names) - len(coeffs)))

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The forward model: undistorted normalized coordinates -> distorted ones (float64)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        r2 = x * x + y * y
        if self.model == 'equidistant':
            k1, k2, k3, k4 = self.coeffs
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
            with np.errstate(invalid='ignore', divide='ignore'):
                scale = np.where(r > 0.0, theta_d / r, 1.0)
            return x * scale, y * scale
        k1, k2, p1, p2, k3, k4, k5, k6 = (self.coeffs + (0.0,) * 3)[:8]
        radial = (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xy = x * y
        return (x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x),
                y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy)

    def undistort(self, xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ray of each distorted normalized point: (x, y) with ``distort(x, y) == (xd, yd)``.

        Newton's method from (xd, yd), with a finite-difference Jacobian. Points whose solution does not
        reproduce them within ``TOLERANCE``, or where the Jacobian's determinant is not positive (the
        model folds over), are NaN.
        """
        xd = np.asarray(xd, dtype=np.float64)
        yd = np.asarray(yd, dtype=np.float64)
        x, y = xd.copy(), yd.copy()
        with np.errstate(all='ignore'):  # diverging points turn into inf/NaN and are caught below
            for _ in range(_ITERATIONS):
                fx, fy = self.distort(x, y)
                ex, ey = fx - xd, fy - yd
                if not np.any(np.abs(ex) + np.abs(ey) > TOLERANCE / 4):
                    break
                a, c, b, d = self._jacobian(x, y, fx, fy)
                det = a * d - b * c
                x = x - (d * ex - b * ey) / det
                y = y - (a * ey - c * ex) / det
            fx, fy = self.distort(x, y)
            bad = ~((np.abs(fx - xd) <= TOLERANCE) & (np.abs(fy - yd) <= TOLERANCE)
                    & (x * x + y * y < self.fold_radius() ** 2))
        x[bad] = np.nan
        y[bad] = np.nan
        return x, y

    def fold_radius(self) -> float:
        """The undistorted radius where the radial part of the model stops growing (inf if it never does
        before 90 degrees off axis): rays beyond it are not unique."""
        theta = np.linspace(0.0, math.pi / 2, 20001)[1:-1]
        radius = np.tan(theta)
        if self.model == 'equidistant':
            radial = self
        else:  # the radial terms alone: k1 k2 0 0 k3 k4 k5 k6
            radial = Distortion(self.model, self.coeffs[:2] + (0.0, 0.0) + self.coeffs[4:])
        with np.errstate(all='ignore'):
            grows = np.diff(radial.distort(radius, np.zeros_like(radius))[0]) > 0.0
        return math.inf if grows.all() else float(radius[int(np.argmin(grows))])

    def _jacobian(self, x, y, fx, fy):
        """d(xd, yd)/d(x, y) by forward differences: (dxd/dx, dyd/dx, dxd/dy, dyd/dy)."""
        ax, ay = self.distort(x + _STEP, y)
        bx, by = self.distort(x, y + _STEP)
        return (ax - fx) / _STEP, (ay - fy) / _STEP, (bx - fx) / _STEP, (by - fy) / _STEP
