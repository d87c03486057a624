"""calibrate_fusion: fit the student depth correction d = alpha * d_student + beta from recorded pairs.

SOURCE is either
  * a dataset folder (rc_offline.dataset layout) with student/ (.npy float32 metres or 16-bit PNG
    millimetres) and tof/ (16-bit PNG millimetres or .npy metres), optionally confidence/, files matched
    by name; or
  * a rosbag2 recording (sqlite3 or mcap; the folder with metadata.yaml, or a file in it), read with the
    rosbags library: student depth, ToF depth and (optional) confidence Image topics. Each student depth is
    paired with the ToF depth nearest in time within --max-time-diff, and that with the confidence image
    of the same stamp, by the same pairing code the node uses.

The ToF is judged valid by the node's rules (--range-min/--range-max, confidence >= threshold) and
resampled onto the student grid. The fit rejects outliers (--outlier-threshold, a share of the ToF depth).
It prints RMSE before and after, the median scale and the inlier share, and with --output writes the YAML
that depth_fusion_node loads through its calibration_file parameter.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_fusion.calibration import (
    Calibration,
    PixelPairs,
    median_scale,
    rmse,
    robust_affine_fit,
    write_calibration,
)
from depth_fusion.fusion import Fuser, FusionConfig
from depth_fusion.pairing import MatchStatus, ToFPairer, stamp_ns
from rc_offline.cli import ArgumentParser, ToolError, run_tool

PROG = 'calibrate_fusion'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
_D = FusionConfig()


class CalibrateError(ToolError):
    """A problem with the user's input; printed as one line."""


@dataclass
class Pair:
    """One student depth (float32 metres) with its ToF depth and confidence (raw, with encoding)."""

    name: str
    student: np.ndarray
    tof: np.ndarray
    tof_encoding: str
    confidence: np.ndarray | None


@dataclass
class Tally:
    students: int = 0
    unmatched: int = 0          # no ToF within max_time_diff
    no_confidence: int = 0      # confidence used, none for the matched ToF

    def line(self) -> str:
        parts = [f'{self.students} student depth images']
        if self.unmatched:
            parts.append(f'{self.unmatched} without a ToF frame in tolerance')
        if self.no_confidence:
            parts.append(f'{self.no_confidence} whose ToF frame had no confidence image')
        return ', '.join(parts)


# ------------------------------------------------------------------------------------------- dataset

def dataset_pairs(root: Path, use_confidence: bool | None, tally: Tally) -> Iterator[Pair]:
    """Pairs from a dataset folder; ``use_confidence`` None: use confidence/ when it exists."""
    from rc_offline.dataset import frame_stems, read_depth, read_image

    frames = frame_stems(root, ('student', 'tof'), optional=('confidence',))
    if use_confidence is None:
        use_confidence = (root / 'confidence').is_dir()
    for frame in frames:
        tally.students += 1
        conf = None
        if use_confidence:
            path = frame.paths.get('confidence')
            if path is None:
                tally.no_confidence += 1
                continue
            conf = read_image(path)
            if conf.dtype.kind == 'f':
                conf = conf.astype(np.float32)
        yield Pair(frame.stem, read_depth(frame.paths['student']), read_depth(frame.paths['tof']), '32FC1',
                   conf)


# ----------------------------------------------------------------------------------------------- bag

def _bag_folder(path: Path) -> Path | None:
    """The rosbag2 folder of ``path`` (the folder itself or the folder of a .mcap / .db3 file in it)."""
    folder = path if path.is_dir() else path.parent
    return folder if (folder / 'metadata.yaml').is_file() else None


def bag_dir(path: Path) -> Path:
    """``_bag_folder``, or CalibrateError when ``path`` is not in a rosbag2 recording."""
    folder = _bag_folder(path)
    if folder is None:
        raise CalibrateError(f'{path} is not a rosbag2 recording (no metadata.yaml beside it)')
    return folder


def _image_array(msg) -> np.ndarray:
    """A deserialized rosbags sensor_msgs/msg/Image as an ndarray.

    rosbags builds messages with the message definition's own field names (height, width, encoding,
    is_bigendian, step, data as a uint8 ndarray), which are all that rc_perception.codecs.image_to_array
    reads: the one codec (step padding, byte order) serves recorded messages as it serves live ones.
    """
    from rc_perception import codecs
    return codecs.image_to_array(msg)


def bag_pairs(path: Path, student_topic: str, tof_topic: str, confidence_topic: str,
              use_confidence: bool | None, max_time_diff: float, tally: Tally) -> Iterator[Pair]:
    """Pairs from a rosbag2, streamed: a student depth is resolved once a ToF stamp beyond its tolerance
    has been read (ToF frames arrive in stamp order), or at the end of the bag."""
    try:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise CalibrateError(f'reading bags needs the rosbags package (pip install rosbags): {exc}') from None
    folder = bag_dir(path)
    try:
        reader = AnyReader([folder], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise CalibrateError(f'cannot open bag {folder}: {exc}') from None
    try:
        topics = _BagTopics(folder, {c.topic: c.msgtype for c in reader.connections}, student_topic,
                            tof_topic, confidence_topic, use_confidence)
        pairing = _BagPairing(topics, max_time_diff, tally)
        connections = [c for c in reader.connections if c.topic in topics.wanted]
        for conn, _, raw in reader.messages(connections=connections):
            yield from pairing.add(conn.topic, reader.deserialize(raw, conn.msgtype))
        yield from pairing.resolve(everything=True)
    except AnyReaderError as exc:
        raise CalibrateError(f'bag {folder}: {exc}') from None
    finally:
        reader.close()


@dataclass
class _BagTopics:
    """The bag's topics checked against the ones asked for; ``use_confidence`` decided."""

    folder: Path
    types: dict[str, str]
    student: str
    tof: str
    confidence: str
    use_confidence: bool | None

    def __post_init__(self) -> None:
        listing = ', '.join(f'{t} ({m})' for t, m in sorted(self.types.items())) or 'none'
        for topic, what in ((self.student, 'student depth'), (self.tof, 'ToF depth')):
            if topic not in self.types:
                raise CalibrateError(f'bag {self.folder} has no {what} topic {topic} (topics: {listing})')
        if self.use_confidence is None:
            self.use_confidence = self.confidence in self.types
        elif self.use_confidence and self.confidence not in self.types:
            raise CalibrateError(f'bag {self.folder} has no confidence topic {self.confidence} (topics: '
                                 f'{listing}; use --no-confidence to calibrate without it)')
        for topic in self.wanted:
            if self.types[topic] != IMAGE_TYPE:
                raise CalibrateError(f'bag {self.folder}: topic {topic} has type {self.types[topic]}, '
                                     f'expected {IMAGE_TYPE}')

    @property
    def wanted(self) -> set[str]:
        return {self.student, self.tof} | ({self.confidence} if self.use_confidence else set())


class _BagPairing:
    """Buffers ToF frames and pending student depths from a bag read in order; yields the pairs."""

    def __init__(self, topics: _BagTopics, max_time_diff: float, tally: Tally) -> None:
        self.topics, self.tally = topics, tally
        self.pairer = ToFPairer(max_time_diff, capacity=64, use_confidence=bool(topics.use_confidence))
        self.tolerance = round(max_time_diff * 1e9)
        self.pending: deque[tuple[int, np.ndarray]] = deque()

    def add(self, topic: str, msg) -> Iterator[Pair]:
        from rc_perception.depth import to_metres
        stamp = stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        try:
            image = _image_array(msg)
        except ValueError as exc:
            raise CalibrateError(f'bag {self.topics.folder}: {topic} @ {stamp / 1e9:.6f} s: {exc}') from None
        if topic == self.topics.student:
            self.tally.students += 1
            self.pending.append((stamp, image if msg.encoding == '32FC1' else to_metres(image, msg.encoding)))
        elif topic == self.topics.tof:
            self.pairer.add_depth(stamp, (image, msg.encoding), now=0.0)
        else:
            self.pairer.add_confidence(stamp, (image, msg.encoding))
        yield from self.resolve(everything=False)

    def resolve(self, everything: bool) -> Iterator[Pair]:
        """Pair the pending student depths whose ToF can no longer improve (all of them at the end)."""
        newest = self.pairer.depth.newest_stamp()
        while self.pending and (everything or len(self.pending) > 256
                                or (newest is not None and newest > self.pending[0][0] + self.tolerance)):
            stamp, student = self.pending.popleft()
            match = self.pairer.match(stamp, now=0.0)
            if match.status is MatchStatus.NO_CONFIDENCE:
                self.tally.no_confidence += 1
            elif not match.matched:
                self.tally.unmatched += 1
            else:
                confidence = match.confidence[0] if match.confidence else None
                yield Pair(f'{self.topics.student} @ {stamp / 1e9:.6f} s', student, match.tof[0],
                           match.tof[1], confidence)


# ------------------------------------------------------------------------------------------- the fit

def calibrate(pairs: Iterator[Pair], config: FusionConfig, pixels_per_frame: int, seed: int,
              outlier_threshold: float, min_spread: float, min_inliers: int,
              progress: Callable[[str], None] = lambda _: None) -> tuple[Calibration, dict]:
    """Accumulate the pixels where the student and a valid ToF reading overlap, then fit.

    Raises:
        CalibrateError: no usable pixels, or the fit failed (the reason says why).
    """
    fuser = Fuser(config)  # a ToF-only fusion on the student grid = the node's validity and resampling
    acc = PixelPairs(pixels_per_frame, seed)
    for pair in pairs:
        if pair.student.ndim != 2:
            raise CalibrateError(f'{pair.name}: student depth must be single-channel, '
                                 f'got shape {pair.student.shape}')
        try:
            tof = fuser.fuse(None, pair.tof, pair.tof_encoding, pair.confidence,
                             shape=pair.student.shape).depth
        except ValueError as exc:
            raise CalibrateError(f'{pair.name}: {exc}') from None
        acc.add(pair.student.astype(np.float32, copy=False), tof)
        if acc.frames % 50 == 0:
            progress(f'{acc.frames} pairs read')
    x, y = acc.arrays()
    if acc.frames == 0:
        raise CalibrateError('no student depth could be paired with a ToF depth')
    if x.size < max(min_inliers, 2):
        raise CalibrateError(f'only {x.size} pixels have both a student depth and a valid ToF reading in '
                             f'{acc.frames} pairs (need {max(min_inliers, 2)}); check --range-min, '
                             '--range-max and the confidence threshold')
    fit = robust_affine_fit(x, y, outlier_threshold=outlier_threshold, min_inliers=min_inliers,
                            min_spread=min_spread)
    scale = median_scale(x, y)
    stats = {
        'pairs': acc.frames,
        'pairs_without_overlap': acc.frames_without_overlap,
        'pixels': int(x.size),
        'inlier_share': fit.inlier_share,
        'median_scale': scale,
        'rmse_before': rmse(x, y),
        'rmse_median_scale': rmse(x, y, scale, 0.0),
        'rmse_after': rmse(x, y, fit.alpha, fit.beta),
        'outlier_threshold': outlier_threshold,
        'range_min': config.range_min,
        'range_max': config.range_max,
    }
    if fit.ok:  # the same three on the fit's inliers: the error that the outliers do not dominate
        keep = np.abs(fit.alpha * x + fit.beta - y) <= outlier_threshold * y
        xi, yi = x[keep], y[keep]
        stats['rmse_before_inliers'] = rmse(xi, yi)
        stats['rmse_median_scale_inliers'] = rmse(xi, yi, scale, 0.0)
        stats['rmse_after_inliers'] = rmse(xi, yi, fit.alpha, fit.beta)
    else:
        raise CalibrateError(f'fit failed: {fit.reason} (over {x.size} pixels of {acc.frames} pairs; median '
                             f'scale {scale:.4f}, RMSE as is {stats["rmse_before"]:.3f} m)')
    return Calibration(fit.alpha, fit.beta, stats), stats


def report(cal: Calibration, stats: dict, source: str, tally: Tally) -> str:
    lines = [
        f'{source}: {tally.line()}',
        f"{stats['pairs']} pairs, {stats['pixels']} pixels with both depths "
        f"(ToF {stats['range_min']:g}-{stats['range_max']:g} m)",
        f"{'':16}{'alpha':>9}{'beta':>9}{'RMSE all (m)':>14}{'RMSE inliers (m)':>18}",
        f"{'as is':16}{1.0:>9.4f}{0.0:>9.4f}{stats['rmse_before']:>14.4f}"
        f"{stats['rmse_before_inliers']:>18.4f}",
        f"{'median scale':16}{stats['median_scale']:>9.4f}{0.0:>9.4f}{stats['rmse_median_scale']:>14.4f}"
        f"{stats['rmse_median_scale_inliers']:>18.4f}",
        f"{'affine fit':16}{cal.alpha:>9.4f}{cal.beta:>9.4f}{stats['rmse_after']:>14.4f}"
        f"{stats['rmse_after_inliers']:>18.4f}",
        f"inlier share {stats['inlier_share']:.1%} (inlier: |alpha * student + beta - ToF| <= "
        f"{stats['outlier_threshold']:g} x ToF)",
    ]
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', type=Path, help='dataset folder or rosbag2 recording')
    parser.add_argument('-o', '--output', type=Path,
                        help='write the calibration YAML here (for the node\'s calibration_file)')
    parser.add_argument('--format', choices=('auto', 'dataset', 'bag'), default='auto',
                        help='what SOURCE is (default: decided from its contents)')
    parser.add_argument('--student-topic', default='/student/depth', help='bag topic of the student depth')
    parser.add_argument('--tof-topic', default='/camera/depth', help='bag topic of the ToF depth')
    parser.add_argument('--confidence-topic', default='/camera/depth/confidence',
                        help='bag topic of the ToF confidence')
    conf = parser.add_mutually_exclusive_group()
    conf.add_argument('--confidence', dest='use_confidence', action='store_true', default=None,
                      help='require confidence images (default: use them when present)')
    conf.add_argument('--no-confidence', dest='use_confidence', action='store_false',
                      help='ignore confidence images')
    parser.add_argument('--confidence-threshold', type=float, default=_D.confidence_threshold,
                        help="ToF pixels with confidence >= this are used, in the image's own units "
                             '(default: %(default)s)')
    parser.add_argument('--range-min', type=float, default=_D.range_min, help='metres (default: %(default)s)')
    parser.add_argument('--range-max', type=float, default=_D.range_max, help='metres (default: %(default)s)')
    parser.add_argument('--max-time-diff', type=float, default=0.05,
                        help='seconds between a student and a ToF stamp to pair them (default: %(default)s)')
    parser.add_argument('--outlier-threshold', type=float, default=_D.online_outlier_threshold,
                        help='inlier when |alpha * d + beta - tof| <= this x tof (default: %(default)s)')
    parser.add_argument('--min-spread', type=float, default=_D.online_min_spread,
                        help='metres of spread the inliers\' student depths need (default: %(default)s)')
    parser.add_argument('--min-inliers', type=int, default=1000, help='default: %(default)s')
    parser.add_argument('--pixels-per-frame', type=int, default=20000,
                        help='random pixels kept per pair, 0 = all (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the pixel subset (default: %(default)s)')
    return parser


def run(args: argparse.Namespace) -> int:
    from rc_offline.dataset import DatasetError

    source: Path = args.source
    if not source.exists():
        raise CalibrateError(f'{source} does not exist')
    try:
        config = FusionConfig(range_min=args.range_min, range_max=args.range_max,
                              confidence_threshold=args.confidence_threshold)
    except ValueError as exc:
        raise CalibrateError(str(exc)) from None
    if args.max_time_diff < 0 or not 0 < args.outlier_threshold <= 1 or args.pixels_per_frame < 0:
        raise CalibrateError('--max-time-diff must be >= 0, --outlier-threshold in (0, 1], '
                             '--pixels-per-frame >= 0')
    kind = args.format if args.format != 'auto' else ('bag' if _bag_folder(source) else 'dataset')
    tally = Tally()
    if kind == 'bag':
        pairs = bag_pairs(source, args.student_topic, args.tof_topic, args.confidence_topic,
                          args.use_confidence, args.max_time_diff, tally)
    else:
        pairs = dataset_pairs(source, args.use_confidence, tally)
    try:
        cal, stats = calibrate(pairs, config, args.pixels_per_frame, args.seed, args.outlier_threshold,
                               args.min_spread, args.min_inliers,
                               progress=lambda text: print(f'{PROG}: {text}', file=sys.stderr))
    except DatasetError as exc:
        raise CalibrateError(str(exc)) from None
    stats['source'] = str(source)
    stats['input'] = kind
    print(report(cal, stats, f'{source} ({kind})', tally))
    if args.output is None:
        print('not written (give --output FILE to write the calibration for the node)')
        return 0
    try:
        write_calibration(args.output, cal)
    except OSError as exc:
        raise CalibrateError(f'cannot write {args.output}: {exc}') from None
    print(f'wrote {args.output}  (depth_fusion_node: calibration_file: {args.output.resolve()}, '
          'mode: affine or online_affine)')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Fit alpha, beta from recorded student / ToF depth pairs; write the node's calibration file."""
    args = build_parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
