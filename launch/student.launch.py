"""student_trt_node alone: camera RGB -> /student/depth and /student/segmentation.

    ros2 launch rc_perception student.launch.py model_path:=/path/student_fp16.engine
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from rc_perception.launch_args import parameter_overrides, to_bool


def _node(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = parameter_overrides({'model_path': arg('model_path'), 'backend': arg('backend')},
                                    {'model_path': str, 'backend': str})
    return [Node(
        package='rc_perception', executable='student_trt_node', name='student_trt_node', output='screen',
        parameters=[arg('params_file'), overrides, {'use_sim_time': to_bool(arg('use_sim_time'))}],
        remappings=[('camera/rgb', arg('rgb_topic'))],
        ros_arguments=['--log-level', arg('log_level')])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('rc_perception')
    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config', 'perception.yaml']),
                              description='Parameters file (YAML)'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='Use /clock'),
        DeclareLaunchArgument('log_level', default_value='info', description='Log level'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='.engine/.plan (TensorRT) or .onnx (ONNX Runtime); '
                                          'empty: params file'),
        DeclareLaunchArgument('backend', default_value='',
                              description='auto | tensorrt | onnxruntime; empty: params file'),
        DeclareLaunchArgument('rgb_topic', default_value='camera/rgb', description='Camera RGB image topic'),
        OpaqueFunction(function=_node),
    ])
