"""rc_perception on the robot: student network, ToF fusion and point cloud, for Nav2's local costmap.

    ros2 launch rc_perception perception.launch.py model_path:=/path/student_fp16.engine
    ros2 launch rc_perception perception.launch.py -s        # every argument, with its meaning

The arguments are declared and checked in one place (rc_perception.launch_args): every value is checked
before any process starts, and a bad one stops the launch with one line naming it and what is allowed.
Without a model (launch argument or params file) the student is off and the ToF -> cloud path runs
alone. ``composed:=true`` runs the nodes in one process. By default a node that exits stops the whole
launch (non-zero exit code when it failed); ``use_respawn:=true`` restarts it instead. The stage files
(student, fusion, pointcloud .launch.py) are this file with one stage.
"""

import tempfile

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rc_perception.launch_args import ARGUMENTS, LaunchPlan, NodeProcess, exit_message, plan_launch


class NodeFailed(RuntimeError):
    """A node's process failed while the pipeline ran (the launch logs this one line and exits 1)."""


def _stop_launch(event, context):
    """Default policy (use_respawn:=false): a node that exits takes the launch down."""
    if context.is_shutdown:
        return None  # stopping anyway (Ctrl-C, another node's failure)
    message = exit_message(event.action.process_details['name'], event.returncode)
    if event.returncode != 0:
        raise NodeFailed(message)
    return [LogInfo(msg=f'rc_perception: {message}'), Shutdown(reason=message)]


def _params_file(params: dict) -> str:
    """Write launch-generated parameters where the node processes can read them (as launch_ros does)."""
    with tempfile.NamedTemporaryFile('w', prefix='rc_perception_', suffix='.yaml', delete=False) as fh:
        yaml.safe_dump(params, fh, sort_keys=False)
    return fh.name


def _node(process: NodeProcess, plan: LaunchPlan, parameters: list[str]) -> Node:
    return Node(
        package='rc_perception', executable=process.executable, name=process.name,
        namespace=plan.namespace, output='screen', parameters=parameters,
        remappings=list(process.remappings), arguments=list(process.arguments),
        ros_arguments=['--log-level', plan.log_level], additional_env=plan.environment,
        respawn=plan.respawn, respawn_delay=plan.respawn_delay,
        on_exit=None if plan.respawn else _stop_launch)


def _start(context):
    """Check every argument, then return the actions; nothing has started before this returns."""
    plan = plan_launch({a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS},
                       pushed_namespace=context.launch_configurations.get('ros_namespace', ''))
    params = plan.params_file if plan.scoped_params is None else _params_file(plan.scoped_params)
    parameters = [params, _params_file(plan.overrides)]
    actions = [LogInfo(msg=f'rc_perception: {note}') for note in plan.notes]
    actions += [_node(process, plan, parameters) for process in plan.processes]
    actions += [Node(package='tf2_ros', executable='static_transform_publisher', namespace=plan.namespace,
                     name=tf.node, arguments=tf.arguments(), output='screen')
                for tf in plan.transforms]
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
          for a in ARGUMENTS),
        OpaqueFunction(function=_start),
    ])
