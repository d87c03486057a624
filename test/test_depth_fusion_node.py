"""depth_fusion_node over real rclpy and DDS: student + ToF + confidence in, fused depth + source map out."""

import array
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from depth_fusion.calibration import Calibration, write_calibration
from depth_fusion.fusion import SOURCE_TOF, FusionConfig, fuse
from depth_fusion.node import DepthFusionNode
from depth_fusion.pairing import StreamState, stamp_ns
from rc_perception import codecs
from rc_perception.node_support import StartupError

from ros_harness import wait_until

pytestmark = pytest.mark.dds

FRAME = 'camera_color_optical_frame'
TOF_SHAPE, STUDENT_SHAPE = (96, 128), (48, 64)  # the demo's 2:1 layout, small
BASE = {'range_min': 0.2, 'range_max': 4.0, 'confidence_threshold': 100.0, 'max_time_diff': 0.05}


def header(sec: float, frame: str = FRAME) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec = int(sec)
    h.stamp.nanosec = int(round((sec - int(sec)) * 1e9))
    return h


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    student = rng.uniform(0.5, 5.0, STUDENT_SHAPE).astype(np.float32)
    student[rng.random(STUDENT_SHAPE) < 0.05] = np.nan
    mm = rng.integers(100, 5000, TOF_SHAPE).astype(np.uint16)
    mm[rng.random(TOF_SHAPE) < 0.2] = 0
    conf = rng.integers(0, 256, TOF_SHAPE).astype(np.uint8)
    return student, mm, conf


class Rig:
    """The node under test plus the test's publishers and collectors."""

    def __init__(self, graph, **params):
        overrides = [Parameter(k, value=v) for k, v in {**BASE, **params}.items()]
        self.graph = graph
        self.node = graph.add(DepthFusionNode, parameter_overrides=overrides)
        self.fused = graph.collect(Image, 'perception/fused_depth')
        self.source = graph.collect(Image, 'perception/fused_depth/source')
        self.diags = graph.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=50))
        self.student_pub = graph.publisher(Image, 'student/depth')
        self.tof_pub = graph.publisher(Image, 'camera/depth')
        self.conf_pub = graph.publisher(Image, 'camera/depth/confidence')
        for pub in (self.student_pub, self.tof_pub, self.conf_pub):
            graph.wait_for_subscribers(pub)
        graph.wait_for_publishers('perception/fused_depth')

    def send_tof(self, sec, mm, conf=None, encoding='16UC1'):
        stamp = stamp_ns(header(sec).stamp.sec, header(sec).stamp.nanosec)
        self.tof_pub.publish(codecs.array_to_image(mm, encoding, header(sec)))
        if conf is not None:
            self.conf_pub.publish(codecs.array_to_image(conf, 'mono8', header(sec)))
        wait_until(lambda: self.node.pairer.depth.exact(stamp) is not None
                   and (conf is None or self.node.pairer.confidence.exact(stamp) is not None),
                   what=f'ToF frame {sec} at the node')

    def send_student(self, sec, student, count=None):
        """Publish a student depth and wait for the output it causes (``count``: outputs expected)."""
        before = len(self.fused.messages)
        self.student_pub.publish(codecs.array_to_image(student, '32FC1', header(sec)))
        msgs = self.fused.wait_for(before + 1 if count is None else count)
        return msgs[-1]

    def source_for(self, msg):
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        found = self.source.wait_for(1, predicate=lambda ms: any(
            (m.header.stamp.sec, m.header.stamp.nanosec) == stamp for m in ms))
        return next(m for m in found if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp)

    def wait_diag(self, level, text, timeout=10.0):
        def seen(msgs):
            return any(s.level == level and text in s.message for m in msgs for s in m.status)
        msgs = self.diags.wait_for(1, timeout=timeout, predicate=seen)
        return next(s for m in msgs for s in m.status if s.level == level and text in s.message)


def same(a, b):
    return np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize('mode', ['gated', 'affine', 'median'])
def test_output_equals_the_pure_function(ros_graph, mode):
    rig = Rig(ros_graph, mode=mode, alpha=1.1, beta=-0.05, median_min_pixels=10)
    student, mm, conf = data()
    rig.send_tof(100.0, mm, conf)
    out = rig.send_student(100.01, student)
    assert out.header.frame_id == FRAME and (out.header.stamp.sec, out.header.stamp.nanosec) == \
        (100, 10_000_000), 'the output must carry the student depth\'s header'
    assert out.encoding == '32FC1' and (out.height, out.width) == STUDENT_SHAPE
    cfg = FusionConfig(mode=mode, alpha=1.1, beta=-0.05, median_min_pixels=10, range_min=0.2, range_max=4.0,
                       confidence_threshold=100.0)
    expected = fuse(student, mm, '16UC1', conf, cfg)
    got = codecs.image_to_array(out)
    assert same(got, expected.depth), f'{np.count_nonzero(got != expected.depth)} pixels differ'
    src = rig.source_for(out)
    assert src.encoding == 'mono8' and src.header.frame_id == FRAME
    assert same(codecs.image_to_array(src), expected.source)
    assert set(np.unique(expected.source)) == {0, 1, 2}, 'the test data should exercise every source'


def test_tof_silence_degrades_to_student_only_and_recovers(ros_graph):
    # tof_timeout is long while the test checks the OK states, short to make the ToF count as silent (a
    # loaded machine must not turn an OK check into a silence).
    rig = Rig(ros_graph, tof_timeout=5.0, diagnostics_period=0.2, use_confidence=False)
    student, mm, _ = data(1)
    rig.send_tof(10.0, mm)
    out = rig.send_student(10.0, student)
    assert np.any(codecs.image_to_array(rig.source_for(out)) == SOURCE_TOF)
    rig.wait_diag(DiagnosticStatus.OK, 'fusing ToF and student depth')
    # The ToF stops: student depth keeps coming and is published alone.
    assert rig.node.set_parameters([Parameter('tof_timeout', value=0.3)])[0].successful
    wait_until(lambda: rig.node.pairer.watch.state(time.monotonic()) is StreamState.SILENT, timeout=5.0,
               what='the ToF stream to count as silent')
    out = rig.send_student(11.0, student)
    src = codecs.image_to_array(rig.source_for(out))
    assert not np.any(src == SOURCE_TOF), 'student-only output expected while the ToF is silent'
    np.testing.assert_array_equal(codecs.image_to_array(out), fuse(student).depth)
    status = rig.wait_diag(DiagnosticStatus.WARN, 'ToF silent')
    assert 'publishing student-only depth' in status.message, status.message
    assert {kv.key: kv.value for kv in status.values}['ToF state'].startswith('silent for')
    # The ToF returns: fused again, diagnostics back to OK.
    assert rig.node.set_parameters([Parameter('tof_timeout', value=5.0)])[0].successful
    rig.send_tof(12.0, mm)
    out = rig.send_student(12.0, student)
    assert np.any(codecs.image_to_array(rig.source_for(out)) == SOURCE_TOF), 'fusion should resume'
    rig.diags.clear()
    rig.wait_diag(DiagnosticStatus.OK, 'fusing')
    assert rig.node.counts['fused'] == 2 and rig.node.counts['student only'] == 1, rig.node.counts


def test_no_tof_within_max_time_diff_and_require_tof(ros_graph):
    rig = Rig(ros_graph, use_confidence=False, diagnostics_period=0.2, tof_timeout=30.0)
    student, mm, _ = data(2)
    rig.send_tof(20.0, mm)
    out = rig.send_student(20.2, student)  # 200 ms away, tolerance 50 ms
    assert not np.any(codecs.image_to_array(rig.source_for(out)) == SOURCE_TOF)
    status = rig.wait_diag(DiagnosticStatus.WARN, 'no ToF within max_time_diff (0.05 s)')
    assert '(nearest 200 ms)' in status.message, status.message
    # require_tof: such frames are skipped.
    assert rig.node.set_parameters([Parameter('require_tof', value=True)])[0].successful
    rig.student_pub.publish(codecs.array_to_image(student, '32FC1', header(20.4)))
    wait_until(lambda: rig.node.counts['skipped (require_tof)'] == 1, what='the frame to be skipped')
    out = rig.send_student(20.04, student)  # within tolerance of the ToF at 20.0: fused
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (20, 40_000_000)
    assert len(rig.fused.messages) == 2, 'the skipped frame must not be published'


def test_confidence_is_paired_by_stamp(ros_graph):
    rig = Rig(ros_graph, use_confidence=True, max_time_diff=0.1)
    student, mm, _ = data(3)
    mm[:] = 1500
    rig.send_tof(30.0, mm, np.full(TOF_SHAPE, 255, np.uint8))   # confident
    rig.send_tof(30.05, mm, np.full(TOF_SHAPE, 0, np.uint8))    # not confident
    src = codecs.image_to_array(rig.source_for(rig.send_student(30.04, student)))
    assert not np.any(src == SOURCE_TOF), 'student at 30.04 pairs with ToF 30.05, whose confidence is 0'
    src = codecs.image_to_array(rig.source_for(rig.send_student(30.01, student)))
    assert np.all(src == SOURCE_TOF), 'student at 30.01 pairs with ToF 30.00, whose confidence is 255'
    # A ToF frame whose confidence image never came is not used.
    rig.send_tof(31.0, mm)
    out = rig.send_student(31.0, student)
    assert not np.any(codecs.image_to_array(rig.source_for(out)) == SOURCE_TOF)
    assert rig.node.last_status.value == 'no confidence image with the ToF stamp'


def test_malformed_inputs_do_not_stop_the_node(ros_graph):
    rig = Rig(ros_graph)
    student, mm, conf = data(4)
    bad = []
    bad.append(('student', codecs.array_to_image(np.zeros((4, 4, 3), np.uint8), 'rgb8', header(1))))
    truncated = codecs.array_to_image(student, '32FC1', header(2))
    truncated.data = array.array('B', bytes(100))
    bad.append(('student', truncated))
    bad.append(('student', Image(header=header(3), height=0, width=0, encoding='32FC1', step=0)))
    bad.append(('tof', codecs.array_to_image(np.zeros(TOF_SHAPE, np.uint8), 'mono8', header(4))))
    short_tof = codecs.array_to_image(mm, '16UC1', header(5))
    short_tof.data = array.array('B', bytes(10))
    bad.append(('tof', short_tof))
    bad.append(('conf', codecs.array_to_image(np.zeros((*TOF_SHAPE, 3), np.uint8), 'rgb8', header(6))))
    pubs = {'student': rig.student_pub, 'tof': rig.tof_pub, 'conf': rig.conf_pub}
    for topic, msg in bad:
        pubs[topic].publish(msg)
    wait_until(lambda: rig.node.bad_input.total == len(bad), what=f'{len(bad)} drops')
    # Sizes that cannot share a grid: the frame is dropped with both sizes named.
    rig.send_tof(7.0, mm, conf)
    rig.student_pub.publish(codecs.array_to_image(np.ones((30, 50), np.float32), '32FC1', header(7.0)))
    wait_until(lambda: rig.node.bad_input.total == len(bad) + 1, what='the mismatched frame to be dropped')
    reasons = '\n'.join(rig.node.bad_input.recent)
    for expected in ("unsupported encoding 'rgb8'", 'needs 12288 bytes, got 100', 'zero size (0x0',
                     "unsupported encoding 'mono8'", 'needs 24576 bytes, got 10',
                     'ToF depth is 128x96 and student depth 50x30'):
        assert expected in reasons, f'expected a drop reason containing {expected!r}, got:\n{reasons}'
    assert len(rig.fused.messages) == 0, 'nothing may be published for malformed input'
    # A good frame afterwards is fused correctly.
    rig.send_tof(8.0, mm, conf)
    out = rig.send_student(8.0, student)
    expected = fuse(student, mm, '16UC1', conf, FusionConfig(range_min=0.2, range_max=4.0,
                                                             confidence_threshold=100.0))
    assert same(codecs.image_to_array(out), expected.depth)


def test_parameters_validation_and_calibration_file(ros_graph, tmp_path):
    rig = Rig(ros_graph, mode='affine', use_confidence=False)
    node = rig.node
    result = node.set_parameters([Parameter('range_min', value=5.0)])[0]
    assert not result.successful and 'range_min (5.0)' in result.reason and 'range_max (4.0)' in result.reason
    missing = tmp_path / 'nope.yaml'
    result = node.set_parameters([Parameter('calibration_file', value=str(missing))])[0]
    assert not result.successful and str(missing) in result.reason and 'does not exist' in result.reason
    broken = tmp_path / 'broken.yaml'
    broken.write_text('alpha: 1.2\n')
    result = node.set_parameters([Parameter('calibration_file', value=str(broken))])[0]
    assert not result.successful and str(broken) in result.reason and 'missing beta' in result.reason
    assert node.params.values.calibration_file == '' and node.fuser.config.alpha == 1.0
    good = tmp_path / 'cal.yaml'
    write_calibration(good, Calibration(1.25, -0.1))
    result = node.set_parameters([Parameter('calibration_file', value=str(good))])[0]
    assert result.successful, result.reason
    assert (node.fuser.config.alpha, node.fuser.config.beta) == (1.25, -0.1)
    student = np.full(STUDENT_SHAPE, 2.0, np.float32)
    out = rig.send_student(40.0, student)
    np.testing.assert_allclose(codecs.image_to_array(out), 2.4, rtol=1e-6)
    # Back to the parameters.
    assert node.set_parameters([Parameter('calibration_file', value='')])[0].successful
    assert (node.fuser.config.alpha, node.fuser.config.beta) == (1.0, 0.0)


def test_bad_calibration_file_stops_start_up(ros_graph, tmp_path):
    path = tmp_path / 'cal.yaml'
    path.write_text('alpha: -3\nbeta: 0\n')
    with pytest.raises(StartupError) as info:
        ros_graph.add(DepthFusionNode,
                      parameter_overrides=[Parameter('calibration_file', value=str(path))])
    assert str(path) in str(info.value) and 'alpha -3 outside' in str(info.value), str(info.value)


def test_tof_only_output_while_the_student_is_silent(ros_graph):
    rig = Rig(ros_graph, publish_tof_only=True, student_timeout=0.2, use_confidence=True,
              diagnostics_period=0.2)
    _, mm, conf = data(5)
    wait_until(lambda: rig.node.student_watch.state(time.monotonic()) is StreamState.SILENT,
               what='the student stream to count as silent')
    rig.tof_pub.publish(codecs.array_to_image(mm, '16UC1', header(50.0, 'tof_frame')))
    rig.conf_pub.publish(codecs.array_to_image(conf, 'mono8', header(50.0, 'tof_frame')))
    out = rig.fused.wait_for(1)[0]
    assert out.header.frame_id == 'tof_frame' and out.header.stamp.sec == 50, 'ToF-only: the ToF header'
    expected = fuse(None, mm, '16UC1', conf, FusionConfig(range_min=0.2, range_max=4.0,
                                                          confidence_threshold=100.0))
    assert (out.height, out.width) == TOF_SHAPE and same(codecs.image_to_array(out), expected.depth)
    src = codecs.image_to_array(rig.source_for(out))
    assert set(np.unique(src)) <= {0, 1}
    rig.wait_diag(DiagnosticStatus.WARN, 'no student depth')
    # The student comes back; while it flows, ToF frames are only paired, not published alone. (A longer
    # student_timeout for this part keeps a slow machine from making the student look silent.)
    assert rig.node.set_parameters([Parameter('student_timeout', value=5.0)])[0].successful
    student, _, _ = data(6)
    rig.send_tof(51.0, mm, conf)
    rig.send_student(51.0, student)
    rig.send_tof(51.05, mm, conf)
    assert rig.node.counts == {'fused': 1, 'student only': 0, 'ToF only': 1, 'skipped (require_tof)': 0}
    # Silent again: ToF-only frames now come on the last student grid.
    assert rig.node.set_parameters([Parameter('student_timeout', value=0.2)])[0].successful
    wait_until(lambda: rig.node.student_watch.state(time.monotonic()) is StreamState.SILENT,
               what='the student stream to fall silent again')
    before = len(rig.fused.messages)
    rig.tof_pub.publish(codecs.array_to_image(mm, '16UC1', header(52.0)))
    rig.conf_pub.publish(codecs.array_to_image(conf, 'mono8', header(52.0)))
    out = rig.fused.wait_for(before + 1)[-1]
    assert (out.height, out.width) == STUDENT_SHAPE and np.count_nonzero(~np.isnan(
        codecs.image_to_array(out))) > 0
    assert rig.node.counts['ToF only'] == 2


def test_tof_only_frames_follow_stamps_that_jump_back(ros_graph):
    """A late, older frame is not published after a newer one; a clock that jumped back (a bag looping on
    its recorded stamps) does not stop ToF-only output for good."""
    rig = Rig(ros_graph, publish_tof_only=True, student_timeout=0.2, use_confidence=False)
    _, mm, _ = data(9)
    wait_until(lambda: rig.node.student_watch.state(time.monotonic()) is StreamState.SILENT,
               what='the student stream to count as silent')
    for sec in (100.0, 99.9, 50.0):  # newer, 0.1 s older (skipped), 50 s older (a new time line)
        rig.tof_pub.publish(codecs.array_to_image(mm, '16UC1', header(sec)))
    out = rig.fused.wait_for(2)
    assert [m.header.stamp.sec for m in out] == [100, 50], [m.header.stamp.sec for m in out]
    assert rig.node.counts['ToF only'] == 2, rig.node.counts


def test_diagnostics_report_mode_correction_and_counts(ros_graph):
    rig = Rig(ros_graph, mode='online_affine', use_confidence=False, diagnostics_period=0.2,
              online_min_inliers=20, tof_timeout=30.0, student_timeout=30.0)
    rng = np.random.default_rng(7)
    student = rng.uniform(0.5, 3.5, STUDENT_SHAPE).astype(np.float32)
    tof_m = np.repeat(np.repeat(1.2 * student - 0.1, 2, 0), 2, 1).astype(np.float32)
    rig.send_tof(60.0, tof_m, encoding='32FC1')
    rig.send_student(60.0, student)

    def reported(msgs):
        for m in msgs:
            for s in m.status:
                v = {kv.key: kv.value for kv in s.values}
                if v.get('fused') == '1' and v.get('mode') == 'online_affine':
                    return True
        return False

    msgs = rig.diags.wait_for(1, predicate=reported)
    status = next(s for m in msgs for s in m.status
                  if {kv.key: kv.value for kv in s.values}.get('fused') == '1')
    values = {kv.key: kv.value for kv in status.values}
    assert status.name == 'depth_fusion_node: depth fusion' and status.level == DiagnosticStatus.OK
    assert float(values['alpha']) == pytest.approx(0.8 * 1.0 + 0.2 * 1.2, abs=2e-3), values
    assert float(values['beta']) == pytest.approx(0.2 * -0.1, abs=2e-3), values
    assert values['correction'].startswith('fit') and float(values['inlier share']) == pytest.approx(1.0)
    on_grid = tof_m[1::2, 1::2]
    share = 100 * np.count_nonzero((on_grid >= np.float32(0.2)) & (on_grid <= np.float32(4.0))) / on_grid.size
    assert float(values['ToF share of last fused frame (%)']) == pytest.approx(share, abs=1e-3), values
    for key in ('ToF state', 'student only', 'dropped', 'student rate (Hz)', 'ToF rate (Hz)',
                'output rate (Hz)', 'fusion time (ms)', 'calibration'):
        assert key in values, f'diagnostics lack {key!r}: {sorted(values)}'


def test_warns_when_paired_tof_contributes_no_pixel(ros_graph):
    """A 32FC1 confidence in [0, 1] with a threshold meant for mono8: every ToF pixel fails the gate."""
    rig = Rig(ros_graph, confidence_threshold=50.0, diagnostics_period=0.2, tof_timeout=30.0,
              student_timeout=30.0)
    student, mm, _ = data(8)
    stamp = stamp_ns(70, 0)
    rig.tof_pub.publish(codecs.array_to_image(mm, '16UC1', header(70.0)))
    rig.conf_pub.publish(codecs.array_to_image(np.full(TOF_SHAPE, 0.9, np.float32), '32FC1', header(70.0)))
    wait_until(lambda: rig.node.pairer.confidence.exact(stamp) is not None, what='the confidence image')
    out = rig.send_student(70.0, student)
    assert not np.any(codecs.image_to_array(rig.source_for(out)) == SOURCE_TOF)
    status = rig.wait_diag(DiagnosticStatus.WARN, 'none of their pixels passes')
    assert "confidence image's units" in status.message
