"""student_trt_node alone: camera RGB -> /student/depth and /student/segmentation.

    ros2 launch rc_perception student.launch.py [ARGUMENT:=VALUE ...]

perception.launch.py with stages:=student: the same arguments, checks and exit policy.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def generate_launch_description() -> LaunchDescription:
    pipeline = str(Path(__file__).with_name('perception.launch.py'))
    return LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(pipeline),
                                                       launch_arguments={'stages': 'student'}.items())])
