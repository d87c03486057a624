"""perception.launch.py run for real with launch.LaunchService: arguments checked before anything starts,
and the policy when a node exits (stop everything, non-zero when it failed; or respawn).

Needs the ROS 2 launch tools and the package in an ament index (colcon build; `make test` does both);
skipped where launch or launch_ros is not installed. Each case ends by itself (a failure, or an event
handler that stops the launch once what it waits for has happened): no sleeps.
"""

import importlib.util
import math
import os
import re
import signal
import threading
from pathlib import Path

import pytest
import yaml

# launch_ros first: the repository's own launch/ folder would pass for a `launch` namespace package.
pytest.importorskip('launch_ros', reason='launch_ros is not installed (ROS 2 launch tools; runs under colcon '
                    'test on a ROS 2 machine)')

import launch.logging
import rclpy
from launch import LaunchContext, LaunchDescription, LaunchService
from launch.actions import EmitEvent, IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnProcessIO, OnProcessStart
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.utilities import perform_substitutions
from rclpy.qos import DurabilityPolicy, QoSProfile

from rc_perception.launch_args import ARGUMENTS
from rc_perception.resources import share_file

pytestmark = [pytest.mark.dds, pytest.mark.slow]


def run_launch(arguments: dict, *handlers) -> int:
    """Run perception.launch.py with ``arguments`` (and extra event handlers) to its end; its exit code."""
    launch.logging.reset()
    service = LaunchService(noninteractive=True)
    pipeline = PythonLaunchDescriptionSource(str(share_file('launch', 'perception.launch.py')))
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(pipeline, launch_arguments=arguments.items()), *handlers]))
    return service.run()


def live_children() -> list[str]:
    """Processes of this test still running (launch starts the nodes as its direct children)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            state, ppid = stat.read_text().rsplit(')', 1)[1].split()[:2]
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(ppid) == os.getpid() and state != 'Z':
            found.append(stat.parent.name)
    return found


def bad_mode_file(tmp_path) -> str:
    path = tmp_path / 'bad_mode.yaml'
    path.write_text(yaml.safe_dump({'/**/depth_fusion_node': {'ros__parameters': {'mode': 'bogus'}}}))
    return str(path)


def test_a_bad_argument_stops_the_launch_before_any_process_starts(capfd):
    code = run_launch({'publish_source_map': 'maybe', 'fusion_mode': 'bogus'})
    out = ''.join(capfd.readouterr())
    assert code == 1, f'expected exit code 1, got {code}:\n{out}'
    errors = [line for line in out.splitlines() if 'ERROR' in line]
    assert len(errors) == 1 and "fusion_mode:='bogus'" in errors[0] and "publish_source_map:='maybe'" in \
        errors[0] and 'expected one of gated, affine, median, online_affine' in errors[0], \
        f'expected one error line naming both arguments and the allowed values, got:\n{out}'
    assert 'process started' not in out, f'a process started before the arguments were checked:\n{out}'
    assert live_children() == []


def test_a_node_that_fails_stops_the_whole_launch_with_a_non_zero_exit(tmp_path, capfd):
    code = run_launch({'params_file': bad_mode_file(tmp_path)})
    out = ''.join(capfd.readouterr())
    assert code == 1, f'expected exit code 1 when a node fails, got {code}:\n{out}'
    assert 'depth_fusion_node cannot start' in out, out
    assert re.search(r'depth_fusion_node-\d+ failed \(exit code 1\) while the pipeline was running', out), out
    assert re.search(r'pointcloud_xyz_node-\d+\]: process has finished cleanly', out), \
        f'expected the other node stopped cleanly, got:\n{out}'
    assert live_children() == [], f'processes left after the launch ended: {live_children()}'


def test_a_node_that_exits_cleanly_stops_the_launch_with_exit_0(capfd):
    """pointcloud_xyz_node stopped from outside (SIGINT to its pid) while the pipeline runs."""
    def stop_node(event):
        if b'back-projecting' in event.text:
            os.kill(event.pid, signal.SIGINT)

    code = run_launch({}, RegisterEventHandler(OnProcessIO(on_stderr=stop_node, on_stdout=stop_node)))
    out = ''.join(capfd.readouterr())
    assert code == 0, f'expected exit code 0, got {code}:\n{out}'
    assert re.search(r'pointcloud_xyz_node-\d+ exited while the pipeline was running', out), out
    assert re.search(r'depth_fusion_node-\d+\]: process has finished cleanly', out), out
    assert live_children() == []


def test_use_respawn_restarts_a_node_that_failed(tmp_path, capfd):
    starts = []

    def count(event, context):
        if 'depth_fusion_node' in event.action.process_details['name']:
            starts.append(event.pid)
        return [EmitEvent(event=Shutdown(reason='respawned'))] if len(starts) == 2 else None

    code = run_launch({'params_file': bad_mode_file(tmp_path), 'use_respawn': 'true', 'respawn_delay': '0.2'},
                      RegisterEventHandler(OnProcessStart(on_start=count)))
    out = ''.join(capfd.readouterr())
    assert len(starts) == 2 and starts[0] != starts[1], f'expected depth_fusion_node started twice:\n{out}'
    assert code == 0, f'expected exit code 0 (stopped by the test), got {code}:\n{out}'
    assert live_children() == []


def test_without_a_model_the_launch_says_the_student_is_off(capfd):
    def stop(event):
        return [EmitEvent(event=Shutdown(reason='seen'))] if b'back-projecting' in event.text else None

    code = run_launch({}, RegisterEventHandler(OnProcessIO(on_stderr=stop, on_stdout=stop)))
    out = ''.join(capfd.readouterr())
    assert code == 0, out
    assert 'rc_perception: student off: no model_path' in out, out
    assert 'student_trt_node-' not in out, f'the student must not start without a model:\n{out}'


def launch_actions(arguments: dict) -> list:
    """What perception.launch.py returns for these arguments: actions, none executed (nothing starts)."""
    path = share_file('launch', 'perception.launch.py')
    spec = importlib.util.spec_from_file_location('perception_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = LaunchContext()
    context.launch_configurations.update({**{a.name: a.default for a in ARGUMENTS}, **arguments})
    return module._start(context)


def test_the_camera_mount_nodes_get_the_mount_then_the_optical_rotation():
    pitch = math.radians(10)
    actions = launch_actions({'publish_camera_tf': 'true', 'camera_pitch': repr(pitch),
                              'stages': 'pointcloud', 'base_frame': 'base_footprint'})
    context = LaunchContext()
    commands = []
    for action in actions:
        if getattr(action, 'node_package', None) == 'tf2_ros':
            args = []
            for part in action.cmd[1:]:  # the arguments, up to the ROS arguments launch_ros fills in later
                text = perform_substitutions(context, part)
                if text == '--ros-args':
                    break
                args.append(text)
            commands.append((action.node_executable, args))
    assert [exe for exe, _ in commands] == ['static_transform_publisher'] * 2, commands
    assert [args for _, args in commands] == [
        ['--x', '0.1', '--y', '0.0', '--z', '0.2', '--roll', '0.0', '--pitch', repr(pitch), '--yaw', '0.0',
         '--frame-id', 'base_footprint', '--child-frame-id', 'camera_link'],
        ['--x', '0.0', '--y', '0.0', '--z', '0.0', '--roll', repr(-math.pi / 2), '--pitch', '0.0',
         '--yaw', repr(-math.pi / 2), '--frame-id', 'camera_link',
         '--child-frame-id', 'camera_color_optical_frame']], commands


def test_the_camera_mount_is_published_on_tf_static():
    """Runs static_transform_publisher itself: needs tf2_ros (and tf2_msgs) installed."""
    pytest.importorskip('tf2_msgs', reason='tf2_ros / tf2_msgs are not installed (ROS 2 tf2)')
    from tf2_msgs.msg import TFMessage

    got = {}
    done = threading.Event()
    rclpy.init()
    node = rclpy.create_node('tf_static_probe')

    def on_tf(msg):
        for t in msg.transforms:
            got[t.child_frame_id] = t
        if {'camera_link', 'camera_color_optical_frame'} <= set(got):
            done.set()

    node.create_subscription(TFMessage, '/tf_static', on_tf,
                             QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    spinner = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spinner.start()
    service = LaunchService(noninteractive=True)
    pipeline = PythonLaunchDescriptionSource(str(share_file('launch', 'perception.launch.py')))
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        pipeline, launch_arguments={'publish_camera_tf': 'true', 'stages': 'pointcloud',
                                    'camera_pitch': '0.2'}.items())]))
    threading.Thread(target=lambda: (done.wait(60.0), service.shutdown()), daemon=True).start()
    try:
        assert service.run() == 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    assert done.is_set(), f'expected both camera transforms on /tf_static, got {sorted(got)}'
    body, optical = got['camera_link'].transform, got['camera_color_optical_frame'].transform
    assert (body.translation.x, body.translation.y, body.translation.z) == pytest.approx((0.1, 0.0, 0.2))
    # A pure pitch p about y: q = (0, sin(p/2), 0, cos(p/2)).
    assert (body.rotation.x, body.rotation.y, body.rotation.z, body.rotation.w) == pytest.approx(
        (0.0, math.sin(0.1), 0.0, math.cos(0.1)), abs=1e-9)
    # The optical rotation (roll -pi/2, yaw -pi/2), as camera drivers publish it: (-0.5, 0.5, -0.5, 0.5).
    assert (optical.rotation.x, optical.rotation.y, optical.rotation.z, optical.rotation.w) == pytest.approx(
        (-0.5, 0.5, -0.5, 0.5), abs=1e-9)
