"""pointcloud_xyz_node alone: /perception/fused_depth + camera info -> /perception/fused_depth_points.

    ros2 launch rc_perception pointcloud.launch.py camera_info_topic:=/camera/color/camera_info
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from rc_perception.launch_args import to_bool


def _node(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    return [Node(
        package='rc_perception', executable='pointcloud_xyz_node', name='pointcloud_xyz_node',
        output='screen',
        parameters=[arg('params_file'), {'use_sim_time': to_bool(arg('use_sim_time'))}],
        remappings=[('camera/camera_info', arg('camera_info_topic'))],
        ros_arguments=['--log-level', arg('log_level')])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('rc_perception')
    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'perception.yaml']),
                              description='Parameters file (YAML)'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='Use /clock'),
        DeclareLaunchArgument('log_level', default_value='info', description='Log level'),
        DeclareLaunchArgument('camera_info_topic', default_value='camera/camera_info',
                              description='CameraInfo of the camera the depth image is registered to'),
        OpaqueFunction(function=_node),
    ])
