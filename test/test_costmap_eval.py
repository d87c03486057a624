"""rc_offline.costmap_eval: scoring published costmaps against the truth on a small constructed drive.

A 9 x 3 m corridor with one 0.3 m box 1.5 m ahead of the start, removed at 0.25 s; the robot drives +x at
0.4 m/s, 6 frames at 10 Hz of 160 x 120 pixels, the camera exactly on the nominal mount (no tilt), so a
published cloud equal to the ground truth must score perfectly. The other published clouds are changed by
hand: one keeps seeing the box after it went, one has a point floating over the floor.
"""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rc_offline import costmap_eval, drive, scenes
from rc_offline.costmap import CostmapConfig
from rc_offline.costmap_eval import TOPIC, DriveSplit, Variant, score_drive
from rc_perception.camera import Intrinsics

YAML = Path(__file__).resolve().parent.parent / 'config' / 'nav2_local_costmap.yaml'
INTR = Intrinsics(120.0, 120.0, 79.5, 59.5)
RATE, SPEED, REMOVED_AT, FRAMES = 10.0, 0.4, 0.25, 6
BOX = scenes.Box(2.15, 1.5, 0.0, 0.3, 0.3, 0.3, 0.0, 3)
LATENCY = 0.02
FLOATING = (1.525, 0.775, 0.2)   # over the floor, 0.7 m from the box and the walls


def corridor(*boxes: scenes.Box) -> scenes.Scene:
    mats = (scenes.Material('concrete', (0.4, 0.4, 0.4), nir=0.5), scenes.Material('paint', (0.8, 0.8, 0.8)),
            scenes.Material('ceiling', (0.85, 0.85, 0.85)), scenes.Material('cardboard', (0.5, 0.34, 0.18)))
    return scenes.Scene('corridor', (0.0, 9.0, 0.0, 3.0), 2.5, mats, 0, 2, (1, 1, 1, 1), boxes=boxes)


def base(index: int) -> tuple[float, float, float]:
    return 0.5 + SPEED * index / RATE, 1.5, 0.0


@pytest.fixture(scope='module')
def split(tmp_path_factory) -> DriveSplit:
    folder = tmp_path_factory.mktemp('drive')
    frames = []
    for i in range(FRAMES):
        scene = corridor(BOX) if i / RATE < REMOVED_AT else corridor()
        frame = scenes.render_frame(scene, drive.camera_pose(base(i), drive.NOMINAL_MOUNT), INTR,
                                    np.random.default_rng(i), width=160, height=120, stamp=i / RATE, index=i)
        frames.append(replace(frame, base=base(i)))
    meta = {'nominal_mount': {'x': 0.1, 'y': 0.0, 'z': 0.2, 'roll': 0.0, 'pitch': 0.0, 'yaw': 0.0},
            'removed': {'time': REMOVED_AT, 'box': {'x': BOX.x, 'y': BOX.y, 'yaw': 0.0, 'size_x': 0.3,
                                                    'size_y': 0.3, 'size_z': 0.3}}}
    scenes.write_split(folder, frames, meta=meta)
    return DriveSplit.load(folder)


def truth(split: DriveSplit):
    return lambda stem: {TOPIC: split.truth_points(stem)}


def score(split: DriveSplit, clouds) -> costmap_eval.CostmapScores:
    config = CostmapConfig.from_yaml(YAML)
    frames = [(stem, LATENCY) for stem in sorted(split.poses)]
    return score_drive(split, frames, {'v': Variant(config, clouds)}, config)['v']


def test_the_split_records_the_drive(split):
    assert len(split.poses) == FRAMES and split.removed_at == REMOVED_AT
    assert split.nominal.x == 0.1 and split.nominal.z == 0.2
    pose = split.poses['000002']
    assert pose.stamp == pytest.approx(0.2) and pose.base == pytest.approx(base(2))
    np.testing.assert_allclose(pose.base_to_optical(), drive.NOMINAL_MOUNT.base_to_optical(), atol=1e-6)


def test_a_cloud_equal_to_the_truth_scores_perfectly(split):
    s = score(split, truth(split))
    assert s.frames == FRAMES and s.truth_cells > 0 and s.found == s.truth_cells
    assert (s.phantom, s.floor, s.truth_floor, s.stale) == (0, 0, 0, 0)
    assert s.removed_cells >= 4, 'the box front spans at least 4 cells of 5 cm'
    # The first frame after the removal (0.3 s) clears every box cell: 0.05 s + latency + one update period.
    assert s.clear_time() == pytest.approx(0.3 - REMOVED_AT + LATENCY + 0.1)
    assert s.clear_time(2) == s.clear_time()
    assert s.stale_after(0.1) == 0 and s.stale_after(1.0) is None, 'the run ends 0.25 s after the removal'


def test_a_box_still_seen_after_its_removal_is_stale(split):
    config_scene = corridor(BOX)

    def sticky(stem: str) -> dict:
        pose = split.poses[stem]
        if pose.stamp < REMOVED_AT:
            return {TOPIC: split.truth_points(stem)}
        camera = drive.camera_pose(pose.base, drive.NOMINAL_MOUNT)
        depth = scenes.render_geometry(config_scene, camera, INTR, 160, 120, shading_inputs=False).depth
        return {TOPIC: costmap_eval.depth_points(depth, INTR)}

    s = score(split, sticky)
    assert s.clear_time() is None and s.clear_time(2) is not None
    assert s.stale_after(0.1) == s.removed_cells, 'every box cell still lethal after the removal'
    assert [truth_left for _, _, truth_left in s.after_removal] == [0, 0, 0], 'the truth cleared them all'
    assert all(left > 0 for _, left, _ in s.after_removal)
    # Stale: lethal here, cleared by the truth. (Rays to the floor beside the box cross its corner cells,
    # so a corner cell without a face point in that frame is freed: not every cell stays in every frame.)
    assert s.removed_cells <= s.stale <= 3 * s.removed_cells
    assert s.floor == 0


def test_a_point_floating_over_the_floor_is_a_floor_cell(split):
    def floating(stem: str) -> dict:
        x, y, _ = split.poses[stem].base
        d = np.subtract(FLOATING, (x + 0.1, y, 0.2))   # level camera: optical (-y, -z, x)
        extra = np.array([[-d[1], -d[2], d[0]]], np.float32)
        return {TOPIC: np.concatenate([split.truth_points(stem).reshape(-1, 3), extra])}

    s = score(split, floating)
    assert (s.floor, s.floor_worst, s.phantom) == (FRAMES, 1, FRAMES), 'one floor cell in each frame'
    assert s.found == s.truth_cells and s.truth_floor == 0


def test_demo_costmap_writes_figures_checks_and_the_section(split, tmp_path):
    recorded = {stem: {'cloud': split.truth_points(stem, 2)} for stem in split.poses}
    result = costmap_eval.demo_costmap(split.folder, recorded, {s: 1000 * LATENCY for s in recorded}, YAML,
                                       'jazzy', tmp_path)
    m = result.metrics
    assert m['costmap_recall'] > 0.9 and m['costmap_floor_cells'] == 0 and m['costmap_distro'] == 'jazzy'
    assert m['costmap_clearing_clouds'] == 0 and 'costmap_noclear_recall' not in m
    assert [name for name, _, _ in result.checks] == [
        'costmap: obstacle recall >= 95 % within the marking range', 'costmap: no floor cells marked']
    assert '## Costmap' in result.lines and '![costmap](costmap.png)' in result.lines
    assert (tmp_path / 'costmap.png').stat().st_size > 10_000
    # A clearing cloud (a point along each of a few rays) adds the variant without it.
    for got in recorded.values():
        got['clearing'] = np.array([[0.0, 0.0, 2.0]], np.float32)
    result = costmap_eval.demo_costmap(split.folder, recorded, {}, YAML, 'humble', tmp_path)
    assert result.metrics['costmap_clearing_clouds'] == FRAMES and 'costmap_noclear_recall' in result.metrics


def test_a_split_without_a_drive_is_not_scored(tmp_path):
    scenes.write_split(tmp_path, scenes.sequence_frames(seed=4, count=1))
    assert DriveSplit.load(tmp_path) is None
    assert costmap_eval.demo_costmap(tmp_path, {}, {}, YAML, 'humble', tmp_path) is None


def test_tilt_sweep_counts_floor_cells_of_a_nose_down_error(split):
    rows = costmap_eval.tilt_sweep(split, CostmapConfig.from_yaml(YAML), [0.5, 5.0], skip=1)
    assert [error for error, _, _ in rows] == [0.5, 5.0]
    (_, worst_half, _), (_, worst_five, total_five) = rows
    # 0.5 deg raises the floor 6 cm only 6.9 m out (beyond the 2 m marking range); 5 deg from 0.7 m on.
    assert worst_half == 0
    assert worst_five > 10 and total_five >= worst_five
    assert math.isclose(math.degrees(math.atan(0.06 / 0.69)), 5.0, abs_tol=0.05)


def test_command_line_scores_the_held_out_drive_and_refuses_bad_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('RC_PERCEPTION_CACHE', str(tmp_path))
    assert costmap_eval.main(['params', '--frames', '2', '--costmap-yaml', str(YAML)]) == 0
    out = capsys.readouterr().out
    assert 'plugins obstacle_layer, inflation_layer' in out
    assert '| recall |' in out and '| floor_cells | 0 |' in out
    assert costmap_eval.main(['tilt', '--frames', '2', '--errors', 'x']) == 2
    assert capsys.readouterr().err.strip() == \
        "costmap_eval: --errors: expected degrees separated by commas, got 'x'"
    assert costmap_eval.main(['params', '--costmap-yaml', str(tmp_path / 'none.yaml')]) == 2
    assert 'No such file' in capsys.readouterr().err
