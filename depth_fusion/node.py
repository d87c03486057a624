"""depth_fusion_node: ToF depth where it is valid and confident, the student's depth everywhere else.

Subscribes (sensor-data QoS, overridable):
    student/depth (sensor_msgs/Image): the student network's depth, 32FC1 metres (16UC1 millimetres also
        read). Each one is fused and published: its header is the output's header.
    camera/depth (sensor_msgs/Image): ToF depth registered to the RGB optical frame, 16UC1 / mono16
        millimetres (0 invalid) or 32FC1 metres (NaN invalid). The last ``tof_buffer_size`` are kept.
    camera/depth/confidence (sensor_msgs/Image): ToF confidence, mono8 / 8UC1 / mono16 / 16UC1 / 32FC1,
        stamped like its depth image; used when ``use_confidence`` is set.
Publishes:
    perception/fused_depth (sensor_msgs/Image, 32FC1 metres, NaN where neither source is valid)
    perception/fused_depth/source (sensor_msgs/Image, mono8: 0 none, 1 ToF, 2 student), when
        ``publish_source_map``
    /diagnostics (diagnostic_msgs/DiagnosticArray)

Each student depth is paired with the buffered ToF depth nearest in time within ``max_time_diff`` (with
``use_confidence``: the nearest that has its confidence image, of the same stamp); without one, the
student depth is published alone (source map 2/0) and /diagnostics warns, or the frame is skipped when
``require_tof`` is set. When the student stream is silent for ``student_timeout`` and ``publish_tof_only``
is set, each ToF frame is published alone, with the ToF's header, on the last student grid. The math
lives in depth_fusion.fusion (pure numpy).

Topic names are relative: remap them, or set a namespace, to fit a robot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from depth_fusion.calibration import ALPHA_RANGE, BETA_RANGE, Calibration, CalibrationError, read_calibration
from depth_fusion.fusion import CONFIDENCE_ENCODINGS, MODES, OUTPUT_GRIDS, Fuser, FusionConfig
from depth_fusion.pairing import NS_PER_S, Match, MatchStatus, StreamState, StreamWatch, ToFPairer, stamp_ns
from rc_perception import codecs, qos
from rc_perception.depth import DEPTH_ENCODINGS, to_metres
from rc_perception.node_support import OK, WARN, BadInput, Diagnostics, RateMeter, main_for, startup_params
from rc_perception.params import ParamSpec

STUDENT_TOPIC = 'student/depth'
TOF_TOPIC = 'camera/depth'
CONFIDENCE_TOPIC = 'camera/depth/confidence'
FUSED_TOPIC = 'perception/fused_depth'
SOURCE_TOPIC = 'perception/fused_depth/source'

_D = FusionConfig()  # the defaults live in one place
_BIG = 10_000_000
_LOG_PERIOD = 5.0  # seconds: the least time between two log lines of one kind about the pairing

PARAMS = (
    ParamSpec('mode', _D.mode,
              'Correction of the student depth before substitution: gated (as is), affine '
              '(alpha * d + beta), median (per-frame ratio of ToF to student medians), online_affine '
              '(per-frame robust fit of alpha, beta, smoothed; falls back to the calibrated values).',
              choices=MODES),
    ParamSpec('use_confidence', True,
              'Gate the ToF depth with its confidence image (same stamp, on camera/depth/confidence). '
              'Without a matching confidence image the ToF frame is not used.'),
    ParamSpec('confidence_threshold', _D.confidence_threshold,
              "ToF pixels with confidence >= this are trusted, in the confidence image's own units "
              '(0-255 for mono8, 0-65535 for mono16/16UC1, as published for 32FC1).', min=0.0, max=65535.0),
    ParamSpec('range_min', _D.range_min, 'ToF readings below this (metres) are invalid.',
              min=0.0, max=100.0),
    ParamSpec('range_max', _D.range_max, 'ToF readings above this (metres) are invalid.',
              min=0.0, max=1000.0),
    ParamSpec('alpha', _D.alpha, 'Scale of the affine correction d = alpha * d_student + beta (affine mode; '
              'the start and fallback of online_affine). Ignored when calibration_file is set.',
              min=ALPHA_RANGE[0], max=ALPHA_RANGE[1]),
    ParamSpec('beta', _D.beta, 'Offset (metres) of the affine correction; ignored when calibration_file is '
              'set.', min=BETA_RANGE[0], max=BETA_RANGE[1]),
    ParamSpec('calibration_file', '',
              'YAML written by calibrate_fusion whose alpha, beta replace the parameters; empty: use the '
              'alpha and beta parameters. Read at start-up and when set to another path (set it to an empty '
              'string and back to re-read a rewritten file). A file that cannot be used stops start-up / '
              'rejects the change.'),
    ParamSpec('max_time_diff', 0.05, 'Largest |student stamp - ToF stamp| (seconds) fused together.',
              min=0.0, max=10.0),
    ParamSpec('require_tof', False, 'Skip (publish nothing for) student frames without a matching ToF frame '
              'instead of publishing the student depth alone.'),
    ParamSpec('publish_source_map', True, 'Also publish perception/fused_depth/source (mono8: 0 none, 1 ToF, '
              '2 student).'),
    ParamSpec('publish_tof_only', False, 'When the student depth is silent for student_timeout, publish each '
              'ToF frame alone (ToF header, at the ToF rate).'),
    ParamSpec('tof_timeout', 1.0, 'Seconds without a ToF depth after which the ToF stream counts as silent '
              '(diagnostics warn).', min=0.01, max=60.0),
    ParamSpec('student_timeout', 1.0, 'Seconds without a student depth after which it counts as silent.',
              min=0.01, max=60.0),
    ParamSpec('tof_buffer_size', 10, 'ToF depth (and confidence) frames kept for pairing; must cover the '
              "student's latency at the ToF rate.", min=1, max=100),
    ParamSpec('output_grid', _D.output_grid, "Grid of the output: 'student' (ToF resampled by nearest "
              "neighbour) or 'tof' (student resampled); sizes must differ by one integer factor.",
              choices=OUTPUT_GRIDS),
    ParamSpec('median_min_pixels', _D.median_min_pixels, 'median mode: sampled pixels with both depths '
              'needed for a correction (else none).', min=1, max=_BIG),
    ParamSpec('fit_sample_size', _D.fit_sample_size, 'median / online_affine: pixel positions examined per '
              'frame (fixed, seeded random; 0 = every pixel).', min=0, max=_BIG),
    ParamSpec('online_smoothing', _D.online_smoothing, 'online_affine: weight of the previous estimate in '
              'the exponential smoothing of alpha, beta (0 = use each frame\'s fit as is).',
              min=0.0, max=0.99),
    ParamSpec('online_min_inliers', _D.online_min_inliers, 'online_affine: fewer inliers make the fit fail '
              '(calibrated values used).', min=2, max=_BIG),
    ParamSpec('online_outlier_threshold', _D.online_outlier_threshold, 'online_affine: a pixel is an inlier '
              'when |alpha * d_student + beta - d_tof| <= this share of d_tof.', min=0.001, max=1.0),
    ParamSpec('online_min_spread', _D.online_min_spread, 'online_affine: the inliers\' student depths must '
              'spread (standard deviation) at least this many metres, else the fit is ill-conditioned.',
              min=0.0, max=100.0),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1, max=60.0,
              read_only=True),
)


@dataclass(frozen=True)
class _Frame:
    """A decoded image kept for pairing (the array views the message's buffer)."""

    array: np.ndarray
    encoding: str
    header: object


def _stamp(header) -> int:
    return stamp_ns(header.stamp.sec, header.stamp.nanosec)


def _fallback(p) -> str:
    """What the node does with a student depth that has no ToF to fuse."""
    return 'skipping student frames (require_tof)' if p.require_tof else 'publishing student-only depth'


class DepthFusionNode(Node):
    """Fuses each student depth with the nearest ToF depth; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__('depth_fusion_node', **kwargs)
        self._lock = threading.Lock()
        self._calibration: Calibration | None = None   # loaded from calibration_file
        self._calibration_path = ''
        self._checked: tuple[str, Calibration] | None = None  # validated, not yet applied
        self.params = startup_params(self, PARAMS, validate=self._validate, on_change=self._apply)
        p = self.params.values
        self._adopt_calibration(p.calibration_file)
        now = time.monotonic()
        self.fuser = Fuser(self._fusion_config(p))
        self.pairer = ToFPairer(p.max_time_diff, p.tof_buffer_size, p.use_confidence, p.tof_timeout, now)
        self.student_watch = StreamWatch(p.student_timeout, now)
        self.bad_input = BadInput(self)
        self.student_in, self.tof_in, self.confidence_in = RateMeter(), RateMeter(), RateMeter()
        self.published = RateMeter()
        self.counts = {'fused': 0, 'student only': 0, 'ToF only': 0, 'skipped (require_tof)': 0}
        self.last_status: MatchStatus | None = None
        self._status_logged: dict[MatchStatus, float] = {}  # monotonic time each status was last logged
        self.last_dt: float | None = None
        self.last_correction = None
        self.tof_share: float | None = None  # of the last fused frame's pixels, taken from the ToF
        self.fusion_ms = 0.0
        self._student_shape: tuple[int, int] | None = None
        self._last_tof_only = -1

        def sub(topic, callback):
            return self.create_subscription(Image, topic, callback, qos.sensor_data(),
                                            qos_overriding_options=qos.overridable())

        self._fused_pub = self.create_publisher(Image, FUSED_TOPIC, qos.sensor_data(),
                                                qos_overriding_options=qos.overridable())
        self._source_pub = None
        if p.publish_source_map:
            self._make_source_pub()
        # Created in this order on purpose: the executor serves the subscriptions that are ready together
        # in creation order, so a ToF frame and its confidence that arrived with (or before) a student
        # depth are buffered before that student depth is fused.
        self._tof_topic = sub(TOF_TOPIC, self._on_tof).topic_name
        self._confidence_topic = sub(CONFIDENCE_TOPIC, self._on_confidence).topic_name
        self._student_topic = sub(STUDENT_TOPIC, self._on_student).topic_name
        self.diagnostics = Diagnostics(self, 'depth fusion', self._diagnostics, period=p.diagnostics_period)
        self.get_logger().info(
            f'fusing {self._student_topic} with {self._tof_topic}'
            f"{' + ' + self._confidence_topic if p.use_confidence else ''} -> {self._fused_pub.topic_name} "
            f'(mode {p.mode}, alpha {self.fuser.config.alpha:g}, beta {self.fuser.config.beta:g} from '
            f"{self._calibration_path or 'parameters'})")

    # ------------------------------------------------------------------------------------- parameters
    def _validate(self, p) -> str | None:
        try:
            FusionConfig.from_values(p)  # cross-checks, e.g. range_min < range_max
        except ValueError as exc:
            return str(exc)
        path = p.calibration_file.strip()
        if path and path != self._calibration_path:
            try:
                self._checked = (path, read_calibration(path))
            except CalibrationError as exc:
                return str(exc)
        return None

    def _adopt_calibration(self, path: str) -> None:
        path = path.strip()
        if not path:
            self._calibration, self._calibration_path = None, ''
        elif path != self._calibration_path:
            checked = self._checked if self._checked and self._checked[0] == path else None
            self._calibration = checked[1] if checked else read_calibration(path)
            self._calibration_path = path
        self._checked = None

    def _fusion_config(self, p) -> FusionConfig:
        cal = self._calibration
        alpha, beta = (cal.alpha, cal.beta) if cal else (p.alpha, p.beta)
        return FusionConfig.from_values(p, alpha=alpha, beta=beta)

    def _apply(self, old, new) -> None:
        with self._lock:
            self._adopt_calibration(new.calibration_file)
            self.fuser.configure(self._fusion_config(new))
            self.pairer.configure(new.max_time_diff, new.tof_buffer_size, new.use_confidence, new.tof_timeout)
            self.student_watch.timeout = new.student_timeout
            if new.publish_source_map and self._source_pub is None:
                self._make_source_pub()
        if new.calibration_file != old.calibration_file and self._calibration:
            cal = self._calibration
            self.get_logger().info(f'calibration {self._calibration_path}: alpha {cal.alpha:g}, '
                                   f'beta {cal.beta:g}')

    def _make_source_pub(self) -> None:
        self._source_pub = self.create_publisher(Image, SOURCE_TOPIC, qos.sensor_data(),
                                                 qos_overriding_options=qos.overridable())

    # ------------------------------------------------------------------------------------------ input
    def _decode(self, msg: Image, topic: str, allowed, what: str) -> np.ndarray | None:
        if msg.encoding not in allowed:
            self.bad_input.report(topic, f"unsupported encoding '{msg.encoding}' (expected "
                                  f"{' or '.join(sorted(allowed))})", what)
            return None
        try:
            return codecs.image_to_array(msg)
        except ValueError as exc:
            self.bad_input.report(topic, exc, what)
            return None

    def _on_tof(self, msg: Image) -> None:
        self._buffer(msg, self.tof_in, self._tof_topic, DEPTH_ENCODINGS, 'ToF depth',
                     lambda stamp, frame: self.pairer.add_depth(stamp, frame, time.monotonic()))

    def _on_confidence(self, msg: Image) -> None:
        self._buffer(msg, self.confidence_in, self._confidence_topic, CONFIDENCE_ENCODINGS,
                     'confidence image', self.pairer.add_confidence)

    def _buffer(self, msg: Image, meter: RateMeter, topic: str, allowed, what: str, add) -> None:
        """Decode a ToF depth or confidence image, keep it for pairing, maybe publish it ToF-only."""
        meter.tick()
        array = self._decode(msg, topic, allowed, what)
        if array is None:
            return
        stamp = _stamp(msg.header)
        with self._lock:
            add(stamp, _Frame(array, msg.encoding, msg.header))
        self._maybe_tof_only(stamp)

    def _on_student(self, msg: Image) -> None:
        now = time.monotonic()
        self.student_in.tick(now)
        raw = self._decode(msg, self._student_topic, DEPTH_ENCODINGS, 'student depth')
        if raw is None:
            return
        student = raw if msg.encoding == '32FC1' else to_metres(raw, msg.encoding)
        p = self.params.values
        with self._lock:
            self.student_watch.tick(now)
            match = self.pairer.match(_stamp(msg.header), now)
            self._note_status(match, p, now)
            self.last_dt = match.dt
            if not match.matched and p.require_tof:
                self.counts['skipped (require_tof)'] += 1
                return
            tof = match.tof
            conf = match.confidence
            self._student_shape = student.shape
            try:
                t0 = time.perf_counter()
                result = self.fuser.fuse(student, tof.array if tof else None,
                                         tof.encoding if tof else '32FC1', conf.array if conf else None,
                                         source_map=p.publish_source_map)
                self.fusion_ms = (time.perf_counter() - t0) * 1e3
            except ValueError as exc:  # GridError: sizes that cannot share a grid
                self.bad_input.report(self._student_topic, exc, 'student depth (frame not fused)')
                return
            self._publish(result, msg.header, p)
            self.counts['fused' if tof else 'student only'] += 1
            if result.tof_valid is not None:
                self.tof_share = np.count_nonzero(result.tof_valid) / result.tof_valid.size

    def _maybe_tof_only(self, stamp: int) -> None:
        """Publish a ToF frame alone when the student is silent (and publish_tof_only is set)."""
        p = self.params.values
        if not p.publish_tof_only:
            return
        now = time.monotonic()
        with self._lock:
            if self.student_watch.state(now) is not StreamState.SILENT:
                return
            # Each stamp once, never an older one after a newer (a late confidence image) - unless the
            # stamps jumped back by more than a second: a restarted camera, a bag looping on its own stamps.
            if self._last_tof_only - NS_PER_S < stamp <= self._last_tof_only:
                return
            tof = self.pairer.depth.exact(stamp)
            conf = self.pairer.confidence.exact(stamp) if p.use_confidence else None
            if tof is None or (p.use_confidence and conf is None):
                return  # its other half has not arrived yet
            shape = self._student_shape if p.output_grid == 'student' else None
            try:
                result = self.fuser.fuse(None, tof.array, tof.encoding, conf.array if conf else None,
                                         source_map=p.publish_source_map, shape=shape)
            except ValueError as exc:
                self.bad_input.report(self._tof_topic, exc, 'ToF depth (ToF-only frame)')
                return
            self._last_tof_only = stamp
            self._publish(result, tof.header, p)
            self.counts['ToF only'] += 1

    def _publish(self, result, header, p) -> None:
        self._fused_pub.publish(codecs.array_to_image(result.depth, '32FC1', header))
        if p.publish_source_map and result.source is not None and self._source_pub is not None:
            self._source_pub.publish(codecs.array_to_image(result.source, 'mono8', header))
        self.last_correction = result.correction
        self.published.tick()

    def _note_status(self, match: Match, p, now: float) -> None:
        """Log when pairing changes between matched and not: once per change, and each kind of change at
        most every _LOG_PERIOD seconds (a pairing that flaps frame by frame must not flood the log)."""
        if match.status is self.last_status:
            return
        previous, self.last_status = self.last_status, match.status
        if previous is None and match.status is MatchStatus.MATCHED:
            return
        logged = self._status_logged.get(match.status)
        if logged is not None and now - logged < _LOG_PERIOD:
            return
        self._status_logged[match.status] = now
        if match.status is MatchStatus.MATCHED:
            self.get_logger().info('ToF matched again: fusing')
        else:
            problem = self._tof_problem(match.status, p, self.pairer.watch.silent_for(now), match.dt)
            self.get_logger().warning(f'{problem}: {_fallback(p)}')

    def _tof_problem(self, status: MatchStatus, p, silent_for: float, dt: float | None) -> str:
        """Why no ToF is fused, for logs and diagnostics (``dt``: student - nearest ToF stamp, seconds)."""
        if status is MatchStatus.SILENT:
            return f'ToF silent for {silent_for:.1f} s on {self._tof_topic}'
        if status is MatchStatus.NO_MATCH:
            nearest = f' (nearest {abs(dt) * 1e3:.0f} ms)' if dt is not None else ''
            return f'no ToF within max_time_diff ({p.max_time_diff:g} s) of the student depth{nearest}'
        if status is MatchStatus.NO_CONFIDENCE:
            return (f'no confidence image with the ToF stamp on {self._confidence_topic} (use_confidence is '
                    'set)')
        return f'no ToF received yet on {self._tof_topic}'

    # ------------------------------------------------------------------------------------ diagnostics
    def _diagnostics(self):
        p = self.params.values
        now = time.monotonic()
        with self._lock:  # one consistent snapshot of what the callbacks update
            tof_state = self.pairer.watch.state(now)
            tof_silent_for = self.pairer.watch.silent_for(now)
            student_state = self.student_watch.state(now)
            student_silent_for = self.student_watch.silent_for(now)
            status = self.last_status
            corr = self.last_correction
            cfg = self.fuser.config
            counts = dict(self.counts)
            tof_share, last_dt, fusion_ms = self.tof_share, self.last_dt, self.fusion_ms
        if tof_state is StreamState.SILENT:
            tof_text = f'silent for {tof_silent_for:.1f} s'
        elif status is not None and status is not MatchStatus.MATCHED:
            tof_text = status.value
        else:
            tof_text = tof_state.value
        values = {
            'mode': p.mode,
            'alpha': corr.alpha if corr else cfg.alpha,
            'beta': corr.beta if corr else cfg.beta,
            'correction': f'{corr.status}: {corr.detail}' if corr else '-',
            'inlier share': corr.inlier_share if corr else float('nan'),
            'calibration': self._calibration_path or 'parameters alpha, beta',
            'ToF state': tof_text,
            'ToF share of last fused frame (%)': tof_share * 100 if tof_share is not None else '-',
            'student state': student_state.value,
            'last student - ToF stamp (ms)': last_dt * 1e3 if last_dt is not None else '-',
            **counts,
            'dropped': self.bad_input.total,
            'student rate (Hz)': self.student_in.rate(now),
            'ToF rate (Hz)': self.tof_in.rate(now),
            'confidence rate (Hz)': self.confidence_in.rate(now),
            'output rate (Hz)': self.published.rate(now),
            'fusion time (ms)': fusion_ms,
            'last drop reason': self.bad_input.last_reason or '-',
        }
        if student_state is StreamState.SILENT:
            tail = 'publishing ToF-only depth' if p.publish_tof_only and tof_state is StreamState.OK \
                else 'publishing nothing'
            return WARN, f'no student depth for {student_silent_for:.1f} s: {tail}', values
        if tof_state is StreamState.SILENT or (status is not None and status is not MatchStatus.MATCHED):
            problem = MatchStatus.SILENT if tof_state is StreamState.SILENT else status
            return WARN, f'{self._tof_problem(problem, p, tof_silent_for, last_dt)}: {_fallback(p)}', values
        if status is MatchStatus.MATCHED and tof_share == 0.0:
            return WARN, ('ToF frames are paired but none of their pixels passes range_min / range_max / '
                          'confidence_threshold (is the threshold in the confidence image\'s units?)'), values
        if self.student_in.count and self.bad_input.total and not self.published.count:
            return WARN, 'every student depth so far was dropped', values
        if status is None:
            return OK, 'waiting for student depth', values
        return OK, f'fusing ToF and student depth (mode {p.mode})', values


main = main_for(DepthFusionNode)

if __name__ == '__main__':
    main()
