"""rc_perception on the robot: student network, ToF fusion and point cloud, for Nav2's local costmap.

    ros2 launch rc_perception perception.launch.py model_path:=/path/student_fp16.engine

Launch arguments left empty keep the value in the params file (config/perception.yaml by default).
Each stage can also be started alone: student.launch.py, fusion.launch.py, pointcloud.launch.py.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    GroupAction,
    IncludeLaunchDescription,
    LogInfo,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare

from rc_perception.fastdds import profile_variable

PACKAGE = 'rc_perception'


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    namespace = LaunchConfiguration('namespace')
    large_messages = LaunchConfiguration('fastdds_large_messages')
    profile = PathJoinSubstitution([share, 'config', 'fastdds_large_messages.xml'])

    def include(stage: str, names: list[str]) -> IncludeLaunchDescription:
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', f'{stage}.launch.py'])),
            launch_arguments={name: LaunchConfiguration(name) for name in names}.items())

    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace for all nodes and their relative topics'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'perception.yaml']),
                              description='Parameters of all three nodes (YAML)'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock (bag replay, simulation)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Log level of the nodes (debug, info, warn, error)'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='Student model (.engine/.plan for TensorRT, .onnx for ONNX '
                                          'Runtime); empty: the params file value'),
        DeclareLaunchArgument('backend', default_value='',
                              description='auto | tensorrt | onnxruntime; empty: the params file value'),
        DeclareLaunchArgument('fusion_mode', default_value='',
                              description='gated | affine | median | online_affine; '
                                          'empty: the params file value'),
        DeclareLaunchArgument('publish_source_map', default_value='',
                              description='true | false: publish which source each fused pixel came from; '
                                          'empty: the params file value'),
        DeclareLaunchArgument('rgb_topic', default_value='camera/rgb',
                              description='RGB image topic of the camera (student input)'),
        DeclareLaunchArgument('depth_topic', default_value='camera/depth',
                              description='ToF depth image topic, registered to the RGB optical frame'),
        DeclareLaunchArgument('confidence_topic', default_value='camera/depth/confidence',
                              description='ToF confidence image topic (optional stream)'),
        DeclareLaunchArgument('camera_info_topic', default_value='camera/camera_info',
                              description='CameraInfo of the RGB camera (intrinsics for the point cloud)'),
        DeclareLaunchArgument('fastdds_large_messages', default_value='true',
                              description='Give the nodes the Fast DDS profile for large best-effort '
                                          'messages (needed for clouds > 512 KB between processes)'),
        DeclareLaunchArgument('publish_camera_tf', default_value='false',
                              description='Publish a static transform base_frame -> camera_frame'),
        DeclareLaunchArgument('base_frame', default_value='base_link',
                              description='Parent frame of the static camera transform'),
        DeclareLaunchArgument('camera_frame', default_value='camera_color_optical_frame',
                              description='Optical frame of the RGB camera (the clouds\' frame_id)'),
        *[DeclareLaunchArgument(f'camera_{axis}', default_value=default,
                                description=f'Static camera transform: {axis} ({unit})')
          for axis, default, unit in (('x', '0.10', 'm'), ('y', '0.0', 'm'), ('z', '0.20', 'm'),
                                      ('roll', '-1.5708', 'rad'), ('pitch', '0.0', 'rad'),
                                      ('yaw', '-1.5708', 'rad'))],
    ]

    camera_tf = Node(
        condition=IfCondition(LaunchConfiguration('publish_camera_tf')),
        package='tf2_ros', executable='static_transform_publisher', name='camera_static_tf',
        arguments=['--x', LaunchConfiguration('camera_x'), '--y', LaunchConfiguration('camera_y'),
                   '--z', LaunchConfiguration('camera_z'), '--roll', LaunchConfiguration('camera_roll'),
                   '--pitch', LaunchConfiguration('camera_pitch'), '--yaw', LaunchConfiguration('camera_yaw'),
                   '--frame-id', LaunchConfiguration('base_frame'),
                   '--child-frame-id', LaunchConfiguration('camera_frame')])

    pipeline = GroupAction([
        PushRosNamespace(namespace),
        # FASTDDS_DEFAULT_PROFILES_FILE (Jazzy and newer) or FASTRTPS_... (Humble). The nodes would apply
        # the profile themselves; setting it here makes it explicit and lets the argument turn it off.
        SetEnvironmentVariable(profile_variable(), profile, condition=IfCondition(large_messages)),
        SetEnvironmentVariable('RC_PERCEPTION_FASTDDS_PROFILE', 'off',
                               condition=UnlessCondition(large_messages)),
        LogInfo(msg=['rc_perception: Fast DDS large-message profile ', profile],
                condition=IfCondition(large_messages)),
        include('student', ['params_file', 'use_sim_time', 'log_level', 'model_path', 'backend',
                            'rgb_topic']),
        include('fusion', ['params_file', 'use_sim_time', 'log_level', 'fusion_mode', 'publish_source_map',
                           'depth_topic', 'confidence_topic']),
        include('pointcloud', ['params_file', 'use_sim_time', 'log_level', 'camera_info_topic']),
    ])
    return LaunchDescription([*arguments, camera_tf, pipeline])
