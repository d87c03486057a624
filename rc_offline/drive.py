"""The held-out drive: a robot with a camera on a nominal mount driving through a room, with scripted events.

What the demo replays and judges by the costmap (``rc_offline.heldout`` caches it). Unlike
``scenes.sequence_frames`` (a free camera), a robot drives here:

* **The robot**: ``base_link`` on the floor, driving the room's loop (``Scene.path``) at ``SPEED`` m/s from
  the start of its longest straight; its pose (x, y, yaw) is the odometry a costmap gets.
* **The mount**: the robot is configured with ``NOMINAL_MOUNT`` (x 0.10 m, z 0.20 m, level: the launch
  defaults). The camera really sits ``TILT_ERROR_DEG`` more nose-down than that (a tilt within the mount's
  ``MOUNT_TOLERANCE_DEG``, what a careful measurement leaves) and the car's suspension rocks it by a few
  tenths of a degree and millimetres. Each frame records both: the base pose, and the camera's real pose.
* **Events**: a cardboard box beside the path is removed at ``REMOVED_AT`` s, while it is still in view, so
  the costmap must clear its cells; a dark, absorbent block (NIR reflectance ``DARK_NIR``: the ToF returns
  nothing from it at any range beyond a few centimetres) stands on the other side, so only the student's
  depth can put it into the costmap.

Everything is deterministic by seed; a run of N frames is the first N frames of any longer run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from rc_offline import scenes
from rc_offline.tof_sim import ToFConfig
from rc_perception.mount import CameraMount

__all__ = ['DARK_NIR', 'MOUNT_TOLERANCE_DEG', 'NOMINAL_MOUNT', 'REMOVED_AT', 'SPEED', 'TILT_ERROR_DEG',
           'Drive', 'camera_pose', 'drive', 'drive_frame', 'drive_frames', 'real_mount']

#: What the robot is configured with (and the launch file's defaults): REP 103, metres and radians.
NOMINAL_MOUNT = CameraMount(x=0.10, y=0.0, z=0.20, roll=0.0, pitch=0.0, yaw=0.0)
#: How well the camera's pitch is known on a robot that measured it (see doc/costmap.md).
MOUNT_TOLERANCE_DEG = 1.0
#: The held-out camera's real pitch error: nose down, within the tolerance.
TILT_ERROR_DEG = 1.0
SPEED = 0.6
REMOVED_AT = 2.0
#: Where the removed box stands when it goes: metres ahead along the path, and beside it.
REMOVED_AHEAD, BESIDE = 1.6, 0.55
#: The dark block: seconds into the drive at which it is DARK_AHEAD metres ahead along the path.
DARK_AT, DARK_AHEAD = 3.5, 1.3
DARK_NIR = 0.001
#: Salt of the drive's scene generator (independent of scenes' own sequence and split streams).
_DRIVE_SALT = 0x5EED0003


@dataclass(frozen=True)
class Drive:
    """A scripted drive: the scene (with both event objects), the removed object and the base poses' path."""

    scene: scenes.Scene
    intrinsics: scenes.Intrinsics
    removed: scenes.Box
    dark: scenes.Box
    start: float        # arc length of the start on the path (driven in its point order), metres
    seed: int

    @property
    def scene_after(self) -> scenes.Scene:
        """The scene once the box is removed."""
        return replace(self.scene, boxes=tuple(b for b in self.scene.boxes if b != self.removed))

    def base_pose(self, t: float) -> tuple[float, float, float]:
        """The robot's (x, y, yaw) at ``t`` seconds."""
        return _along(self.scene.path, self.start + SPEED * t)[:3]

    def meta(self) -> dict:
        """What a split records about the drive (camera.yaml): nominal mount, tilt, events."""
        m = NOMINAL_MOUNT
        return {'nominal_mount': {'x': m.x, 'y': m.y, 'z': m.z, 'roll': m.roll, 'pitch': m.pitch,
                                  'yaw': m.yaw},
                'mount_tolerance_deg': MOUNT_TOLERANCE_DEG, 'tilt_error_deg': TILT_ERROR_DEG, 'speed': SPEED,
                'removed': {'time': REMOVED_AT, 'box': _box(self.removed)},
                'dark_obstacle': {'nir': DARK_NIR, 'box': _box(self.dark)}}


def _box(box: scenes.Box) -> dict:
    return {'x': round(box.x, 6), 'y': round(box.y, 6), 'yaw': round(box.yaw, 6), 'size_x': box.size_x,
            'size_y': box.size_y, 'size_z': box.size_z}


def _arc(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    closed = np.vstack([path, path[:1]])
    return closed, np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])


def _along(path: np.ndarray, s: float) -> tuple[float, float, float, float, float]:
    """(x, y, heading, left normal x, left normal y) at arc length ``s`` on the closed path, heading along
    its point order (towards the point 0.15 m ahead, as a car's steering does)."""
    closed, arc = _arc(path)
    total = arc[-1]
    s = s % total
    x, y = np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])
    ahead = (s + 0.15) % total
    yaw = math.atan2(np.interp(ahead, arc, closed[:, 1]) - y, np.interp(ahead, arc, closed[:, 0]) - x)
    return float(x), float(y), yaw, -math.sin(yaw), math.cos(yaw)


def _longest_straight(path: np.ndarray) -> float:
    """Arc length where the path's longest straight run begins (following the point order)."""
    closed, arc = _arc(path)
    step = np.diff(closed, axis=0)
    heading = np.unwrap(np.arctan2(step[:, 1], step[:, 0]))
    straight = np.abs(np.diff(np.concatenate([heading, heading[:1] + 2 * math.pi]))) < 1e-3
    best, run, begin = 0, 0, 0
    for k, flat in enumerate(np.concatenate([straight, straight])):
        run = run + 1 if flat else 0
        if run > best:
            best, begin = run, k - run + 1
    return float(arc[(begin + 1) % len(path)])


def drive(seed: int) -> Drive:
    """The drive of ``seed``: a random room (``scenes.random_scene``) with the two event boxes placed
    beside the path where the robot will see them; random objects in their way are left out."""
    rng = np.random.default_rng([seed, _DRIVE_SALT])
    scene = scenes.random_scene(rng, kind='room')
    start = _longest_straight(scene.path)
    materials = list(scene.materials)
    materials.append(scenes.Material('cardboard', (0.52, 0.36, 0.19), (0.68, 0.56, 0.38), 0.05, nir=0.55,
                                     specular=0.05, salt=11))
    materials.append(scenes.Material('dark', (0.03, 0.03, 0.035), (0.05, 0.05, 0.05), 0.1, nir=DARK_NIR,
                                     specular=0.05, salt=12))
    events = []
    for ahead, side, size, material in ((SPEED * REMOVED_AT + REMOVED_AHEAD, 1.0, (0.32, 0.32, 0.3), -2),
                                        (SPEED * DARK_AT + DARK_AHEAD, -1.0, (0.3, 0.3, 0.35), -1)):
        x, y, yaw, nx, ny = _along(scene.path, start + ahead)
        events.append(scenes.Box(x + side * BESIDE * nx, y + side * BESIDE * ny, 0.0, *size, yaw,
                                 len(materials) + material))
    keep = [b for b in scene.boxes if b.label == scenes.WALL or all(_apart(b, e) for e in events)]
    cylinders = [c for c in scene.cylinders if all(_apart(c, e) for e in events)]
    scene = replace(scene, materials=tuple(materials), boxes=(*keep, *events), cylinders=tuple(cylinders))
    return Drive(scene, scenes.random_intrinsics(rng), events[0], events[1], start, seed)


def _apart(obj: scenes.Box | scenes.Cylinder, box: scenes.Box, gap: float = 0.15) -> bool:
    """Whether ``obj``'s bounding circle keeps ``gap`` metres from ``box``'s."""
    reach = (math.hypot(obj.size_x, obj.size_y) / 2 if isinstance(obj, scenes.Box) else obj.radius)
    return math.hypot(obj.x - box.x, obj.y - box.y) >= reach + math.hypot(box.size_x, box.size_y) / 2 + gap


def camera_pose(base: tuple[float, float, float], mount: CameraMount) -> scenes.CameraPose:
    """The camera's optical-frame pose in the world for the robot at ``base`` = (x, y, yaw) with the camera
    body at ``mount`` (``scenes.CameraPose`` uses the same yaw, pitch-down, roll convention as REP 103's
    fixed-axis roll-pitch-yaw of the camera body)."""
    x, y, yaw = base
    c, s = math.cos(yaw), math.sin(yaw)
    return scenes.CameraPose(x + c * mount.x - s * mount.y, y + s * mount.x + c * mount.y, mount.z,
                             yaw + mount.yaw, mount.pitch, mount.roll)


def real_mount(t: float, seed: int) -> CameraMount:
    """The camera's real mount at ``t``: the nominal one, tilted ``TILT_ERROR_DEG`` down, rocked by the
    suspension (pitch +-0.35 deg, roll +-0.4 deg, height +-3 mm, a few Hz)."""
    ph = np.random.default_rng([seed, _DRIVE_SALT, 1]).uniform(0, 2 * math.pi, 5)
    w = 2 * math.pi * t
    pitch = TILT_ERROR_DEG + 0.25 * math.sin(1.7 * w + ph[0]) + 0.1 * math.sin(4.1 * w + ph[1])
    roll = 0.3 * math.sin(1.3 * w + ph[2]) + 0.1 * math.sin(3.7 * w + ph[3])
    nominal = NOMINAL_MOUNT
    return replace(nominal, z=nominal.z + 0.003 * math.sin(2.9 * w + ph[4]),
                   pitch=nominal.pitch + math.radians(pitch), roll=nominal.roll + math.radians(roll))


def drive_frame(plan: Drive, index: int, rate_hz: float = 15.0, tof: ToFConfig | None = None,
                after: scenes.Scene | None = None) -> scenes.SceneFrame:
    """Frame ``index`` of ``plan`` at ``rate_hz`` with its base pose (``SceneFrame.base``); ``after`` is
    ``plan.scene_after`` when the caller has it already."""
    t = index / rate_hz
    base = plan.base_pose(t)
    scene = plan.scene if t < REMOVED_AT else (after or plan.scene_after)
    frame = scenes.render_frame(scene, camera_pose(base, real_mount(t, plan.seed)), plan.intrinsics,
                                scenes.frame_rng(plan.seed, index), tof, stamp=t, index=index)
    return replace(frame, base=base)


def drive_frames(seed: int, count: int, rate_hz: float = 15.0,
                 tof: ToFConfig | None = None) -> Iterator[scenes.SceneFrame]:
    """``count`` frames of drive ``seed`` at ``rate_hz`` (``drive_frame``)."""
    plan = drive(seed)
    after = plan.scene_after
    for i in range(count):
        yield drive_frame(plan, i, rate_hz, tof, after)
