"""replay_node: feed the pipeline from recordings, as the camera would.

Two kinds of source, one set of topics (relative names; remap or namespace as on the robot):

* a **dataset folder** in the rc_offline.dataset layout (``rgb/``, ``tof/``, optional ``confidence/``,
  ``camera.yaml``; e.g. written by ``python -m rc_offline.scenes``): each frame is published at ``rate``
  Hz on ``camera/rgb`` (rgb8), ``camera/depth`` (16UC1 mm or 32FC1 m), ``camera/depth/confidence``
  (mono8/mono16/32FC1) and ``camera/camera_info``, all with one fresh stamp and ``frame_id``;
* a **rosbag2** (a folder with metadata.yaml, or a .mcap / .db3 file; sqlite3 or mcap storage), read with
  the ``rosbags`` library (no ROS bag tools needed): the configured input topics are republished on the
  topics above with their recorded timing (``playback_speed``), and with header stamps shifted to now
  (``restamp``, keeping stamp differences, so time matching downstream works) or kept as recorded.

The demo drives ``Replayer`` directly; ``replay_node`` wraps it as a node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rclpy.time import Time as RosTime
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from rc_offline import dataset
from rc_perception import codecs, qos
from rc_perception.node_support import RateMeter, StartupError, main_for, startup_params
from rc_perception.params import ParamSpec

__all__ = ['BagSource', 'DatasetSource', 'ReplayEvent', 'Replayer', 'ReplayNode', 'open_source']

#: Output topics (relative), by stream.
TOPICS = {
    'rgb': 'camera/rgb',
    'depth': 'camera/depth',
    'confidence': 'camera/depth/confidence',
    'camera_info': 'camera/camera_info',
}
MSG_TYPES = {'rgb': Image, 'depth': Image, 'confidence': Image, 'camera_info': CameraInfo}


@dataclass
class ReplayEvent:
    """Messages to publish together ``offset`` seconds after the start of the replay (one frame of a
    dataset, one message of a bag). ``stem`` names the camera frame: the dataset's file stem, or the
    running number of a bag's RGB messages (empty for a bag's other messages)."""

    offset: float
    messages: dict[str, object] = field(default_factory=dict)
    stem: str = ''
    #: Recorded stamp of a bag message (None for datasets): kept when not restamping.
    recorded_stamp: Time | None = None


# ---------------------------------------------------------------------------------------------- sources

class DatasetSource:
    """Frames of a dataset folder, one event per frame at ``rate`` Hz.

    Args:
        root: the folder; needs rgb/ and tof/ (confidence/ optional) and camera.yaml.
        rate: frames per second.
        preload: decode every frame up front (steady timing; costs memory: ~1.8 MB per 640x480 frame).
        limit: use only the first ``limit`` frames (0 = all).

    Raises:
        dataset.DatasetError: missing folders, files or camera.yaml.
    """

    def __init__(self, root: str | Path, rate: float, preload: bool = False, limit: int = 0) -> None:
        self.root = Path(root)
        self.rate = rate
        self.frames = dataset.frame_stems(self.root, ('rgb', 'tof'), optional=('confidence',))
        if limit:
            self.frames = self.frames[:limit]
        self.camera = dataset.load_camera(self.root)
        self._cache: dict[str, dict] = {}
        if preload:
            for frame in self.frames:
                self._cache[frame.stem] = self._load(frame)

    def __len__(self) -> int:
        return len(self.frames)

    def camera_info(self) -> CameraInfo:
        c = self.camera
        info = CameraInfo(width=int(c['width']), height=int(c['height']), distortion_model='plumb_bob')
        info.k = [float(c['fx']), 0.0, float(c['cx']), 0.0, float(c['fy']), float(c['cy']), 0.0, 0.0, 1.0]
        info.p = [float(c['fx']), 0.0, float(c['cx']), 0.0, 0.0, float(c['fy']), float(c['cy']), 0.0,
                  0.0, 0.0, 1.0, 0.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.d = [0.0] * 5
        return info

    def _load(self, frame: dataset.Frame) -> dict:
        msgs = {'rgb': codecs.array_to_image(dataset.read_rgb(frame.paths['rgb']), 'rgb8')}
        tof = dataset.read_image(frame.paths['tof'])
        if tof.dtype == np.uint16:
            msgs['depth'] = codecs.array_to_image(tof, '16UC1')
        else:
            msgs['depth'] = codecs.array_to_image(dataset.read_depth(frame.paths['tof']), '32FC1')
        if 'confidence' in frame.paths:
            conf = dataset.read_image(frame.paths['confidence'])
            if conf.dtype == np.uint8:
                msgs['confidence'] = codecs.array_to_image(conf, 'mono8')
            elif conf.dtype == np.uint16:
                msgs['confidence'] = codecs.array_to_image(conf, 'mono16')
            else:
                msgs['confidence'] = codecs.array_to_image(conf.astype(np.float32), '32FC1')
        msgs['camera_info'] = self.camera_info()
        return msgs

    def events(self) -> Iterator[ReplayEvent]:
        for i, frame in enumerate(self.frames):
            msgs = self._cache.get(frame.stem) or self._load(frame)
            yield ReplayEvent(offset=i / self.rate, messages=msgs, stem=frame.stem)


class BagSource:
    """Messages of a rosbag2, one event per message, at their recorded times (divided by ``speed``).

    Args:
        path: bag folder (with metadata.yaml) or a single .mcap / .db3 file.
        topics: stream -> topic in the bag (streams: rgb, depth, confidence, camera_info); topics absent
            from the bag are skipped with a note in ``self.missing``.
        speed: playback speed factor.

    Raises:
        ValueError: rosbags is not installed, the bag cannot be opened or holds none of the topics.
    """

    def __init__(self, path: str | Path, topics: dict[str, str], speed: float = 1.0) -> None:
        try:
            from rosbags.highlevel import AnyReader
        except ImportError as exc:
            raise ValueError(f'replaying the bag {path} needs the rosbags package (pip install rosbags): '
                             f'{exc}') from None
        self.path = Path(path)
        self.speed = speed
        self._reader_cls = AnyReader
        try:
            with AnyReader([self.path]) as reader:
                present = {c.topic for c in reader.connections}
                self.count = sum(c.msgcount for c in reader.connections if c.topic in topics.values())
                #: RGB messages (camera frames) in the bag.
                self.rgb_frames = sum(c.msgcount for c in reader.connections if c.topic == topics.get('rgb'))
        except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
            raise ValueError(f'cannot read bag {self.path}: {exc}') from exc
        self.topics = {stream: topic for stream, topic in topics.items() if topic in present}
        self.missing = sorted(set(topics.values()) - present)
        if not self.topics:
            raise ValueError(f"bag {self.path} has none of the topics {', '.join(topics.values())} "
                             f"(it has {', '.join(sorted(present))})")

    def __len__(self) -> int:
        return self.count

    def events(self) -> Iterator[ReplayEvent]:
        by_topic = {topic: stream for stream, topic in self.topics.items()}
        with self._reader_cls([self.path]) as reader:
            connections = [c for c in reader.connections if c.topic in by_topic]
            start = None
            frame = 0
            for connection, bag_ns, raw in reader.messages(connections=connections):
                stream = by_topic[connection.topic]
                msg = deserialize_message(bytes(raw), MSG_TYPES[stream])
                start = bag_ns if start is None else start
                stem = ''
                if stream == 'rgb':  # camera frames are numbered like a dataset's stems
                    stem, frame = f'{frame:06d}', frame + 1
                yield ReplayEvent(offset=(bag_ns - start) / 1e9 / self.speed, messages={stream: msg},
                                  stem=stem, recorded_stamp=msg.header.stamp)


def open_source(path: str | Path, rate: float = 15.0, topics: dict[str, str] | None = None,
                speed: float = 1.0, preload: bool = False, limit: int = 0):
    """A DatasetSource for a dataset folder, a BagSource for a rosbag2 folder or file.

    Raises:
        ValueError: neither (the message says what was expected).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f'replay source {path} does not exist')
    if path.is_dir() and (path / 'rgb').is_dir():
        return DatasetSource(path, rate, preload=preload, limit=limit)
    if path.suffix in ('.mcap', '.db3') or (path.is_dir() and (path / 'metadata.yaml').is_file()):
        return BagSource(path, topics or {k: '/' + v for k, v in TOPICS.items()}, speed)
    raise ValueError(f'{path} is neither a dataset folder (with rgb/, tof/, camera.yaml) nor a rosbag2 '
                     '(a folder with metadata.yaml, or a .mcap / .db3 file)')


# --------------------------------------------------------------------------------------------- replayer

class Replayer:
    """Publishes a source's events on ``node`` at their times, from a thread of its own.

    ``on_publish(event, stamp)`` is called after each event is published, with the header stamp used.
    ``done`` is set when the replay ends; ``error`` then holds the exception that ended it early, if any
    (also logged).
    """

    def __init__(self, node: Node, source, frame_id: str = 'camera_color_optical_frame',
                 restamp: bool = True, loop: bool = False,
                 on_publish: Callable[[ReplayEvent, Time], None] | None = None) -> None:
        self.node = node
        self.source = source
        self.frame_id = frame_id
        self.restamp = restamp
        self.loop = loop
        self.on_publish = on_publish
        self.publishers = {stream: node.create_publisher(MSG_TYPES[stream], topic, qos.sensor_data(),
                                                         qos_overriding_options=qos.overridable())
                           for stream, topic in TOPICS.items()}
        self.published = RateMeter()
        self.done = threading.Event()
        #: Why the replay stopped early (None: it ran to the end, or was stopped).
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bag_shift_ns: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name='replay', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _stamp(self, event: ReplayEvent) -> Time:
        now = self.node.get_clock().now()
        if event.recorded_stamp is None:
            return now.to_msg()
        if not self.restamp:
            return event.recorded_stamp
        recorded_ns = RosTime.from_msg(event.recorded_stamp).nanoseconds
        if self._bag_shift_ns is None:
            self._bag_shift_ns = now.nanoseconds - recorded_ns
        return RosTime(nanoseconds=recorded_ns + self._bag_shift_ns).to_msg()

    def publish(self, event: ReplayEvent) -> Time:
        stamp = self._stamp(event)
        for stream, msg in event.messages.items():
            if event.recorded_stamp is None:
                msg.header = Header(stamp=stamp, frame_id=self.frame_id)
            else:
                msg.header.stamp = stamp
            self.publishers[stream].publish(msg)
        self.published.tick()
        if self.on_publish is not None:
            self.on_publish(event, stamp)
        return stamp

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                self._bag_shift_ns = None
                for event in self.source.events():
                    delay = start + event.offset - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    self.publish(event)
                if not self.loop:
                    return
        except Exception as exc:  # an unreadable frame or message ends the replay: say so, do not vanish
            self.error = exc
            if not self._stop.is_set():
                self.node.get_logger().error(
                    f'replay stopped after {self.published.count} events: {type(exc).__name__}: {exc}')
        finally:
            self.done.set()


# ------------------------------------------------------------------------------------------------- node

PARAMS = (
    ParamSpec('source', '', 'Dataset folder (rgb/, tof/, confidence/, camera.yaml) or rosbag2 (folder or '
              '.mcap/.db3 file) to replay.', read_only=True),
    ParamSpec('rate', 15.0, 'Frames per second for a dataset folder.', min=0.1, max=1000.0, read_only=True),
    ParamSpec('playback_speed', 1.0, 'Speed factor of a bag relative to its recorded timing.',
              min=0.01, max=100.0, read_only=True),
    ParamSpec('loop', False, 'Start again at the end.', read_only=True),
    ParamSpec('restamp', True, 'Bags: shift header stamps to now, keeping their differences (false: keep '
              'the recorded stamps; then use /clock and use_sim_time downstream).', read_only=True),
    ParamSpec('frame_id', 'camera_color_optical_frame', 'frame_id of dataset frames (bags keep theirs).',
              read_only=True),
    ParamSpec('bag_rgb_topic', '/camera/rgb', 'RGB topic in the bag.', read_only=True),
    ParamSpec('bag_depth_topic', '/camera/depth', 'ToF depth topic in the bag.', read_only=True),
    ParamSpec('bag_confidence_topic', '/camera/depth/confidence', 'ToF confidence topic in the bag.',
              read_only=True),
    ParamSpec('bag_camera_info_topic', '/camera/camera_info', 'CameraInfo topic in the bag.', read_only=True),
)


class ReplayNode(Node):
    """Replays a dataset folder or a rosbag2 on the camera topics (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__('replay_node', **kwargs)
        self.replayer: Replayer | None = None
        self.params = startup_params(self, PARAMS)
        p = self.params.values
        try:
            source = self._open_source(p)
        except StartupError:
            self.destroy_node()
            raise
        for topic in getattr(source, 'missing', []):
            self.get_logger().warning(f'bag {p.source} has no topic {topic}; not replaying it')
        self.replayer = Replayer(self, source, frame_id=p.frame_id, restamp=p.restamp, loop=p.loop)
        unit = 'frames' if isinstance(source, DatasetSource) else 'messages'
        self.get_logger().info(f'replaying {len(source)} {unit} from {p.source}')
        self.replayer.start()
        self._done_timer = self.create_timer(0.5, self._check_done)

    @staticmethod
    def _open_source(p):
        if not p.source:
            raise StartupError('replay_node: set the source parameter to a dataset folder or a rosbag2, '
                               'e.g. --ros-args -p source:=/data/heldout')
        topics = {'rgb': p.bag_rgb_topic, 'depth': p.bag_depth_topic, 'confidence': p.bag_confidence_topic,
                  'camera_info': p.bag_camera_info_topic}
        try:
            return open_source(p.source, p.rate, topics, p.playback_speed)
        except ValueError as exc:
            raise StartupError(f'replay_node: {exc}') from None

    def _check_done(self) -> None:
        if self.replayer.done.is_set():
            if self.replayer.error is None:
                self.get_logger().info(f'replay finished: {self.replayer.published.count} events published')
            self._done_timer.cancel()

    def destroy_node(self) -> None:
        if self.replayer is not None:
            self.replayer.stop()
        super().destroy_node()


main = main_for(ReplayNode)

if __name__ == '__main__':
    main()
