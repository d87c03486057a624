"""Ctrl-C (SIGINT) and SIGTERM stop the node executables cleanly while frames flow: exit code 0, no
ERROR, FATAL or traceback in their output, in both layouts (one process per node, and perception_composed).

The test process plays the camera (RGB, ToF depth, confidence and camera info at 15 Hz, one stamp per
frame) and Nav2 (it waits for clouds), so every node is busy, the student's worker mid-inference, when the
signal comes, as when ros2 launch stops them; a second signal follows at once while the process is still
running (a terminal's Ctrl-C and ros2 launch each send one). A round is repeated RC_PERCEPTION_STOP_ROUNDS
times (default 3; doc/launch.md gives the figure for 20).
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from rc_perception import codecs

from process_harness import Executable
from ros_harness import REPO
from student_models import student_files

pytestmark = [pytest.mark.dds, pytest.mark.slow]

ROUNDS = int(os.environ.get('RC_PERCEPTION_STOP_ROUNDS', '3'))
RATE_HZ = 15.0
HEIGHT, WIDTH = 240, 320
LAYOUTS = {
    'separate': ('student_trt_node', 'depth_fusion_node', 'pointcloud_xyz_node'),
    'composed': ('perception_composed',),
}
BAD_WORDS = ('ERROR', 'FATAL', 'Traceback')


class Camera:
    """Publishes a fixed RGB-D frame with a fresh stamp at RATE_HZ from a thread, until stopped."""

    def __init__(self, graph) -> None:
        self._graph = graph
        self._pubs = {topic: graph.publisher(kind, topic) for topic, kind in (
            ('camera/rgb', Image), ('camera/depth', Image), ('camera/depth/confidence', Image),
            ('camera/camera_info', CameraInfo))}
        rng = np.random.default_rng(0)
        self._rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        self._depth = rng.integers(300, 4000, (HEIGHT, WIDTH), dtype=np.uint16)  # millimetres
        self._confidence = np.full((HEIGHT, WIDTH), 200, np.uint8)
        self._info = CameraInfo(width=WIDTH, height=HEIGHT, k=[260.0, 0.0, 159.5, 0.0, 260.0, 119.5, 0, 0, 1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0 / RATE_HZ):
            header = Header(frame_id='camera_color_optical_frame')
            header.stamp = self._graph.node.get_clock().now().to_msg()
            self._info.header = header
            self._pubs['camera/camera_info'].publish(self._info)
            self._pubs['camera/depth'].publish(codecs.array_to_image(self._depth, '16UC1', header))
            self._pubs['camera/depth/confidence'].publish(
                codecs.array_to_image(self._confidence, 'mono8', header))
            self._pubs['camera/rgb'].publish(codecs.array_to_image(self._rgb, 'rgb8', header))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


@pytest.fixture
def params_file(tmp_path) -> str:
    """The shipped params file plus the student's model, as a user's file gives it."""
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump({'/**/student_trt_node': {'ros__parameters': {
        'model_path': str(student_files().onnx)}}}))
    return str(path)


def start(layout: str, params_file: str) -> list[Executable]:
    args = ['--ros-args', '--params-file', f'{REPO}/config/perception.yaml', '--params-file', params_file]
    return [Executable(name, args) for name in LAYOUTS[layout]]


def stop_all(procs: list[Executable], signum: int) -> list[str]:
    """Signal every process at once (as ros2 launch does), again to each one still running, then the
    problems: exit code, bad lines."""
    for proc in procs:
        proc.proc.send_signal(signum)
    problems = []
    for proc in procs:
        code, out = proc.stop(signum)
        bad = [line for line in out.splitlines() if any(word in line for word in BAD_WORDS)]
        if code != 0 or bad:
            problems.append(f'{proc.name}: exit {code} (expected 0), bad lines {bad}\n{out}')
    return problems


def streaming_round(graph, layout: str, params_file: str, signum: int) -> list[str]:
    clouds = graph.collect(PointCloud2, 'perception/fused_depth_points')
    procs = start(layout, params_file)
    try:
        clouds.wait_for(3, timeout=120.0)  # every node has worked on frames
    except AssertionError as exc:
        problems = stop_all(procs, signal.SIGINT)
        raise AssertionError(f'{layout}: no clouds ({exc}); outputs:\n' + '\n'.join(
            problems or [p.output for p in procs])) from None
    return stop_all(procs, signum)


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_sigint_while_streaming_exits_0_without_errors_round_after_round(ros_graph, params_file, layout):
    camera = Camera(ros_graph)
    try:
        failures = {i: problems for i in range(ROUNDS)
                    if (problems := streaming_round(ros_graph, layout, params_file, signal.SIGINT))}
    finally:
        camera.close()
    assert not failures, f'{len(failures)} of {ROUNDS} stops were not clean:\n' + '\n'.join(
        f'round {i}: {p}' for i, problems in failures.items() for p in problems)


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_sigterm_while_streaming_exits_0_without_errors(ros_graph, params_file, layout):
    camera = Camera(ros_graph)
    try:
        problems = streaming_round(ros_graph, layout, params_file, signal.SIGTERM)
    finally:
        camera.close()
    assert not problems, '\n'.join(problems)


def test_a_signal_during_start_up_is_a_clean_stop(params_file):
    """SIGINT while the student still warms up: it finishes building, then stops with exit 0."""
    proc = Executable('student_trt_node', ['--ros-args', '--params-file', params_file,
                                           '-p', 'warmup_iterations:=50'])
    proc.wait_for_output('backend onnxruntime', timeout=120.0)  # the model is open, warm-up begins
    problems = stop_all([proc], signal.SIGINT)
    assert not problems, '\n'.join(problems)


def test_a_start_up_failure_exits_1_with_one_line():
    proc = Executable('depth_fusion_node', ['--ros-args', '-p', 'mode:=bogus'])
    proc.proc.wait(timeout=60)
    code, out = proc.stop()
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1, f'expected exit 1, got {code}:\n{out}'
    assert len(lines) == 1 and 'depth_fusion_node cannot start' in lines[0] and "got 'bogus'" in lines[0], \
        f'expected one line naming the node and the value, got:\n{out}'
