"""depth_fusion_node: ToF depth where it is valid and confident, the student's depth (while it agrees with
the ToF) everywhere else. Topics, parameters and diagnostics: doc/fusion.md.

In: student/depth (32FC1 m or 16UC1 mm, any grid), camera/depth (16UC1 / mono16 mm or 32FC1 m, any size),
camera/depth/confidence (stamped like its depth; see use_confidence). Out: perception/fused_depth (32FC1 m,
NaN where no source is valid, the student depth's header), perception/fused_depth/source (mono8: 0 none,
1 ToF, 2 student), /diagnostics. Pairing: depth_fusion.pairing.StudentHold; the math: depth_fusion.fusion
(the rule, the corrections) and depth_fusion.trust (live accuracy, trust gate). Topic names are relative.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from depth_fusion import kernel, status
from depth_fusion.calibration import CalibrationFile
from depth_fusion.fusion import CONFIDENCE_ENCODINGS, Fuser, FusionConfig
from depth_fusion.pairing import NS_PER_S, Match, StreamState, StreamWatch, StudentHold, ToFPairer
from depth_fusion.parameters import PARAMS
from rc_perception import codecs, node_support, qos
from rc_perception.depth import DEPTH_ENCODINGS, to_metres
from rc_perception.latency import LatencyWindow

__all__ = ['PARAMS', 'DepthFusionNode', 'main']

TOPICS = {'student': 'student/depth', 'tof': 'camera/depth', 'confidence': 'camera/depth/confidence',
          'fused': 'perception/fused_depth', 'source': 'perception/fused_depth/source'}


@dataclass(frozen=True)
class _Frame:
    """A decoded image kept for pairing (the array views the message's buffer)."""

    array: np.ndarray
    encoding: str
    header: object
    stamp: int


class DepthFusionNode(Node):
    """Fuses each student depth with the nearest ToF depth; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__('depth_fusion_node', **kwargs)
        self._lock = threading.Lock()
        self.calibration = CalibrationFile()
        self.params = node_support.startup_params(self, PARAMS, self._validate, self._apply)
        p = self.params.values
        self.calibration.adopt(p.calibration_file)
        now = time.monotonic()
        self.fuser = Fuser(self._fusion_config(p))
        pairer = ToFPairer(p.max_time_diff, p.tof_buffer_size, False, p.tof_timeout, now)
        self.state = status.FusionState(pairer, StreamWatch(p.student_timeout, now),
                                        StreamWatch(p.tof_timeout, now))
        self.hold = StudentHold(self.state.pairer)
        self.bad_input = node_support.BadInput(self)
        self.rates = {k: node_support.RateMeter() for k in ('student', 'ToF', 'confidence', 'output')}
        self.latency = LatencyWindow(lambda: self.get_clock().now().nanoseconds)
        self._pairing_log = status.PairingLog()
        self._student_shape: tuple[int, int] | None = None
        self._last_alone = -1  # stamp of the last ToF frame published alone
        qos_kw = {'qos_profile': qos.sensor_data, 'qos_overriding_options': qos.overridable}
        self._pubs = {k: self.create_publisher(Image, TOPICS[k], **{a: f() for a, f in qos_kw.items()})
                      for k in ('fused', 'source')}
        self._writers = {'fused': codecs.ImageWriter('32FC1'), 'source': codecs.ImageWriter('mono8')}
        self._topics = {k: self.create_subscription(Image, TOPICS[k], getattr(self, f'_on_{k}'),
                                                    **{a: f() for a, f in qos_kw.items()}).topic_name
                        for k in ('student', 'tof', 'confidence')}
        self._hold_timer = self._make_hold_timer(p.max_time_diff)
        self.diagnostics = node_support.Diagnostics(self, 'depth fusion', self._diagnostics,
                                                    period=p.diagnostics_period)
        if not kernel.COMPILED:
            self.get_logger().warning(f'{kernel.COMPILE_PROBLEM}: fusing with the numpy version of the rule '
                                      '(slower; local mode uses the frame fit alone)')
        out = self._pubs['fused'].topic_name
        self.get_logger().info(status.startup_line(list(self._topics.values()), out, p, self.fuser.config,
                                                   self.calibration.path))

    # ------------------------------------------------------------------------------------- parameters
    def _validate(self, p) -> str | None:
        try:
            FusionConfig.from_values(p)  # cross-checks, e.g. range_min < range_max
        except ValueError as exc:
            return str(exc)
        return self.calibration.check(p.calibration_file)

    def _fusion_config(self, p) -> FusionConfig:
        alpha, beta = self.calibration.alpha_beta(p.alpha, p.beta)
        return FusionConfig.from_values(p, alpha=alpha, beta=beta)

    def _apply(self, old, new) -> None:
        with self._lock:
            loaded = self.calibration.adopt(new.calibration_file)
            self.fuser.configure(self._fusion_config(new))
            pairer = self.state.pairer
            pairer.configure(new.max_time_diff, new.tof_buffer_size, pairer.use_confidence, new.tof_timeout)
            self.state.student_watch.timeout = new.student_timeout
            self.state.confidence_watch.timeout = new.tof_timeout
            if new.max_time_diff != old.max_time_diff:
                self.destroy_timer(self._hold_timer)
                self._hold_timer = self._make_hold_timer(new.max_time_diff)
        if loaded:
            cal = self.calibration.calibration
            self.get_logger().info(f'calibration {self.calibration.path}: alpha {cal.alpha:g}, '
                                   f'beta {cal.beta:g}')

    def _make_hold_timer(self, period: float):
        """A timer that fires ``period`` after each reset (when a student frame is held); idle otherwise."""
        timer = self.create_timer(max(period, 1e-3), self._on_hold_timer)
        timer.cancel()
        return timer

    def _decode(self, msg: Image, key: str, allowed, what: str) -> _Frame | None:
        self.rates[what.split()[0]].tick()
        try:
            if msg.encoding not in allowed:
                raise ValueError(f"unsupported encoding '{msg.encoding}' (expected "
                                 f"{' or '.join(sorted(allowed))})")
            array = codecs.image_to_array(msg)
        except ValueError as exc:
            self.bad_input.report(self._topics[key], exc, what)
            return None
        stamp = msg.header.stamp
        return _Frame(array, msg.encoding, msg.header, stamp.sec * NS_PER_S + stamp.nanosec)

    def _on_tof(self, msg: Image) -> None:
        frame = self._decode(msg, 'tof', DEPTH_ENCODINGS, 'ToF depth')
        if frame is not None:
            with self._lock:
                self.state.pairer.add_depth(frame.stamp, frame, time.monotonic())
                self._after_tof(frame.stamp)

    def _on_confidence(self, msg: Image) -> None:
        frame = self._decode(msg, 'confidence', CONFIDENCE_ENCODINGS, 'confidence image')
        if frame is not None:
            with self._lock:
                self.state.pairer.add_confidence(frame.stamp, frame)
                self.state.confidence_watch.tick(time.monotonic())
                self._after_tof(frame.stamp)

    def _on_student(self, msg: Image) -> None:
        frame = self._decode(msg, 'student', DEPTH_ENCODINGS, 'student depth')
        if frame is None:
            return
        if frame.encoding != '32FC1':
            frame = _Frame(to_metres(frame.array, frame.encoding), '32FC1', frame.header, frame.stamp)
        timer = self.latency.frame(frame.stamp)
        with self._lock:
            now = time.monotonic()
            self.state.student_watch.tick(now)
            self._confidence_use(now)
            self._fuse_ready(self.hold.offer(frame.stamp, (frame, timer), now))
            if self.hold.deadline is not None:
                self._hold_timer.reset()

    def _on_hold_timer(self) -> None:
        with self._lock:
            self._fuse_ready(self.hold.poll(time.monotonic()))

    def _confidence_use(self, now: float) -> None:
        has_publisher = self.count_publishers(self._topics['confidence']) > 0
        self.state.pairer.use_confidence = status.confidence_expected(
            self.params.values.use_confidence, self.state.confidence_watch.state(now), has_publisher)

    def _after_tof(self, stamp: int) -> None:
        """Fuse a held student frame that this ToF completes; publish the ToF alone when that is asked."""
        now = time.monotonic()
        self._fuse_ready(self.hold.poll(now))
        p = self.params.values
        if not p.publish_tof_only or self.state.student_watch.state(now) is not StreamState.SILENT:
            return
        self._confidence_use(now)
        alone = self.state.pairer.alone(stamp, self._last_alone)
        shape = self._student_shape if p.output_grid == 'student' else None
        if alone and self._fuse(None, *alone, alone[0].header, shape=shape) is not None:
            self._last_alone = stamp
            self.state.counts['ToF only'] += 1

    def _fuse_ready(self, ready) -> None:
        if self.hold.deadline is None:
            self._hold_timer.cancel()
        p = self.params.values
        for (frame, timer), match in ready:
            self._note(match, p)
            self.state.last_match = match
            if not match.matched and p.require_tof:
                self.state.counts['skipped (require_tof)'] += 1
                continue
            self._student_shape = frame.array.shape
            result = self._fuse(frame, match.tof, match.confidence, frame.header, timer=timer.start())
            if result is not None:
                self.state.counts['fused' if match.matched else 'student only'] += 1
                self.state.last_result, self.state.last_stamp = result, frame.stamp

    def _fuse(self, student, tof, conf, header, shape=None, timer=None):
        """Fuse and publish one frame; the FusionResult, or None when it was dropped."""
        try:
            result = self.fuser.fuse(student.array if student else None, tof.array if tof else None,
                                     tof.encoding if tof else '32FC1', conf.array if conf else None,
                                     shape=shape, stamp_ns=student.stamp if student else 0)
        except ValueError as exc:
            key = 'student' if student else 'tof'
            self.bad_input.report(self._topics[key], exc, f'{key} depth (not fused)')
            return None
        if timer is not None:
            timer.publishing()
        self._pubs['fused'].publish(self._writers['fused'].write(result.depth, header))
        if self.params.values.publish_source_map:
            self._pubs['source'].publish(self._writers['source'].write(result.source, header))
        if timer is not None:
            timer.done()
        self.rates['output'].tick()
        return result

    def _note(self, match: Match, p) -> None:
        line = self._pairing_log.line(self.state.last_match, match, time.monotonic(), self.state.pairer.watch,
                                      p, (self._topics['tof'], self._topics['confidence']))
        if line and match.matched:  # one call site per severity (rclpy's loggers insist)
            self.get_logger().info(line)
        elif line:
            self.get_logger().warning(line)

    def _diagnostics(self):
        now = time.monotonic()
        info = {'kernel': 'numba' if self.fuser.compiled else f'numpy ({kernel.COMPILE_PROBLEM})',
                'calibration': self.calibration.path or 'parameters alpha, beta',
                'dropped': self.bad_input.total, 'last drop reason': self.bad_input.last_reason or '-',
                **{f'{k} rate (Hz)': m.rate(now) for k, m in self.rates.items()}, **self.latency.values()}
        with self._lock:  # one consistent snapshot of what the callbacks update
            level, message, values = status.report(self.state, self.params.values, now,
                                                   (self._topics['tof'], self._topics['confidence']), info)
        return (node_support.OK if level == 'ok' else node_support.WARN), message, values


main = node_support.main_for(DepthFusionNode)

if __name__ == '__main__':
    main()
