"""What every node of the package shares: start-up and shutdown, bad-input reporting, rates, diagnostics."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from rc_perception import codecs, qos
from rc_perception.fastdds import apply_large_message_profile
from rc_perception.params import NodeParams, ParamSpec
from rc_perception.stop_signals import StopSignals

__all__ = ['BadInput', 'Diagnostics', 'Finished', 'RateMeter', 'StartupError', 'main_for', 'run_nodes',
           'startup_params']

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class StartupError(RuntimeError):
    """A node cannot start (missing model, bad parameters). The message says what is wrong and the fix."""


class Finished(Exception):
    """Raised from a node's callback when its work is done (replay_node at the end of its source): the
    process stops as on SIGINT (every node destroyed, then the context), exit code 0."""


def startup_params(node: Node, specs: Sequence[ParamSpec],
                   validate: Callable[[SimpleNamespace], str | None] | None = None,
                   on_change: Callable[[SimpleNamespace, SimpleNamespace], None] | None = None) -> NodeParams:
    """``NodeParams`` for a node's constructor (same arguments).

    Raises:
        StartupError: invalid start-up values (params file, launch arguments); the half-built node is
            destroyed first, and the message names it and every problem.
    """
    try:
        return NodeParams(node, specs, validate=validate, on_change=on_change)
    except ValueError as exc:
        name = node.get_name()
        node.destroy_node()
        raise StartupError(f'{name} cannot start: {exc}') from None


class BadInput:
    """Counts dropped inputs per topic and logs each (topic, reason kind) at most once per ``period``.

    A log line reads: ``dropped <what> on <topic>: <reason> [N dropped on this topic so far]``.
    """

    def __init__(self, node: Node, period: float = 5.0) -> None:
        self._logger = node.get_logger()
        self._period = period
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.recent: deque[str] = deque(maxlen=32)
        self.last_reason = ''

    def report(self, topic: str, reason: str | Exception, what: str = 'message') -> None:
        text = str(reason)
        kind = type(reason).__name__ if isinstance(reason, Exception) else text.split(':', 1)[0]
        now = time.monotonic()
        with self._lock:
            self.counts[topic] += 1
            count = self.counts[topic]
            self.last_reason = f'{topic}: {text}'
            self.recent.append(self.last_reason)
            last = self._last.get((topic, kind))
            if last is not None and now - last < self._period:
                return
            self._last[(topic, kind)] = now
        self._logger.warning(f'dropped {what} on {topic}: {text} [{count} dropped on this topic so far]')

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RateMeter:
    """Events per second over a sliding window of the last ``window`` seconds (thread-safe)."""

    def __init__(self, window: float = 5.0) -> None:
        self._window = window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.count += 1
            self._times.append(now)
            while self._times and now - self._times[0] > self._window:
                self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and now - self._times[0] > self._window:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (len(self._times) - 1) / span if span > 0 else 0.0


class Diagnostics:
    """Publishes one DiagnosticStatus for the node on /diagnostics every ``period`` seconds.

    ``collect`` returns (level, message, values): a DiagnosticStatus level (OK, WARN, ERROR), a one-line
    summary and the key/values to show (formatted with ``str``).
    """

    def __init__(self, node: Node, name: str,
                 collect: Callable[[], tuple[int, str, dict]], period: float = 1.0) -> None:
        self._node = node
        self._name = f'{node.get_name()}: {name}'
        self._collect = collect
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', qos.diagnostics())
        self._timer = node.create_timer(period, self.publish)

    def publish(self) -> None:
        try:
            level, message, values = self._collect()
        except Exception as exc:  # a bug in a report must not stop the node: say so on /diagnostics
            level, message, values = ERROR, f'diagnostics failed: {type(exc).__name__}: {exc}', {}
            self._node.get_logger().error(message, throttle_duration_sec=30.0)
        status = DiagnosticStatus(level=level, name=self._name, message=message,
                                  hardware_id=self._node.get_fully_qualified_name())
        status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(array)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f'{value:.3f}'
    return str(value)


def _spin_until_stopped(executor: SingleThreadedExecutor, stop: StopSignals) -> None:
    """Spin ``executor`` in a thread until a signal comes; then let the callback in hand finish and return.

    The main thread only waits: Python runs signal handlers in the main thread, which cannot happen while
    it is blocked inside rcl's wait. An exception from a callback ends the spin and is raised here.
    """
    halt = threading.Event()
    failure: list[BaseException] = []

    def spin() -> None:
        try:
            while not halt.is_set():
                executor.spin_once()
        except (ExternalShutdownException, Finished):
            pass  # the context was shut down from inside the process, or a node is done: an ordinary stop
        except BaseException as exc:  # handed to the main thread, raised there after the clean-up
            failure.append(exc)
        finally:
            stop.wake()

    thread = threading.Thread(target=spin, name='executor')
    thread.start()
    stop.wait()
    halt.set()
    executor.wake()
    thread.join()
    if failure:
        raise failure[0]


def _start_nodes(factories: Sequence[Callable[[], Node]], executor: SingleThreadedExecutor,
                 nodes: list[Node], stop: StopSignals) -> None:
    """Build the nodes in order into ``nodes`` (the caller destroys them), unless a signal came first."""
    for factory in factories:
        if stop.received is not None:
            return
        node = factory()
        nodes.append(node)
        executor.add_node(node)


def run_nodes(factories: Sequence[Callable[[], Node]], args: Sequence[str] | None = None,
              stop: StopSignals | None = None) -> int:
    """Run nodes in one process until SIGINT or SIGTERM; returns the process exit code.

    ``stop``: handlers installed earlier, before the heavy imports (rc_perception.composition's entry
    points); a signal noted by them ends the process with 0 before any node starts. Default: install now.

    Start-up: the large-message Fast DDS profile (rc_perception.fastdds), the allocator setting that keeps
    per-frame message buffers mapped (``codecs.keep_payload_memory``), ``rclpy.init`` without rclpy's
    signal handlers, then each node in order. A bad command line, or a ``StartupError`` / ``ValueError``
    from a node's constructor, gives one line and exit code 1 (nodes already built are destroyed).

    Running: one single-threaded executor serves every node's callbacks (a node with heavy work, like the
    student, runs it in a worker thread of its own).

    Stop, on SIGINT or SIGTERM, or a callback raising ``Finished`` (exit code 0): the executor finishes the
    callback in hand and stops, each node is destroyed in reverse order (a node's ``destroy_node`` stops its
    worker threads), and only then is the context shut down, so no thread ever publishes through a dead
    context. rclpy's own handlers
    would shut the context down first, from inside the signal handler. More signals during the stop (a
    terminal's Ctrl-C and ros2 launch each send SIGINT) change nothing.
    """
    profile_note = apply_large_message_profile()
    malloc_note = codecs.keep_payload_memory()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except _rclpy.UnknownROSArgsError as exc:
        print(f'cannot start: unknown ROS arguments {exc}', file=sys.stderr)
        return 1
    except _rclpy.RCLError as exc:  # a malformed --ros-args command line (rcl has logged it too)
        print(f'cannot start: {str(exc).splitlines()[0]}', file=sys.stderr)
        return 1
    stop = StopSignals() if stop is None else stop
    logger = rclpy.logging.get_logger('rc_perception')
    logger.debug(profile_note)
    logger.debug(malloc_note)
    executor = SingleThreadedExecutor()
    nodes: list[Node] = []
    try:
        try:
            _start_nodes(factories, executor, nodes, stop)
        except (StartupError, ValueError) as exc:
            logger.fatal(str(exc))
            return 1
        if stop.received is None:
            _spin_until_stopped(executor, stop)
        return 0
    finally:
        executor.shutdown(timeout_sec=0.0)
        for node in reversed(nodes):
            node.destroy_node()
        # Not rclpy.try_shutdown(): on newer rclpy it uninstalls signal handlers, which sets SIGINT to
        # its default for an instant, and a second Ctrl-C then kills the process.
        rclpy.get_default_context().try_shutdown()
        stop.close()


def main_for(node_class: type[Node]) -> Callable[[Sequence[str] | None], None]:
    """A console-script ``main(args=None)`` that runs ``node_class`` and exits with its code."""

    def main(args: Sequence[str] | None = None) -> None:
        sys.exit(run_nodes([node_class], args=args))

    main.__doc__ = f'Run {node_class.__name__} until SIGINT or SIGTERM (see run_nodes).'
    return main
