"""Start the package's executables as separate processes, as `ros2 run` / `ros2 launch` would, and read
their parameters back over DDS (the GetParameters service every rclpy node offers)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import Parameter

from ros_harness import REPO

#: The console scripts (setup.py) of the three nodes and the container, by name.
EXECUTABLES = ('student_trt_node', 'depth_fusion_node', 'pointcloud_xyz_node', 'perception_composed')


def start_executable(name: str, args: Sequence[str] = (), env: dict | None = None) -> subprocess.Popen:
    """Run a console script's entry point (rc_perception.composition) in a new process.

    ``args``: its command line (node names for the container, then ``--ros-args ...``). The output
    (stdout and stderr together) is read with ``communicate``; a new session keeps the test's own
    process group out of the signals the test sends.
    """
    entry = 'main' if name == 'perception_composed' else name
    code = f'import sys; sys.argv[0] = {name!r}; from rc_perception.composition import {entry}; {entry}()'
    return subprocess.Popen([sys.executable, '-c', code, *args], cwd=REPO,
                            env={**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def get_parameters(graph, node_fqn: str, names: Sequence[str], timeout: float = 30.0) -> dict:
    """The values of ``names`` on the node ``node_fqn``, read over its GetParameters service.

    Raises:
        AssertionError: the service did not appear or answer within ``timeout`` seconds.
    """
    client = graph.node.create_client(GetParameters, f'{node_fqn}/get_parameters')
    try:
        assert client.wait_for_service(timeout_sec=timeout), \
            f'expected {node_fqn}/get_parameters within {timeout} s, found none'
        done = threading.Event()
        future = client.call_async(GetParameters.Request(names=list(names)))
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), f'{node_fqn}/get_parameters did not answer within {timeout} s'
        values = future.result().values
        return {name: Parameter.from_parameter_msg(ParameterMsg(name=name, value=value)).value
                for name, value in zip(names, values, strict=True)}
    finally:
        graph.node.destroy_client(client)
