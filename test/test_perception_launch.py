"""launch_testing: perception.launch.py brings the pipeline up and Nav2's cloud arrives, in each layout.

A stub camera (replay_node looping a few synthetic frames from a folder this test writes) feeds
perception.launch.py, which starts the nodes with the installed config; WaitForTopics then waits for
/perception/fused_depth_points, and one cloud's fields, frame and size are checked. Three runs: one
process per node, all in one process (composed:=true), and without a model (the student off: the ToF
alone reaches the cloud, on the ToF's 640x480 grid). After shutdown every process must have exited
cleanly.

Runs under `colcon test` where launch_testing is installed (a ROS 2 machine); skipped elsewhere.
WaitForTopics subscribes reliable, so the cloud publisher is switched to reliable here through the params
file's qos_overrides (the documented way to do it; the default stays best effort for Nav2).
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import pytest

pytest.importorskip('launch_testing', reason='launch_testing is not installed (ROS 2 launch tools; runs '
                    'under colcon test on a ROS 2 machine)')
pytest.importorskip('launch_ros', reason='launch_ros is not installed (ROS 2 launch tools)')

import launch
import launch_testing.actions
import launch_testing.asserts
import yaml
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.actions import Node
from launch_testing_ros import WaitForTopics
from sensor_msgs.msg import PointCloud2, PointField

from rc_offline.heldout import ensure_split
from rc_perception.resources import share_file

CLOUD = '/perception/fused_depth_points'


def _export(workdir: Path) -> Path:
    """The demo model exported to ONNX, as a user does."""
    export = subprocess.run(
        [sys.executable, '-m', 'rc_offline.export',
         '--checkpoint', str(share_file('models', 'student_demo.pt')),
         '--output-dir', str(workdir / 'exported'), '--precision', 'fp32', '--skip-trt'],
        capture_output=True, text=True, timeout=300)
    if export.returncode != 0:
        raise RuntimeError(f'export_trt failed:\n{export.stdout}\n{export.stderr}')
    return workdir / 'exported' / 'student_demo_fp32.onnx'


def _params_file(workdir: Path) -> Path:
    """The installed params file, with the cloud published reliable (WaitForTopics subscribes reliable)."""
    params = yaml.safe_load(share_file('config', 'perception.yaml').read_text())
    params['/**/pointcloud_xyz_node']['ros__parameters']['qos_overrides'] = {
        CLOUD: {'publisher': {'reliability': 'reliable'}}}
    params_file = workdir / 'perception_test.yaml'
    params_file.write_text(yaml.safe_dump(params))
    return params_file


@pytest.mark.launch_test
@launch_testing.parametrize('composed, student', [('false', True), ('true', True), ('false', False)])
def generate_test_description(composed, student):
    workdir = Path(tempfile.mkdtemp(prefix='rc_perception_launch_test_'))
    data = ensure_split('heldout', 8, root=workdir)
    arguments = {'params_file': str(_params_file(workdir)), 'composed': composed}
    if student:
        arguments.update(model_path=str(_export(workdir)), backend='onnxruntime')
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share_file('launch', 'perception.launch.py'))),
        launch_arguments=arguments.items())
    camera = Node(package='rc_perception', executable='replay_node', name='stub_camera',
                  parameters=[{'source': str(data), 'rate': 10.0, 'loop': True}],
                  additional_env={'PYTHONUNBUFFERED': '1'}, output='screen')
    return launch.LaunchDescription([perception, camera, launch_testing.actions.ReadyToTest()]), {
        'camera': camera}


class TestPipelineUp(unittest.TestCase):

    def test_cloud_arrives_with_xyz_fields_in_the_camera_frame(self, student):
        with WaitForTopics([(CLOUD, PointCloud2)], timeout=90.0) as wait:
            cloud = wait.received_messages(CLOUD)[0]
        fields = [(f.name, f.offset, f.datatype) for f in cloud.fields]
        self.assertEqual(fields, [('x', 0, PointField.FLOAT32), ('y', 4, PointField.FLOAT32),
                                  ('z', 8, PointField.FLOAT32)])
        self.assertEqual(cloud.header.frame_id, 'camera_color_optical_frame')
        # Organized, on the student's grid; without the student on the ToF's.
        self.assertEqual((cloud.height, cloud.width), (240, 320) if student else (480, 640))
        self.assertFalse(cloud.is_dense)

    def test_nodes_start_and_the_student_only_with_a_model(self, proc_output, proc_info, student):
        proc_output.assertWaitFor('back-projecting', timeout=60.0)
        if not student:  # the launch leaves it out (and says so: test_launch_policy)
            names = proc_info.process_names()
            self.assertFalse([name for name in names if 'student_trt_node' in name], names)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
