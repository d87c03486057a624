"""Pinhole intrinsics and their scaling between image sizes (pure: no ROS imports)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['AxisMap', 'Intrinsics', 'IntrinsicsError', 'axis_map', 'integer_factor', 'scale_intrinsics']


class IntrinsicsError(ValueError):
    """Intrinsics that cannot be used for an image: bad values or an incompatible size."""


@dataclass(frozen=True)
class Intrinsics:
    """Focal lengths and principal point in pixels (OpenCV / ROS convention: pixel centres at integers)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def validate(self) -> Intrinsics:
        if not all(math.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy)):
            raise IntrinsicsError(f'intrinsics must be finite, got {self}')
        if self.fx <= 0.0 or self.fy <= 0.0:
            raise IntrinsicsError(
                f'focal lengths must be positive, got fx={self.fx:g}, fy={self.fy:g} '
                '(an all-zero K usually means an uncalibrated camera)')
        return self


def integer_factor(src: int, dst: int) -> float | None:
    """``dst / src`` when one is an integer multiple of the other, else None (sizes must be > 0)."""
    if src <= 0 or dst <= 0:
        return None
    if dst >= src:
        return float(dst // src) if dst % src == 0 else None
    return 1.0 / (src // dst) if src % dst == 0 else None


@dataclass(frozen=True)
class AxisMap:
    """Where the pixels of a resampled grid sit on one axis of the source grid.

    Destination pixel ``j`` sits at source pixel coordinate ``scale * j + offset`` (pixel centres at
    integers, as in K). The one convention every stage shares (student output grid, fusion resampling,
    point-cloud intrinsics), made by ``axis_map``:

    * decimation by a whole factor ``f`` (``src = f * dst``): ``offset = f // 2``, so every destination
      pixel is an existing source pixel (``f * j + f // 2``; for an even ``f`` the later of the two central
      ones) and a depth sampled there back-projects to exactly the same 3-D point as at full resolution;
    * any other ratio (upsampling, 848 -> 320, aspect changes): the area-centre convention
      ``offset = (scale - 1) / 2``, whose nearest source pixel is within half a source pixel.
    """

    scale: float   #: source pixels per destination pixel
    offset: float  #: source coordinate of destination pixel 0

    def source_coordinate(self, j):
        return self.scale * j + self.offset

    def nearest(self, dst: int, src: int) -> np.ndarray:
        """int64 index of the nearest source pixel for each of the ``dst`` destination pixels (clipped to
        ``[0, src - 1]``); exact for whole-factor decimation, ``j // f`` for whole-factor upsampling."""
        pos = np.floor(self.source_coordinate(np.arange(dst, dtype=np.float64)) + 0.5)
        return np.clip(pos, 0, src - 1).astype(np.int64)


def axis_map(src: int, dst: int) -> AxisMap:
    """The ``AxisMap`` of a ``dst``-pixel axis resampled from a ``src``-pixel axis (both > 0).

    Raises:
        IntrinsicsError: a size that is not positive.
    """
    if src <= 0 or dst <= 0:
        raise IntrinsicsError(f'grid sizes must be positive, got {src} and {dst}')
    if src % dst == 0:
        factor = src // dst
        return AxisMap(float(factor), float(factor // 2))
    scale = src / dst
    return AxisMap(scale, (scale - 1.0) / 2.0)


def scale_intrinsics(intr: Intrinsics, from_size: tuple[int, int], to_size: tuple[int, int]) -> Intrinsics:
    """Intrinsics of a ``from_size`` (width, height) camera for a grid of ``to_size`` resampled from it.

    Any sizes (aspect changes included): with ``u = scale * j + offset`` (``axis_map``) on each axis, the
    grid's ``fx' = fx / scale_x`` and ``cx' = (cx - offset_x) / scale_x``, likewise for y.

    Raises:
        IntrinsicsError: invalid intrinsics or a zero size (the message names both sizes).
    """
    intr.validate()
    (fw, fh), (tw, th) = from_size, to_size
    if fw <= 0 or fh <= 0:
        raise IntrinsicsError(f'CameraInfo has zero size ({fw}x{fh}); cannot relate it to a {tw}x{th} image')
    if tw <= 0 or th <= 0:
        raise IntrinsicsError(f'image has zero size ({tw}x{th}); CameraInfo is {fw}x{fh}')
    if (fw, fh) == (tw, th):
        return intr
    mx, my = axis_map(fw, tw), axis_map(fh, th)
    return Intrinsics(fx=intr.fx / mx.scale, fy=intr.fy / my.scale,
                      cx=(intr.cx - mx.offset) / mx.scale, cy=(intr.cy - my.offset) / my.scale)
