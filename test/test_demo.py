"""The demo end to end on a short sequence: data, export, three node processes over DDS, report."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from ros_harness import REPO

pytestmark = [pytest.mark.dds, pytest.mark.slow]

REQUIRED = ['rmse_student', 'rmse_tof', 'rmse_fused', 'coverage_student', 'coverage_tof', 'coverage_fused',
            'absrel_student', 'absrel_tof', 'absrel_fused', 'delta1_student', 'delta1_tof', 'delta1_fused',
            'miou', 'frames_in', 'frames_out', 'dropped', 'fps', 'latency_ms_p50', 'latency_ms_p99']


#: Frames of the held-out drive the demo tests replay: past the box's removal at 2 s and a second more.
FRAMES = 48
#: The issue 13 targets the pipeline does not meet yet (see test_demo_meets_the_costmap_targets).
COSTMAP_TARGETS = ('costmap: obstacle recall >= 95 % within the marking range',
                   'costmap: no floor cells marked')


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """One demo run on the first FRAMES frames of the held-out drive: (result, output folder, metrics)."""
    tmp = tmp_path_factory.mktemp('demo')
    out = tmp / 'demo_output'
    result = subprocess.run(
        [sys.executable, '-m', 'rc_offline.demo', '--frames', str(FRAMES), '--calib-frames', '6',
         '--save-outputs',
         '--output', str(out), '--cache', str(tmp / 'cache')],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    metrics_file = out / 'metrics.json'
    assert metrics_file.is_file(), f'demo wrote no metrics:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}'
    return result, out, json.loads(metrics_file.read_text())


def test_demo_runs_end_to_end_and_fusion_does_what_the_seed_claims(demo_run):
    result, out, metrics = demo_run
    failed = [name for name, ok in metrics['checks'].items() if not ok]
    # Exit code 0 exactly when every check passed; the costmap targets are judged below, the rest here.
    assert result.returncode == (1 if failed else 0), \
        f'demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}'
    assert set(failed) <= set(COSTMAP_TARGETS), f'checks failed: {failed}'
    missing = [k for k in REQUIRED if metrics.get(k) is None]
    assert not missing, f'metrics.json lacks values for {missing}'
    assert metrics['frames_in'] == FRAMES and 0 < metrics['frames_out'] <= FRAMES
    assert metrics['frames_out'] + metrics['dropped'] == metrics['frames_in']
    # The seed's claim, on the frames that went through: fused covers at least what each source covers,
    # beats the student alone, and equals the ToF wherever the ToF is valid and confident.
    assert metrics['coverage_fused'] >= max(metrics['coverage_student'], metrics['coverage_tof'])
    assert metrics['rmse_fused'] < metrics['rmse_student']
    assert metrics['tof_pixels_replaced'] == 0 and metrics['tof_valid_pixels'] > 0
    assert metrics['fused_zero_pixels'] == 0
    report = (out / 'report.md').read_text()
    assert 'PASS' in report
    assert all(f'| {name} | FAIL |' in report for name in failed)
    panels = sorted(p.name for p in out.glob('panel_*.png'))
    assert len(panels) == 3 and all(f'({name})' in report for name in panels)
    assert {p.name for p in (out / 'logs').iterdir()} == {
        'student_trt_node.log', 'depth_fusion_node.log', 'pointcloud_xyz_node.log'}


def test_demo_figures_match_an_independent_rescoring_from_ground_truth(demo_run, tmp_path):
    """Recompute what the demo reports from the files: the split's ground truth, ToF and confidence, and what
    the pipeline published (--save-outputs), with plain numpy here, not the demo's or the fusion's code."""
    from PIL import Image as PILImage

    _, out, metrics = demo_run
    split = Path(metrics['input_folder'])
    camera = yaml.safe_load((split / 'camera.yaml').read_text())
    params = yaml.safe_load(Path(REPO, 'config', 'perception.yaml').read_text())['/**/depth_fusion_node']
    p = params['ros__parameters']
    sq, count, replaced, valid_total, zeros = 0.0, 0, 0, 0, 0
    for saved in sorted((out / 'outputs').glob('*.npz')):
        got = np.load(saved)
        fused, source = got['fused'], got['source']
        h, w = fused.shape
        f = camera['width'] // w   # the demo's 640x480 camera on a 320x240 grid: a whole factor
        assert (camera['width'], camera['height']) == (w * f, h * f)
        pick = (slice(f // 2, None, f), slice(f // 2, None, f))   # grid pixel j <- camera pixel f*j + f//2
        gt = np.asarray(PILImage.open(split / 'depth' / f'{saved.stem}.png'), np.float64)[pick] / 1000.0
        mm = np.asarray(PILImage.open(split / 'tof' / f'{saved.stem}.png'))[pick]
        conf = np.asarray(PILImage.open(split / 'confidence' / f'{saved.stem}.png'))[pick]
        tof = mm.astype(np.float32) / np.float32(1000)
        in_range = (mm > 0) & (tof >= p['range_min']) & (tof <= p['range_max'])
        ok = in_range & (conf >= p['confidence_threshold'])
        valid_total += int(ok.sum())
        replaced += int(np.sum(fused[ok] != tof[ok]))
        assert np.all(source[ok] == 1), f'{saved.stem}: valid ToF pixels not marked as ToF in the source map'
        zeros += int(np.sum(fused == 0.0))
        both = np.isfinite(fused) & (gt > 0)
        sq += float(np.sum((fused[both] - gt[both]) ** 2))
        count += int(both.sum())
    assert count > 0 and valid_total > 0
    assert replaced == metrics['tof_pixels_replaced'] == 0
    assert valid_total == metrics['tof_valid_pixels'], (valid_total, metrics['tof_valid_pixels'])
    assert zeros == metrics['fused_zero_pixels']
    assert np.sqrt(sq / count) == pytest.approx(metrics['rmse_fused'], rel=1e-4), \
        f"fused RMSE recomputed {np.sqrt(sq / count):.5f} m, the demo says {metrics['rmse_fused']:.5f} m"


def test_demo_judges_the_pipeline_by_the_costmap(demo_run):
    _, out, metrics = demo_run
    # The shipped params file with perfect depth: no floor, and the removed box cleared within 1 s.
    assert metrics['costmap_frames'] == metrics['frames_out']
    assert metrics['costmap_truth_floor_cells'] == 0
    assert metrics['costmap_removed_cells'] > 0, 'the removed box was not in the truth costmap before it went'
    assert metrics['costmap_truth_clear_s'] is not None
    assert metrics['costmap_truth_clear_s'] <= 1.0
    # The published cloud clears it too (the ToF sees it; the floor behind it clears it).
    assert metrics['checks']['costmap: the removed obstacle cleared within 1 s'], metrics['costmap_clear_s']
    assert metrics['costmap_stale_after_1s'] == 0
    for name in ('exact_student', 'exact_tof'):
        assert 0.0 <= metrics[f'costmap_{name}_recall'] <= 1.0, f'no {name} attribution'
    report = (out / 'report.md').read_text()
    assert '## Costmap' in report and '![costmap](costmap.png)' in report
    assert (out / 'costmap.png').stat().st_size > 10_000


@pytest.mark.xfail(reason='issue 13 targets not met yet (doc/demo.md): the dark block, which only the '
                          'student sees, is drawn 10-30 % too far: partly missed, and marked on bare floor '
                          '(the report attributes recall and floor cells to it)',
                   strict=False)
def test_demo_meets_the_costmap_targets(demo_run):
    _, _, metrics = demo_run
    assert metrics['costmap_recall'] >= 0.95, f"obstacle recall {metrics['costmap_recall']:.3f}"
    assert metrics['costmap_floor_cells'] == 0, f"{metrics['costmap_floor_cells']} floor cells"


def test_panels_show_only_frames_that_reached_the_point_cloud(tmp_path):
    from rc_offline.demo import _write_panels
    stems = [f'{i:06d}' for i in range(8)]
    image = np.zeros((4, 4), np.float32)
    frame = {'rgb': np.zeros((4, 4, 3), np.uint8), 'depth': np.zeros((4, 4), np.uint16),
             'confidence': np.zeros((4, 4), np.uint8)}
    recorder = SimpleNamespace(
        lock=threading.Lock(),
        inputs={s: frame for s in ('000002', '000004', '000005', '000007')},   # the candidates
        outputs={s: {'student': image, 'fused': image} for s in stems},
        clouds={s: np.zeros((4, 4, 3), np.float32) for s in ('000001', '000004', '000007')})
    names = _write_panels(tmp_path, None, stems, set(recorder.inputs), recorder, 5)
    # Candidates 000002 and 000005 never reached the cloud: the panels are the two that did.
    assert names == ['panel_000004.png', 'panel_000007.png']


def test_demo_rejects_bad_arguments_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'rc_offline.demo', '--frames', '1',
                             '--output', str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'demo: --frames must be >= 2, --calib-frames >= 1 and --rate > 0']


def write_recording(bag, frames):
    """A rosbag2 as a robot would record it: rgb, ToF depth, confidence and camera info at 15 Hz."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from std_msgs.msg import Header

    from rc_offline import dataset
    from rc_offline.replay import DatasetSource
    from rc_perception import codecs

    source = DatasetSource(frames, rate=15.0)
    info = source.camera_info()
    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        types = {'/cam/color/image_raw': 'sensor_msgs/msg/Image', '/tof/depth': 'sensor_msgs/msg/Image',
                 '/tof/confidence': 'sensor_msgs/msg/Image',
                 '/cam/color/camera_info': 'sensor_msgs/msg/CameraInfo'}
        conns = {t: writer.add_connection(t, m, typestore=ts) for t, m in types.items()}
        for i, frame in enumerate(source.frames):
            ns = 1_000_000_000 + i * 66_666_667
            header = Header(frame_id='cam_optical')
            header.stamp.sec, header.stamp.nanosec = divmod(ns, 1_000_000_000)
            info.header = header
            rgb, tof = dataset.read_rgb(frame.paths['rgb']), dataset.read_image(frame.paths['tof'])
            confidence = dataset.read_image(frame.paths['confidence'])
            msgs = {'/cam/color/image_raw': codecs.array_to_image(rgb, 'rgb8', header),
                    '/tof/depth': codecs.array_to_image(tof, '16UC1', header),
                    '/tof/confidence': codecs.array_to_image(confidence, 'mono8', header),
                    '/cam/color/camera_info': info}
            for topic, msg in msgs.items():
                writer.write(conns[topic], ns, serialize_message(msg))
    return len(source)


def test_demo_replays_a_recorded_bag_without_ground_truth(tmp_path):
    from rc_offline.heldout import ensure_split
    count = write_recording(tmp_path / 'bag', ensure_split('heldout', 6, root=tmp_path / 'cache'))
    out = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, '-m', 'rc_offline.demo', '--replay', str(tmp_path / 'bag'), '--output', str(out),
         '--cache', str(tmp_path / 'cache'), '--calib-frames', '4', '--rgb-topic', '/cam/color/image_raw',
         '--depth-topic', '/tof/depth', '--confidence-topic', '/tof/confidence',
         '--camera-info-topic', '/cam/color/camera_info'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}'
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['ground_truth'] is False
    assert metrics['frames_in'] == count and 0 < metrics['frames_out'] <= count
    assert 0 < metrics['coverage_tof'] < metrics['coverage_fused'] <= 1.0
    assert metrics['rmse_fused'] is None  # no ground truth: no error figures, not invented ones
    assert metrics['fused_zero_pixels'] == 0 and metrics['source_map_mismatches'] == 0
    assert 'no ground truth' in (out / 'report.md').read_text()
