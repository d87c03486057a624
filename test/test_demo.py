"""The demo end to end on a short sequence: data, export, three node processes over DDS, report."""

import json
import subprocess
import sys

import pytest

from ros_harness import REPO

pytestmark = [pytest.mark.dds, pytest.mark.slow]

REQUIRED = ['rmse_student', 'rmse_tof', 'rmse_fused', 'coverage_student', 'coverage_tof', 'coverage_fused',
            'absrel_student', 'absrel_tof', 'absrel_fused', 'delta1_student', 'delta1_tof', 'delta1_fused',
            'miou', 'frames_in', 'frames_out', 'dropped', 'fps', 'latency_ms_p50', 'latency_ms_p99']


def test_demo_runs_end_to_end_and_fusion_does_what_the_seed_claims(tmp_path):
    out = tmp_path / 'demo_output'
    result = subprocess.run(
        [sys.executable, '-m', 'rc_offline.demo', '--frames', '12', '--calib-frames', '6',
         '--output', str(out), '--cache', str(tmp_path / 'cache')],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}'
    metrics = json.loads((out / 'metrics.json').read_text())
    missing = [k for k in REQUIRED if metrics.get(k) is None]
    assert not missing, f'metrics.json lacks values for {missing}'
    assert metrics['frames_in'] == 12 and 0 < metrics['frames_out'] <= 12
    assert metrics['frames_out'] + metrics['dropped'] == metrics['frames_in']
    # The seed's claim, on the frames that went through: fused covers at least what each source covers,
    # beats the student alone, and equals the ToF wherever the ToF is valid and confident.
    assert metrics['coverage_fused'] >= max(metrics['coverage_student'], metrics['coverage_tof'])
    assert metrics['rmse_fused'] < metrics['rmse_student']
    assert metrics['tof_pixels_replaced'] == 0 and metrics['tof_valid_pixels'] > 0
    assert metrics['fused_zero_pixels'] == 0
    assert all(metrics['checks'].values()), metrics['checks']
    report = (out / 'report.md').read_text()
    assert 'PASS' in report and 'FAIL' not in report
    panels = sorted(p.name for p in out.glob('panel_*.png'))
    assert len(panels) == 3 and all(f'({name})' in report for name in panels)
    assert {p.name for p in (out / 'logs').iterdir()} == {
        'student_trt_node.log', 'depth_fusion_node.log', 'pointcloud_xyz_node.log'}


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
