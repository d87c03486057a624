"""depth_fusion_node alone: /student/depth + ToF depth (+ confidence) -> /perception/fused_depth.

    ros2 launch rc_perception fusion.launch.py fusion_mode:=affine
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from rc_perception.launch_args import parameter_overrides, to_bool


def _node(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = parameter_overrides(
        {'mode': arg('fusion_mode'), 'publish_source_map': arg('publish_source_map')},
        {'mode': str, 'publish_source_map': bool})
    return [Node(
        package='rc_perception', executable='depth_fusion_node', name='depth_fusion_node', output='screen',
        parameters=[arg('params_file'), overrides, {'use_sim_time': to_bool(arg('use_sim_time'))}],
        remappings=[('camera/depth', arg('depth_topic')),
                    ('camera/depth/confidence', arg('confidence_topic'))],
        ros_arguments=['--log-level', arg('log_level')])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('rc_perception')
    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'perception.yaml']),
                              description='Parameters file (YAML)'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='Use /clock'),
        DeclareLaunchArgument('log_level', default_value='info', description='Log level'),
        DeclareLaunchArgument('fusion_mode', default_value='',
                              description='gated | affine | median | online_affine; empty: params file'),
        DeclareLaunchArgument('publish_source_map', default_value='',
                              description='true | false; empty: params file'),
        DeclareLaunchArgument('depth_topic', default_value='camera/depth',
                              description='ToF depth image topic (16UC1 mm or 32FC1 m)'),
        DeclareLaunchArgument('confidence_topic', default_value='camera/depth/confidence',
                              description='ToF confidence image topic'),
        OpaqueFunction(function=_node),
    ])
