"""launch_testing: pointcloud.launch.py runs the point-cloud stage alone.

A stub upstream (test/stub_depth_publisher.py: depth + camera info at 15 Hz) feeds the stage; the cloud is
checked with WaitForTopics, then the processes must exit cleanly. Runs under `colcon test` where
launch_testing is installed; skipped elsewhere. The cloud publisher is switched to reliable through a
params file (WaitForTopics subscribes reliable).
"""

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
from launch.actions import ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_testing_ros import WaitForTopics
from sensor_msgs.msg import PointCloud2

from rc_perception.resources import share_file

CLOUD = '/perception/fused_depth_points'


@pytest.mark.launch_test
def generate_test_description():
    params = {'/**/pointcloud_xyz_node': {'ros__parameters': {
        'skip': 2, 'qos_overrides': {CLOUD: {'publisher': {'reliability': 'reliable'}}}}}}
    params_file = Path(tempfile.mkdtemp(prefix='rc_perception_launch_test_')) / 'pointcloud.yaml'
    params_file.write_text(yaml.safe_dump(params))
    stage = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share_file('launch', 'pointcloud.launch.py'))),
        launch_arguments={'params_file': str(params_file)}.items())
    stub = ExecuteProcess(cmd=[sys.executable, str(Path(__file__).with_name('stub_depth_publisher.py')),
                               '300', '15', '320', '240'],
                          additional_env={'PYTHONUNBUFFERED': '1'}, output='screen')
    return launch.LaunchDescription([stage, stub, launch_testing.actions.ReadyToTest()])


class TestStageAlone(unittest.TestCase):

    def test_decimated_cloud_arrives(self):
        with WaitForTopics([(CLOUD, PointCloud2)], timeout=60.0) as wait:
            cloud = wait.received_messages(CLOUD)[0]
        self.assertEqual((cloud.height, cloud.width), (120, 160))  # skip: 2 from the params file
        self.assertEqual(cloud.header.frame_id, 'camera_optical')


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
