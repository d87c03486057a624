"""Judging the pipeline by the costmap: ground truth and the published cloud through the same evaluator.

On a drive split (``rc_offline.drive``, cached by ``rc_offline.heldout``), two ``rc_offline.costmap``
evaluators with the same params file step through the scored frames in stamp order, the robot at the
frame's base pose:

* **truth**: the ground-truth depth back-projected with the split's intrinsics and placed with the camera's
  real pose (what a perfect depth camera on a perfectly known mount would give Nav2);
* **published**: the clouds the pipeline published (``perception/fused_depth_points``, and
  ``perception/clearing_points`` when it came), placed with the robot's nominal mount (what the robot is
  configured with: it does not know the real tilt).

Per frame, cells are compared (both windows roll identically):

* **recall**: truth-lethal cells within the marking range (``obstacle_max_range`` of the sensor) that are
  lethal in the published costmap, summed over frames;
* **stale**: published-lethal cells that the truth marked earlier and has cleared since;
* **phantom**: the other published-lethal cells the truth does not mark;
* **floor**: lethal cells with no object within one cell: no ground-truth point 2 cm or more above the
  floor (walls and objects of any height) has fallen into or beside them so far; counted for the published
  costmap and, separately, for the truth (a params file that marks the floor shows there);
* **removal**: the removed box's cells (truth-lethal cells within one cell of its footprint on the last
  frame before it went); the time to clear is from the removal to the arrival of the first cloud after
  which none of them is lethal (frame stamp - removal + that frame's camera-to-cloud latency), plus one
  costmap update period (1 / ``update_frequency``: Nav2 applies the cloud at its next update).

Command line, on the held-out drive's ground-truth depth: ``python -m rc_offline.costmap_eval tilt``
(floor cells vs an unmodelled camera tilt, the figure behind doc/costmap.md's mount section) and
``python -m rc_offline.costmap_eval params`` (what a params file does when the depth is right).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rc_offline.costmap import (
    CostmapConfig,
    CostmapConfigError,
    LocalCostmap,
    load_params,
    planar_pose,
    transform_points,
)
from rc_offline.demo_report import quaternion_matrix
from rc_perception.camera import Intrinsics
from rc_perception.mount import CameraMount, rpy_matrix

__all__ = ['CLEARING_TOPIC', 'TOPIC', 'CostmapScores', 'DriveSplit', 'depth_points', 'main', 'score_drive',
           'tilt_sweep']

TOPIC = 'perception/fused_depth_points'
CLEARING_TOPIC = 'perception/clearing_points'
#: Ground-truth points at least this high above the floor (metres) are something: a wall or an object.
OBJECT_HEIGHT = 0.02


@dataclass(frozen=True)
class FramePose:
    """One frame of a drive: its stamp, the robot's base pose and the camera's real pose."""

    stamp: float
    base: tuple[float, float, float]
    camera: np.ndarray   # 4x4 world <- optical frame

    def base_to_optical(self) -> np.ndarray:
        """The camera's real pose in the base frame (what the robot's configured mount should have been)."""
        return np.linalg.inv(planar_pose(*self.base)) @ self.camera


@dataclass(frozen=True)
class DriveSplit:
    """What a drive split records: intrinsics, the nominal mount, the removal and every frame's poses."""

    folder: Path
    intrinsics: Intrinsics
    nominal: CameraMount
    poses: dict[str, FramePose]
    removed_at: float | None = None
    removed_box: dict | None = None
    dark_box: dict | None = None
    size: tuple[int, int] = (640, 480)    # the camera's width, height

    @classmethod
    def load(cls, folder: str | Path) -> DriveSplit | None:
        """The drive recorded in a split folder, or None when it is not a drive (no base poses)."""
        from rc_offline import dataset
        folder = Path(folder)
        cam = dataset.load_camera(folder)
        path = folder / 'poses.csv'
        if 'nominal_mount' not in cam or not path.is_file():
            return None
        poses = {}
        with open(path, newline='') as fh:
            for row in csv.DictReader(fh):
                if not row.get('base_x'):
                    return None
                camera = np.eye(4)
                camera[:3, :3] = quaternion_matrix(*(float(row[k]) for k in ('qx', 'qy', 'qz', 'qw')))
                camera[:3, 3] = [float(row[k]) for k in ('x', 'y', 'z')]
                base = tuple(float(row[k]) for k in ('base_x', 'base_y', 'base_yaw'))
                poses[row['stem']] = FramePose(float(row['stamp']), base, camera)
        removed = cam.get('removed') or {}
        return cls(folder, Intrinsics(cam['fx'], cam['fy'], cam['cx'], cam['cy']),
                   CameraMount(**cam['nominal_mount']), poses, removed.get('time'), removed.get('box'),
                   (cam.get('dark_obstacle') or {}).get('box'), (int(cam['width']), int(cam['height'])))

    def truth_points(self, stem: str, skip: int = 1) -> np.ndarray:
        """Ground-truth depth of ``stem`` back-projected: (H', W', 3) float32 in the optical frame."""
        from rc_offline import dataset
        return depth_points(dataset.read_depth(self.folder / 'depth' / f'{stem}.png'), self.intrinsics, skip)


def depth_points(depth: np.ndarray, intr: Intrinsics, skip: int = 1) -> np.ndarray:
    """Every ``skip``-th pixel (from ``skip // 2``) of a metric depth image as optical-frame points."""
    start = skip // 2
    z = depth[start::skip, start::skip].astype(np.float32)
    u = (np.arange(start, depth.shape[1], skip, dtype=np.float32) - np.float32(intr.cx)) / np.float32(intr.fx)
    v = (np.arange(start, depth.shape[0], skip, dtype=np.float32) - np.float32(intr.cy)) / np.float32(intr.fy)
    return np.stack([z * u[None, :], z * v[:, None], z], axis=-1)


def _follow(mask: np.ndarray, old: tuple[float, float], new: tuple[float, float],
            resolution: float) -> np.ndarray:
    """A window-aligned mask moved with the window from origin ``old`` to ``new`` (whole cells)."""
    dx, dy = (round((n - o) / resolution) for n, o in zip(new, old, strict=True))
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    out[max(-dy, 0):max(-dy, 0) + src.shape[0], max(-dx, 0):max(-dx, 0) + src.shape[1]] = src
    return out


def _cells_of(cm: LocalCostmap, points: np.ndarray) -> np.ndarray:
    """Window cells that contain at least one of the world points (N, 3)."""
    ox, oy = cm.origin
    mx = np.floor((points[:, 0] - ox) / cm.resolution).astype(np.int64)
    my = np.floor((points[:, 1] - oy) / cm.resolution).astype(np.int64)
    out = np.zeros(cm.grid.shape, bool)
    inside = (mx >= 0) & (my >= 0) & (mx < out.shape[1]) & (my < out.shape[0])
    out[my[inside], mx[inside]] = True
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Cells within one cell (8-neighbourhood) of a set cell."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def _near_box(cm: LocalCostmap, box: dict) -> np.ndarray:
    """Cells whose centre is within one cell of a box's footprint."""
    x, y = cm.cell_centres()
    c, s = math.cos(box['yaw']), math.sin(box['yaw'])
    lx, ly = c * (x - box['x']) + s * (y - box['y']), -s * (x - box['x']) + c * (y - box['y'])
    reach = cm.resolution
    return (np.abs(lx) <= box['size_x'] / 2 + reach) & (np.abs(ly) <= box['size_y'] / 2 + reach)


@dataclass
class Snapshot:
    """Both costmaps at one frame, for pictures."""

    stem: str
    stamp: float
    origin: tuple[float, float]
    resolution: float
    truth: np.ndarray
    published: np.ndarray
    stale: np.ndarray
    base: tuple[float, float, float]


@dataclass
class CostmapScores:
    """Sums over the scored frames (see the module docstring)."""

    marking_range: float
    update_period: float
    frames: int = 0
    truth_cells: int = 0
    found: int = 0
    phantom: int = 0
    floor: int = 0
    floor_worst: int = 0
    truth_floor: int = 0
    stale: int = 0
    removed_cells: int = 0
    #: truth cells within range at the dark block (only the student sees it), and of those found
    dark_cells: int = 0
    dark_found: int = 0
    #: (seconds after the removal incl. latency, removed cells lethal in the published, in the truth)
    after_removal: list[tuple[float, int, int]] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)

    def clear_time(self, column: int = 1) -> float | None:
        """Seconds from the removal until no removed cell is lethal (plus one update period), None when that
        never happened in the run. ``column`` 1: published, 2: truth."""
        if not self.removed_cells:
            return None
        for row in self.after_removal:
            if row[column] == 0:
                return row[0] + self.update_period
        return None

    def stale_after(self, seconds: float = 1.0) -> int | None:
        """Removed cells still lethal in the published costmap ``seconds`` after the removal (the first
        frame at or after it), None when the run ended before."""
        late = [row[1] for row in self.after_removal if row[0] >= seconds]
        return late[0] if late and self.removed_cells else None

    @property
    def recall(self) -> float:
        return self.found / self.truth_cells if self.truth_cells else float('nan')

    def recall_split(self) -> tuple[float, float]:
        """Recall of the obstacles the ToF can see (all but the dark block) and of the dark block."""
        others = self.truth_cells - self.dark_cells
        return ((self.found - self.dark_found) / others if others else float('nan'),
                self.dark_found / self.dark_cells if self.dark_cells else float('nan'))

    def summary(self, prefix: str = 'costmap_') -> dict:
        visible, dark = self.recall_split()
        figures = {'frames': self.frames, 'recall': self.recall, 'truth_cells': self.truth_cells,
                   'recall_tof_visible': visible, 'recall_dark_block': dark,
                   'dark_block_cells': self.dark_cells,
                   'found_cells': self.found, 'phantom_cells': self.phantom, 'floor_cells': self.floor,
                   'floor_cells_worst_frame': self.floor_worst, 'truth_floor_cells': self.truth_floor,
                   'stale_cells': self.stale,
                   'removed_cells': self.removed_cells, 'clear_s': self.clear_time(1),
                   'truth_clear_s': self.clear_time(2), 'stale_after_1s': self.stale_after(1.0),
                   'marking_range_m': self.marking_range}
        return {f'{prefix}{k}': v for k, v in figures.items()}


def _marking_range(config: CostmapConfig) -> float:
    ranges = [s.obstacle_max_range for layer in config.layers if layer.enabled for s in layer.sources
              if s.marking]
    return max(ranges, default=0.0)


@dataclass(frozen=True)
class Variant:
    """A published costmap to score: its params, its clouds per stem (topic -> optical-frame points) and
    where the robot believes the camera is (base <- optical per stem; default: the nominal mount)."""

    config: CostmapConfig
    clouds: Callable[[str], dict[str, np.ndarray]]
    mount: Callable[[str], np.ndarray] | None = None


def score_drive(split: DriveSplit, frames: list[tuple[str, float]], variants: dict[str, Variant],
                truth_config: CostmapConfig, distro: str = 'humble', truth_skip: int = 1,
                snapshot_stems: tuple[str, ...] = ()) -> dict[str, CostmapScores]:
    """Step one truth costmap and each variant's published costmap through ``frames``; score each variant.

    Args:
        frames: (stem, camera-to-cloud latency in seconds) in stamp order.
        variants: name -> Variant; each sees the robot's nominal mount.
        truth_config: the truth's params (fed the ground truth on ``TOPIC`` only).
        truth_skip: back-project every ``truth_skip``-th ground-truth pixel.
        snapshot_stems: frames whose costmaps to keep for pictures.
    """
    truth = _Truth(split, truth_config, distro, truth_skip)
    nominal = split.nominal.base_to_optical()
    published = {name: (LocalCostmap(v.config, distro), v,
                        CostmapScores(_marking_range(v.config), 1.0 / v.config.update_frequency))
                 for name, v in variants.items()}
    for stem, latency in frames:
        pose = split.poses[stem]
        truth.step(stem, pose)
        for costmap, variant, scores in published.values():
            mount = nominal if variant.mount is None else variant.mount(stem)
            costmap.update(pose.base, variant.clouds(stem), mount, pose.stamp)
            truth.score(scores, stem, pose, costmap.lethal, latency, stem in snapshot_stems)
    return {name: scores for name, (_, _, scores) in published.items()}


class _Truth:
    """The truth costmap of ``score_drive`` and what it remembers between frames, window-aligned."""

    def __init__(self, split: DriveSplit, config: CostmapConfig, distro: str, skip: int) -> None:
        self.split, self.skip = split, skip
        self.costmap = LocalCostmap(config, distro)
        self.origin = self.costmap.origin
        shape = self.costmap.grid.shape
        self.ever = np.zeros(shape, bool)       # cells the truth has marked, up to the previous frame
        self.objects = np.zeros(shape, bool)    # cells where the world has something
        self.removed = np.zeros(shape, bool)    # the removed box's cells
        self.lethal = np.zeros(shape, bool)

    def step(self, stem: str, pose: FramePose) -> None:
        cloud = self.split.truth_points(stem, self.skip)
        cm = self.costmap
        cm.update(pose.base, {TOPIC: cloud}, pose.base_to_optical(), pose.stamp)
        self.ever = _follow(self.ever | self.lethal, self.origin, cm.origin, cm.resolution)
        self.objects, self.removed = (_follow(mask, self.origin, cm.origin, cm.resolution)
                                      for mask in (self.objects, self.removed))
        self.origin = cm.origin
        world = transform_points(cloud, pose.camera)
        self.objects |= _cells_of(cm, world[world[:, 2] >= OBJECT_HEIGHT])
        self.lethal = cm.lethal
        removed_at, box = self.split.removed_at, self.split.removed_box
        if removed_at is not None and box is not None and pose.stamp < removed_at:
            self.removed = self.lethal & _near_box(cm, box)

    def score(self, scores: CostmapScores, stem: str, pose: FramePose, p: np.ndarray, latency: float,
              keep: bool) -> None:
        """Add one frame of a published costmap's lethal cells ``p`` to ``scores``."""
        t, cm = self.lethal, self.costmap
        stale = p & ~t & self.ever
        x, y = cm.cell_centres()
        sensor = pose.camera[:2, 3]
        in_range = np.hypot(x - sensor[0], y - sensor[1]) <= scores.marking_range
        nothing = ~_dilate(self.objects)
        floor = int((p & nothing).sum())
        scores.frames += 1
        scores.truth_cells += int((t & in_range).sum())
        scores.found += int((t & p & in_range).sum())
        if self.split.dark_box is not None:
            dark = t & in_range & _near_box(cm, self.split.dark_box)
            scores.dark_cells += int(dark.sum())
            scores.dark_found += int((dark & p).sum())
        scores.phantom += int((p & ~t & ~stale).sum())
        scores.floor += floor
        scores.floor_worst = max(scores.floor_worst, floor)
        scores.truth_floor += int((t & nothing).sum())
        scores.stale += int(stale.sum())
        removed_at = self.split.removed_at
        if removed_at is not None and self.removed.any():
            if pose.stamp < removed_at:
                scores.removed_cells = int(self.removed.sum())
            else:
                left = int((p & self.removed).sum()), int((t & self.removed).sum())
                scores.after_removal.append((pose.stamp - removed_at + latency, *left))
        if keep:
            snap = Snapshot(stem, pose.stamp, cm.origin, cm.resolution, t, p, stale, pose.base)
            scores.snapshots.append(snap)


# ---------------------------------------------------------------------------------------------------------
# The demo's costmap section
# ---------------------------------------------------------------------------------------------------------

@dataclass
class DemoCostmap:
    """The demo's costmap figures, checks and report section."""

    metrics: dict
    checks: list[tuple[str, bool, str]]
    lines: list[str]


#: Values of the fusion's source map (perception/fused_depth/source).
SOURCE_TOF, SOURCE_STUDENT = 1, 2
#: Variants the demo scores beside the published cloud: what each changes (report wording).
ATTRIBUTION = {'exact_student': "the student's pixels at their true depth (what the ToF's errors cost)",
               'exact_tof': "the ToF's pixels at their true depth (what the student's errors cost)",
               'exact_dark': "the dark block's pixels at their true depth (what the student's view of it "
                             'costs)'}


def demo_costmap(folder: Path, recorded: dict[str, dict[str, np.ndarray]], latency_ms: dict[str, float],
                 yaml_path: Path, distro: str, out: Path) -> DemoCostmap | None:
    """Score what the demo recorded on drive split ``folder``; None when the split is no drive.

    Args:
        recorded: stem -> {'cloud': points, 'clearing': points (when the node sent it), 'source': the
            fusion's source map}; stems without a cloud never reached the costmap.

    Besides the published cloud as it came (``costmap_*`` metrics), scores it without the clearing cloud
    when one came (``costmap_noclear_*``) and, where the source map came, with one source's pixels moved
    to their true depth along their rays (``costmap_exact_student_*``, ``costmap_exact_tof_*``): where the
    phantom and missing cells come from. Writes ``costmap.png`` into ``out``.
    """
    split = DriveSplit.load(folder)
    if split is None:
        return None
    config = CostmapConfig.from_yaml(yaml_path)
    stems = sorted((s for s, r in recorded.items() if 'cloud' in r and s in split.poses),
                   key=lambda s: split.poses[s].stamp)
    clearing = [s for s in stems if 'clearing' in recorded[s]]

    def shipped(stem: str) -> dict:
        got = recorded[stem]
        return {TOPIC: got['cloud'], **({CLEARING_TOPIC: got['clearing']} if 'clearing' in got else {})}

    variants = {'': Variant(config, shipped)}
    if clearing:
        variants['noclear'] = Variant(config.without({CLEARING_TOPIC}),
                                      lambda s: {TOPIC: recorded[s]['cloud']})
    if any('source' in recorded[s] for s in stems):
        for name, which in (('exact_student', SOURCE_STUDENT), ('exact_tof', SOURCE_TOF)):
            variants[name] = Variant(config, _exact(split, recorded, which))
        if split.dark_box is not None:
            variants['exact_dark'] = Variant(config, _exact(split, recorded, SOURCE_STUDENT, split.dark_box))
    scores = score_drive(split, [(s, latency_ms.get(s, 0.0) / 1000.0) for s in stems], variants, config,
                         distro, snapshot_stems=_snapshot_stems(split, stems))
    metrics = {'costmap_distro': distro, 'costmap_yaml': str(yaml_path),
               'costmap_clearing_clouds': len(clearing)}
    for name, score in scores.items():
        metrics.update(score.summary(f'costmap_{name}_' if name else 'costmap_'))
    main = scores['']
    figure = None
    if main.snapshots:
        figure = write_costmap_figure(out / 'costmap.png', main, split, config.footprint_points())
    lines = _report_lines(scores, metrics, figure)
    return DemoCostmap(metrics, _checks(main, scores.get('noclear')), lines)


def _exact(split: DriveSplit, recorded: dict, which: int, box: dict | None = None) -> Callable[[str], dict]:
    """Clouds with the pixels of source ``which`` moved along their rays to the ground-truth depth (only
    those whose true point lies on ``box``, when given)."""
    from depth_fusion.fusion import resample_nearest
    from rc_offline import dataset

    def clouds(stem: str) -> dict:
        cloud, source = recorded[stem]['cloud'], recorded[stem].get('source')
        if source is None or cloud.ndim != 3 or source.shape != cloud.shape[:2]:
            return {TOPIC: cloud}
        truth = resample_nearest(dataset.read_depth(split.folder / 'depth' / f'{stem}.png'), source.shape)
        moved = source == which
        if box is not None:
            moved &= _on_box(split, stem, truth, box)
        with np.errstate(invalid='ignore', divide='ignore'):
            scale = np.where(moved, truth / cloud[:, :, 2], np.float32(1.0))
        return {TOPIC: (cloud * scale[:, :, None]).astype(np.float32)}
    return clouds


def _on_box(split: DriveSplit, stem: str, truth: np.ndarray, box: dict) -> np.ndarray:
    """Pixels of a ground-truth depth image (any grid of the camera) whose true point lies on ``box``
    (within 1 cm of its footprint and height)."""
    from rc_perception.camera import scale_intrinsics
    intr = scale_intrinsics(split.intrinsics, split.size, (truth.shape[1], truth.shape[0]))
    world = transform_points(depth_points(truth, intr), split.poses[stem].camera).reshape(truth.shape + (3,))
    c, s = math.cos(box['yaw']), math.sin(box['yaw'])
    dx, dy = world[..., 0] - box['x'], world[..., 1] - box['y']
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    return ((np.abs(lx) <= box['size_x'] / 2 + 0.01) & (np.abs(ly) <= box['size_y'] / 2 + 0.01)
            & (world[..., 2] <= box['size_z'] + 0.01))


def _snapshot_stems(split: DriveSplit, stems: list[str]) -> tuple[str, ...]:
    """Frames to picture: the last before the removal, the first a second after it, and the last."""
    if not stems:
        return ()
    picks = []
    if split.removed_at is not None:
        before = [s for s in stems if split.poses[s].stamp < split.removed_at]
        after = [s for s in stems if split.poses[s].stamp >= split.removed_at + 1.0]
        picks += before[-1:] + after[:1]
    return tuple(dict.fromkeys([*picks, stems[-1]]))


def _checks(scores: CostmapScores, without: CostmapScores | None) -> list:
    m = scores.summary()
    checks = [
        ('costmap: obstacle recall >= 95 % within the marking range', m['costmap_recall'] >= 0.95,
         f"{_pct(m['costmap_recall'])} of {m['costmap_truth_cells']:,} truth cells over "
         f"{m['costmap_frames']} frames"),
        ('costmap: no floor cells marked', m['costmap_floor_cells'] == 0,
         f"{m['costmap_floor_cells']} floor cells (worst frame {m['costmap_floor_cells_worst_frame']}), "
         f"{m['costmap_phantom_cells']} phantom cells in all"),
    ]
    if m['costmap_stale_after_1s'] is not None:
        clear = m['costmap_clear_s']
        checks.append(('costmap: the removed obstacle cleared within 1 s',
                       clear is not None and clear <= 1.0,
                       f"{m['costmap_removed_cells']} cells, cleared after {_seconds(clear, 'never')}"))
        if without is not None:
            checks.append(('costmap: no stale cells 1 s after the removal with the clearing cloud',
                           m['costmap_stale_after_1s'] == 0, f"{m['costmap_stale_after_1s']} with, "
                           f"{without.stale_after(1.0)} without it"))
    return checks


def _pct(value: float | None) -> str:
    return 'n/a' if value is None or not math.isfinite(value) else f'{100 * value:.1f} %'


def _seconds(value: float | None, missing: str = 'not cleared') -> str:
    return missing if value is None else f'{value:.2f} s'


def _report_lines(scores: dict[str, CostmapScores], m: dict, figure: str | None) -> list[str]:
    main = scores['']
    lines = ['## Costmap', '',
             f"What Nav2 would see: `rc_offline.costmap` ({m['costmap_distro']} semantics) with "
             f"`{Path(m['costmap_yaml']).name}`, fed per scored frame with the published cloud (placed with "
             "the robot's nominal camera mount) and, separately, with the ground-truth depth (the camera's "
             'real pose). Recall counts truth-lethal cells within the marking range '
             f"({m['costmap_marking_range_m']:g} m of the camera); phantom cells are marked where the truth "
             'has nothing; floor cells are lethal cells with no wall or object within one cell; stale cells '
             'are still marked after the truth cleared them. Times include the camera-to-cloud latency and '
             'one costmap update period.', '', '| figure | value | target |', '|---|---:|---:|',
             f"| obstacle recall (truth cells within range found) | {_pct(m['costmap_recall'])} | >= 95 % |",
             f"| recall: obstacles the ToF sees / the dark block ({m['costmap_dark_block_cells']} cells, the "
             f"student alone) | {_pct(m['costmap_recall_tof_visible'])} / "
             f"{_pct(m['costmap_recall_dark_block'])} | |",
             f"| floor cells marked (sum over frames; worst frame) | {m['costmap_floor_cells']} "
             f"({m['costmap_floor_cells_worst_frame']}) | 0 |",
             f"| floor cells marked by the ground truth itself (the params file's share) | "
             f"{m['costmap_truth_floor_cells']} | 0 |",
             f"| phantom cells (sum over frames) | {m['costmap_phantom_cells']} | |",
             f"| stale cells (sum over frames) | {m['costmap_stale_cells']} | |",
             *_removal_rows(main, m)]
    if 'noclear' in scores:
        without = scores['noclear']
        lines += ['', f"With the clearing cloud ({m['costmap_clearing_clouds']} received) and without it: "
                  f"stale cells 1 s after the removal {m['costmap_stale_after_1s']} / "
                  f"{without.stale_after(1.0)}, time to clear {_seconds(m['costmap_clear_s'])} / "
                  f"{_seconds(without.clear_time())}, stale cells in all {m['costmap_stale_cells']} / "
                  f'{without.stale}.']
    else:
        lines += ['', 'No clearing cloud came (`publish_clearing_cloud` is off): the figures are for the '
                  'main cloud alone.']
    if any(name in scores for name in ATTRIBUTION):
        lines += ['', 'Where the misses and phantoms come from: the same frames with one source made exact.',
                  '',
                  '| published cloud | recall | floor cells | phantom cells |', '|---|---:|---:|---:|',
                  f'| as published | {_pct(main.recall)} | {main.floor} | {main.phantom} |']
        lines += [f'| {what} | {_pct(scores[name].recall)} | {scores[name].floor} | {scores[name].phantom} |'
                  for name, what in ATTRIBUTION.items() if name in scores]
    if figure:
        lines += ['', 'Cells, truth vs published (black: both lethal, orange: truth only, red: phantom, '
                  'magenta: stale; grey outline: the robot, circle: the marking range, dashed: the removed '
                  'box, blue: the dark block):', '', f'![costmap]({figure})']
    return lines + ['']


def _removal_rows(scores: CostmapScores, m: dict) -> list[str]:
    if not (scores.removed_cells and scores.after_removal):
        return ['| removed obstacle | not in this run (it ends before the removal) | |']
    late = m['costmap_stale_after_1s']
    return [f'| removed obstacle: cells | {scores.removed_cells} | |',
            f"| removed obstacle: time to clear, published | {_seconds(m['costmap_clear_s'])} "
            '| <= 1 s |',
            f"| removed obstacle: time to clear, ground truth | {_seconds(m['costmap_truth_clear_s'])} "
            '| |',
            f"| removed obstacle: cells still lethal 1 s after | {'n/a' if late is None else late} | 0 |"]


def write_costmap_figure(path: Path, scores: CostmapScores, split: DriveSplit, footprint: np.ndarray) -> str:
    """One panel per snapshot of ``scores``: per-cell truth vs published colours in the world frame, the
    robot's ``footprint``, the marking range and the event boxes; returns the file name."""
    from rc_offline import figures
    plt = figures.pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Circle, Patch, Polygon

    names = ('free', 'lethal in both', 'truth only (missed)', 'published only (phantom)', 'stale')
    colours = ListedColormap(['white', 'black', 'orange', 'red', 'magenta'])
    snapshots = scores.snapshots
    fig, axes = plt.subplots(1, len(snapshots), figsize=(5.2 * len(snapshots), 5.9), squeeze=False)
    for ax, snap in zip(axes[0], snapshots, strict=True):
        cat = np.zeros(snap.truth.shape, np.uint8)
        cat[snap.truth & snap.published] = 1
        cat[snap.truth & ~snap.published] = 2
        cat[snap.published & ~snap.truth] = 3
        cat[snap.stale] = 4
        ox, oy = snap.origin
        h, w = cat.shape
        ax.imshow(cat, cmap=colours, vmin=0, vmax=4, origin='lower', interpolation='nearest',
                  extent=(ox, ox + w * snap.resolution, oy, oy + h * snap.resolution))
        x, y, yaw = snap.base
        c, s = math.cos(yaw), math.sin(yaw)
        fx, fy = footprint[:, 0], footprint[:, 1]
        outline = np.c_[x + fx * c - fy * s, y + fx * s + fy * c]
        ax.add_patch(Polygon(outline, fill=False, ec='0.5'))
        camera = split.poses[snap.stem].camera[:2, 3]
        ax.add_patch(Circle(tuple(camera), scores.marking_range, fill=False, ec='0.6', ls=':'))
        boxes = ((split.removed_box, {'ec': '0.4', 'ls': '--'}), (split.dark_box, {'ec': 'tab:blue'}))
        for box, style in boxes:
            if box is not None:
                ax.add_patch(Polygon(_corners(box), fill=False, lw=1.2, **style))
        ax.set_title(f'frame {snap.stem} (t = {snap.stamp:.2f} s)')
        ax.set_xlabel('x (m, odom)')
        ax.set_ylabel('y (m, odom)')
    fig.tight_layout(rect=(0, 0.07, 1, 0.98))
    fig.legend(handles=[Patch(fc=colours(k), ec='0.6', label=name) for k, name in enumerate(names)][1:],
               loc='lower center', ncol=4, frameon=False)
    figures.save(fig, path, dpi=72)
    return path.name


def _corners(box: dict) -> np.ndarray:
    c, s = math.cos(box['yaw']), math.sin(box['yaw'])
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [box['size_x'] / 2, box['size_y'] / 2]
    return np.c_[box['x'] + half[:, 0] * c - half[:, 1] * s, box['y'] + half[:, 0] * s + half[:, 1] * c]


# ---------------------------------------------------------------------------------------------------------
# Tilt: what an unmodelled camera pitch costs
# ---------------------------------------------------------------------------------------------------------

def tilt_sweep(split: DriveSplit, config: CostmapConfig, errors_deg: list[float], distro: str = 'humble',
               skip: int = 2) -> list[tuple[float, int, int]]:
    """Floor cells marked when the camera is really pitched ``error`` degrees more nose-down than the robot
    believes (negative: more nose-up), on the ground-truth depth of every frame of ``split``.

    The believed mount is the real one turned nose-up by the error about the base's y axis, so the error is
    the only one; floor cells as in ``score_drive`` (no wall or object within one cell).

    Returns:
        (error in degrees, floor cells in the worst frame, floor cells summed over the frames) per error.
    """
    stems = sorted(split.poses, key=lambda s: split.poses[s].stamp)

    def believed(error: float) -> Callable[[str], np.ndarray]:
        turn = rpy_matrix(0.0, -math.radians(error), 0.0)

        def mount(stem: str) -> np.ndarray:
            tf = split.poses[stem].base_to_optical()
            tf[:3, :3] = turn @ tf[:3, :3]
            return tf
        return mount

    newest: dict[str, dict] = {}   # every variant takes the same frame's cloud: read it once

    def cloud(stem: str) -> dict:
        if stem not in newest:
            newest.clear()
            newest[stem] = {TOPIC: split.truth_points(stem, skip)}
        return newest[stem]

    variants = {error: Variant(config, cloud, believed(error)) for error in errors_deg}
    scores = score_drive(split, [(s, 0.0) for s in stems], variants, config, distro, truth_skip=skip)
    return [(error, scores[error].floor_worst, scores[error].floor) for error in errors_deg]


def _tilt_command(args: argparse.Namespace, split: DriveSplit, config: CostmapConfig) -> None:
    try:
        errors = [float(e) for e in args.errors.split(',')]
    except ValueError:
        raise ValueError(f'--errors: expected degrees separated by commas, got {args.errors!r}') from None
    print('| pitch error (deg, + = camera more nose-down than configured) | floor cells, worst frame | '
          'floor cells, sum over frames |')
    print('|---:|---:|---:|')
    for error, worst, total in tilt_sweep(split, config, errors, args.distro, args.skip):
        print(f'| {error:+.1f} | {worst} | {total} |')


def _params_command(args: argparse.Namespace, split: DriveSplit, config: CostmapConfig) -> None:
    stems = sorted(split.poses, key=lambda s: split.poses[s].stamp)
    variant = Variant(config, lambda stem: {TOPIC: split.truth_points(stem, args.skip)})
    m = score_drive(split, [(s, 0.0) for s in stems], {'': variant}, config, args.distro)[''].summary()
    print('| figure | value |\n|---|---:|')
    for key in ('recall', 'floor_cells', 'truth_floor_cells', 'phantom_cells', 'stale_cells', 'removed_cells',
                'clear_s', 'truth_clear_s', 'stale_after_1s'):
        value = m[f'costmap_{key}']
        print(f'| {key} | {"-" if value is None else round(value, 3)} |')


def main(argv: list[str] | None = None) -> int:
    """Costmap figures of the held-out drive, from its ground-truth depth (see the module docstring)."""
    from rc_offline.costmap import DISTROS
    from rc_perception.resources import share_file
    parser = argparse.ArgumentParser(prog='python -m rc_offline.costmap_eval', description=main.__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--frames', type=int, default=90, help='held-out frames (default 90)')
    common.add_argument('--costmap-yaml', default=str(share_file('config', 'nav2_local_costmap.yaml')),
                        help='Nav2 params file (default: the installed config/nav2_local_costmap.yaml)')
    common.add_argument('--plugins', help='comma-separated plugins to use instead of the file\'s, e.g. '
                        'voxel_layer')
    common.add_argument('--distro', choices=DISTROS, default='humble', help='Nav2 semantics (default humble)')
    common.add_argument('--skip', type=int, default=2, help='use every skip-th pixel (default 2)')
    sub = parser.add_subparsers(dest='command', required=True)
    tilt = sub.add_parser('tilt', parents=[common],
                          help='floor cells marked vs an unmodelled camera pitch error',
                          description='Floor cells Nav2 marks when the camera is really pitched more '
                          'nose-down (+) or nose-up (-) than the robot is configured with, on the '
                          'ground-truth depth of the held-out drive (so the error is the only one).')
    tilt.add_argument('--errors', default='-2,-1,0.5,1,1.5,2,3,4,5',
                      help='pitch errors in degrees, comma-separated (default -2,-1,0.5,1,1.5,2,3,4,5)')
    sub.add_parser('params', parents=[common], help='judge a params file with perfect depth',
                   description='Score a costmap params file on the held-out drive fed with its ground-truth '
                   'depth placed by the nominal mount (the real camera is tilted 1 degree more): what the '
                   'file does when the depth is right (recall, floor cells, clearing of the removed box).')
    args = parser.parse_args(argv)
    try:
        if args.frames < 2 or args.skip < 1:
            raise ValueError('--frames must be >= 2 and --skip >= 1')
        params = load_params(args.costmap_yaml)
        if args.plugins:
            params['plugins'] = args.plugins.split(',')
        config = CostmapConfig.from_params(params)
        from rc_offline.heldout import ensure_split
        split = DriveSplit.load(ensure_split('heldout', args.frames))
        print(f'held-out drive ({split.folder}), {args.frames} frames, ground-truth depth (every pixel in '
              f'{args.skip} x {args.skip}), {args.costmap_yaml} (plugins {", ".join(params["plugins"])}), '
              f'Nav2 {args.distro}')
        (_tilt_command if args.command == 'tilt' else _params_command)(args, split, config)
        return 0
    except (CostmapConfigError, ValueError, OSError) as exc:
        print(f'costmap_eval: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
