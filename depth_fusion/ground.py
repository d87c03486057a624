"""The floor as the ToF measures it, and the student's floor placed on it (pure: no ROS imports).

A ToF camera on a small robot sees the floor only near the robot: at grazing angles (beyond about 1.1 m
for a camera 0.2 m up) its readings drop out, and the student fills the rest of the floor. A few percent
of scale error there is harmless where the student's floor sinks below the real one, but where it rises
(a camera tilted more than configured adds to it) floor points cross the costmap's marking height within
its range. The floor is a plane, and the ToF measures it:

* **Fit** (``fit_ground``): a plane seen by a pinhole camera has an inverse depth that is affine in the
  pixel coordinates, ``1 / z = a * u + b * v + c`` (from ``n . P = d`` with ``P = z * ((u - cx) / fx,
  (v - cy) / fy, 1)``), so it is fitted on the output grid without the camera's intrinsics: RANSAC over
  the valid ToF pixels (seeded, so a frame always gives the same plane), refined by least squares on the
  inliers (``|1/z - plane| <= INLIER_TOLERANCE / z``). Only a floor-like plane counts: one below the camera
  (inverse depth growing downwards, ``b > 0``), rolled by less than ``MAX_ROLL`` (``|a| <= b * tan``), whose
  horizon row ``-(a * u + c) / b`` at the centre column lies between one grid height above the top row and
  the bottom row (a camera pitched by less than about 50 degrees; a wall facing the camera, whose inverse
  depth barely changes from row to row, has its "horizon" far above); with at least ``MIN_INLIERS``.
* **Snap** (``snap_to_ground``): a student pixel whose depth is at least ``(1 - tolerance)`` of the plane's
  depth along its ray, or beyond it, is floor and takes the plane's depth. Along one ray, a point at height
  ``H`` above the floor of a camera at height ``h`` lies at ``(1 - H / h)`` of the floor's depth, so the
  tolerance is a height in units of the camera's: 0.25 snaps what the student puts within ``0.25 h`` of the
  floor (5 cm at 0.2 m), and everything it puts below the floor, which no camera can see. Obstacles keep
  the student's depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['INLIER_TOLERANCE', 'MIN_INLIERS', 'GroundPlane', 'fit_ground', 'snap_to_ground']

#: A pixel is on the plane when its inverse depth is within this share of the plane's.
INLIER_TOLERANCE = 0.03
#: Fewer inliers among the pixels given to ``fit_ground``: no plane.
MIN_INLIERS = 100
#: RANSAC draws (of three pixels each).
ITERATIONS = 64
#: Largest camera roll about the optical axis for which a plane counts as the floor.
MAX_ROLL = math.radians(20.0)
SEED = 0


@dataclass(frozen=True)
class GroundPlane:
    """``1 / z = a * u + b * v + c`` on the grid it was fitted on (u: column, v: row); ``inliers``: the
    pixels that supported it."""

    a: float
    b: float
    c: float
    inliers: int

    def inverse_depth(self, shape: tuple[int, int], out: np.ndarray) -> np.ndarray:
        """The plane's inverse depth at every pixel of a ``shape`` grid, into float32 ``out``; <= 0 at and
        above the horizon, where rays never meet the floor."""
        rows = np.arange(shape[0], dtype=np.float32) * np.float32(self.b) + np.float32(self.c)
        cols = np.arange(shape[1], dtype=np.float32) * np.float32(self.a)
        return np.add(rows[:, None], cols[None, :], out=out)


def _floor_like(p: np.ndarray, shape: tuple[int, int]) -> bool:
    a, b, c = p
    if not b > 0.0 or abs(a) > b * math.tan(MAX_ROLL):
        return False
    horizon = -(a * (shape[1] - 1) / 2.0 + c) / b
    return -shape[0] <= horizon <= shape[0] - 1


def fit_ground(u: np.ndarray, v: np.ndarray, z: np.ndarray, shape: tuple[int, int]) -> GroundPlane | None:
    """The floor plane through the pixels (u, v) with depths z (valid ToF readings, metres) of a ``shape``
    grid, or None when no floor-like plane has ``MIN_INLIERS`` (see the module docstring)."""
    if z.size < MIN_INLIERS:
        return None
    design = np.stack([u, v, np.ones_like(u)], axis=1).astype(np.float64)
    inv = 1.0 / z.astype(np.float64)
    limit = INLIER_TOLERANCE * inv
    rng = np.random.default_rng(SEED)
    best, best_count = None, MIN_INLIERS - 1
    for triple in rng.integers(0, z.size, (ITERATIONS, 3)):
        try:
            p = np.linalg.solve(design[triple], inv[triple])
        except np.linalg.LinAlgError:   # three pixels on one line
            continue
        if not _floor_like(p, shape):
            continue
        count = int(np.count_nonzero(np.abs(design @ p - inv) <= limit))
        if count > best_count:
            best, best_count = p, count
    if best is None:
        return None
    inliers = np.abs(design @ best - inv) <= limit
    refined = np.linalg.lstsq(design[inliers], inv[inliers], rcond=None)[0]
    p = refined if _floor_like(refined, shape) else best
    return GroundPlane(float(p[0]), float(p[1]), float(p[2]), int(np.count_nonzero(inliers)))


def snap_to_ground(depth: np.ndarray, student: np.ndarray, plane_inverse: np.ndarray, tolerance: float,
                   ratio: np.ndarray, mask: np.ndarray) -> int:
    """Give the student pixels (``student`` mask) of ``depth`` that lie within ``tolerance`` (a share of the
    plane's depth, below 1) of the floor, or below it, the plane's depth, in place; returns how many.

    ``plane_inverse``: ``GroundPlane.inverse_depth`` of the grid; ``ratio`` (float32) and ``mask`` (bool):
    scratch arrays of its shape. Above the horizon (inverse depth <= 0) the ratio is <= 0: nothing snaps.
    """
    np.multiply(depth, plane_inverse, out=ratio)                 # depth / the plane's depth along the ray
    with np.errstate(invalid='ignore'):                          # NaN depth: not a student pixel anyway
        np.greater_equal(ratio, np.float32(1.0 - tolerance), out=mask)
    np.logical_and(mask, student, out=mask)
    np.divide(np.float32(1.0), plane_inverse, out=depth, where=mask)
    return int(np.count_nonzero(mask))
