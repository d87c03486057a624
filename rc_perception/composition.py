"""perception_composed: the pipeline's nodes in one process, served by one executor.

    perception_composed [NODE ...] [--ros-args ...]

NODE is a node name (``student_trt_node``, ``depth_fusion_node``, ``pointcloud_xyz_node``) or a
``module:Class``; without any, all three run in pipeline order. The ROS arguments are those of the
separate executables, and they mean the same here:

* ``--params-file FILE``: each node reads its own section (key it ``/**/<node name>:`` so it applies
  under any namespace, as config/perception.yaml does);
* ``-r __ns:=/robot1`` puts every node of the process in the namespace;
* ``-r <node name>:<from>:=<to>`` remaps one node's topic (a remap without the prefix applies to all);
* never ``-r __node:=...``: it would give every node of the process the same name.

Why this shape: Python nodes cannot be loaded into a ROS 2 component container (rclcpp_components loads
C++ classes), so rclpy composes nodes by adding them to one executor (ros2/examples: composed.py).
This module is that container. Like a component container it loads node classes by name
(``NODE_CLASSES``), so the support layer never imports a stage and the imports keep pointing one way
(stages -> support); test_composition checks every name against the stage's node class. The process
lifecycle (signals, the stop order, exit codes) is ``node_support.run_nodes``, the same as for one node:
one single-threaded executor for every callback; the student runs inference in its own worker thread.

The node executables (student_trt_node, depth_fusion_node, pointcloud_xyz_node) start here too, as a
container of one node: every entry point notes SIGINT and SIGTERM (``StopSignals``) before it imports
rclpy and the node, so a Ctrl-C during the first second of a process is a clean stop.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rc_perception.stop_signals import StopSignals

__all__ = ['NODE_CLASSES', 'depth_fusion_node', 'load_node_class', 'main', 'pointcloud_xyz_node',
           'student_trt_node']

#: Node name -> 'module:Class', in pipeline order.
NODE_CLASSES = {
    'student_trt_node': 'student_trt.node:StudentTrtNode',
    'depth_fusion_node': 'depth_fusion.node:DepthFusionNode',
    'pointcloud_xyz_node': 'pointcloud_xyz.node:PointCloudXyzNode',
}


def load_node_class(name: str) -> type:
    """The node class for a node name of ``NODE_CLASSES`` or a ``module:Class``.

    Raises:
        ValueError: an unknown name, a module that does not import, or no such class (one line).
    """
    target = NODE_CLASSES.get(name, name)
    module_name, _, class_name = target.partition(':')
    if not class_name:
        raise ValueError(f"unknown node '{name}': expected one of {', '.join(NODE_CLASSES)} or module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f'node {name}: cannot import {module_name}: {exc}') from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f'node {name}: {module_name} has no class {class_name}')
    return cls


def _run(names: Sequence[str], argv: Sequence[str], stop: StopSignals) -> int:
    from rc_perception.node_support import run_nodes  # the heavy imports, once the signals are noted

    try:
        classes = [load_node_class(name) for name in names]
    except ValueError as exc:  # e.g. a dependency of the node that is not installed
        print(f'{argv[0]}: {exc}', file=sys.stderr)
        return 1
    return run_nodes(classes, args=argv, stop=stop)


def main(args: Sequence[str] | None = None) -> None:
    """Run the given nodes (default: the whole pipeline) in this process until SIGINT or SIGTERM."""
    stop = StopSignals()
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if args is None else args)
    parser = argparse.ArgumentParser(
        prog='perception_composed', description=__doc__.split('\n\n')[0],
        epilog='ROS arguments follow --ros-args, as for the separate node executables.')
    parser.add_argument('nodes', nargs='*', metavar='NODE', default=list(NODE_CLASSES),
                        help=f"node names ({', '.join(NODE_CLASSES)}) or module:Class; default: all three")
    names = parser.parse_args(remove_ros_args(['perception_composed', *argv])[1:]).nodes
    if len(set(names)) != len(names):
        parser.exit(2, f'perception_composed: error: a node is named twice in {names}\n')
    unknown = [name for name in names if name not in NODE_CLASSES and ':' not in name]
    if unknown:
        parser.exit(2, f"perception_composed: error: unknown node(s) {', '.join(unknown)}: expected "
                       f"{', '.join(NODE_CLASSES)} or module:Class\n")
    sys.exit(_run(names, ['perception_composed', *argv], stop))


def _single(name: str) -> None:
    stop = StopSignals()
    sys.exit(_run([name], sys.argv, stop))


def student_trt_node() -> None:
    """Console script: student_trt_node alone (see student_trt.node)."""
    _single('student_trt_node')


def depth_fusion_node() -> None:
    """Console script: depth_fusion_node alone (see depth_fusion.node)."""
    _single('depth_fusion_node')


def pointcloud_xyz_node() -> None:
    """Console script: pointcloud_xyz_node alone (see pointcloud_xyz.node)."""
    _single('pointcloud_xyz_node')


if __name__ == '__main__':
    main()
