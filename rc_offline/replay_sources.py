"""Where replay_node's messages come from: dataset folders and rosbag2 recordings, as timed events.

* a **dataset folder** in the rc_offline.dataset layout (``rgb/``, ``tof/``, optional ``confidence/``,
  ``camera.yaml``; e.g. written by ``python -m rc_offline.scenes``): one event per frame at ``rate`` Hz,
  with the RGB image (rgb8), the ToF depth (16UC1 mm or 32FC1 m), the confidence (mono8/mono16/32FC1) and
  the CameraInfo; ``rc_offline.replay`` stamps them all with one fresh stamp and ``frame_id``;
* a **rosbag2** (a folder with metadata.yaml, or a .mcap / .db3 file; sqlite3 or mcap storage), read with
  the ``rosbags`` library (no ROS bag tools needed): one event per message of the configured topics, at its
  recorded time divided by the playback speed, carrying its recorded stamp.

Events are pure data (offsets in seconds from the start of the replay); ``rc_offline.replay.Replayer``
publishes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from rc_offline import dataset
from rc_perception import codecs

__all__ = ['MSG_TYPES', 'TOPICS', 'BagSource', 'DatasetSource', 'ReplayEvent', 'open_source']

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
