"""pointcloud_xyz_node alone: /perception/fused_depth + camera info -> /perception/fused_depth_points.

    ros2 launch rc_perception pointcloud.launch.py [ARGUMENT:=VALUE ...]

perception.launch.py with stages:=pointcloud: the same arguments, checks and exit policy.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description() -> LaunchDescription:
    pipeline = str(Path(__file__).with_name('perception.launch.py'))
    return LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(pipeline),
                                                       launch_arguments={'stages': 'pointcloud'}.items())])
