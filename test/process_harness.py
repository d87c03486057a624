"""Start the package's executables as separate processes, as `ros2 run` / `ros2 launch` would, and read
their parameters back over DDS (the GetParameters service every rclpy node offers)."""

from __future__ import annotations

import os
import signal
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


class Executable:
    """A console script's entry point (rc_perception.composition) running in a process of its own.

    ``args``: its command line (node names for the container, then ``--ros-args ...``). Its output
    (stdout and stderr together) is read as it comes, so a test can wait for a line; a new session keeps
    the test's own process group out of the signals the test sends.
    """

    def __init__(self, name: str, args: Sequence[str] = (), env: dict | None = None) -> None:
        entry = 'main' if name == 'perception_composed' else name
        code = f'import sys; sys.argv[0] = {name!r}; from rc_perception.composition import {entry}; {entry}()'
        self.name = name
        self.proc = subprocess.Popen([sys.executable, '-c', code, *args], cwd=REPO,
                                     env={**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._lines.append('')  # end of output
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return ''.join(self._lines)

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        """Wait until a line containing ``text`` was printed.

        Raises:
            AssertionError: the process ended or ``timeout`` passed first, with its output so far.
        """
        def seen() -> bool:
            return any(text in line for line in self._lines) or (bool(self._lines) and self._lines[-1] == '')

        with self._cond:
            self._cond.wait_for(seen, timeout=timeout)
            found = any(text in line for line in self._lines)
        assert found, \
            f'expected a line with {text!r} from {self.name} within {timeout} s, got:\n{self.output}'

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30.0) -> tuple[int, str]:
        """Send ``signum`` (as ros2 launch sends SIGINT, then SIGTERM), wait; returns (exit code, output).

        A process still running after ``timeout`` is killed; its exit code is then negative.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10.0)
        return self.proc.returncode, self.output


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
