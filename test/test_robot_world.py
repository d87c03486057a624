"""The shifted synthetic robot world, its recording through the real replay and record path (replay_node over
DDS into a rosbag2), and the copy of a recording's held-out part."""

import csv
import math

import numpy as np
import pytest

from rc_offline import dataset, fill_eval, robot_world, scenes
from rc_offline.recording import load_recording
from student_trt.metadata import ModelSpec


@pytest.fixture(scope='module')
def tour(tmp_path_factory):
    """2 rooms x 3 frames at 5 Hz, written by 2 processes."""
    out = tmp_path_factory.mktemp('robot_world') / 'tour'
    summary = robot_world.write_tour(out, seed=3, rooms=2, frames_per_room=3, rate=5.0, workers=2,
                                     progress=lambda _: None)
    assert summary['frames'] == 6
    return out


def test_the_camera_and_room_sit_outside_the_training_distribution():
    rng = np.random.default_rng(0)
    train_f = [scenes.random_intrinsics(rng).fx for _ in range(200)]
    assert not min(train_f) <= robot_world.CAMERA.fx <= max(train_f), \
        f'robot lens fx {robot_world.CAMERA.fx} inside the training range {min(train_f):.0f}-' \
        f'{max(train_f):.0f}'
    scene = robot_world.robot_scene(np.random.default_rng([3, 0, robot_world._SALT]))
    assert scene.ambient < 0.35, f'ambient {scene.ambient}: training rooms have 0.35-0.55'
    tables = [b for b in scene.boxes if b.z0 > 0.5]
    legs = [c for c in scene.cylinders if c.radius <= 0.03]
    assert len(legs) == 4 * len(tables), f'{len(tables)} table tops with {len(legs)} legs'


def test_a_tour_is_written_in_time_order_with_the_robots_camera(tour):
    frames = dataset.frame_stems(tour, ('rgb', 'depth', 'labels', 'tof', 'confidence'))
    assert [f.stem for f in frames] == [f'{i:06d}' for i in range(6)]
    camera = dataset.load_camera(tour)
    assert (camera['fx'], camera['cx'], camera['rooms'], camera['frames_per_room']) == (372.0, 329.5, 2, 3)
    with open(tour / 'poses.csv', newline='') as fh:
        rows = list(csv.DictReader(fh))
    assert [r['stem'] for r in rows] == [f.stem for f in frames]
    assert [float(r['stamp']) for r in rows] == pytest.approx([i / 5.0 for i in range(6)])
    heights = [float(r['z']) for r in rows]
    assert max(abs(z - robot_world.CAMERA_HEIGHT) for z in heights) < 0.01, f'camera heights {heights}'
    tof = dataset.read_depth(frames[0].paths['tof'])
    assert 0.3 < np.isfinite(tof).mean() < 0.98, f'ToF valid on {np.isfinite(tof).mean():.0%} of pixels'


def test_parallel_writing_gives_the_frames_of_the_sequential_tour(tour):
    first_of_room_2 = next(f for i, f in enumerate(robot_world.tour_frames(3, 2, 3, 5.0)) if i == 3)
    np.testing.assert_array_equal(dataset.read_rgb(tour / 'rgb' / '000003.png'), first_of_room_2.rgb)
    np.testing.assert_array_equal(dataset.read_image(tour / 'tof' / '000003.png'), first_of_room_2.tof_mm)
    pitch = math.degrees(first_of_room_2.pose.pitch)   # the mount's tilt + the car's 1.5 +- 1.8 deg bumps
    assert robot_world.CAMERA_TILT_DEG - 0.5 <= pitch <= robot_world.CAMERA_TILT_DEG + 3.5, pitch


def test_the_held_out_part_is_copied_with_its_ground_truth_and_poses(tour, tmp_path):
    n = fill_eval.write_heldout_folder(tour, tmp_path / 'held', holdout=0.34)
    assert n == 2, f'the last 34 % of frames 0..5 (t >= 3.3) are 4 and 5, got {n} frames'
    for kind in ('rgb', 'depth', 'labels', 'tof', 'confidence'):
        assert sorted(p.name for p in (tmp_path / 'held' / kind).iterdir()) == ['000004.png', '000005.png']
    with open(tmp_path / 'held' / 'poses.csv', newline='') as fh:
        assert [r['stem'] for r in csv.DictReader(fh)] == ['000004', '000005']
    assert dataset.load_camera(tmp_path / 'held')['fx'] == 372.0


# ------------------------------------------------------------------------------------- record via DDS

@pytest.mark.dds
def test_replay_node_recorded_to_a_bag_gives_the_folders_training_data(tmp_path):
    pytest.importorskip('rosbags')
    from test_replay import write_dataset  # frame i carries ToF (1000 + i) mm: told apart by content

    from rc_offline import record

    folder = write_dataset(tmp_path / 'data', frames=40)
    counts = record.record(tmp_path / 'bag', replay=str(folder), rate=10.0, idle_timeout=2.0,
                           log=lambda _: None)
    # replay_node waits for the recorder's subscriptions: the first frames are not lost to discovery
    assert counts['/camera/rgb'] >= 38, f'expected (nearly) all 40 frames recorded, got {counts}'
    spec = ModelSpec(height=16, width=16)
    bag, original = load_recording(tmp_path / 'bag', spec), load_recording(folder, spec)
    assert len(bag) == counts['/camera/rgb'] and not bag.notes, (len(bag), bag.notes)
    index = np.round(bag.tof[:, 8, 8].astype(np.float64) * 1000).astype(int) - 1000   # which frame each is
    assert np.all(np.diff(index) > 0), f'frames out of order or repeated: {index}'
    assert index[0] == 0, f'the first frame recorded is frame {index[0]}'
    np.testing.assert_array_equal(bag.inputs, original.inputs[index])
    np.testing.assert_array_equal(bag.tof, original.tof[index])


def test_record_refuses_an_existing_bag_or_a_dot_bag_name(tmp_path, capsys):
    from rc_offline import record
    (tmp_path / 'old').mkdir()
    for out, why in ((tmp_path / 'old', 'exists'), (tmp_path / 'new.bag', 'ROS 1')):
        assert record.main(['--out', str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f'{record.PROG}: error: ') and why in err[0], err
