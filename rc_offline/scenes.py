"""Synthetic indoor RGB-D + ToF frames seen from an RC car: training data and the demo's held-out scenes.

Pure numpy (no ROS, no torch), deterministic by seed, vectorized: every pixel's ray is cast analytically
against the room and a handful of objects at once (loops run over objects, never over pixels).

What is modelled:

* **Scenes**: an axis-aligned corridor (1.6-3 m wide, 6-10 m long) or room (3.5-7 m square), 2.4-3 m
  high, with floor, four walls (doors, skirting) and ceiling (panels, lights; in view only far down a
  corridor, the camera being so low); optional partition walls;
  boxes (some stacked, rotated about the vertical), cylinders (bins, barrels) and thin poles. No openings:
  every pixel hits a surface, so ground-truth depth is finite everywhere.
* **Appearance**: procedural textures in world units (tiles, wood planks, carpet, concrete, paint,
  brick, ceiling panels, cardboard with tape, plastic, brushed metal, black foam), so texture scale
  shrinks with distance like a real one; Lambert + ambient + fill shading from one light direction, a mild
  distance falloff, contact shadows near floor/wall corners and under objects, Blinn highlights on glossy
  materials, auto-exposure, vignetting, gamma and sensor noise.
* **Camera**: optical frame (x right, y down, z forward) at 0.15-0.3 m above the floor with a little
  pitch and roll, 640x480 pinhole, fx = fy in [460, 500], principal point within 4 px of the centre.
* **Per frame** (``SceneFrame``): ``rgb`` (H, W, 3) uint8; ``depth`` (H, W) float32 metres along optical Z;
  ``labels`` (H, W) uint8 ids of ``rc_perception.labels.CLASS_NAMES`` (poles are 'cylinder', partition
  walls are 'wall'); ``tof_mm`` (H, W) uint16 millimetres, 0 = invalid; ``confidence`` (H, W) uint8,
  0 where the ToF is invalid (see ``rc_offline.tof_sim`` for the ToF failure model); the intrinsics
  and the camera pose.
* **Two modes**: independent random frames (a new scene per frame: training) and a sequence (one scene,
  the camera driving a smooth loop through it at ``rate_hz``: the demo's replay).

World frame: x, y horizontal, z up, floor at z = 0. Generating a 640x480 frame (RGB, ground truth, ToF)
takes about 80-120 ms on one core of the 2-core development machine; writing its five PNGs about 100 ms
more (``python -m rc_offline.scenes`` prints the figure).

Usage::

    from rc_offline import scenes
    for frame in scenes.random_frames(seed=1, count=10):        # or scenes.sequence_frames(seed=1, count=80)
        frame.rgb, frame.depth, frame.labels, frame.tof_mm, frame.confidence, frame.intrinsics
    scenes.write_split('out/', scenes.sequence_frames(seed=7, count=80))   # rc_offline.dataset layout

    python -m rc_offline.scenes --out data/heldout --frames 80 --seed 7 --sequence
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rc_offline.tof_sim import ToFConfig, fast_normal, simulate_tof
from rc_perception.camera import Intrinsics
from rc_perception.labels import CLASS_NAMES

__all__ = [
    'HEIGHT', 'WIDTH', 'Box', 'CameraPose', 'Cylinder', 'Door', 'GeometryRender', 'Material', 'Placer',
    'Scene', 'SceneFrame', 'frame_rng', 'loop_path', 'main', 'random_frames', 'random_intrinsics',
    'random_pose', 'random_scene', 'render', 'render_frame', 'render_geometry', 'sequence_frames',
    'sequence_poses', 'sequence_scene', 'training_sample', 'write_split',
]

WIDTH, HEIGHT = 640, 480
FLOOR, WALL, CEILING, BOX, CYLINDER = (CLASS_NAMES.index(n) for n in ('floor', 'wall', 'ceiling', 'box',
                                                                       'cylinder'))
_F = np.float32
#: Salt mixed into seeds so that split-level draws (intrinsics, the sequence's scene) and per-frame draws
#: of the same integer seed never share a random stream.
_SPLIT_SALT, _SEQUENCE_SALT = 0x5EED0001, 0x5EED0002


# ---------------------------------------------------------------------------------------------------------
# Scene description
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Material:
    """A surface's look in RGB and to the ToF.

    Attributes:
        kind: texture: 'tiles', 'wood', 'carpet', 'concrete', 'paint', 'brick', 'ceiling', 'cardboard',
            'plastic', 'metal' or 'dark'.
        colour: linear RGB albedo in [0, 1].
        accent: second colour (checker tiles, skirting, mortar, tape).
        scale: characteristic size in metres (tile, plank width, skirting height, brick height...).
        nir: near-infrared reflectance the ToF sees (0..1); black foam ~0.01, white paint ~0.8.
        specular: 0 = matte .. 1 = mirror-like; glossy surfaces show highlights and make the ToF drop out.
        salt: decorrelates the noise of two materials of the same kind.
        variant: kind-specific switch (checker tiles, stripes...).
    """

    kind: str
    colour: tuple[float, float, float]
    accent: tuple[float, float, float] = (0.1, 0.1, 0.1)
    scale: float = 0.3
    nir: float = 0.5
    specular: float = 0.0
    salt: int = 0
    variant: int = 0


@dataclass(frozen=True)
class Box:
    """A box standing at ``z0`` (0 = on the floor), rotated by ``yaw`` about its vertical axis."""

    x: float
    y: float
    z0: float
    size_x: float
    size_y: float
    size_z: float
    yaw: float
    material: int
    label: int = BOX


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder (bin, barrel, or a pole when thin) standing on the floor."""

    x: float
    y: float
    radius: float
    height: float
    material: int
    label: int = CYLINDER


@dataclass(frozen=True)
class Door:
    """A door painted onto room wall ``wall`` (0: x = x0, 1: x = x1, 2: y = y0, 3: y = y1)."""

    wall: int
    start: float
    width: float
    height: float
    colour: tuple[float, float, float]
    nir: float


@dataclass(frozen=True)
class Scene:
    """One room or corridor: bounds, materials, objects and lighting.

    ``materials`` is indexed by ``Box.material``/``Cylinder.material``; ``floor``, ``ceiling`` and
    ``walls`` (4 entries, wall order as in ``Door``) are indices into it as well.
    """

    kind: str
    bounds: tuple[float, float, float, float]   # x0, x1, y0, y1
    ceiling_height: float
    materials: tuple[Material, ...]
    floor: int
    ceiling: int
    walls: tuple[int, int, int, int]
    boxes: tuple[Box, ...] = ()
    cylinders: tuple[Cylinder, ...] = ()
    doors: tuple[Door, ...] = ()
    light: tuple[float, float, float] = (0.3, 0.2, 0.93)   # unit vector towards the light
    ambient: float = 0.45
    falloff: float = 8.0                                    # metres at which distance halves brightness
    #: Closed path the camera follows in sequence mode: (N, 2) xy samples, objects keep clear of it.
    path: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), compare=False, repr=False)


@dataclass(frozen=True)
class CameraPose:
    """Camera optical frame in the world: position, heading (yaw about +z), pitch (down > 0), roll."""

    x: float
    y: float
    z: float
    yaw: float
    pitch: float = 0.0
    roll: float = 0.0

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z], np.float64)

    def rotation(self) -> np.ndarray:
        """(3, 3) matrix whose columns are the optical x (right), y (down), z (forward) axes in the world."""
        cy, sy, cp, sp = math.cos(self.yaw), math.sin(self.yaw), math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([cy * cp, sy * cp, -sp])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(forward, right)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        right, down = cr * right + sr * down, -sr * right + cr * down
        return np.stack([right, down, forward], axis=1)

    def quaternion(self) -> tuple[float, float, float, float]:
        """(qx, qy, qz, qw) of ``rotation()`` (optical frame -> world)."""
        m = self.rotation()
        w = math.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2.0
        x = math.copysign(math.sqrt(max(0.0, 1.0 + m[0, 0] - m[1, 1] - m[2, 2])) / 2.0, m[2, 1] - m[1, 2])
        y = math.copysign(math.sqrt(max(0.0, 1.0 - m[0, 0] + m[1, 1] - m[2, 2])) / 2.0, m[0, 2] - m[2, 0])
        z = math.copysign(math.sqrt(max(0.0, 1.0 - m[0, 0] - m[1, 1] + m[2, 2])) / 2.0, m[1, 0] - m[0, 1])
        return x, y, z, w


@dataclass(frozen=True)
class SceneFrame:
    """One rendered frame: images in the package's conventions plus what produced them."""

    rgb: np.ndarray            # (H, W, 3) uint8
    depth: np.ndarray          # (H, W) float32 metres along optical Z (finite everywhere indoors)
    labels: np.ndarray         # (H, W) uint8 class ids (CLASS_NAMES)
    tof_mm: np.ndarray         # (H, W) uint16 millimetres, 0 = invalid, registered to the RGB frame
    confidence: np.ndarray     # (H, W) uint8 0..255, 0 where the ToF is invalid
    intrinsics: Intrinsics
    pose: CameraPose
    stamp: float = 0.0         # seconds since the start of the sequence (0 for random frames)
    index: int = 0
    #: The robot's base_link (x, y, yaw) on the floor, for frames of a drive (rc_offline.drive), else None.
    base: tuple[float, float, float] | None = None


# ---------------------------------------------------------------------------------------------------------
# Random scene generation
# ---------------------------------------------------------------------------------------------------------

def _jitter(rng: np.random.Generator, colour, amount: float = 0.15) -> tuple[float, float, float]:
    c = np.asarray(colour, np.float64) * rng.uniform(1 - amount, 1 + amount, 3)
    return tuple(float(v) for v in np.clip(c, 0.0, 1.0))


def _floor_material(rng: np.random.Generator) -> Material:
    kind = rng.choice(['tiles', 'wood', 'carpet', 'concrete'], p=[0.35, 0.3, 0.2, 0.15])
    salt = int(rng.integers(1 << 16))
    if kind == 'tiles':
        light = rng.uniform(0.45, 0.8)
        base = _jitter(rng, (light, light * 0.97, light * 0.9), 0.08)
        checker = int(rng.random() < 0.3)
        accent = _jitter(rng, (0.12, 0.12, 0.13), 0.3) if checker else tuple(0.55 * v for v in base)
        return Material('tiles', base, accent, float(rng.uniform(0.3, 0.6)), nir=0.6, specular=0.2,
                        salt=salt, variant=checker)
    if kind == 'wood':
        base = _jitter(rng, (0.42, 0.24, 0.11), 0.3)
        return Material('wood', base, tuple(0.4 * v for v in base), float(rng.uniform(0.09, 0.2)), nir=0.5,
                        specular=0.12, salt=salt)
    if kind == 'carpet':
        hue = rng.choice([(0.3, 0.3, 0.32), (0.15, 0.2, 0.35), (0.35, 0.15, 0.14), (0.18, 0.28, 0.18)])
        return Material('carpet', _jitter(rng, hue, 0.25), (0.1, 0.1, 0.1), 0.5, nir=0.35, specular=0.0,
                        salt=salt)
    grey = rng.uniform(0.3, 0.5)
    return Material('concrete', _jitter(rng, (grey, grey, grey * 0.95), 0.05), (0.2, 0.2, 0.2), 1.0,
                    nir=0.4, specular=0.05, salt=salt)


def _wall_material(rng: np.random.Generator) -> Material:
    kind = rng.choice(['paint', 'brick', 'concrete'], p=[0.7, 0.15, 0.15])
    salt = int(rng.integers(1 << 16))
    if kind == 'paint':
        if rng.random() < 0.75:
            light = rng.uniform(0.6, 0.88)
            base = _jitter(rng, (light, light * 0.98, light * 0.93), 0.06)
        else:
            base = _jitter(rng, rng.choice([(0.55, 0.65, 0.75), (0.75, 0.68, 0.45), (0.55, 0.7, 0.55),
                                            (0.75, 0.55, 0.5)]), 0.1)
        skirting = (0.07, 0.07, 0.07) if rng.random() < 0.5 else (0.85, 0.85, 0.85)
        return Material('paint', base, skirting, float(rng.uniform(0.06, 0.12)), nir=0.8, specular=0.05,
                        salt=salt)
    if kind == 'brick':
        return Material('brick', _jitter(rng, (0.5, 0.22, 0.15), 0.2), (0.6, 0.58, 0.55), 0.075, nir=0.55,
                        specular=0.0, salt=salt)
    grey = rng.uniform(0.45, 0.6)
    return Material('concrete', (grey, grey, grey), (0.2, 0.2, 0.2), 1.0, nir=0.6, specular=0.02, salt=salt)


def _object_material(rng: np.random.Generator, role: str) -> Material:
    weights = {'box': ([0.4, 0.22, 0.15, 0.1, 0.13], ['cardboard', 'plastic', 'dark', 'metal', 'wood']),
               'cylinder': ([0.1, 0.4, 0.2, 0.3, 0.0], ['cardboard', 'plastic', 'dark', 'metal', 'wood']),
               'pole': ([0.0, 0.35, 0.2, 0.45, 0.0], ['cardboard', 'plastic', 'dark', 'metal', 'wood'])}
    p, kinds = weights[role]
    kind = rng.choice(kinds, p=p)
    salt = int(rng.integers(1 << 16))
    if kind == 'cardboard':
        return Material('cardboard', _jitter(rng, (0.5, 0.34, 0.18), 0.15), _jitter(rng, (0.68, 0.56, 0.38)),
                        0.05, nir=0.55, specular=0.05, salt=salt)
    if kind == 'plastic':
        hue = rng.choice([(0.7, 0.1, 0.08), (0.1, 0.25, 0.7), (0.85, 0.7, 0.05), (0.1, 0.55, 0.2),
                          (0.85, 0.85, 0.85), (0.9, 0.4, 0.05)])
        return Material('plastic', _jitter(rng, hue, 0.1), (0.9, 0.9, 0.9), 0.1,
                        nir=float(rng.uniform(0.35, 0.7)), specular=0.3, salt=salt)
    if kind == 'dark':
        return Material('dark', _jitter(rng, (0.03, 0.03, 0.035), 0.3), (0.05, 0.05, 0.05), 0.1,
                        nir=float(rng.uniform(0.006, 0.015)), specular=0.08, salt=salt)
    if kind == 'metal':
        grey = rng.uniform(0.45, 0.7)
        return Material('metal', (grey, grey, grey * 1.03), (0.3, 0.3, 0.3), 0.1, nir=0.3, specular=0.85,
                        salt=salt)
    base = _jitter(rng, (0.55, 0.38, 0.2), 0.15)
    return Material('wood', base, tuple(0.45 * v for v in base), float(rng.uniform(0.08, 0.14)), nir=0.5,
                    specular=0.05, salt=salt)


def loop_path(x0: float, x1: float, y0: float, y1: float, margin: float) -> np.ndarray:
    """(N, 2) points 2 cm apart (by arc length) on a closed racetrack ``margin`` inside the bounds: a
    rectangle with corners rounded to a radius of up to 0.6 m, a turn a small car can drive."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a, b = max((x1 - x0) / 2 - margin, 0.3), max((y1 - y0) / 2 - margin, 0.3)
    radius = min(a, b, 0.6)
    theta = (np.arange(4000) + 0.5) * (2 * math.pi / 4000)   # never exactly on an axis
    c, s = np.cos(theta), np.sin(theta)
    # Each quarter of the circle sits on its own corner centre; the straight sides join consecutive corners.
    pts = np.stack([cx + np.sign(c) * (a - radius) + radius * c, cy + np.sign(s) * (b - radius) + radius * s],
                   axis=1)
    closed = np.vstack([pts, pts[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    even = np.arange(0.0, arc[-1], 0.02)
    return np.stack([np.interp(even, arc, closed[:, 0]), np.interp(even, arc, closed[:, 1])], axis=1)


class Placer:
    """Keeps object footprints (as circles) apart, inside the room and off the camera path."""

    def __init__(self, bounds: tuple[float, float, float, float], path: np.ndarray, path_clearance: float):
        self.bounds = bounds
        self.path = path
        self.path_clearance = path_clearance
        self.circles: list[tuple[float, float, float]] = []

    def fits(self, x: float, y: float, r: float, wall_gap: float = 0.02,
             half_extent: tuple[float, float] | None = None) -> bool:
        """Whether a footprint of bounding radius ``r`` at (x, y) is free; ``half_extent`` (hx, hy), when
        given, replaces ``r`` for the wall test (an axis-aligned box against a wall)."""
        x0, x1, y0, y1 = self.bounds
        hx, hy = half_extent or (r, r)
        if not (x0 + hx + wall_gap <= x <= x1 - hx - wall_gap
                and y0 + hy + wall_gap <= y <= y1 - hy - wall_gap):
            return False
        if any(math.hypot(x - cx, y - cy) < r + cr + 0.05 for cx, cy, cr in self.circles):
            return False
        if len(self.path):
            d = np.min(np.hypot(self.path[:, 0] - x, self.path[:, 1] - y))
            if d < r + self.path_clearance:
                return False
        return True

    def add(self, x: float, y: float, r: float) -> None:
        self.circles.append((x, y, r))


def random_scene(rng: np.random.Generator, kind: str | None = None) -> Scene:
    """A random corridor or room (``kind``: 'corridor', 'room' or None for either) with objects placed
    clear of the loop the camera drives in sequence mode (``Scene.path``). (The draws from ``rng`` happen
    in a fixed order: the cached splits and the demo student's training data depend on it.)"""
    kind = kind or str(rng.choice(['corridor', 'room'], p=[0.45, 0.55]))
    bounds = _random_bounds(rng, kind)
    x0, x1, y0, y1 = bounds
    height = float(rng.uniform(2.4, 3.0))
    narrow = min(x1 - x0, y1 - y0)
    path = loop_path(x0, x1, y0, y1, margin=min(0.75, narrow / 2 - 0.3) if kind == 'corridor' else
                      float(rng.uniform(0.9, 1.4)))
    materials, walls = _room_materials(rng)
    objects = _Furnisher(rng, materials, Placer(bounds, path, path_clearance=0.45), bounds, height)
    if kind == 'room' and rng.random() < 0.4:
        objects.add_partition(walls[0])
    for _ in range(int(rng.integers(2, 7) if kind == 'corridor' else rng.integers(4, 11))):
        objects.add_object(rng.choice(['box', 'cylinder', 'pole'], p=[0.55, 0.25, 0.2]))
    doors = _random_doors(rng, bounds)
    elevation = rng.uniform(math.radians(45), math.radians(80))
    azimuth = rng.uniform(0, 2 * math.pi)
    light = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
             math.sin(elevation))
    return Scene(kind=kind, bounds=bounds, ceiling_height=height, materials=tuple(materials), floor=0,
                 ceiling=2, walls=tuple(walls), boxes=tuple(objects.boxes),
                 cylinders=tuple(objects.cylinders),
                 doors=tuple(doors), light=light, ambient=float(rng.uniform(0.35, 0.55)),
                 falloff=float(rng.uniform(6.0, 12.0)), path=path)


def _random_bounds(rng: np.random.Generator, kind: str) -> tuple[float, float, float, float]:
    if kind == 'corridor':
        length, width = rng.uniform(6.0, 10.0), rng.uniform(1.6, 3.0)
        bounds = (0.0, length, 0.0, width) if rng.random() < 0.5 else (0.0, width, 0.0, length)
    elif kind == 'room':
        bounds = (0.0, float(rng.uniform(3.5, 7.0)), 0.0, float(rng.uniform(3.5, 7.0)))
    else:
        raise ValueError(f"scene kind must be 'corridor', 'room' or None, got {kind!r}")
    return tuple(float(v) for v in bounds)


def _room_materials(rng: np.random.Generator) -> tuple[list[Material], list[int]]:
    """Floor, walls, ceiling (materials 0, 1, 2) and maybe one accent wall; the walls' material indices."""
    materials: list[Material] = [_floor_material(rng), _wall_material(rng)]
    ceiling_light = rng.uniform(0.75, 0.9)
    materials.append(Material('ceiling', (ceiling_light, ceiling_light, ceiling_light * 0.97),
                              (0.5, 0.5, 0.5), float(rng.choice([0.6, 1.2])), nir=0.8,
                              salt=int(rng.integers(1 << 16)), variant=int(rng.random() < 0.7)))
    walls = [1, 1, 1, 1]
    if rng.random() < 0.3:   # one accent wall
        materials.append(_wall_material(rng))
        walls[int(rng.integers(4))] = len(materials) - 1
    return materials, walls


class _Furnisher:
    """Places the boxes, cylinders and poles of one scene (``random_scene``), each with a new material."""

    def __init__(self, rng: np.random.Generator, materials: list[Material], placer: Placer,
                 bounds: tuple[float, float, float, float], height: float) -> None:
        self.rng, self.materials, self.placer = rng, materials, placer
        self.bounds, self.height = bounds, height
        self.boxes: list[Box] = []
        self.cylinders: list[Cylinder] = []

    def _material(self, role: str) -> int:
        self.materials.append(_object_material(self.rng, role))
        return len(self.materials) - 1

    def add_partition(self, wall_material: int) -> None:
        """A thin full-height box labelled 'wall', painted like the walls (rooms only)."""
        rng, (x0, x1, y0, y1) = self.rng, self.bounds
        for _ in range(20):
            along_x = rng.random() < 0.5
            length = float(rng.uniform(0.8, 2.0))
            x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
            sx, sy = (length, 0.1) if along_x else (0.1, length)
            r = math.hypot(sx, sy) / 2
            if self.placer.fits(x, y, r, wall_gap=0.0):
                self.placer.add(x, y, r)
                self.boxes.append(Box(x, y, 0.0, sx, sy, self.height, 0.0, wall_material, label=WALL))
                return

    def add_object(self, role: str) -> None:
        """One box, cylinder or pole where it fits (30 tries; none if it never does)."""
        rng, (x0, x1, y0, y1) = self.rng, self.bounds
        place = {'box': self._box, 'cylinder': self._cylinder}.get(role, self._pole)
        for _attempt in range(30):
            if place(float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))):
                return

    def _box(self, x: float, y: float) -> bool:
        rng, (x0, x1, y0, y1) = self.rng, self.bounds
        sx, sy = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))
        r = math.hypot(sx, sy) / 2
        if rng.random() < 0.5:   # push against a wall, aligned with it
            yaw = 0.0
            side = int(rng.integers(4))
            x = [x0 + sx / 2 + 0.03, x1 - sx / 2 - 0.03, x, x][side]
            y = [y, y, y0 + sy / 2 + 0.03, y1 - sy / 2 - 0.03][side]
            ok = self.placer.fits(x, y, r, wall_gap=0.0, half_extent=(sx / 2, sy / 2))
        else:
            yaw = float(rng.uniform(0, math.pi / 2))
            ok = self.placer.fits(x, y, r)
        if not ok:
            return False
        self.placer.add(x, y, r)
        sz = float(rng.uniform(0.2, 1.0))
        self.boxes.append(Box(x, y, 0.0, sx, sy, sz, yaw, self._material('box')))
        if rng.random() < 0.2:   # a smaller box stacked on top
            self.boxes.append(Box(x + float(rng.uniform(-0.05, 0.05)), y + float(rng.uniform(-0.05, 0.05)),
                                  sz, sx * float(rng.uniform(0.5, 0.9)), sy * float(rng.uniform(0.5, 0.9)),
                                  float(rng.uniform(0.15, 0.5)), yaw + float(rng.uniform(-0.3, 0.3)),
                                  self._material('box')))
        return True

    def _cylinder(self, x: float, y: float) -> bool:
        r = float(self.rng.uniform(0.1, 0.3))
        if not self.placer.fits(x, y, r):
            return False
        self.placer.add(x, y, r)
        height = float(self.rng.uniform(0.3, 1.2))
        self.cylinders.append(Cylinder(x, y, r, height, self._material('cylinder')))
        return True

    def _pole(self, x: float, y: float) -> bool:
        r = float(self.rng.uniform(0.015, 0.05))
        if not self.placer.fits(x, y, max(r, 0.1)):
            return False
        self.placer.add(x, y, max(r, 0.1))
        pole_h = self.height if self.rng.random() < 0.5 else float(self.rng.uniform(1.0, 2.0))
        self.cylinders.append(Cylinder(x, y, r, pole_h, self._material('pole')))
        return True


def _random_doors(rng: np.random.Generator, bounds: tuple[float, float, float, float]) -> list[Door]:
    x0, x1, y0, y1 = bounds
    doors = []
    for wall in range(4):
        span = (y1 - y0) if wall < 2 else (x1 - x0)
        for _ in range(int(rng.integers(0, 3))):
            w = float(rng.uniform(0.8, 1.0))
            if span > w + 0.4:
                colour = _jitter(rng, rng.choice([(0.45, 0.28, 0.14), (0.85, 0.85, 0.82), (0.3, 0.35, 0.45)]))
                doors.append(Door(wall, float(rng.uniform(0.2, span - w - 0.2)), w,
                                  float(rng.uniform(1.95, 2.1)), colour, nir=0.55))
    return doors


def random_intrinsics(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> Intrinsics:
    """fx = fy in [460, 500] (scaled for other widths than 640), principal point within 4 px of the centre."""
    f = rng.uniform(460.0, 500.0) * width / WIDTH
    return Intrinsics(fx=float(f), fy=float(f), cx=float((width - 1) / 2 + rng.uniform(-4, 4)),
                      cy=float((height - 1) / 2 + rng.uniform(-4, 4)))


def _clear_of_objects(scene: Scene, x: float, y: float, clearance: float) -> bool:
    x0, x1, y0, y1 = scene.bounds
    if not (x0 + clearance <= x <= x1 - clearance and y0 + clearance <= y <= y1 - clearance):
        return False
    for b in scene.boxes:
        c, s = math.cos(b.yaw), math.sin(b.yaw)
        lx, ly = c * (x - b.x) + s * (y - b.y), -s * (x - b.x) + c * (y - b.y)
        dx, dy = max(abs(lx) - b.size_x / 2, 0.0), max(abs(ly) - b.size_y / 2, 0.0)
        if math.hypot(dx, dy) < clearance:
            return False
    return all(math.hypot(x - cyl.x, y - cyl.y) >= cyl.radius + clearance for cyl in scene.cylinders)


def random_pose(scene: Scene, rng: np.random.Generator, clearance: float = 0.35) -> CameraPose:
    """A camera 0.15-0.3 m above the floor, pitch ~ N(2 deg, 3 deg) (down > 0), roll ~ N(0, 2 deg).

    Half of the poses are driving poses (on the scene's path, heading along it within +-25 deg, either
    way round), the other half anywhere clear of walls and objects with any heading.
    """
    x0, x1, y0, y1 = scene.bounds
    height = float(rng.uniform(0.15, 0.3))
    pitch, roll = float(np.radians(rng.normal(2.0, 3.0))), float(np.radians(rng.normal(0.0, 2.0)))
    if rng.random() < 0.5 and len(scene.path) > 5:
        i = int(rng.integers(len(scene.path)))
        (x, y), ahead = scene.path[i], scene.path[(i + 5) % len(scene.path)]
        yaw = math.atan2(ahead[1] - y, ahead[0] - x) + float(rng.normal(0.0, math.radians(12.0)))
        yaw += math.pi if rng.random() < 0.5 else 0.0
        return CameraPose(float(x), float(y), height, yaw, pitch, roll)
    for _ in range(200):
        x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
        if _clear_of_objects(scene, x, y, clearance):
            break
    else:
        if not len(scene.path):
            raise ValueError(f'no place {clearance} m clear of walls and objects found in the scene')
        x, y = (float(v) for v in scene.path[int(rng.integers(len(scene.path)))])   # kept clear
    return CameraPose(x, y, height, float(rng.uniform(-math.pi, math.pi)), pitch, roll)


def sequence_poses(scene: Scene, rng: np.random.Generator, count: int, rate_hz: float = 15.0,
                   speed: float | None = None) -> list[CameraPose]:
    """Poses of a camera driving along ``scene.path`` at ``speed`` m/s (random 0.5-0.8 when None), sampled
    at ``rate_hz``: heading along the path, smooth small pitch/roll/height oscillations (a bumpy car)."""
    if len(scene.path) < 2:
        raise ValueError('the scene has no camera path (Scene.path); random_scene makes one')
    speed = float(rng.uniform(0.5, 0.8)) if speed is None else speed
    path = scene.path
    closed = np.vstack([path, path[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s_knots = np.concatenate([[0.0], np.cumsum(seg)])
    total = s_knots[-1]
    start = rng.uniform(0, total)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    t = np.arange(count) / rate_hz
    s = np.mod(start + direction * speed * t, total)
    xs, ys = np.interp(s, s_knots, closed[:, 0]), np.interp(s, s_knots, closed[:, 1])
    ahead = np.mod(s + direction * 0.15, total)
    yaw = np.arctan2(np.interp(ahead, s_knots, closed[:, 1]) - ys,
                     np.interp(ahead, s_knots, closed[:, 0]) - xs)
    z0 = rng.uniform(0.15, 0.3)
    ph = rng.uniform(0, 2 * math.pi, 6)
    w = 2 * math.pi * t
    pitch = np.radians(1.5 + 1.2 * np.sin(0.7 * w + ph[0]) + 0.6 * np.sin(2.3 * w + ph[1]))
    roll = np.radians(1.0 * np.sin(0.5 * w + ph[2]) + 0.5 * np.sin(1.9 * w + ph[3]))
    z = z0 + 0.004 * np.sin(1.3 * w + ph[4])
    return [CameraPose(float(a), float(b), float(c), float(d), float(e), float(f))
            for a, b, c, d, e, f in zip(xs, ys, z, yaw, pitch, roll, strict=True)]


# ---------------------------------------------------------------------------------------------------------
# Ray casting
# ---------------------------------------------------------------------------------------------------------

@dataclass
class GeometryRender:
    """What the rays hit. Image-shaped arrays are (H, W); per-pixel vectors are tuples of three flat
    (H * W,) float32 arrays (x, y, z components, row-major pixel order).

    Attributes:
        depth: float32 metres along optical Z.
        labels: uint8 class ids.
        surface: int16 surface id (0 floor, 1 ceiling, 2-5 walls x0, x1, y0, y1, then 6 + object index over
            ``scene.boxes`` followed by ``scene.cylinders``).
        ray_norm: float32 length of each pixel's ray direction scaled to optical z = 1 (range = depth *
            ray_norm).
        points, normals, dirs: world hit points, unit surface normals, unit ray directions.
        u, v: (H * W,) float32 surface coordinates in metres (texture coordinates).
        groups: (flat pixel indices, Material) pairs covering every pixel once: what to texture how.
    """

    depth: np.ndarray
    labels: np.ndarray
    surface: np.ndarray
    ray_norm: np.ndarray
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    normals: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    dirs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    u: np.ndarray | None = None
    v: np.ndarray | None = None
    groups: list[tuple[np.ndarray, Material]] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _camera_rays(intr: Intrinsics, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optical-frame ray directions (x, y, 1) per pixel centre, and their lengths. Cached: read-only."""
    uu, vv = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    xc = (uu - _F(intr.cx)) * _F(1.0 / intr.fx)
    yc = (vv - _F(intr.cy)) * _F(1.0 / intr.fy)
    norm = np.sqrt(xc * xc + yc * yc + 1.0)
    for a in (xc, yc, norm):
        a.flags.writeable = False
    return xc, yc, norm


def _screen_rect(corners: np.ndarray, pose: CameraPose, intr: Intrinsics, width: int, height: int):
    """Pixel rectangle (v0, v1, u0, u1) covering the projection of world points, None when off screen,
    the whole image when a point lies behind the camera."""
    cam = (corners - pose.position) @ pose.rotation()
    z = cam[:, 2]
    if np.all(z <= 0.01):
        return None
    if np.any(z <= 0.01):
        return 0, height, 0, width
    u = intr.fx * cam[:, 0] / z + intr.cx
    v = intr.fy * cam[:, 1] / z + intr.cy
    u0, u1 = max(int(math.floor(u.min())) - 1, 0), min(int(math.ceil(u.max())) + 2, width)
    v0, v1 = max(int(math.floor(v.min())) - 1, 0), min(int(math.ceil(v.max())) + 2, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _box_corners(b: Box) -> np.ndarray:
    c, s = math.cos(b.yaw), math.sin(b.yaw)
    pts = []
    for ex in (-0.5 * b.size_x, 0.5 * b.size_x):
        for ey in (-0.5 * b.size_y, 0.5 * b.size_y):
            pts += [(b.x + c * ex - s * ey, b.y + s * ex + c * ey, z) for z in (b.z0, b.z0 + b.size_z)]
    return np.array(pts)


def _cylinder_corners(c: Cylinder) -> np.ndarray:
    return np.array([(c.x + ex * c.radius, c.y + ey * c.radius, z)
                     for ex in (-1, 1) for ey in (-1, 1) for z in (0.0, c.height)])


def _slab(o: float, d: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    inv = 1.0 / d
    t1, t2 = (lo - o) * inv, (hi - o) * inv
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _hit_box(b: Box, origin: np.ndarray, dx, dy, dz) -> np.ndarray:
    c, s = _F(math.cos(b.yaw)), _F(math.sin(b.yaw))
    ox, oy = origin[0] - b.x, origin[1] - b.y
    lox, loy = c * ox + s * oy, -s * ox + c * oy
    ldx, ldy = c * dx + s * dy, -s * dx + c * dy
    nx, fx = _slab(lox, ldx, -b.size_x / 2, b.size_x / 2)
    ny, fy = _slab(loy, ldy, -b.size_y / 2, b.size_y / 2)
    nz, fz = _slab(origin[2], dz, b.z0, b.z0 + b.size_z)
    near = np.maximum(np.maximum(nx, ny), nz)
    far = np.minimum(np.minimum(fx, fy), fz)
    return np.where((near <= far) & (near > 1e-4), near, np.inf)


def _hit_cylinder(cyl: Cylinder, origin: np.ndarray, dx, dy, dz) -> np.ndarray:
    ox, oy = _F(origin[0] - cyl.x), _F(origin[1] - cyl.y)
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy                     # half of the usual b
    c = _F(ox * ox + oy * oy - cyl.radius ** 2)
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    z = origin[2] + t * dz
    best = np.where((disc >= 0) & (t > 1e-4) & (z >= 0) & (z <= cyl.height), t, np.inf)
    if origin[2] > cyl.height:               # the top cap is visible only from above
        tc = (cyl.height - origin[2]) / dz
        px, py = ox + tc * dx, oy + tc * dy
        cap = (tc > 1e-4) & (px * px + py * py <= cyl.radius ** 2)
        best = np.minimum(best, np.where(cap, tc, np.inf))
    return best


def render_geometry(scene: Scene, pose: CameraPose, intr: Intrinsics, width: int = WIDTH,
                    height: int = HEIGHT, shading_inputs: bool = True) -> GeometryRender:
    """Cast one ray per pixel (pixel centres at integer coordinates) and return what it hits.

    With ``shading_inputs=False`` only depth, labels, surface ids and ray lengths are filled in (training
    targets at another resolution need nothing else).

    Raises:
        ValueError: the camera is not inside the room.
    """
    o = pose.position
    x0, x1, y0, y1 = scene.bounds
    if not (x0 < o[0] < x1 and y0 < o[1] < y1 and 0 < o[2] < scene.ceiling_height):
        raise ValueError(f'camera at {tuple(round(float(c), 3) for c in o)} is outside the room '
                         f'{scene.bounds} x (0, {scene.ceiling_height:.2f})')
    xc, yc, ray_norm = _camera_rays(intr, width, height)
    rot = pose.rotation().astype(np.float32)
    dx, dy, dz = (rot[i, 0] * xc + rot[i, 1] * yc + rot[i, 2] for i in range(3))   # world, optical z = 1
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        # The room from inside: the nearest of the three planes the ray heads for. t is optical depth.
        tx = (_F(x0 - o[0]) + _F(x1 - x0) * (dx > 0)) / dx
        ty = (_F(y0 - o[1]) + _F(y1 - y0) * (dy > 0)) / dy
        up = dz > 0
        tz = (_F(-o[2]) + _F(scene.ceiling_height) * up) / dz
        tx[~(tx > 0)] = np.inf
        ty[~(ty > 0)] = np.inf
        tz[~(tz > 0)] = np.inf
        surface = up.astype(np.int16)
        best = tz
        closer = tx < best
        best[closer] = tx[closer]
        surface[closer] = np.where(dx[closer] > 0, 3, 2)
        closer = ty < best
        best[closer] = ty[closer]
        surface[closer] = np.where(dy[closer] > 0, 5, 4)

        objects: list[Box | Cylinder] = [*scene.boxes, *scene.cylinders]
        rects = []
        for k, obj in enumerate(objects):
            is_box = isinstance(obj, Box)
            rect = _screen_rect(_box_corners(obj) if is_box else _cylinder_corners(obj), pose, intr, width,
                                height)
            rects.append(rect)
            if rect is None:
                continue
            sl = (slice(rect[0], rect[1]), slice(rect[2], rect[3]))
            hit = (_hit_box if is_box else _hit_cylinder)(obj, o, dx[sl], dy[sl], dz[sl])
            view_best, view_surface = best[sl], surface[sl]
            closer = hit < view_best
            view_best[closer] = hit[closer]
            view_surface[closer] = 6 + k
    if not np.all(np.isfinite(best)):
        raise ValueError('a ray left the room: the scene is not closed')
    lut = np.array([FLOOR, CEILING, WALL, WALL, WALL, WALL, *(obj.label for obj in objects)], np.uint8)
    render = GeometryRender(depth=best, labels=lut[surface], surface=surface, ray_norm=ray_norm)
    if shading_inputs:
        _shading_inputs(render, scene, pose, objects, rects, (dx, dy, dz), width)
    return render


def _door_material(door: Door, index: int) -> Material:
    return Material('door', door.colour, tuple(0.6 * c for c in door.colour), door.width, nir=door.nir,
                    specular=0.1, salt=index)


def _shading_inputs(render: GeometryRender, scene: Scene, pose: CameraPose, objects, rects, dirs,
                    width: int) -> None:
    """Hit points, normals, texture coordinates and texture groups (one pass per visible surface)."""
    surf = render.surface.ravel()
    t = render.depth.ravel()
    dx, dy, dz = (a.ravel() for a in dirs)
    o = pose.position.astype(np.float32)
    px, py, pz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz
    inv = 1.0 / render.ray_norm.ravel()
    n_ids = 6 + len(objects)
    # Room planes by table lookup; object pixels are overwritten below.
    nlut = np.zeros((3, n_ids), np.float32)
    nlut[:, :6] = np.array([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]).T
    nx, ny, nz = nlut[0][surf], nlut[1][surf], nlut[2][surf]
    u_is_y = np.zeros(n_ids, bool)
    u_is_y[[2, 3]] = True
    v_is_z = np.zeros(n_ids, bool)
    v_is_z[2:6] = True
    offset = np.zeros(n_ids, np.float32)
    offset[:6] = 17.0 * np.arange(6)          # walls of one material do not repeat each other
    sel = u_is_y.astype(np.float32)[surf]
    u = px + (py - px) * sel + offset[surf]
    sel = v_is_z.astype(np.float32)[surf]
    v = py + (pz - py) * sel
    counts = np.bincount(surf, minlength=n_ids)
    groups = _room_groups(scene, surf, counts, px, py, u, v)
    for k, obj in enumerate(objects):
        if counts[6 + k]:
            idx = _object_pixels(render.surface, 6 + k, rects[k], width)
            _object_surface(obj, k, idx, (px, py, pz), (nx, ny, nz), u, v)
            groups.append((idx, scene.materials[obj.material]))
    render.points = (px, py, pz)
    render.normals = (nx, ny, nz)
    render.dirs = (dx * inv, dy * inv, dz * inv)
    render.u, render.v, render.groups = u, v, groups


def _room_groups(scene: Scene, surf, counts, px, py, u, v) -> list[tuple[np.ndarray, Material]]:
    """(pixels, material) of the six room planes, doors cut out of the walls (their u, v rewritten)."""
    groups: list[tuple[np.ndarray, Material]] = []
    x0, _, y0, _ = scene.bounds
    for sid in range(6):
        if counts[sid] == 0:
            continue
        idx = np.flatnonzero(surf == sid)
        mat = scene.materials[(scene.floor, scene.ceiling, *scene.walls)[sid]]
        doors = [(i, d) for i, d in enumerate(scene.doors) if d.wall == sid - 2]
        if doors:
            along = (py[idx] - y0) if sid < 4 else (px[idx] - x0)
            free = np.ones(idx.size, bool)
            for i, door in doors:
                on = free & (along >= door.start) & (along <= door.start + door.width)
                on &= v[idx] <= door.height
                if on.any():
                    didx = idx[on]
                    u[didx] = along[on] - door.start
                    v[didx] = door.height - v[didx]
                    groups.append((didx, _door_material(door, i)))
                    free &= ~on
            idx = idx[free]
        groups.append((idx, mat))
    return groups


def _object_pixels(surface: np.ndarray, sid: int, rect, width: int) -> np.ndarray:
    """Flat indices of the pixels showing surface ``sid``, searched within its screen rectangle."""
    v0, v1, u0, u1 = rect
    local = np.flatnonzero(surface[v0:v1, u0:u1] == sid)
    return (local // (u1 - u0) + v0) * width + local % (u1 - u0) + u0


def _object_surface(obj, k: int, idx: np.ndarray, points, normals, u, v) -> None:
    """Normals and texture coordinates of object ``k`` (a box or a cylinder) at its pixels ``idx``."""
    px, py, pz = points
    nx, ny, nz = normals
    qx, qy, qz = px[idx] - obj.x, py[idx] - obj.y, pz[idx]
    if isinstance(obj, Box):
        c, s = _F(math.cos(obj.yaw)), _F(math.sin(obj.yaw))
        lx, ly = c * qx + s * qy, -s * qx + c * qy
        gaps = np.stack([obj.size_x / 2 - np.abs(lx), obj.size_y / 2 - np.abs(ly),
                         obj.z0 + obj.size_z - qz, qz - obj.z0])
        face = np.argmin(gaps, axis=0)
        nlx = np.where(face == 0, np.sign(lx), 0).astype(np.float32)
        nly = np.where(face == 1, np.sign(ly), 0).astype(np.float32)
        nx[idx], ny[idx] = c * nlx - s * nly, s * nlx + c * nly
        nz[idx] = np.where(face == 2, 1.0, np.where(face == 3, -1.0, 0.0))
        u[idx] = np.where(face == 0, ly, lx) + 3.1 * k
        v[idx] = np.where(face >= 2, ly, qz - obj.z0)
        return
    top = qz >= obj.height - 1e-4
    rr = np.maximum(np.hypot(qx, qy), 1e-6)
    nx[idx] = np.where(top, 0.0, qx / rr)
    ny[idx] = np.where(top, 0.0, qy / rr)
    nz[idx] = np.where(top, 1.0, 0.0)
    u[idx] = np.where(top, qx, np.arctan2(qy, qx) * obj.radius) + 3.1 * k
    v[idx] = np.where(top, qy, qz)


# ---------------------------------------------------------------------------------------------------------
# Textures and shading
# ---------------------------------------------------------------------------------------------------------

_NOISE_N = 256


@functools.lru_cache(maxsize=4)
def _noise_table(beta: float) -> np.ndarray:
    """Periodic (256, 256) noise with a 1/f^beta spectrum, zero mean, unit std, flattened with one extra
    row and column so that bilinear lookups need no wrap. Fixed seed: the same table in every process."""
    rng = np.random.default_rng(20240611)
    f = np.fft.fftfreq(_NOISE_N)
    k = np.hypot(f[:, None], f[None, :])
    k[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((_NOISE_N, _NOISE_N))) / k ** beta
    spectrum[0, 0] = 0.0
    table = np.real(np.fft.ifft2(spectrum))
    table = (table - table.mean()) / table.std()
    table = np.pad(table, ((0, 1), (0, 1)), mode='wrap').astype(np.float32).ravel()
    table.flags.writeable = False
    return table


def _noise(x: np.ndarray, y: np.ndarray, beta: float = 1.5) -> np.ndarray:
    """Smooth noise (zero mean, unit std) at table coordinates (x, y), bilinear, period 256."""
    table = _noise_table(beta)
    fx, fy = np.floor(x), np.floor(y)
    ax, ay = x - fx, y - fy
    stride = _NOISE_N + 1
    i00 = (fy.astype(np.int32) & (_NOISE_N - 1)) * stride + (fx.astype(np.int32) & (_NOISE_N - 1))
    top = table.take(i00)
    top += (table.take(i00 + 1) - top) * ax
    i00 += stride
    bottom = table.take(i00)
    bottom += (table.take(i00 + 1) - bottom) * ax
    top += (bottom - top) * ay
    return top


def _hash01(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random float32 in [0, 1) per integer lattice cell (i, j)."""
    h = (i.astype(np.int32).view(np.uint32) * np.uint32(0x9E3779B1)) ^ \
        (j.astype(np.int32).view(np.uint32) * np.uint32(0x85EBCA77)) ^ np.uint32(salt & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * _F(1.0 / (1 << 24))


def _texture(mat: Material, u: np.ndarray, v: np.ndarray):
    """Pattern of ``mat`` at surface coordinates (u, v) metres.

    Returns:
        tone (n,): brightness factor; accent (n,) bool or None: pixels in the accent colour (grout,
        skirting, tape...); glow (n,) or None: light emitted (ceiling lamps). Albedo per channel is
        ``(accent ? mat.accent : mat.colour) * tone``.
    """
    pattern = _PATTERNS.get(mat.kind)
    if pattern is None:
        raise ValueError(f'unknown material kind {mat.kind!r}')
    result = pattern(mat, u, v, _F((mat.salt % 97) * 2.3))
    return result if isinstance(result, tuple) else (result, None, None)


def _tiles(mat, u, v, off):
    s = _F(mat.scale)
    gu, gv = u / s, v / s
    iu, iv = np.floor(gu), np.floor(gv)
    gu -= iu
    gv -= iv
    g = _F(0.006 / mat.scale)
    grout = (gu < g) | (gv < g) | (gu > 1 - g) | (gv > 1 - g)
    tone = (0.93 + 0.14 * _hash01(iu, iv, mat.salt)) * (1 + 0.05 * _noise(u * 12 + off, v * 12))
    if mat.variant:      # checker of colour and accent, grout a darker colour
        tone *= 1 - _F(0.4) * grout
        return tone, ((iu + iv) % 2 == 1) & ~grout, None
    return tone, grout, None


def _wood(mat, u, v, off):
    w = _F(mat.scale)
    plank = np.floor(v / w)
    seg_pos = (u + _hash01(plank, plank * 0 + 7, mat.salt) * 1.5) / _F(1.5)
    segment = np.floor(seg_pos)
    tone = (0.78 + 0.44 * _hash01(plank, segment, mat.salt + 1)) * \
        (1 + 0.13 * _noise(u * 6 + off, (v + plank * 3.7) * 90, beta=1.0))
    return tone, (v / w - plank < 0.035) | (seg_pos - segment < 0.004), None


def _brick(mat, u, v, off):
    bh, bw = _F(mat.scale), _F(mat.scale * 3.0)
    row = np.floor(v / bh)
    shifted = u / bw + 0.5 * (row % 2)
    col = np.floor(shifted)
    tone = (0.8 + 0.4 * _hash01(row, col, mat.salt)) * (1 + 0.08 * _noise(u * 40 + off, v * 40, 0.8))
    return tone, ((v / bh - row) < 0.12) | ((shifted - col) < 0.04), None   # mortar


def _ceiling(mat, u, v, off):
    s = _F(mat.scale)
    iu, iv = np.floor(u / s), np.floor(v / s)
    line = (u / s - iu < 0.02) | (v / s - iv < 0.02)
    tone = (1 + 0.03 * _noise(u * 10 + off, v * 10)) * (1 - _F(0.4) * line)
    glow = ((_hash01(iu, iv, mat.salt) < 0.18) & ~line) * _F(1.6) if mat.variant else None
    return tone, None, glow


#: Per material kind: (mat, u, v, offset) -> tone, or (tone, accent, glow).
_PATTERNS = {
    'tiles': _tiles,
    'wood': _wood,
    'carpet': lambda mat, u, v, off: 1 + 0.14 * _noise(u * 90 + off, v * 90, beta=0.6) + 0.1 * _noise(
        u * 3, v * 3 + off),
    'concrete': lambda mat, u, v, off: 1 + 0.12 * _noise(u * 7 + off, v * 7) + 0.07 * _noise(
        u * 60, v * 60 + off, 0.8),
    'paint': lambda mat, u, v, off: (1 + 0.04 * _noise(u * 4 + off, v * 4) + 0.025 * _noise(
        u * 50, v * 50 + off, 0.8), v < mat.scale, None),                          # skirting board
    'brick': _brick,
    'ceiling': _ceiling,
    'door': lambda mat, u, v, off: (1 + 0.05 * _noise(u * 3 + off, v * 40, 1.0),
                                    (u < 0.05) | (u > mat.scale - 0.05) | (v < 0.05), None),   # frame
    'cardboard': lambda mat, u, v, off: (1 + 0.07 * _noise(u * 12 + off, v * 12) + 0.04 * _noise(
        u * 80, v * 80, 0.8), np.abs(u - np.round(u / 3.1) * 3.1) < mat.scale / 2, None),   # tape
    'plastic': lambda mat, u, v, off: 1 + 0.03 * _noise(u * 8 + off, v * 8),
    'metal': lambda mat, u, v, off: 1 + 0.1 * _noise(u * 250 + off, v * 4, 0.7),
    'dark': lambda mat, u, v, off: 1 + 0.15 * _noise(u * 60 + off, v * 60, 0.8),
}


def _contact_shade(scene: Scene, geo: GeometryRender) -> np.ndarray:
    """Ambient-occlusion-like darkening (n,) near floor/wall/ceiling corners and under objects."""
    x0, x1, y0, y1 = scene.bounds
    px, py, pz = geo.points
    labels = geo.labels.ravel()
    ao = np.ones(labels.size, np.float32)
    fidx = np.flatnonzero(labels == FLOOR)
    fx, fy = px[fidx], py[fidx]
    wall_gap = np.maximum(np.minimum(np.minimum(fx - x0, x1 - fx), np.minimum(fy - y0, y1 - fy)), 0)
    floor_ao = 1 - 0.3 * np.exp(wall_gap * _F(-4.0))
    for obj in (*scene.boxes, *scene.cylinders):
        if isinstance(obj, Box):
            if obj.z0 > 0:
                continue
            reach = math.hypot(obj.size_x, obj.size_y) / 2 + 0.4
        else:
            reach = obj.radius + 0.4
        near = np.flatnonzero((np.abs(fx - obj.x) < reach) & (np.abs(fy - obj.y) < reach))
        if near.size == 0:
            continue
        qx, qy = fx[near] - obj.x, fy[near] - obj.y
        if isinstance(obj, Box):
            c, s = math.cos(obj.yaw), math.sin(obj.yaw)
            lx, ly = np.abs(c * qx + s * qy) - obj.size_x / 2, np.abs(-s * qx + c * qy) - obj.size_y / 2
            gap = np.hypot(np.maximum(lx, 0), np.maximum(ly, 0))
            strength = 0.55
        else:
            gap = np.maximum(np.hypot(qx, qy) - obj.radius, 0)
            strength = 0.5 if obj.radius > 0.08 else 0.3
        floor_ao[near] *= 1 - strength * np.exp(gap * _F(-1 / 0.12))
    ao[fidx] = floor_ao
    up = np.flatnonzero((labels != FLOOR) & (labels != CEILING) & (pz < 0.8))
    ao[up] = 1 - 0.3 * np.exp(pz[up] * _F(-1 / 0.15))
    top = np.flatnonzero((labels == WALL) & (pz > scene.ceiling_height - 0.8))
    ao[top] *= 1 - 0.2 * np.exp((scene.ceiling_height - pz[top]) * _F(-5.0))
    return ao


@functools.lru_cache(maxsize=4)
def _vignette(width: int, height: int) -> np.ndarray:
    uu, vv = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    rad2 = ((uu - width / 2) / (width / 2)) ** 2 + ((vv - height / 2) / (width / 2)) ** 2
    out = (1.0 - 0.22 * rad2).ravel()
    out.flags.writeable = False
    return out


def _materials_per_pixel(geo: GeometryRender):
    """Per-pixel linear albedo (3, n) planar, glow (n,), NIR reflectance (n,) and specularity (n,)."""
    n = geo.depth.size
    albedo = np.empty((3, n), np.float32)
    glow = np.zeros(n, np.float32)
    nir = np.empty(n, np.float32)
    specular = np.empty(n, np.float32)
    weights = np.array([0.3, 0.59, 0.11], np.float32)
    for idx, mat in geo.groups:
        if idx.size == 0:
            continue
        tone, accent, lamp = _texture(mat, geo.u[idx], geo.v[idx])
        base = np.asarray(mat.colour, np.float32)
        if accent is None:
            for c in range(3):
                albedo[c, idx] = tone * base[c]
            brightness = tone
        else:
            other = np.asarray(mat.accent, np.float32)
            acc = accent.astype(np.float32)
            for c in range(3):
                albedo[c, idx] = tone * (base[c] + (other[c] - base[c]) * acc)
            # NIR follows the visible brightness relative to the base colour (dark grout, skirting, tape).
            base_lum = max(float(base @ weights), 1e-3)
            brightness = tone * (1 + (float(other @ weights) / base_lum - 1) * acc)
        if lamp is not None:
            glow[idx] = lamp
        nir[idx] = np.clip(brightness * _F(mat.nir), 0.5 * mat.nir, 1.5 * mat.nir)
        specular[idx] = mat.specular
    np.clip(albedo, 0.0, 1.0, out=albedo)
    return albedo, glow, nir, specular


def _shade_rgb(scene: Scene, geo: GeometryRender, albedo: np.ndarray, glow: np.ndarray, specular: np.ndarray,
               rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    lx, ly, lz = (_F(c) for c in scene.light)
    nx, ny, nz = geo.normals
    ndotl = nx * lx + ny * ly + nz * lz
    shade = _F(scene.ambient) + _F(1 - scene.ambient) * np.maximum(ndotl, 0) + _F(0.2) * np.maximum(-ndotl, 0)
    r = geo.depth.ravel() * geo.ray_norm.ravel()
    r *= _F(1.0 / scene.falloff)
    shade /= 1.0 + r * r
    shade *= _contact_shade(scene, geo)
    extra = glow
    glossy = np.flatnonzero(specular >= 0.1)
    if glossy.size:   # Blinn highlight: (n . h)^40
        dx, dy, dz = (d[glossy] for d in geo.dirs)
        hx, hy, hz = lx - dx, ly - dy, lz - dz
        ndoth = (nx[glossy] * hx + ny[glossy] * hy + nz[glossy] * hz) / np.sqrt(hx * hx + hy * hy + hz * hz)
        p = np.maximum(ndoth, 0)
        p8 = (p * p) ** 4
        extra = glow.copy()
        extra[glossy] += specular[glossy] * _F(0.8) * p8 * ((p8 * p8) ** 2)
    # Auto-exposure towards a mid-grey mean (estimated on every 16th pixel), white balance, vignetting,
    # gamma 2 (the factor 255^2 inside the square root), sensor noise.
    mean = float((albedo[:, ::16] * shade[::16]).mean() + extra[::16].mean())
    gain = np.clip(0.3 / max(mean, 1e-3) * rng.uniform(0.8, 1.2), 0.4, 4.0) * 255.0 ** 2
    vig = _vignette(width, height) * _F(gain)
    shade *= vig
    extra = extra * vig
    img = albedo * shade
    img += extra
    img *= rng.uniform(0.95, 1.05, (3, 1)).astype(np.float32)
    np.sqrt(img, out=img)
    img += fast_normal(rng, img.shape[1]) * _F(2.0) + _F(0.5)
    np.clip(img, 0, 255, out=img)
    out = np.empty((height * width, 3), np.uint8)
    for c in range(3):
        out[:, c] = img[c]
    return out.reshape(height, width, 3)

# ---------------------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------------------

def _render_rgb(scene: Scene, pose: CameraPose, intr: Intrinsics, rng: np.random.Generator, width: int,
                height: int) -> tuple[GeometryRender, np.ndarray, np.ndarray, np.ndarray]:
    geo = render_geometry(scene, pose, intr, width, height)
    albedo, glow, nir, specular = _materials_per_pixel(geo)
    return geo, _shade_rgb(scene, geo, albedo, glow, specular, rng, width, height), nir, specular


def render_frame(scene: Scene, pose: CameraPose, intr: Intrinsics, rng: np.random.Generator,
                 tof: ToFConfig | None = None, width: int = WIDTH, height: int = HEIGHT, stamp: float = 0.0,
                 index: int = 0) -> SceneFrame:
    """Render RGB, ground truth and the simulated ToF of one view (``rng`` draws the noise: RGB first,
    then ToF)."""
    geo, rgb, nir, specular = _render_rgb(scene, pose, intr, rng, width, height)
    (nx, ny, nz), (dx, dy, dz) = geo.normals, geo.dirs
    cos_incidence = np.abs(nx * dx + ny * dy + nz * dz).reshape(height, width)
    tof_mm, confidence = simulate_tof(geo.depth, geo.ray_norm, cos_incidence, nir.reshape(height, width),
                                      specular.reshape(height, width), rng, tof or ToFConfig())
    return SceneFrame(rgb=rgb, depth=geo.depth, labels=geo.labels, tof_mm=tof_mm, confidence=confidence,
                      intrinsics=intr, pose=pose, stamp=stamp, index=index)


def render(scene: Scene, pose: CameraPose, intr: Intrinsics, seed: int = 0, **kwargs) -> SceneFrame:
    """``render_frame`` with a fresh generator from ``seed`` (convenience for tests and notebooks)."""
    return render_frame(scene, pose, intr, np.random.default_rng(seed), **kwargs)


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of random frame ``index`` of split ``seed`` (independent of how many are made)."""
    return np.random.default_rng([seed, index])


def _split_intrinsics(seed: int) -> Intrinsics:
    return random_intrinsics(np.random.default_rng([seed, _SPLIT_SALT]))


def random_frames(seed: int, count: int, start: int = 0, tof: ToFConfig | None = None,
                  vary_intrinsics: bool = False) -> Iterator[SceneFrame]:
    """Independent frames ``start .. start + count - 1`` of split ``seed``: each a new random scene and
    camera. Frame i depends only on (seed, i). The split shares one set of intrinsics (what a dataset's
    camera.yaml can describe) unless ``vary_intrinsics`` (training augmentation)."""
    split_intr = _split_intrinsics(seed)
    for i in range(start, start + count):
        rng = frame_rng(seed, i)
        scene = random_scene(rng)
        pose = random_pose(scene, rng)
        intr = random_intrinsics(rng) if vary_intrinsics else split_intr
        yield render_frame(scene, pose, intr, rng, tof, index=i)


def sequence_scene(seed: int) -> tuple[Scene, Intrinsics, np.random.Generator]:
    """The scene, intrinsics and pose generator of sequence ``seed``."""
    rng = np.random.default_rng([seed, _SEQUENCE_SALT])
    return random_scene(rng), _split_intrinsics(seed), rng


def sequence_frames(seed: int, count: int, rate_hz: float = 15.0, tof: ToFConfig | None = None,
                    speed: float | None = None) -> Iterator[SceneFrame]:
    """``count`` frames of a camera driving through one scene at ``rate_hz`` (stamps i / rate_hz)."""
    scene, intr, rng = sequence_scene(seed)
    poses = sequence_poses(scene, rng, count, rate_hz, speed)
    for i, pose in enumerate(poses):
        yield render_frame(scene, pose, intr, frame_rng(seed, i), tof, stamp=i / rate_hz, index=i)


def area_intrinsics(intr: Intrinsics, scale: int) -> Intrinsics:
    """Intrinsics of an area-average downscale by ``scale``: pixel ``j`` is the centre of source block
    ``[scale * j, scale * j + scale)``, i.e. ``cx' = (cx + 0.5) / scale - 0.5``. (What the student sees; the
    runtime grid convention, ``rc_perception.camera.axis_map``, samples an existing pixel instead.)"""
    return Intrinsics(fx=intr.fx / scale, fy=intr.fy / scale, cx=(intr.cx + 0.5) / scale - 0.5,
                      cy=(intr.cy + 0.5) / scale - 0.5)


def training_sample(seed: int, index: int, scale: int = 2,
                    vary_intrinsics: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training triple for random frame ``index`` of split ``seed``: the 640x480 RGB (exactly the RGB of
    ``random_frames``' frame when ``vary_intrinsics`` matches; no ToF is simulated), and depth and labels
    rendered directly at 1/``scale`` resolution with ``area_intrinsics``. The pixel centres of that grid
    are the centres of the ``scale`` x ``scale`` blocks that an area-average resize of the RGB (what
    ``student_trt.preprocess`` does for integer factors) averages, so targets and inputs line up exactly.

    Returns:
        rgb (480, 640, 3) uint8, depth (480 / scale, 640 / scale) float32 metres, labels (same size) uint8.
    """
    rng = frame_rng(seed, index)
    scene = random_scene(rng)
    pose = random_pose(scene, rng)
    intr = random_intrinsics(rng) if vary_intrinsics else _split_intrinsics(seed)
    _, rgb, _, _ = _render_rgb(scene, pose, intr, rng, WIDTH, HEIGHT)
    w, h = WIDTH // scale, HEIGHT // scale
    small = render_geometry(scene, pose, area_intrinsics(intr, scale), w, h, shading_inputs=False)
    return rgb, small.depth, small.labels


# ---------------------------------------------------------------------------------------------------------
# Writing splits
# ---------------------------------------------------------------------------------------------------------

def write_split(out: str | Path, frames: Iterable[SceneFrame], tof: ToFConfig | None = None,
                depth_format: str = 'png', meta: dict | None = None, progress=None) -> dict:
    """Write frames in the ``rc_offline.dataset`` layout and return a summary.

    Writes ``rgb/``, ``depth/`` (16-bit PNG millimetres or float32 .npy metres, per ``depth_format``),
    ``labels/``, ``tof/`` (16-bit PNG mm, 0 = invalid), ``confidence/`` (8-bit PNG), ``camera.yaml``
    (intrinsics plus ``tof_max_range``, ``confidence_threshold`` and ``meta``) and ``poses.csv`` (stem,
    stamp, camera position and optical-frame quaternion in the world frame, and for frames of a drive the
    robot's ``base_x, base_y, base_yaw``). Frames share one set of intrinsics (``random_frames`` without
    ``vary_intrinsics``, ``sequence_frames`` or ``drive.drive_frames``).

    Args:
        progress: optional callable(frame_number, ms_per_frame) called after each frame.

    Raises:
        ValueError: ``depth_format`` is neither 'png' nor 'npy', or frames differ in intrinsics, size or
            in having a base pose.
    """
    from rc_offline import dataset
    if depth_format not in ('png', 'npy'):
        raise ValueError(f"depth_format must be 'png' or 'npy', got {depth_format!r}")
    tof = tof or ToFConfig()
    out = Path(out)
    rows = []
    intr = size = None
    started = time.perf_counter()
    for n, frame in enumerate(frames, 1):
        stem = f'{frame.index:06d}'
        if intr is None:
            intr, size = frame.intrinsics, frame.depth.shape
        elif frame.intrinsics != intr or frame.depth.shape != size:
            raise ValueError('all frames of a split must share intrinsics and size (camera.yaml holds one)')
        fast = 1   # PNG zlib level: 4x faster than the default, files about 10 % larger
        dataset.write_image(out / 'rgb' / f'{stem}.png', frame.rgb, fast)
        dataset.write_depth(out / 'depth' / f'{stem}.{depth_format}', frame.depth, fast)
        dataset.write_image(out / 'labels' / f'{stem}.png', frame.labels, fast)
        dataset.write_image(out / 'tof' / f'{stem}.png', frame.tof_mm, fast)
        dataset.write_image(out / 'confidence' / f'{stem}.png', frame.confidence, fast)
        rows.append([stem, f'{frame.stamp:.6f}', *(f'{c:.6f}' for c in frame.pose.position),
                     *(f'{q:.8f}' for q in frame.pose.quaternion()),
                     *(f'{v:.8f}' for v in frame.base or ())])
        if progress is not None:
            progress(n, 1000.0 * (time.perf_counter() - started) / n)
    if intr is None:
        raise ValueError('no frames to write')
    dataset.save_camera(out, width=int(size[1]), height=int(size[0]), fx=intr.fx, fy=intr.fy, cx=intr.cx,
                        cy=intr.cy, tof_max_range=tof.max_range,
                        confidence_threshold=tof.confidence_threshold, **(meta or {}))
    with open(out / 'poses.csv', 'w', newline='') as fh:
        writer = csv.writer(fh)
        base = ['base_x', 'base_y', 'base_yaw'] if len(rows[0]) > 9 else []
        if any(len(row) != len(rows[0]) for row in rows):
            raise ValueError('either every frame of a split has a base pose or none has')
        writer.writerow(['stem', 'stamp', 'x', 'y', 'z', 'qx', 'qy', 'qz', 'qw', *base])
        writer.writerows(rows)
    return {'frames': len(rows), 'seconds': time.perf_counter() - started, 'out': str(out)}


def main(argv: list[str] | None = None) -> int:
    """Generate a synthetic split (RGB, ground-truth depth, labels, simulated ToF + confidence) on disk."""
    parser = argparse.ArgumentParser(prog='python -m rc_offline.scenes', description=main.__doc__)
    parser.add_argument('--out', required=True, help='output folder (rc_offline.dataset layout)')
    parser.add_argument('--frames', type=int, default=20, help='number of frames (default 20)')
    parser.add_argument('--seed', type=int, default=0, help='split seed (default 0)')
    parser.add_argument('--sequence', action='store_true',
                        help='one scene, the camera driving through it at --rate Hz '
                             '(default: independent random frames)')
    parser.add_argument('--rate', type=float, default=15.0, help='sequence frame rate in Hz (default 15)')
    parser.add_argument('--depth-format', choices=('png', 'npy'), default='png',
                        help='ground-truth depth files: 16-bit PNG mm or float32 .npy metres (default png)')
    parser.add_argument('--max-range', type=float, default=ToFConfig.max_range,
                        help=f'ToF maximum range in metres (default {ToFConfig.max_range:g})')
    args = parser.parse_args(argv)
    try:
        if args.frames < 1 or args.rate <= 0:
            raise ValueError('--frames must be >= 1 and --rate > 0')
        tof = ToFConfig(max_range=args.max_range)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    frames = (sequence_frames(args.seed, args.frames, args.rate, tof) if args.sequence
              else random_frames(args.seed, args.frames, tof=tof))
    meta = {'generator': 'rc_offline.scenes', 'seed': args.seed,
            'mode': 'sequence' if args.sequence else 'random', 'rate_hz': args.rate}

    tty = sys.stdout.isatty()

    def progress(n: int, ms: float) -> None:
        if tty:
            print(f'\r{n}/{args.frames} frames, {ms:.0f} ms/frame (generation + PNG writing)', end='',
                  flush=True)
        elif n % 20 == 0 or n == args.frames:
            print(f'{n}/{args.frames} frames, {ms:.0f} ms/frame (generation + PNG writing)', flush=True)

    try:
        summary = write_split(args.out, frames, tof, args.depth_format, meta, progress)
    except OSError as exc:
        print(f'error: cannot write {args.out}: {exc}', file=sys.stderr)
        return 1
    finally:
        if tty:
            print()   # end the progress line
    print(f"wrote {summary['frames']} frames to {summary['out']} in {summary['seconds']:.1f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
