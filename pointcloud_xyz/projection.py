"""Depth image -> x, y, z points, and the clearing points of pixels without depth (pure numpy; no ROS).

A pixel with depth ``z`` (metres along the optical axis, REP 118) lies at ``z * (rx, ry, 1)`` in the
camera's optical frame (x right, y down, z forward), where ``(rx, ry)`` is the pixel's ray: for a pinhole
camera ``((u - cx) / fx, (v - cy) / fy)``, through a lens the undistorted normalized coordinates of that
pixel (``Distortion.undistort``). Rays depend only on the camera model, the image size and the decimation,
so ``RayGrid`` builds them once per grid and keeps them; each grid also keeps the scratch buffers of its
shape. An organized cloud therefore allocates nothing per frame but its output, which the caller may hand
in (``out``: e.g. ``codecs.CloudWriter.points``, the message's own payload); a dense one (and the clearing
points) also gathers its points through masked copies of the point count's size.

Decimation by ``skip`` keeps the image pixels ``skip * j + skip // 2`` of each axis: the package's grid
convention for whole-factor decimation (``rc_perception.camera.axis_map``), so the points of a decimated
cloud are exactly the full-resolution cloud's points of those pixels.

Every pixel falls in one class, by its depth in metres ``d`` (16UC1/mono16 millimetres convert as
``float32(mm) / 1000``, as ``rc_perception.depth`` does) and the float32 range bounds ``lo, hi`` of
``depth.metre_bounds(range_min, range_max)``:

* a reading, ``lo <= d <= hi``: a point of the cloud;
* beyond range, ``d > hi`` (``+inf`` included, the "too far" of drivers that say so): a clearing ray;
* no reading: NaN, 0 (0 mm), or negative, but not ``-inf``: a clearing ray;
* too near, ``0 < d < lo``, or ``-inf`` ("too close"): nothing; something is there, too near to measure.

A clearing point lies on its pixel's ray at ``distance`` metres from the camera, or at the reading when a
beyond-range reading is nearer than that: Nav2 clears along the line to it and marks nothing there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pointcloud_xyz import kernel, veiling
from pointcloud_xyz.distortion import Distortion
from rc_perception.camera import Intrinsics
from rc_perception.depth import MM_ENCODINGS, MM_PER_M, metre_bounds

__all__ = ['CameraModel', 'RayGrid', 'Rays', 'backproject', 'clearing_points']

#: ``out`` argument: gives the float32 array to fill for a shape, (H, W, 3) or (N, 3).
Allocator = Callable[[tuple[int, ...]], np.ndarray]


def _new_array(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.float32)


@dataclass(frozen=True)
class CameraModel:
    """The camera of a depth image: intrinsics for the image's own grid, and its lens distortion."""

    intrinsics: Intrinsics
    distortion: Distortion | None = None


class Rays:
    """The rays of one grid: the pixels ``skip * j + skip // 2`` of a ``width`` x ``height`` image.

    ``x``, ``y``: float32 ray factors, (1, W') and (H', 1) for a pinhole camera (broadcast), (H', W')
    through a lens; ``valid``: None, or the (H', W') mask of pixels that have a ray (undistortion can fail
    at the rim of a strong lens).
    """

    def __init__(self, model: CameraModel, width: int, height: int, skip: int = 1) -> None:
        if skip < 1:
            raise ValueError(f'skip must be >= 1, got {skip}')
        self.skip, self.offset = skip, skip // 2
        intr = model.intrinsics
        xn = (np.arange(self.offset, width, skip, dtype=np.float64) - intr.cx) / intr.fx
        yn = (np.arange(self.offset, height, skip, dtype=np.float64) - intr.cy) / intr.fy
        self.shape = (yn.size, xn.size)
        self.valid: np.ndarray | None = None
        if model.distortion is None:
            self.x = xn.astype(np.float32)[None, :]
            self.y = yn.astype(np.float32)[:, None]
        else:
            x, y = model.distortion.undistort(*np.meshgrid(xn, yn))
            self.x, self.y = x.astype(np.float32), y.astype(np.float32)
            finite = np.isfinite(self.x)
            self.valid = None if finite.all() else finite
        self._full: tuple[np.ndarray, np.ndarray] | None = None
        self._clearing: tuple[float, np.ndarray] | None = None
        # Scratch of this grid's shape, reused every frame: depth in metres and two masks.
        self._z = np.empty(self.shape, dtype=np.float32)
        self._m1 = np.empty(self.shape, dtype=bool)
        self._m2 = np.empty(self.shape, dtype=bool)
        self._veiling: tuple | None = None   # (window, the veiling test's scratch), made on first use

    def sample(self, depth: np.ndarray) -> np.ndarray:
        """The kept pixels of an image of this grid's size (a view)."""
        if self.skip == 1:
            return depth
        return depth[self.offset::self.skip, self.offset::self.skip]

    def full(self) -> tuple[np.ndarray, np.ndarray]:
        """``x`` and ``y`` as full (H', W') arrays (for gathering with a mask)."""
        if self._full is None:
            self._full = (np.ascontiguousarray(np.broadcast_to(self.x, self.shape)),
                          np.ascontiguousarray(np.broadcast_to(self.y, self.shape)))
        return self._full

    def clearing_depths(self, distance: float) -> np.ndarray:
        """(H', W') float32: the optical depth at which each ray is ``distance`` metres from the camera,
        ``distance / sqrt(x^2 + y^2 + 1)`` (NaN where the pixel has no ray)."""
        if self._clearing is None or self._clearing[0] != distance:
            x, y = (a.astype(np.float64) for a in self.full())
            self._clearing = (distance, (distance / np.sqrt(x * x + y * y + 1.0)).astype(np.float32))
        return self._clearing[1]

    def metres(self, depth: np.ndarray, encoding: str) -> np.ndarray:
        """The kept pixels of ``depth`` in float32 metres, into this grid's scratch (no range test)."""
        depth = self.sample(depth)
        if depth.shape != self.shape:
            raise ValueError(f'depth image of {depth.shape} kept pixels does not fit a grid of {self.shape}')
        if encoding in MM_ENCODINGS:
            np.divide(depth, MM_PER_M, out=self._z, dtype=np.float32)
        elif encoding == '32FC1':
            np.copyto(self._z, depth)
        else:
            raise ValueError(f"depth image encoding must be 16UC1, mono16 or 32FC1, got '{encoding}'")
        return self._z


class RayGrid:
    """The ``Rays`` of the few grids a node uses (its cloud's and its clearing cloud's), each built once
    and kept until the camera model, image size or decimation changes. Not thread-safe: one user at a time."""

    def __init__(self, capacity: int = 4) -> None:
        self._capacity = capacity
        self._cache: dict[tuple, Rays] = {}
        self.rebuilds = 0

    def rays(self, model: CameraModel, width: int, height: int, skip: int = 1) -> Rays:
        key = (model, width, height, skip)
        rays = self._cache.get(key)
        if rays is None:
            rays = Rays(model, width, height, skip)
            self.rebuilds += 1
            if len(self._cache) >= self._capacity:
                self._cache.pop(next(iter(self._cache)))  # the oldest grid
            self._cache[key] = rays
        return rays


def _gather(z: np.ndarray, keep: np.ndarray, rays: Rays, out: Allocator) -> np.ndarray:
    """(N, 3) points ``z * ray`` of the ``keep`` pixels, in row-major order."""
    points = out((int(np.count_nonzero(keep)), 3))
    x_full, y_full = rays.full()
    points[:, 2] = z[keep]
    np.multiply(x_full[keep], points[:, 2], out=points[:, 0])
    np.multiply(y_full[keep], points[:, 2], out=points[:, 1])
    return points


def backproject(depth: np.ndarray, encoding: str, rays: Rays, *, range_min: float = 0.0,
                range_max: float = float('inf'), organized: bool = True, veiling_angle: float = 0.0,
                veiling_window: int = 2, out: Allocator | None = None) -> np.ndarray:
    """Back-project the readings of a depth image to float32 points.

    Args:
        depth: (H, W) ``16UC1``/``mono16`` millimetres or ``32FC1`` metres, any strides.
        encoding: its encoding.
        rays: ``RayGrid.rays`` of this image's camera model, size and decimation.
        range_min, range_max: the readings' range (metres), bounds included.
        organized: True: (H', W', 3) with NaN x, y, z where there is no reading. False: (N, 3), only the
            readings, in row-major pixel order.
        veiling_angle, veiling_window: readings that are veiling points (``pointcloud_xyz.veiling``) at
            this angle (degrees; 0: none) and window (pixels of the kept grid) are left out like
            readings out of range.
        out: gives the array to fill for the output shape; a new array when None.
    """
    z = rays.metres(depth, encoding)
    lo, hi = metre_bounds(range_min, range_max)
    keep, above = rays._m1, rays._m2
    np.greater_equal(z, lo, out=keep)
    np.less_equal(z, hi, out=above)
    np.logical_and(keep, above, out=keep)
    if rays.valid is not None:
        np.logical_and(keep, rays.valid, out=keep)
    if veiling_angle > 0.0:
        if rays._veiling is None or rays._veiling[0] != veiling_window:
            rays._veiling = veiling_window, veiling.scratch(rays.shape, veiling_window)
        veiling.drop_veiling(z, keep, *rays.full(), veiling_angle, veiling_window, rays._veiling[1])
    out = out or _new_array
    if not organized:
        return _gather(z, keep, rays, out)
    points = out(rays.shape + (3,))
    if kernel.COMPILED:  # one pass instead of four strided ones
        kernel.organize(z, keep, *rays.full(), points)
        return points
    pz = points[:, :, 2]
    pz.fill(np.nan)
    np.copyto(pz, z, where=keep)
    np.multiply(pz, rays.x, out=points[:, :, 0])
    np.multiply(pz, rays.y, out=points[:, :, 1])
    return points


def clearing_points(depth: np.ndarray, encoding: str, rays: Rays, *, range_min: float, range_max: float,
                    distance: float, out: Allocator | None = None) -> np.ndarray:
    """(N, 3) float32 clearing points: one per pixel beyond range or without a reading (see the module
    docstring), on its ray at ``distance`` metres from the camera, or at the reading if a beyond-range
    reading is nearer. Arguments as ``backproject``'s."""
    z = rays.metres(depth, encoding)
    _, hi = metre_bounds(range_min, range_max)
    beyond, none = rays._m1, rays._m2
    np.equal(z, -np.inf, out=beyond)           # "too close"
    np.greater(z, 0.0, out=none)
    np.logical_or(none, beyond, out=none)      # positive or too close ...
    np.logical_not(none, out=none)             # ... or else no reading: NaN, 0, negative
    np.greater(z, hi, out=beyond)              # beyond range, +inf included
    reach = rays.clearing_depths(distance)
    np.minimum(z, reach, out=z, where=beyond)
    np.copyto(z, reach, where=none)
    np.logical_or(beyond, none, out=beyond)
    if rays.valid is not None:
        np.logical_and(beyond, rays.valid, out=beyond)
    return _gather(z, beyond, rays, out or _new_array)
