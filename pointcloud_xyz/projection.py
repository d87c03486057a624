"""Depth image -> x, y, z points (pure numpy; no ROS imports).

For a pixel (u, v) with depth z along the optical axis and intrinsics fx, fy, cx, cy:
``x = (u - cx) / fx * z``, ``y = (v - cy) / fy * z``, ``z = z`` in the camera's optical frame
(x right, y down, z forward). The per-pixel ray factors ``(u - cx) / fx`` and ``(v - cy) / fy`` depend
only on the intrinsics, the image size and the decimation, so ``RayGrid`` computes them once and keeps
them until one of those changes.
"""

from __future__ import annotations

import numpy as np

from rc_perception.camera import Intrinsics
from rc_perception.depth import to_metres

__all__ = ['RayGrid', 'backproject']


class RayGrid:
    """Cached ray factors for one (intrinsics, width, height, skip) at a time."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._full: tuple[np.ndarray, np.ndarray] | None = None
        self.rebuilds = 0

    def factors(self, intr: Intrinsics, width: int, height: int,
                skip: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Row vector ``(u - cx) / fx`` (1, W') and column vector ``(v - cy) / fy`` (H', 1), float32,
        for the pixels ``u = 0, skip, 2 * skip, ...`` and likewise ``v``."""
        key = (intr, width, height, skip)
        if key != self._key:
            u = np.arange(0, width, skip, dtype=np.float64)
            v = np.arange(0, height, skip, dtype=np.float64)
            self._x = ((u - intr.cx) / intr.fx).astype(np.float32)[None, :]
            self._y = ((v - intr.cy) / intr.fy).astype(np.float32)[:, None]
            self._full = None
            self._key = key
            self.rebuilds += 1
        return self._x, self._y

    def full_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The factors of the last ``factors()`` call broadcast to full (H', W') images (for dense
        output, which gathers them with a mask)."""
        if self._full is None:
            shape = (self._y.shape[0], self._x.shape[1])
            self._full = (np.ascontiguousarray(np.broadcast_to(self._x, shape)),
                          np.ascontiguousarray(np.broadcast_to(self._y, shape)))
        return self._full


def backproject(depth: np.ndarray, encoding: str, intr: Intrinsics, *, range_min: float = 0.0,
                range_max: float = float('inf'), skip: int = 1, organized: bool = True,
                grid: RayGrid | None = None) -> np.ndarray:
    """Back-project a depth image to float32 points.

    Args:
        depth: (H, W) depth image, ``16UC1``/``mono16`` millimetres (0 invalid) or ``32FC1`` metres
            (non-finite or <= 0 invalid), per REP 118.
        encoding: the image encoding.
        intr: intrinsics for this image's size.
        range_min, range_max: depths outside this interval (metres) are invalid.
        skip: keep every ``skip``-th row and column (decimation).
        organized: True: (H', W', 3) with NaN x, y, z for invalid pixels. False: (N, 3) valid points only,
            in row-major pixel order.
        grid: a RayGrid to reuse across frames (recommended); a fresh one is used when None.
    """
    if depth.ndim != 2:
        raise ValueError(f'depth image must be 2-D (H, W), got shape {depth.shape}')
    if skip < 1:
        raise ValueError(f'skip must be >= 1, got {skip}')
    grid = grid or RayGrid()
    xf, yf = grid.factors(intr, depth.shape[1], depth.shape[0], skip)
    if skip > 1:
        depth = depth[::skip, ::skip]
    height, width = depth.shape
    z = to_metres(depth, encoding, range_min, range_max)
    if organized:
        points = np.empty((height, width, 3), dtype=np.float32)
        np.multiply(z, xf, out=points[:, :, 0])
        np.multiply(z, yf, out=points[:, :, 1])
        points[:, :, 2] = z
        return points
    valid = ~np.isnan(z)
    zv = z[valid]
    x_full, y_full = grid.full_factors()
    points = np.empty((zv.size, 3), dtype=np.float32)
    np.multiply(x_full[valid], zv, out=points[:, 0])
    np.multiply(y_full[valid], zv, out=points[:, 1])
    points[:, 2] = zv
    return points
