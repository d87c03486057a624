"""Drive real nodes over real rclpy and DDS from tests: collectors that wait on events, not sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from rc_perception import qos as rc_qos

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Collector:
    """Stores messages of one topic; ``wait_for`` blocks on a condition until enough have arrived."""

    def __init__(self) -> None:
        self.messages: list = []
        self.stamps: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self.stamps.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, count: int = 1, timeout: float = 10.0,
                 predicate: Callable[[list], bool] | None = None) -> list:
        """Wait until ``count`` messages arrived (and ``predicate(messages)`` holds); returns them.

        Raises:
            AssertionError: on timeout, saying what was expected and what came.
        """
        def done() -> bool:
            return len(self.messages) >= count and (predicate is None or predicate(self.messages))

        with self._cond:
            if not self._cond.wait_for(done, timeout=timeout):
                raise AssertionError(f'expected {count} message(s) within {timeout} s, '
                                     f'received {len(self.messages)}')
            return list(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.stamps.clear()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = 'condition') -> None:
    """Wait for a graph condition that has no event of its own (discovery): checks every 20 ms."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.02)


class RosGraph:
    """A private rclpy context, a helper node for the test's own publishers and subscribers, and a
    single-threaded executor spinning in the background (rclpy's multi-threaded one costs enough
    per message to lose best-effort clouds at 15 Hz on a 2-core machine)."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.node = Node('test_harness', context=self.context)
        self.executor.add_node(self.node)
        self._nodes: list[Node] = [self.node]
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown races end the thread; the test sees the result through its waits
            pass

    def add(self, node_factory: Callable[..., Node], **kwargs) -> Node:
        """Create a node in this graph's context (``node_factory(context=..., **kwargs)``) and spin it."""
        node = node_factory(context=self.context, **kwargs)
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def publisher(self, msg_type, topic: str, qos: QoSProfile | None = None):
        """A publisher on the helper node; sensor-data QoS (a fresh profile) unless ``qos`` is given."""
        return self.node.create_publisher(msg_type, topic, qos or rc_qos.sensor_data())

    def collect(self, msg_type, topic: str, qos: QoSProfile | None = None) -> Collector:
        """Collect ``topic``'s messages; sensor-data QoS (a fresh profile) unless ``qos`` is given."""
        collector = Collector()
        self.node.create_subscription(msg_type, topic, collector, qos or rc_qos.sensor_data())
        return collector

    def wait_for_subscribers(self, pub, count: int = 1, timeout: float = 10.0) -> None:
        wait_until(lambda: pub.get_subscription_count() >= count, timeout,
                   f'{count} subscriber(s) on {pub.topic_name}')

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        wait_until(lambda: self.node.count_publishers(topic) >= count, timeout,
                   f'{count} publisher(s) on {topic}')

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        for node in self._nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def node_process(module: str, ros_args: Sequence[str] = (), env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m <module> --ros-args ...`` as a separate process, as ros2 run would."""
    full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})}
    cmd = [sys.executable, '-m', module]
    if ros_args:
        cmd += ['--ros-args', *ros_args]
    return subprocess.Popen(cmd, env=full_env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[int, str]:
    """SIGINT the process (as ros2 launch does), wait, and return (exit code, its output)."""
    if proc.poll() is None:
        proc.send_signal(2)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out
