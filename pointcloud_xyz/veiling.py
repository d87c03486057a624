"""Veiling points: readings smeared across a depth edge, found by the angle they make with their neighbours.

Where a surface ends in front of a farther one, a time-of-flight pixel whose footprint straddles the edge
reports a mix of both ranges (a "flying" or "mixed" pixel), and a learned depth blurs the step into a ramp.
Either way points appear in the empty space behind the edge, in the obstacle's shadow, where no clearing
ray of the costmap ever reaches them. This is the test of laser_filters' ScanShadowsFilter (and PCL's
ShadowPoints filter) on a depth image:

a reading ``P`` is a **veiling point** when a nearer reading ``Q`` (smaller optical depth) within ``window``
pixels along its row or its column lies within ``min_angle`` of ``P``'s line of sight, seen from ``P``: the
angle between ``P - Q`` and the ray to ``P`` is below ``min_angle``, i.e. the surface between them would be
nearly parallel to the ray. Only the farther point of such a pair goes; the nearer one (the obstacle's own
edge) stays.

A real surface seen at a grazing angle makes the same angle with the ray: the floor, seen from a camera at
height ``h``, meets its rays at ``atan(h / d)`` at distance ``d``, so the filter also drops the floor beyond
``h / tan(min_angle)`` (2.29 m for 0.2 m and 5 degrees). Keep ``min_angle`` below ``atan(h / r)`` for the
range ``r`` within which the floor must clear the costmap (Nav2's ``raytrace_max_range``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ['veiling_points']


def _offsets(window: int) -> list[tuple[int, int]]:
    steps = [k for k in range(-window, window + 1) if k]
    return [(0, k) for k in steps] + [(k, 0) for k in steps]


def veiling_points(z: np.ndarray, rx: np.ndarray, ry: np.ndarray, min_angle_deg: float, window: int,
                   out: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: the veiling points among the readings of an optical-depth image (see the module doc).

    Args:
        z: (H, W) float32 optical depth in metres, NaN where there is no reading.
        rx, ry: each pixel's ray ``(rx, ry, 1)``, broadcastable to (H, W) (``projection.Rays.x`` / ``.y``).
        min_angle_deg: the angle below which the farther point of a pair is a veiling point; 0 finds none.
        window: neighbours up to this many pixels away along the row and the column are compared.
        out: (H, W) bool array to write into (a new one when None).
    """
    out = np.zeros(z.shape, bool) if out is None else out
    out.fill(False)
    if min_angle_deg <= 0.0 or window < 1:
        return out
    px, py = z * rx, z * ry
    norm2 = px * px + py * py + z * z
    cos2 = np.float32(math.cos(math.radians(min_angle_deg)) ** 2)
    h, w = z.shape
    with np.errstate(invalid='ignore'):   # NaN (no reading) compares False: neither side of a pair
        for dr, dc in _offsets(window):
            here = (slice(max(-dr, 0), h - max(dr, 0)), slice(max(-dc, 0), w - max(dc, 0)))
            there = (slice(max(dr, 0), h - max(-dr, 0)), slice(max(dc, 0), w - max(-dc, 0)))
            dx, dy, dz = px[here] - px[there], py[here] - py[there], z[here] - z[there]
            dot = dx * px[here] + dy * py[here] + dz * z[here]
            seg2 = dx * dx + dy * dy + dz * dz
            out[here] |= (dz > 0) & (dot > 0) & (dot * dot > cos2 * seg2 * norm2[here])
    return out
