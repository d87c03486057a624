"""depth_fusion_node alone: /student/depth + ToF depth (+ confidence) -> /perception/fused_depth.

    ros2 launch rc_perception fusion.launch.py [ARGUMENT:=VALUE ...]

perception.launch.py with stages:=fusion: the same arguments, checks and exit policy.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description() -> LaunchDescription:
    pipeline = str(Path(__file__).with_name('perception.launch.py'))
    return LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(pipeline),
                                                       launch_arguments={'stages': 'fusion'}.items())])
