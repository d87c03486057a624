"""A robot's camera recording as fine-tuning data: RGB frames paired with the ToF by stamp, on the student's
grid, the ToF as the label.

Sources:

* a **rosbag2** (a folder with metadata.yaml, or a .mcap / .db3 file in one; sqlite3 or mcap), read with
  the rosbags library: RGB, ToF depth and (optional) confidence ``sensor_msgs/msg/Image`` topics. Each RGB
  image is paired with the ToF depth whose header stamp is nearest within ``max_time_diff`` and that with
  the confidence image of exactly its stamp, by the fusion node's own pairing
  (``depth_fusion.pairing.ToFPairer``);
* a **dataset folder** (``rc_offline.dataset`` layout): ``rgb/`` and ``tof/`` (``confidence/`` and
  ground-truth ``depth/`` when present), frames in name order, registered by name.

Labels: a ToF pixel is a label where the fusion would trust it (``depth_fusion.fusion.tof_valid``: a reading
within ``[range_min, range_max]`` with confidence at or above the threshold), so the student learns from
exactly the pixels that the fusion passes through. Every other pixel becomes NaN, whatever it held.

Grid: the RGB goes through ``student_trt.preprocess.Preprocessor`` (what the node does: letterboxed into the
model input, aspect kept), and the ToF, registered to the RGB at any resolution, is sampled on the model's
output grid where the camera image sits (``student_trt.geometry``: model pixel ``r`` of the content covers
camera coordinate ``s * r + (s - 1) / 2``; nearest ToF pixel, so ``2 r + 1`` for a 2x decimation, the
pixel the fusion compares and replaces); the padding rows or columns carry no label.

Time: ``Recording.split`` holds out the last share of a recording's time span (header stamps; dataset folders
count frames), so nothing of the held-out part is ever trained on.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth_fusion.fusion import tof_valid
from depth_fusion.pairing import MatchStatus, ToFPairer, stamp_ns
from rc_perception.depth import to_metres
from student_trt.geometry import letterbox
from student_trt.metadata import ModelSpec
from student_trt.preprocess import Preprocessor

__all__ = ['DEFAULT_TOPICS', 'LabelRule', 'Recording', 'RecordingError', 'label_on_grid', 'load_recording',
           'on_model_grid', 'time_split']

#: Stream -> topic in a bag: what replay_node publishes and ``rc_offline.record`` records by default.
DEFAULT_TOPICS = {'rgb': '/camera/rgb', 'depth': '/camera/depth', 'confidence': '/camera/depth/confidence'}
IMAGE_TYPE = 'sensor_msgs/msg/Image'


class RecordingError(ValueError):
    """A recording that cannot be used; the message names it and what was expected."""


@dataclass(frozen=True)
class LabelRule:
    """Which ToF pixels are labels: the fusion's validity (defaults = config/perception.yaml's fusion).

    ``use_confidence`` None: gate on confidence when the recording has it.
    """

    range_min: float = 0.1
    range_max: float = 4.0
    confidence_threshold: float = 50.0
    use_confidence: bool | None = None


@dataclass
class Recording:
    """Frames of one recording on the student's grid, in time order.

    Attributes:
        name: where it came from.
        stamps: (N,) int64 header stamps in ns (dataset folders: the frame number).
        inputs: (N, 3, H, W) float16 model inputs (the Preprocessor's output).
        tof: (N, H, W) float16 metres where the ToF is a label, NaN elsewhere.
        truth: (N, H, W) float16 ground-truth depth (dataset folders with depth/), else None.
        notes: what was skipped while reading and why.
    """

    name: str
    stamps: np.ndarray
    inputs: np.ndarray
    tof: np.ndarray
    truth: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stamps)

    def split(self, holdout: float) -> tuple[np.ndarray, np.ndarray]:
        """``time_split`` of the stamps: boolean (train, held-out) masks."""
        return time_split(self.stamps, holdout)

    def subset(self, keep: np.ndarray) -> Recording:
        return Recording(self.name, self.stamps[keep], self.inputs[keep], self.tof[keep],
                         None if self.truth is None else self.truth[keep], list(self.notes))


def time_split(stamps: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, held-out) masks of sorted ``stamps``: held out are the frames in the last ``holdout``
    share of the time span (``0 < holdout < 1``)."""
    first, last = int(stamps[0]), int(stamps[-1])
    held = stamps >= first + (1.0 - holdout) * (last - first)
    return ~held, held


def _content_index(content: int, camera: int, size: int) -> np.ndarray:
    """For each of ``content`` resized pixels on one axis (``student_trt.geometry``: resized pixel ``r``
    covers camera coordinate ``s * r + (s - 1) / 2``, ``s = camera / content``), the nearest pixel of a
    ``size``-pixel image registered to the ``camera``-pixel one (the same field of view: pixel centres
    scale)."""
    s = camera / content
    u = s * np.arange(content, dtype=np.float64) + (s - 1.0) / 2.0
    return np.clip(np.floor((u + 0.5) * (size / camera)), 0, size - 1).astype(np.intp)


def on_model_grid(image: np.ndarray, camera: tuple[int, int], height: int, width: int,
                  fill=np.nan) -> np.ndarray:
    """``image`` (registered to a ``camera`` (height, width) RGB image, at any resolution) on the model's
    (height, width) output grid: the letterbox content region (``student_trt.geometry.letterbox``, where the
    Preprocessor puts the camera image) takes the nearest pixel, the padding gets ``fill``."""
    place = letterbox(camera, (height, width))
    out = np.full((height, width), fill, image.dtype)
    rows = _content_index(place.height, camera[0], image.shape[0])
    cols = _content_index(place.width, camera[1], image.shape[1])
    out[place.rows, place.cols] = image[rows[:, None], cols[None, :]]
    return out


def label_on_grid(tof: np.ndarray, encoding: str, confidence: np.ndarray | None, rule: LabelRule,
                  height: int, width: int, camera: tuple[int, int] | None = None) -> np.ndarray:
    """float32 (height, width) metres where the ToF is a label (see module doc), NaN elsewhere, on the output
    grid of a model whose input holds the ``camera`` (height, width) RGB image (default: the ToF's size)
    letterboxed (``on_model_grid``); NaN in the padding.

    Raises:
        ValueError: an encoding that is not a depth encoding, a dtype that does not fit it, or a confidence
            image of another size than the depth.
    """
    valid = tof_valid(tof, encoding, rule.range_min, rule.range_max, confidence,
                      rule.confidence_threshold if confidence is not None else 0.0)
    metres = to_metres(tof, encoding)
    metres[~valid] = np.nan
    return on_model_grid(metres, camera or tof.shape[:2], height, width)


@dataclass
class _Raw:
    """One paired frame as read: arrays in their recorded encodings."""

    stamp: int
    rgb: np.ndarray
    rgb_encoding: str
    tof: np.ndarray
    tof_encoding: str
    confidence: np.ndarray | None
    truth: np.ndarray | None = None

    def load(self) -> _Raw:
        return self


# --------------------------------------------------------------------------------------------- dataset

@dataclass
class _DatasetFrame:
    """A frame of a dataset folder, read when ``load`` is called (in a worker thread)."""

    index: int
    paths: dict[str, Path]
    use_confidence: bool

    def load(self) -> _Raw:
        from rc_offline.dataset import read_depth, read_image, read_rgb
        tof = read_image(self.paths['tof'])
        encoding = '16UC1' if tof.dtype == np.uint16 else '32FC1'
        conf = read_image(self.paths['confidence']) if self.use_confidence else None
        truth = read_depth(self.paths['depth']) if 'depth' in self.paths else None
        return _Raw(self.index, read_rgb(self.paths['rgb']), 'rgb8',
                    tof if encoding == '16UC1' else tof.astype(np.float32), encoding, conf, truth)


def _dataset_frames(root: Path, rule: LabelRule, notes: list[str]) -> tuple[int, Iterator[_DatasetFrame]]:
    from rc_offline.dataset import frame_stems
    frames = frame_stems(root, ('rgb', 'tof'), optional=('confidence', 'depth'))
    use_confidence = (root / 'confidence').is_dir() if rule.use_confidence is None else rule.use_confidence
    if use_confidence and not (root / 'confidence').is_dir():
        raise RecordingError(f'{root} has no confidence/ folder, but labels were asked to need confidence')
    usable = [f for f in frames if not use_confidence or 'confidence' in f.paths]
    if len(usable) < len(frames):
        notes.append(f'{len(frames) - len(usable)} frame(s) without a confidence image skipped')
    return len(usable), (_DatasetFrame(i, f.paths, use_confidence) for i, f in enumerate(usable))


# ------------------------------------------------------------------------------------------------- bag

def _bag_folder(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    if not (folder / 'metadata.yaml').is_file():
        raise RecordingError(f'{path} is neither a dataset folder (with rgb/ and tof/) nor a rosbag2 '
                             'recording (a folder with metadata.yaml, or a .mcap / .db3 file in one)')
    if folder.suffix == '.bag':
        raise RecordingError(f'{folder}: rosbags takes a path ending in .bag for a ROS 1 bag; rename the '
                             'rosbag2 folder')
    return folder


def _open_bag(folder: Path, topics: dict[str, str], rule: LabelRule):
    try:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise RecordingError(f'reading bags needs the rosbags package (pip install rosbags): {exc}') from None
    try:
        reader = AnyReader([folder], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise RecordingError(f'cannot open bag {folder}: {exc}') from None
    types = {c.topic: c.msgtype for c in reader.connections}
    listing = ', '.join(f'{t} ({m})' for t, m in sorted(types.items())) or 'none'
    use_confidence = topics['confidence'] in types if rule.use_confidence is None else rule.use_confidence
    wanted = ('rgb', 'depth', 'confidence') if use_confidence else ('rgb', 'depth')
    for stream in wanted:
        topic = topics[stream]
        problem = (f'has no {stream} topic {topic}' if topic not in types
                   else f'has {topic} as {types[topic]}, expected {IMAGE_TYPE}'
                   if types[topic] != IMAGE_TYPE else '')
        if problem:
            reader.close()
            raise RecordingError(f'bag {folder} {problem} (topics: {listing})')
    return reader, {topics[s]: s for s in wanted}, use_confidence


def _bag_frames(path: Path, topics: dict[str, str], rule: LabelRule, max_time_diff: float,
                notes: list[str]) -> tuple[int, Iterator[_Raw]]:
    """Paired frames of a bag, streamed: an RGB image is resolved once a ToF stamp beyond its tolerance has
    been read (ToF frames come in stamp order), or at the end of the bag."""
    from rc_perception import codecs  # sensor_msgs: only where bags are read
    folder = _bag_folder(path)
    reader, streams, use_confidence = _open_bag(folder, topics, rule)
    count = sum(c.msgcount for c in reader.connections if c.topic == topics['rgb'])

    def read() -> Iterator[_Raw]:
        from rosbags.highlevel import AnyReaderError
        pairer = ToFPairer(max_time_diff, capacity=64, use_confidence=use_confidence)
        tolerance = round(max_time_diff * 1e9)
        pending: deque[tuple[int, object]] = deque()
        unmatched = {MatchStatus.NO_MATCH: 0, MatchStatus.NO_CONFIDENCE: 0, MatchStatus.WAITING: 0}

        def resolve(everything: bool) -> Iterator[_Raw]:
            newest = pairer.depth.newest_stamp()
            while pending and (everything or len(pending) > 64
                               or (newest is not None and newest > pending[0][0] + tolerance)):
                stamp, rgb = pending.popleft()
                match = pairer.match(stamp, now=0.0)
                if not match.matched:
                    unmatched[match.status] = unmatched.get(match.status, 0) + 1
                    continue
                conf = match.confidence[0] if match.confidence is not None else None
                yield _Raw(stamp, rgb[0], rgb[1], match.tof[0], match.tof[1], conf)

        try:
            connections = [c for c in reader.connections if c.topic in streams]
            for conn, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, conn.msgtype)
                stamp = stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
                try:
                    item = (codecs.image_to_array(msg), msg.encoding)
                except ValueError as exc:
                    raise RecordingError(f'bag {folder}: {conn.topic} @ {stamp / 1e9:.6f} s: {exc}') from None
                stream = streams[conn.topic]
                if stream == 'rgb':
                    pending.append((stamp, item))
                elif stream == 'depth':
                    pairer.add_depth(stamp, item, now=0.0)
                else:
                    pairer.add_confidence(stamp, item)
                yield from resolve(False)
            yield from resolve(True)
        except AnyReaderError as exc:
            raise RecordingError(f'bag {folder}: {exc}') from None
        finally:
            reader.close()
        for status, n in unmatched.items():
            if n:
                notes.append(f'{n} RGB image(s) skipped: {status.value}')

    return count, read()


# ------------------------------------------------------------------------------------------------ load

def load_recording(path: str | Path, spec: ModelSpec, rule: LabelRule = LabelRule(),
                   topics: dict[str, str] | None = None, max_time_diff: float = 0.02, every: int = 1,
                   progress: Callable[[int, int], None] | None = None) -> Recording:
    """Read a bag or a dataset folder into a ``Recording`` for ``spec``'s grid (see module doc).

    Args:
        topics: stream ('rgb', 'depth', 'confidence') -> bag topic; default ``DEFAULT_TOPICS``.
        max_time_diff: largest |RGB stamp - ToF stamp| paired, seconds (bags).
        every: keep every ``every``-th paired frame (consecutive frames of a 15-30 Hz camera are near
            duplicates).
        progress: called as ``progress(frames read, frames in the recording)``.

    Raises:
        RecordingError: the source cannot be read, lacks a topic or folder, or holds no paired frame.
        rc_offline.dataset.DatasetError: an unreadable file of a dataset folder.
    """
    path = Path(path)
    notes: list[str] = []
    if not path.exists():
        raise RecordingError(f'recording {path} does not exist')
    if path.is_dir() and (path / 'rgb').is_dir():
        total, frames = _dataset_frames(path, rule, notes)
    else:
        total, frames = _bag_frames(path, {**DEFAULT_TOPICS, **(topics or {})}, rule, max_time_diff, notes)
    h, w = spec.height, spec.width
    capacity = max(1, -(-total // every))
    stamps = np.empty(capacity, np.int64)
    inputs = np.empty((capacity, 3, h, w), np.float16)
    tof = np.empty((capacity, h, w), np.float16)
    truth = None
    local = threading.local()   # a Preprocessor keeps scratch arrays: one per thread

    def convert(item) -> tuple:
        raw = item.load()
        if not hasattr(local, 'pre'):
            local.pre = Preprocessor(spec)
        camera = raw.rgb.shape[:2]
        try:
            label = label_on_grid(raw.tof, raw.tof_encoding, raw.confidence, rule, h, w, camera)
            converted = (raw.stamp, local.pre(raw.rgb, raw.rgb_encoding)[0], label)
        except ValueError as exc:
            raise RecordingError(f'{path}: frame at {raw.stamp}: {exc}') from None
        return (*converted, None if raw.truth is None else on_model_grid(raw.truth, camera, h, w))

    n = 0
    chosen = (item for i, item in enumerate(frames) if i % every == 0)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        while chunk := list(itertools.islice(chosen, 32)):   # paired frames <= capacity
            for stamp, x, label, gt in pool.map(convert, chunk):
                stamps[n], inputs[n], tof[n] = stamp, x, label
                if gt is not None:
                    truth = np.full((capacity, h, w), np.nan, np.float16) if truth is None else truth
                    truth[n] = gt
                n += 1
            if progress is not None:
                progress(min(n * every, total), total)
    recording = Recording(str(path), stamps[:n], inputs[:n], tof[:n], None if truth is None else truth[:n],
                          notes)
    if np.any(np.diff(recording.stamps) < 0):   # a bag is read in arrival order; stamps decide
        recording = recording.subset(np.argsort(recording.stamps, kind='stable'))
    return recording
