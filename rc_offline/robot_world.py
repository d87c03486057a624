"""A synthetic "robot world" unlike the demo student's training scenes: the domain-shift demonstration of
``finetune_student``.

The demo student learnt from ``rc_offline.scenes``' random rooms seen by a camera 0.15-0.3 m above the floor,
looking level, through a 460-500 px lens. This world is one robot's home, built from the same primitives
(materials, boxes, cylinders, ray casting, shading, the ToF simulation) but outside that distribution in
every way the issue names:

* **camera**: mounted higher (0.42 m) and tilted 10.5 degrees nose-down on average (the car's bumps rock
  it by about 2 degrees), a wide lens (fx = fy = 372 px at 640x480, an 81 degree horizontal field of view,
  against 66-70) with its principal point 10 px off centre;
* **textures**: floors of large checker tiles, brick pavers, saturated carpet or pale wide planks; walls
  panelled in wood, tiled, white-painted brick or deep paint colours (the training walls are mostly light
  paint);
* **lighting**: warm (tungsten-like tint on every surface), dim ambient light (0.15-0.25 against
  0.35-0.55), a low light (20-40 degrees elevation) and a strong distance falloff (3.5-5 m);
* **objects**: tables (a top on four thin legs), tall shelves against the walls, low platforms
  (8-15 cm, what a costmap must still see), thick columns and small toys, instead of mid-size boxes,
  bins and poles.

A recording is a tour: the car drives the loop of room 1 for ``seconds`` seconds, then room 2, ... (rooms
share the house's style, camera and lighting; each has its own layout and materials). With 5 rooms and
``finetune_student``'s default hold-out (the last 20 % of the recording's time), the held-out part is the
fifth room: a room the fine-tune never saw. Frames are numbered and stamped continuously (``i / rate``).

Each frame records the robot's base pose (x, y, yaw: the camera sits above the base origin) and
``camera.yaml`` the nominal mount (``MOUNT``), as ``rc_offline.drive`` does, so the costmap evaluator
(``rc_offline.costmap_eval``, through ``demo --replay``) can judge a room of the tour; the mount's meaning is
REP 103's (positive pitch = nose down).

    python -m rc_offline.robot_world --out data/robot_world --rooms 5 --seconds 40 --rate 15 --workers 8

writes a dataset folder (``rc_offline.dataset`` layout with ground truth, ``poses.csv`` and the
``camera.yaml`` that ``replay_node`` publishes as CameraInfo).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rc_offline import scenes
from rc_offline.cli import ArgumentParser, UsageError, run_tool
from rc_offline.scenes import BOX, CYLINDER, Box, CameraPose, Cylinder, Material, Scene, SceneFrame
from rc_perception.camera import Intrinsics
from rc_perception.mount import CameraMount

__all__ = ['CAMERA', 'CAMERA_HEIGHT', 'CAMERA_TILT_DEG', 'MOUNT', 'robot_scene', 'tour_frames', 'write_tour']

#: The robot's camera at 640x480: a wide lens with an off-centre principal point.
CAMERA = Intrinsics(fx=372.0, fy=372.0, cx=329.5, cy=229.5)
CAMERA_HEIGHT = 0.42
#: Tilt added to ``scenes.sequence_poses``' bumpy pitch (1.5 +- 1.8 degrees nose-down).
CAMERA_TILT_DEG = 9.0
#: The robot's nominal camera mount: above the base origin, 10.5 degrees nose-down (the mean pitch).
MOUNT = CameraMount(z=CAMERA_HEIGHT, pitch=math.radians(CAMERA_TILT_DEG + 1.5))
#: Warm light: every surface colour is multiplied by this (tungsten-like white balance).
WARM = np.array([1.0, 0.82, 0.6])
_SALT = 0x40B07


def _tint(colour) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(np.asarray(colour) * WARM, 0.0, 1.0))


def _floor(rng: np.random.Generator) -> Material:
    salt = int(rng.integers(1 << 16))
    kind = int(rng.integers(4))
    if kind == 0:   # large checker tiles
        light, dark = [((0.85, 0.85, 0.8), (0.08, 0.08, 0.1)), ((0.8, 0.75, 0.6), (0.15, 0.25, 0.55))][
            rng.integers(2)]
        return Material('tiles', _tint(light), _tint(dark), float(rng.uniform(0.6, 0.9)), nir=0.6,
                        specular=0.25, salt=salt, variant=1)
    if kind == 1:   # brick pavers
        return Material('brick', _tint((0.45, 0.42, 0.4)), _tint((0.25, 0.22, 0.2)), 0.1, nir=0.5,
                        salt=salt)
    if kind == 2:   # saturated carpet
        hue = [(0.55, 0.15, 0.5), (0.85, 0.4, 0.05), (0.05, 0.45, 0.45)][rng.integers(3)]
        return Material('carpet', _tint(hue), (0.1, 0.1, 0.1), 0.5, nir=0.4, salt=salt)
    return Material('wood', _tint((0.8, 0.66, 0.48)), _tint((0.45, 0.35, 0.25)),
                    float(rng.uniform(0.22, 0.3)), nir=0.55, specular=0.15, salt=salt)


def _wall(rng: np.random.Generator) -> Material:
    salt = int(rng.integers(1 << 16))
    kind = int(rng.integers(4))
    if kind == 0:   # wood panelling
        return Material('wood', _tint((0.5, 0.3, 0.15)), _tint((0.25, 0.15, 0.08)),
                        float(rng.uniform(0.12, 0.2)), nir=0.5, salt=salt)
    if kind == 1:   # wall tiles
        colour = [(0.9, 0.9, 0.88), (0.35, 0.6, 0.55), (0.3, 0.4, 0.7)][rng.integers(3)]
        return Material('tiles', _tint(colour), _tint((0.6, 0.6, 0.6)), float(rng.uniform(0.12, 0.2)),
                        nir=0.65, specular=0.2, salt=salt)
    if kind == 2:   # white-painted brick
        return Material('brick', _tint((0.85, 0.84, 0.8)), _tint((0.7, 0.7, 0.68)), 0.07, nir=0.75, salt=salt)
    colour = [(0.1, 0.3, 0.2), (0.1, 0.15, 0.35), (0.45, 0.1, 0.1)][rng.integers(3)]
    return Material('paint', _tint(colour), _tint((0.9, 0.9, 0.9)), float(rng.uniform(0.1, 0.16)), nir=0.45,
                    specular=0.05, salt=salt)


def _object(rng: np.random.Generator, kind: str) -> Material:
    salt = int(rng.integers(1 << 16))
    if kind == 'wood':
        return Material('wood', _tint((0.6, 0.42, 0.25)), _tint((0.3, 0.2, 0.1)), 0.1, nir=0.5, specular=0.1,
                        salt=salt)
    if kind == 'metal':
        return Material('metal', _tint((0.6, 0.6, 0.62)), (0.3, 0.3, 0.3), 0.1, nir=0.3, specular=0.8,
                        salt=salt)
    if kind == 'toy':
        hue = [(0.9, 0.1, 0.1), (0.1, 0.7, 0.2), (0.95, 0.8, 0.1), (0.2, 0.3, 0.9)][rng.integers(4)]
        return Material('plastic', _tint(hue), (0.9, 0.9, 0.9), 0.1, nir=0.5, specular=0.3, salt=salt)
    if kind == 'column':
        return Material('concrete', _tint((0.75, 0.75, 0.72)), (0.5, 0.5, 0.5), 1.0, nir=0.7, salt=salt)
    # platforms: carpeted
    return Material('carpet', _tint((0.35, 0.3, 0.28)), (0.1, 0.1, 0.1), 0.5, nir=0.35, salt=salt)


class _Room:
    """Objects of one room, placed clear of each other, the walls and the car's loop."""

    def __init__(self, rng: np.random.Generator, bounds, path: np.ndarray, height: float) -> None:
        self.rng = rng
        self.bounds = bounds
        self.height = height
        self.placer = scenes.Placer(bounds, path, path_clearance=0.35)
        self.materials: list[Material] = []
        self.boxes: list[Box] = []
        self.cylinders: list[Cylinder] = []

    def material(self, kind: str) -> int:
        self.materials.append(_object(self.rng, kind))
        return len(self.materials) - 1

    def _spot(self, radius: float, half_extent=None, against_wall: bool = False):
        """A free (x, y, yaw) for a footprint, or None after 40 tries."""
        x0, x1, y0, y1 = self.bounds
        rng = self.rng
        for _ in range(40):
            x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
            yaw = 0.0 if against_wall else float(rng.uniform(0, math.pi))
            if against_wall:
                hx, hy = half_extent
                side = int(rng.integers(4))
                if side >= 2:   # along an x wall: long side along x
                    y = y0 + hy + 0.02 if side == 2 else y1 - hy - 0.02
                else:
                    hx, hy = hy, hx
                    yaw = math.pi / 2
                    x = x0 + hx + 0.02 if side == 0 else x1 - hx - 0.02
                ok = self.placer.fits(x, y, radius, wall_gap=0.0, half_extent=(hx, hy))
            else:
                ok = self.placer.fits(x, y, radius)
            if ok:
                self.placer.add(x, y, radius)
                return x, y, yaw
        return None

    def table(self) -> None:
        rng = self.rng
        sx, sy = float(rng.uniform(0.8, 1.4)), float(rng.uniform(0.6, 0.9))
        top = float(rng.uniform(0.65, 0.8))
        spot = self._spot(math.hypot(sx, sy) / 2)
        if spot is None:
            return
        x, y, yaw = spot
        self.boxes.append(Box(x, y, top - 0.04, sx, sy, 0.04, yaw, self.material('wood'), label=BOX))
        legs, radius = self.material('metal'), float(rng.uniform(0.02, 0.03))
        c, s = math.cos(yaw), math.sin(yaw)
        for ex in (-1, 1):
            for ey in (-1, 1):
                lx, ly = ex * (sx / 2 - 0.06), ey * (sy / 2 - 0.06)
                self.cylinders.append(Cylinder(x + c * lx - s * ly, y + s * lx + c * ly, radius, top - 0.04,
                                               legs, label=CYLINDER))

    def shelf(self) -> None:
        rng = self.rng
        width, depth = float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.3, 0.4))
        spot = self._spot(math.hypot(width, depth) / 2, (width / 2, depth / 2), against_wall=True)
        if spot is not None:
            x, y, yaw = spot
            self.boxes.append(Box(x, y, 0.0, width, depth, float(rng.uniform(1.5, 2.0)), yaw,
                                  self.material(str(rng.choice(['wood', 'metal'])))))

    def platform(self) -> None:
        rng = self.rng
        sx, sy = float(rng.uniform(0.6, 1.2)), float(rng.uniform(0.6, 1.2))
        spot = self._spot(math.hypot(sx, sy) / 2)
        if spot is not None:
            x, y, yaw = spot
            self.boxes.append(Box(x, y, 0.0, sx, sy, float(rng.uniform(0.08, 0.15)), yaw,
                                  self.material('platform')))

    def column(self) -> None:
        radius = float(self.rng.uniform(0.25, 0.4))
        spot = self._spot(radius)
        if spot is not None:
            self.cylinders.append(Cylinder(spot[0], spot[1], radius, self.height, self.material('column')))

    def toy(self) -> None:
        size = float(self.rng.uniform(0.08, 0.2))
        spot = self._spot(max(size, 0.1))
        if spot is not None:
            self.boxes.append(Box(spot[0], spot[1], 0.0, size, size, size, spot[2], self.material('toy')))


def robot_scene(rng: np.random.Generator) -> Scene:
    """One room of the robot's home (see the module docstring), with its loop in ``Scene.path``."""
    bounds = (0.0, float(rng.uniform(4.5, 6.5)), 0.0, float(rng.uniform(4.0, 6.0)))
    height = float(rng.uniform(2.4, 2.7))
    path = scenes.loop_path(*bounds, margin=float(rng.uniform(1.0, 1.3)))
    floor, wall = _floor(rng), _wall(rng)
    ceiling = Material('paint', _tint((0.85, 0.85, 0.83)), _tint((0.85, 0.85, 0.83)), 0.0, nir=0.8,
                       salt=int(rng.integers(1 << 16)))
    room = _Room(rng, bounds, path, height)
    room.materials += [floor, wall, ceiling]
    for make, (lo, hi) in ((room.table, (1, 3)), (room.shelf, (1, 3)), (room.platform, (1, 3)),
                           (room.column, (0, 2)), (room.toy, (2, 5))):
        for _ in range(int(rng.integers(lo, hi + 1))):
            make()
    elevation, azimuth = math.radians(rng.uniform(20, 40)), rng.uniform(0, 2 * math.pi)
    light = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
             math.sin(elevation))
    return Scene(kind='room', bounds=bounds, ceiling_height=height, materials=tuple(room.materials), floor=0,
                 ceiling=2, walls=(1, 1, 1, 1), boxes=tuple(room.boxes), cylinders=tuple(room.cylinders),
                 light=light, ambient=float(rng.uniform(0.15, 0.25)), falloff=float(rng.uniform(3.5, 5.0)),
                 path=path)


def _robot_poses(scene: Scene, rng: np.random.Generator, count: int, rate: float) -> list[CameraPose]:
    """The car driving the room's loop (``scenes.sequence_poses``) with the robot's camera mount."""
    poses = scenes.sequence_poses(scene, rng, count, rate)
    mean_z = float(np.mean([p.z for p in poses]))
    tilt = math.radians(CAMERA_TILT_DEG)
    return [dataclasses.replace(p, z=CAMERA_HEIGHT + p.z - mean_z, pitch=p.pitch + tilt) for p in poses]


def _room_frames(seed: int, room: int, frames_per_room: int, rate: float, start: int = 0,
                 stop: int | None = None) -> Iterator[SceneFrame]:
    """Frames ``start .. stop - 1`` of room ``room``'s part of the tour (all of it by default)."""
    rng = np.random.default_rng([seed, room, _SALT])
    scene = robot_scene(rng)
    poses = _robot_poses(scene, rng, frames_per_room, rate)
    for i in range(start, frames_per_room if stop is None else stop):
        index = room * frames_per_room + i
        pose = poses[i]
        frame = scenes.render_frame(scene, pose, CAMERA, scenes.frame_rng(seed, index), stamp=index / rate,
                                    index=index)
        yield dataclasses.replace(frame, base=(pose.x, pose.y, pose.yaw))


def tour_frames(seed: int, rooms: int, frames_per_room: int, rate: float = 15.0) -> Iterator[SceneFrame]:
    """Frames of a tour of ``rooms`` rooms, ``frames_per_room`` each, at ``rate`` Hz (see module doc)."""
    for room in range(rooms):
        yield from _room_frames(seed, room, frames_per_room, rate)


def _meta(seed: int, rooms: int, frames_per_room: int, rate: float) -> dict:
    m = MOUNT
    return {'generator': 'rc_offline.robot_world', 'seed': seed, 'rooms': rooms,
            'frames_per_room': frames_per_room, 'rate_hz': rate,
            'nominal_mount': {'x': m.x, 'y': m.y, 'z': m.z, 'roll': m.roll, 'pitch': m.pitch, 'yaw': m.yaw}}


def _write_part(job: tuple) -> int:
    folder, seed, rooms, room, frames_per_room, rate, start, stop = job
    scenes.write_split(folder, _room_frames(seed, room, frames_per_room, rate, start, stop),
                       meta=_meta(seed, rooms, frames_per_room, rate))
    return stop - start


def write_tour(out: str | Path, seed: int, rooms: int, frames_per_room: int, rate: float = 15.0,
               workers: int = 1, progress=print) -> dict:
    """Write ``tour_frames`` as a dataset folder, in parts of at most 100 frames rendered by up to
    ``workers`` processes at once (the same files for any ``workers``).

    Each part is written by ``scenes.write_split`` into a folder of its own, then the parts are merged
    (files renamed, ``poses.csv`` concatenated in frame order).
    """
    out = Path(out)
    parts = out / '.parts'
    shutil.rmtree(parts, ignore_errors=True)
    jobs = [(parts / f'{room:03d}-{start:06d}', seed, rooms, room, frames_per_room, rate, start,
             min(start + 100, frames_per_room))
            for room in range(rooms) for start in range(0, frames_per_room, 100)]
    started = time.perf_counter()
    total = rooms * frames_per_room
    done = 0
    pool = multiprocessing.get_context('fork').Pool(workers) if workers > 1 else None
    try:
        for count in (pool.imap_unordered(_write_part, jobs) if pool else map(_write_part, jobs)):
            done += count
            progress(f'  {done}/{total} frames written ({time.perf_counter() - started:.0f} s)')
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    rows: list[list[str]] = []
    for job in jobs:
        part = job[0]
        for kind in ('rgb', 'depth', 'labels', 'tof', 'confidence'):
            (out / kind).mkdir(parents=True, exist_ok=True)
            for path in (part / kind).iterdir():
                path.replace(out / kind / path.name)
        with open(part / 'poses.csv', newline='') as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows += list(reader)
    (jobs[0][0] / 'camera.yaml').replace(out / 'camera.yaml')
    with open(out / 'poses.csv', 'w', newline='') as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    shutil.rmtree(parts)
    return {'frames': len(rows), 'seconds': time.perf_counter() - started, 'out': str(out)}


def main(argv: list[str] | None = None) -> int:
    """Write a tour of the synthetic robot world (a dataset folder with ground truth)."""
    parser = ArgumentParser(prog='python -m rc_offline.robot_world', description=main.__doc__,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', required=True, help='output folder (rc_offline.dataset layout)')
    parser.add_argument('--seed', type=int, default=7, help='world seed')
    parser.add_argument('--rooms', type=int, default=5, help='rooms in the tour')
    parser.add_argument('--seconds', type=float, default=40.0, help='seconds of driving per room')
    parser.add_argument('--rate', type=float, default=15.0, help='camera frame rate (Hz)')
    parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help='processes rendering at once')
    args = parser.parse_args(argv)

    def run() -> int:
        per_room = round(args.seconds * args.rate)
        if args.rooms < 1 or per_room < 1 or args.rate <= 0 or args.workers < 1:
            raise UsageError('--rooms, --workers and --seconds x --rate must be >= 1, --rate > 0')
        print(f'robot world seed {args.seed}: {args.rooms} rooms x {per_room} frames at {args.rate:g} Hz '
              f'-> {args.out}', flush=True)
        summary = write_tour(args.out, args.seed, args.rooms, per_room, args.rate, args.workers,
                             progress=lambda line: print(line, flush=True))
        print(f"wrote {summary['frames']} frames to {summary['out']} in {summary['seconds']:.0f} s")
        return 0

    return run_tool('python -m rc_offline.robot_world', run, errors=(OSError,))


if __name__ == '__main__':
    sys.exit(main())
