"""perception.launch.py run for real with launch.LaunchService: arguments checked before anything starts,
and the policy when a node exits (stop everything, non-zero when it failed; or respawn).

Needs the ROS 2 launch tools and the package in an ament index (colcon build; `make test` does both);
skipped where launch or launch_ros is not installed. Each case ends by itself (a failure, or an event
handler that stops the launch once what it waits for has happened): no sleeps.
"""

import os
import re
import signal
from pathlib import Path

import pytest
import yaml

# launch_ros first: the repository's own launch/ folder would pass for a `launch` namespace package.
pytest.importorskip('launch_ros', reason='launch_ros is not installed (ROS 2 launch tools; runs under colcon '
                    'test on a ROS 2 machine)')

import launch.logging
from launch import LaunchDescription, LaunchService
from launch.actions import EmitEvent, IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnProcessIO, OnProcessStart
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource

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
