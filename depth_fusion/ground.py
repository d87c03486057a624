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

from depth_fusion import kernel

__all__ = ['INLIER_TOLERANCE', 'MIN_INLIERS', 'GroundPlane', 'fit_ground', 'ground_contact', 'plane_support',
           'snap_to_ground']

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

    def inverse_depth(self, shape: tuple[int, int]) -> np.ndarray:
        """The plane's inverse depth (float32) at every pixel of a ``shape`` grid; <= 0 at and above the
        horizon, where rays never meet the floor."""
        rows = np.arange(shape[0], dtype=np.float32) * np.float32(self.b) + np.float32(self.c)
        return rows[:, None] + np.arange(shape[1], dtype=np.float32) * np.float32(self.a)


def _floor_like(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which planes ``p[..., (a, b, c)]`` may be the floor (see the module docstring)."""
    a, b, c = p[..., 0], p[..., 1], p[..., 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        horizon = -(a * ((shape[1] - 1) / 2.0) + c) / b
    return (b > 0.0) & (np.abs(a) <= b * math.tan(MAX_ROLL)) & (horizon >= -shape[0]) & \
        (horizon <= shape[0] - 1)


def _planes_through(points: np.ndarray) -> np.ndarray:
    """(a, b, c) of the planes through the three (u, v, 1/z) points of each ``points[i]``; NaN where the
    three pixels lie on one line."""
    p0, d1, d2 = points[:, 0], points[:, 1] - points[:, 0], points[:, 2] - points[:, 0]
    normal = np.cross(d1, d2)  # (nu, nv, nw): nu (u - u0) + nv (v - v0) + nw (w - w0) = 0
    with np.errstate(divide='ignore', invalid='ignore'):
        a, b = -normal[:, 0] / normal[:, 2], -normal[:, 1] / normal[:, 2]
        planes = np.stack([a, b, p0[:, 2] - a * p0[:, 0] - b * p0[:, 1]], axis=1)
    planes[normal[:, 2] == 0.0] = np.nan  # collinear pixels (u, v are integers: exact)
    return planes


def plane_support(u: np.ndarray, v: np.ndarray, inv: np.ndarray, limit: np.ndarray,
                  planes: np.ndarray) -> np.ndarray:
    """How many of the points (u, v, inv) each plane ``planes[k] = (a, b, c)`` explains, ``|a * u + b * v + c
    - inv| <= limit`` (float64): the numpy specification of ``kernel.plane_support``."""
    residual = np.abs(u[:, None] * planes[:, 0] + v[:, None] * planes[:, 1] + planes[:, 2] - inv[:, None])
    return np.count_nonzero(residual <= limit[:, None], axis=0)


def fit_ground(u: np.ndarray, v: np.ndarray, z: np.ndarray, shape: tuple[int, int]) -> GroundPlane | None:
    """The floor plane through the pixels (u, v) with depths z (valid ToF readings, metres) of a ``shape``
    grid, or None when no floor-like plane has ``MIN_INLIERS`` (see the module docstring)."""
    if z.size < MIN_INLIERS:
        return None
    u, v = u.astype(np.float64), v.astype(np.float64)
    inv = 1.0 / z.astype(np.float64)
    limit = INLIER_TOLERANCE * inv
    triples = np.random.default_rng(SEED).integers(0, z.size, (ITERATIONS, 3))
    planes = _planes_through(np.stack([u[triples], v[triples], inv[triples]], axis=2))
    planes = planes[_floor_like(planes, shape)]
    if not planes.size:
        return None
    counts = (kernel.plane_support if kernel.COMPILED else plane_support)(u, v, inv, limit, planes)
    best = int(np.argmax(counts))  # the first of the most supported, as the draws came
    if counts[best] < MIN_INLIERS:
        return None
    a, b, c = planes[best]
    inliers = np.abs(u * a + v * b + c - inv) <= limit
    design = np.stack([u[inliers], v[inliers], np.ones(int(np.count_nonzero(inliers)))], axis=1)
    refined = np.linalg.lstsq(design, inv[inliers], rcond=None)[0]
    p = refined if _floor_like(refined, shape) else planes[best]
    return GroundPlane(float(p[0]), float(p[1]), float(p[2]), int(np.count_nonzero(inliers)))


def snap_to_ground(depth: np.ndarray, source: np.ndarray, plane: GroundPlane, tolerance: float) -> int:
    """Give the student pixels (``source`` 2) of ``depth`` that lie within ``tolerance`` (a share of the
    plane's depth, below 1) of the floor, or below it, the plane's depth, in place; returns how many.

    The numpy specification of ``kernel.snap_compiled`` (and its fallback). Above the horizon (inverse depth
    <= 0) the ratio of depth to the plane's depth is <= 0: nothing snaps.
    """
    inverse = plane.inverse_depth(depth.shape)
    with np.errstate(invalid='ignore'):  # NaN depth: not a student pixel anyway
        snap = (depth * inverse >= np.float32(1.0 - tolerance)) & (source == 2)
    np.divide(np.float32(1.0), inverse, out=depth, where=snap)
    return int(np.count_nonzero(snap))


#: A student pixel pair grows like the floor when its log-depth step is at least this share of the plane's.
CONTACT_SLOPE = 0.5
#: The foot's correction: at least this ratio (plane / student), and below 1 (only ever nearer).
CONTACT_MIN_RATIO = 0.5
#: No foot where the plane's depth changes by more than this log step from one row to the next (near the
#: horizon: about 20 rows below it, 2.3 m for a camera 0.2 m up at the demo's focal length): there a row's
#: quantization and the plane's fit error make the foot's depth unreliable.
CONTACT_MAX_STEP = 0.05
#: The corrected run: the student pixels above the foot whose raw depth is within this share of the foot's.
CONTACT_RUN = 0.15


def ground_contact(depth: np.ndarray, raw: np.ndarray, source: np.ndarray, plane: GroundPlane,
                   on_plane: float = INLIER_TOLERANCE) -> int:
    """Bring student obstacles standing on the floor to the plane's depth at their foot, in place; returns
    how many pixels moved (doc/fusion.md, "Ground contact"; off by default: it does not pay on the drives).
    ``raw``: the student's depth before ``snap_to_ground`` (read only); ``depth``: after it (written).

    Per column, bottom row up. Floor evidence: a ToF pixel within ``on_plane`` of the plane (in inverse
    depth), or a student pixel whose depth grows from the one below like the plane's does (log step at
    least ``CONTACT_SLOPE`` of the plane's). A foot: two student pixels ``f`` and ``f - 1`` whose depth does
    not grow like the plane's (an upright face), with floor evidence at ``f + 1``. The face meets the floor
    between rows ``f`` and ``f + 1``: ``ratio = plane / student`` there (the plane's inverse depth the mean
    of the two rows'; the student's depth the smaller of ``f``'s and ``f - 1``'s). Where ``CONTACT_MIN_RATIO
    <= ratio < 1`` the student pixels from ``f`` up whose raw depth is within ``CONTACT_RUN`` of ``f``'s take
    ``raw * ratio``; the run ends at the first other pixel. ToF pixels are never changed; scale-free: the
    student's depths are compared with each other only, not with the plane, to find the foot.
    """
    inverse = plane.inverse_depth(depth.shape)
    h, w = depth.shape
    low = np.float32(1.0 - on_plane)
    high = np.float32(1.0 + on_plane)
    ratio = np.full(w, np.nan, np.float32)
    ref = np.full(w, np.nan, np.float32)
    evidence1 = np.zeros(w, bool)   # floor evidence one row below the current row
    evidence2 = np.zeros(w, bool)   # two rows below
    moved = 0
    if h < 3:
        return 0
    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
        for r in range(h - 1, -1, -1):
            inv, s, x = inverse[r], source[r], raw[r]
            student = (s == 2) & (inv > 0)
            if r < h - 1:
                inv1, x1, s1 = inverse[r + 1], raw[r + 1], source[r + 1]
                pair = student & (s1 == 2) & (inv1 > 0)
                step = np.log(x) - np.log(x1)
                plane_step = np.log(inv1) - np.log(inv)
                grows = pair & (step >= np.float32(CONTACT_SLOPE) * plane_step)
                upright = pair & ~grows
                start = upright & evidence2 & ~np.isfinite(ratio) & \
                    (plane_step <= np.float32(CONTACT_MAX_STEP))
                # the face meets the floor between f = r + 1 and f + 1 = r + 2
                inv2 = inverse[r + 2] if r + 2 < h else inv1
                foot_inv = (inv1 + inv2) * np.float32(0.5)
                contact = np.float32(1.0) / (foot_inv * np.minimum(x, x1))
                ok = start & (contact >= np.float32(CONTACT_MIN_RATIO)) & (contact < np.float32(1.0))
                ratio = np.where(ok, contact, ratio)
                ref = np.where(ok, x1, ref)
                fix1 = ok  # row f itself
                depth[r + 1][fix1] = x1[fix1] * ratio[fix1]
                moved += int(np.count_nonzero(fix1))
                tof_floor = (s == 1) & (depth[r] * inv >= low) & (depth[r] * inv <= high)
                evidence = tof_floor | grows
            else:
                evidence = (s == 1) & (depth[r] * inv >= low) & (depth[r] * inv <= high)
            run = student & np.isfinite(ratio) & (np.abs(x - ref) <= np.float32(CONTACT_RUN) * ref)
            depth[r][run] = x[run] * ratio[run]
            moved += int(np.count_nonzero(run))
            ratio = np.where(run, ratio, np.nan)
            evidence2, evidence1 = evidence1, evidence
    return moved
