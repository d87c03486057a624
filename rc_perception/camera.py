"""Pinhole intrinsics and their scaling between image sizes (pure: no ROS imports)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ['Intrinsics', 'IntrinsicsError', 'integer_factor', 'scale_intrinsics']


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


def scale_intrinsics(intr: Intrinsics, from_size: tuple[int, int], to_size: tuple[int, int]) -> Intrinsics:
    """Intrinsics of a ``from_size`` (width, height) camera, for an image resized to ``to_size``.

    Only resizes by the same integer factor (or its inverse) on both axes are accepted, e.g. 640x480 to
    320x240. A resize maps pixel-centre coordinates as ``u' = (u + 0.5) * s - 0.5`` (the half-pixel
    convention of area and bilinear resampling), so ``cx' = (cx + 0.5) * s - 0.5``.

    Raises:
        IntrinsicsError: invalid intrinsics, a zero size, or sizes that are not such a resize.
    """
    intr.validate()
    (fw, fh), (tw, th) = from_size, to_size
    if fw <= 0 or fh <= 0:
        raise IntrinsicsError(f'CameraInfo has zero size ({fw}x{fh}); cannot relate it to a {tw}x{th} image')
    if (fw, fh) == (tw, th):
        return intr
    sx, sy = integer_factor(fw, tw), integer_factor(fh, th)
    if sx is None or sy is None or sx != sy:
        raise IntrinsicsError(
            f'image is {tw}x{th} but CameraInfo is {fw}x{fh}: not an integer-factor resize '
            '(the same whole factor on both axes)')
    return Intrinsics(fx=intr.fx * sx, fy=intr.fy * sy,
                      cx=(intr.cx + 0.5) * sx - 0.5, cy=(intr.cy + 0.5) * sy - 0.5)
