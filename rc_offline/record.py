"""Record camera topics to a rosbag2 without the ROS 2 bag tools: rclpy subscriptions, rosbags' writer.

``BagRecorder`` subscribes to Image / CameraInfo topics and writes each message as it arrived (the CDR
bytes, untouched, with the receive time as the bag time, as ``ros2 bag record`` does) to a rosbag2 in mcap or
sqlite3 storage. Callbacks only queue the bytes; one writer thread writes them. A tool, not a node of the
robot: on a robot with ROS installed, ``ros2 bag record`` does the same (doc/finetune.md).

    python -m rc_offline.record --out bags/home                        # the four camera topics, until Ctrl-C
    python -m rc_offline.record --out bags/robot_world --replay data/robot_world --rate 15

With ``--replay``, the recorder starts ``replay_node`` (``rc_offline.replay``, the real replay path) as a
process of its own on a dataset folder or bag (it starts once the recorder's subscriptions have matched, so
no frame is lost to discovery), records what it publishes over DDS and stops once the replay has ended
(or been silent for ``--idle-timeout`` seconds). Messages are sent best effort, as a camera driver sends them;
the summary says how many of each topic were recorded.
"""

from __future__ import annotations

import argparse
import importlib
import queue
import sys
import threading
import time
from pathlib import Path

from rc_offline.cli import ArgumentParser, ToolError, UsageError, require, run_tool

__all__ = ['CAMERA_TOPICS', 'BagRecorder', 'main', 'record']

#: Topic -> message type of what the camera (or replay_node) publishes, under the root namespace.
CAMERA_TOPICS = {
    '/camera/rgb': 'sensor_msgs/msg/Image',
    '/camera/depth': 'sensor_msgs/msg/Image',
    '/camera/depth/confidence': 'sensor_msgs/msg/Image',
    '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
}
_QUEUE_LIMIT = 256


def _message_class(msgtype: str):
    """The rclpy class of a ROS type name such as 'sensor_msgs/msg/Image'.

    Raises:
        ValueError: not a 'package/msg/Name' of an installed message package.
    """
    try:
        package, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ValueError, ImportError, AttributeError):
        raise ValueError(f"unknown message type '{msgtype}' (expected package/msg/Name of an installed "
                         'message package)') from None


class BagRecorder:
    """Subscribes ``node`` to ``topics`` (name -> ROS type name) and writes every message to the bag ``path``.

    Raises:
        ValueError: the bag exists already, or a type is not one rclpy and rosbags both know.
    """

    def __init__(self, node, path: str | Path, topics: dict[str, str], storage: str = 'mcap') -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
        from rosbags.typesys import Stores, get_typestore

        from rc_perception import qos

        self.path = Path(path)
        classes = {topic: _message_class(msgtype) for topic, msgtype in topics.items()}
        typestore = get_typestore(Stores.ROS2_HUMBLE)
        unknown = sorted(set(topics.values()) - set(typestore.types))
        if unknown:
            raise ValueError(f"rosbags does not know the message type(s) {', '.join(unknown)}")
        plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        try:
            self._writer.open()
        except WriterError as exc:
            raise ValueError(f'cannot write bag {self.path}: {exc}') from None
        self.counts = dict.fromkeys(topics, 0)
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._node = node
        self.last_message: float | None = None   # monotonic time of the newest message
        self._connections = {topic: self._writer.add_connection(topic, msgtype, typestore=typestore)
                             for topic, msgtype in topics.items()}
        for topic, cls in classes.items():
            node.create_subscription(cls, topic, self._callback(topic), qos.sensor_data(), raw=True)
        self._thread = threading.Thread(target=self._write, name='bag_writer', daemon=True)
        self._thread.start()

    def _callback(self, topic: str):
        def on_message(data: bytes) -> None:
            self.last_message = time.monotonic()
            try:
                self._queue.put_nowait((topic, self._node.get_clock().now().nanoseconds, data))
            except queue.Full:
                self.dropped += 1
        return on_message

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, stamp, data = item
            self._writer.write(self._connections[topic], stamp, data)
            self.counts[topic] += 1

    def close(self) -> None:
        """Write what is queued and close the bag (its metadata.yaml is written now)."""
        self._queue.put(None)
        self._thread.join()
        self._writer.close()

    def summary(self) -> str:
        parts = [f'{topic} {n}' for topic, n in self.counts.items()]
        dropped = f'; {self.dropped} dropped (writer too slow)' if self.dropped else ''
        return f"recorded {', '.join(parts)} message(s) to {self.path}{dropped}"


def _start_replay(source: str, rate: float, log_dir: Path):
    """replay_node in a process of its own, as ros2 run would start it (rc_offline.pipeline)."""
    from rc_offline.pipeline import NodeProcesses, default_params_file
    # It starts once the recorder's subscriptions have matched (no frame lost to discovery), exits at the end.
    params = {'source': source, 'rate': rate, 'wait_for_subscribers': 1, 'exit_when_done': True}
    procs = NodeProcesses(default_params_file(), {'replay_node': params}, log_dir,
                          nodes=(('replay_node', 'rc_offline.replay'),))
    procs.start()
    return procs


def _done(recorder: BagRecorder, replay, started: float, duration: float | None, idle_timeout: float) -> bool:
    now = time.monotonic()
    if duration is not None and now - started >= duration:
        return True
    if replay is None:
        return False
    return bool(replay.exited()) or (recorder.last_message is not None
                                     and now - recorder.last_message > idle_timeout)


def record(out: str | Path, topics: dict[str, str] | None = None, storage: str = 'mcap',
           duration: float | None = None, replay: str | None = None, rate: float = 15.0,
           idle_timeout: float = 3.0, log=print) -> dict[str, int]:
    """Record ``topics`` (default ``CAMERA_TOPICS``) to ``out`` until ``duration`` seconds have passed, or,
    with ``replay``, until replay_node on that source has been silent for ``idle_timeout`` seconds (or has
    exited), or until Ctrl-C. Returns the message count per topic.

    Raises:
        ValueError: the bag cannot be written, or replay_node stopped without publishing anything.
    """
    import tempfile

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    context = Context()
    rclpy.init(context=context)
    node = Node('rc_offline_recorder', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    recorder = procs = None
    logs = tempfile.TemporaryDirectory(prefix='rc_offline_record_')
    try:
        recorder = BagRecorder(node, out, topics or CAMERA_TOPICS, storage)
        threading.Thread(target=executor.spin, daemon=True).start()
        started = time.monotonic()
        if replay is not None:
            procs = _start_replay(replay, rate, Path(logs.name))
            log(f'replay_node started on {replay} at {rate:g} Hz')
        while not _done(recorder, procs, started, duration, idle_timeout):
            time.sleep(0.2)
    except KeyboardInterrupt:
        log('interrupted: closing the bag')
    finally:
        replay_log = ''
        if procs is not None:
            replay_log = procs.tail('replay_node', 3)
            procs.stop()
        executor.shutdown(timeout_sec=2.0)
        if recorder is not None:
            recorder.close()
            log(recorder.summary())
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        logs.cleanup()
    if procs is not None and not any(recorder.counts.values()):
        raise ValueError(f'replay_node published nothing; its last lines: {replay_log}')
    return recorder.counts


PROG = 'python -m rc_offline.record'


def _parser() -> ArgumentParser:
    summary, _, details = __doc__.partition('\n\n')
    parser = ArgumentParser(prog=PROG, description=summary, epilog=details,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='bag folder to create (must not exist)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='default mcap')
    parser.add_argument('--topic', action='append', metavar='NAME:TYPE',
                        help='record this topic, e.g. /tof/depth:sensor_msgs/msg/Image (repeatable; default: '
                             + ', '.join(CAMERA_TOPICS) + ')')
    parser.add_argument('--duration', type=float, help='seconds to record (default: until stopped)')
    parser.add_argument('--replay', metavar='SOURCE',
                        help='start replay_node on this dataset folder or bag and record what it publishes '
                             '(DDS discovery is kept on this host)')
    parser.add_argument('--rate', type=float, default=15.0, help='replay rate of a dataset folder (Hz)')
    parser.add_argument('--idle-timeout', type=float, default=3.0,
                        help='with --replay: stop after this many seconds without a message')
    return parser


def _run(args) -> int:
    if args.topic and not all(':' in t for t in args.topic):
        raise UsageError(f'--topic takes NAME:TYPE, got {args.topic}')
    if (args.duration is not None and args.duration <= 0) or args.rate <= 0 or args.idle_timeout <= 0:
        raise UsageError('--duration, --rate and --idle-timeout must be > 0')
    out = Path(args.out)
    if out.exists() or out.suffix == '.bag':
        raise UsageError(f'{out} ' + ('exists; bags are never overwritten' if out.exists()
                                      else 'ends in .bag, which rosbags reads as a ROS 1 bag'))
    require('rosbags', 'writing a rosbag2')
    if args.replay:
        from rc_offline.pipeline import keep_discovery_local
        keep_discovery_local()
    topics = dict(t.split(':', 1) for t in args.topic) if args.topic else None
    counts = record(out, topics, args.storage, args.duration, args.replay, args.rate, args.idle_timeout)
    if not any(counts.values()):
        raise ToolError(f'nothing was recorded on {", ".join(counts)}')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Record the camera topics to a rosbag2 (mcap or sqlite3), optionally from replay_node."""
    args = _parser().parse_args(argv)
    return run_tool(PROG, lambda: _run(args), errors=(ValueError, OSError))


if __name__ == '__main__':
    sys.exit(main())
