"""depth_fusion_node over real rclpy and DDS. Expected outputs are written by hand (truth tables, index
formulas, closed forms), never computed with depth_fusion's own functions."""

import array
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_fusion.calibration import Calibration, write_calibration
from depth_fusion.node import DepthFusionNode
from depth_fusion.pairing import StreamState
from pointcloud_xyz.node import PointCloudXyzNode
from rc_perception import codecs
from rc_perception.node_support import StartupError

from ros_harness import node_process, stop_process, wait_until

pytestmark = pytest.mark.dds

FRAME = 'camera_color_optical_frame'
NAN = np.nan
F32 = np.float32
BASE = {'range_min': 0.2, 'range_max': 4.0, 'confidence_threshold': 100.0, 'max_time_diff': 0.05,
        'min_student_delta1': 0.0}


def header(sec: float, frame: str = FRAME) -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec = int(sec)
    h.stamp.nanosec = int(round((sec - int(sec)) * 1e9))
    return h


def stamp_of(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class Rig:
    """The node under test plus the test's publishers and collectors."""

    def __init__(self, graph, node=None, confidence=True, **params):
        overrides = [Parameter(k, value=v) for k, v in {**BASE, **params}.items()]
        self.graph = graph
        self.node = node or graph.add(DepthFusionNode, parameter_overrides=overrides)
        self.fused = graph.collect(Image, 'perception/fused_depth')
        self.source = graph.collect(Image, 'perception/fused_depth/source')
        self.diags = graph.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=50))
        self.student_pub = graph.publisher(Image, 'student/depth')
        self.tof_pub = graph.publisher(Image, 'camera/depth')
        self.conf_pub = graph.publisher(Image, 'camera/depth/confidence') if confidence else None
        for pub in (self.student_pub, self.tof_pub, self.conf_pub):
            if pub is not None:
                graph.wait_for_subscribers(pub)
        graph.wait_for_publishers('perception/fused_depth')

    def send_tof(self, sec, tof, conf=None, encoding='16UC1', conf_encoding='mono8'):
        self.tof_pub.publish(codecs.array_to_image(tof, encoding, header(sec)))
        if conf is not None:
            self.conf_pub.publish(codecs.array_to_image(conf, conf_encoding, header(sec)))
        stamp = int(round(sec * 1e9))
        pairer = self.node.state.pairer
        wait_until(lambda: pairer.depth.exact(stamp) is not None
                   and (conf is None or pairer.confidence.exact(stamp) is not None), what=f'ToF frame {sec}')

    def send_student(self, sec, student, encoding='32FC1'):
        """Publish a student depth and wait for its output; returns (depth, source) arrays."""
        before = len(self.fused.messages)
        self.student_pub.publish(codecs.array_to_image(student, encoding, header(sec)))
        out = self.fused.wait_for(before + 1)[-1]
        assert stamp_of(out) == pytest.approx(sec, abs=1e-9), 'the output carries the student header'
        src = self.source.wait_for(1, predicate=lambda ms: any(stamp_of(m) == stamp_of(out) for m in ms))
        src = next(m for m in src if stamp_of(m) == stamp_of(out))
        return codecs.image_to_array(out), codecs.image_to_array(src)

    def wait_diag(self, text, level=None, timeout=10.0):
        def matching(msgs):
            return [s for m in msgs for s in m.status
                    if text in s.message and (level is None or s.level == level)]
        msgs = self.diags.wait_for(1, timeout=timeout, predicate=lambda ms: bool(matching(ms)))
        status = matching(msgs)[-1]
        return status, {kv.key: kv.value for kv in status.values}


def check_table(got, expected, labels, what):
    got, expected = np.asarray(got).ravel(), np.asarray(expected).ravel()
    wrong = [f'{label}: expected {e}, got {g}' for label, g, e in zip(labels, got, expected, strict=True)
             if not (g == e or (np.isnan(e) and np.isnan(g)))]
    assert not wrong, f'{what}:\n' + '\n'.join(wrong)


# (label, ToF mm, confidence, student m) -> (output m, source); range 0.2-4.0 m, confidence >= 100
TABLE = [
    ('ToF valid, confident', 1500, 200, 2.0, F32(1500) / F32(1000), 1),
    ('confidence exactly at the threshold', 1500, 100, 2.0, F32(1500) / F32(1000), 1),
    ('confidence 1 below the threshold', 1500, 99, 2.0, 2.0, 2),
    ('ToF at range_min', 200, 200, 2.0, F32(200) / F32(1000), 1),
    ('ToF 1 mm below range_min', 199, 200, 2.0, 2.0, 2),
    ('ToF 1 mm above range_min', 201, 200, 2.0, F32(201) / F32(1000), 1),
    ('ToF at range_max', 4000, 200, 2.0, 4.0, 1),
    ('ToF 1 mm below range_max', 3999, 200, 2.0, F32(3999) / F32(1000), 1),
    ('ToF 1 mm beyond range_max', 4001, 200, 2.0, 2.0, 2),
    ('no ToF reading (0 mm)', 0, 200, 2.0, 2.0, 2),
    ('no ToF, student NaN', 0, 200, NAN, NAN, 0),
    ('no ToF, student 0', 0, 200, 0.0, NAN, 0),
    ('no ToF, student negative', 0, 200, -1.0, NAN, 0),
    ('no ToF, student +inf', 0, 200, np.inf, NAN, 0),
    ('ToF valid, student NaN', 1500, 200, NAN, F32(1500) / F32(1000), 1),
    ('unconfident ToF, student NaN', 1500, 0, NAN, NAN, 0),
]


def table_arrays(rows=TABLE):
    shape = (2, len(rows) // 2)
    mm = np.array([r[1] for r in rows], np.uint16).reshape(shape)
    conf = np.array([r[2] for r in rows], np.uint8).reshape(shape)
    student = np.array([r[3] for r in rows], np.float32).reshape(shape)
    return mm, conf, student


def test_every_case_of_the_rule_over_dds(ros_graph):
    """A 2x8 ToF / confidence / student with every case of valid, invalid and each bound."""
    rig = Rig(ros_graph, use_confidence='true')
    mm, conf, student = table_arrays()
    rig.send_tof(100.0, mm, conf)
    depth, source = rig.send_student(100.0, student)
    labels = [r[0] for r in TABLE]
    assert depth.dtype == np.float32 and source.dtype == np.uint8 and depth.shape == (2, 8)
    check_table(depth, [r[4] for r in TABLE], labels, 'fused depth')
    check_table(source, [r[5] for r in TABLE], labels, 'source map')
    assert rig.fused.messages[-1].header.frame_id == FRAME


def test_confidence_auto_uses_it_when_it_publishes_and_validity_alone_otherwise(ros_graph):
    mm, conf, student = table_arrays()
    rig = Rig(ros_graph, confidence=False, diagnostics_period=0.2)  # use_confidence: auto (default)
    rig.send_tof(5.0, mm)
    _, source = rig.send_student(5.0, student)
    expected = [1 if 200 <= r[1] <= 4000 else (0 if r[5] == 0 or np.isnan(r[4]) else 2) for r in TABLE]
    check_table(source, expected, [r[0] for r in TABLE], 'no confidence publisher: validity alone')
    _, values = rig.wait_diag('fusing')
    assert values['confidence'] == 'auto: validity alone', values['confidence']
    conf_pub = ros_graph.publisher(Image, 'camera/depth/confidence')  # a confidence stream appears
    ros_graph.wait_for_subscribers(conf_pub)
    rig.conf_pub = conf_pub
    rig.send_tof(6.0, mm, conf)
    _, source = rig.send_student(6.0, student)
    check_table(source, [r[5] for r in TABLE], [r[0] for r in TABLE], 'confidence publishing: used')
    rig.diags.clear()
    _, values = rig.wait_diag('fusing')
    assert values['confidence'] == 'auto: used', values['confidence']


def test_max_time_diff_bound_and_require_tof(ros_graph):
    rig = Rig(ros_graph, use_confidence='false', diagnostics_period=0.2, tof_timeout=30.0, max_time_diff=0.05)
    mm = np.full((4, 6), 1500, np.uint16)
    student = np.full((4, 6), 2.0, np.float32)
    rig.send_tof(20.0, mm)
    for sec, paired in ((20.05, True), (20.049, True), (19.951, True), (20.0501, False), (19.9499, False)):
        _, source = rig.send_student(sec, student)
        assert np.all(source == (1 if paired else 2)), f'student at {sec}: expected paired={paired}'
    status, _ = rig.wait_diag('no ToF within max_time_diff (0.05 s)', DiagnosticStatus.WARN)
    assert '(nearest 50 ms)' in status.message, status.message
    assert rig.node.set_parameters([Parameter('require_tof', value=True)])[0].successful
    before = len(rig.fused.messages)
    rig.student_pub.publish(codecs.array_to_image(student, '32FC1', header(20.4)))
    wait_until(lambda: rig.node.state.counts['skipped (require_tof)'] == 1, what='the frame to be skipped')
    rig.send_student(20.01, student)
    assert len(rig.fused.messages) == before + 1, 'the skipped frame must not be published'


@pytest.mark.parametrize('params', [{'range_min': 2.0, 'range_max': 2.0},
                                    {'range_min': 3.0, 'range_max': 2.0}])
def test_equal_or_crossed_range_bounds_stop_start_up(ros_graph, params):
    with pytest.raises(StartupError, match=r'range_min \(\d.0\) must be >= 0 and smaller than range_max'):
        ros_graph.add(DepthFusionNode, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_parameter_sets_are_checked(ros_graph, tmp_path):
    rig = Rig(ros_graph, mode='affine', use_confidence='false')
    node = rig.node
    for name, value, ok in (('range_min', 4.0, False), ('range_min', 3.999, True), ('range_min', 0.2, True),
                            ('range_max', 0.2, False), ('range_max', 0.2001, True), ('range_max', 4.0, True),
                            ('use_confidence', 'maybe', False), ('mode', 'local', True),
                            ('mode', 'affine', True),
                            ('min_student_delta1', 1.01, False), ('trust_when_blind', 'withhold', True)):
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert result.successful is ok, f'{name}={value}: expected accepted={ok}, got {result.reason!r}'
    assert node.fuser.config.trust_when_blind == 'withhold' and node.fuser.gate.when_blind == 'withhold'
    missing = tmp_path / 'nope.yaml'
    result = node.set_parameters([Parameter('calibration_file', value=str(missing))])[0]
    assert not result.successful and str(missing) in result.reason and 'does not exist' in result.reason
    good = tmp_path / 'cal.yaml'
    write_calibration(good, Calibration(1.25, -0.1))
    assert node.set_parameters([Parameter('calibration_file', value=str(good))])[0].successful
    depth, source = rig.send_student(40.0, np.full((3, 4), 2.0, np.float32))
    assert np.all(np.isnan(depth)) and np.all(source == 0), 'no ToF to judge by, trust_when_blind withhold'
    assert node.set_parameters([Parameter('trust_when_blind', value='trust')])[0].successful
    depth, _ = rig.send_student(40.5, np.full((3, 4), 2.0, np.float32))
    np.testing.assert_array_equal(depth, F32(2.0) * F32(1.25) + F32(-0.1))
    assert node.set_parameters([Parameter('calibration_file', value='')])[0].successful
    depth, _ = rig.send_student(41.0, np.full((3, 4), 2.0, np.float32))
    np.testing.assert_array_equal(depth, 2.0)


def test_bad_calibration_file_and_bool_use_confidence_stop_start_up(ros_graph, tmp_path):
    path = tmp_path / 'cal.yaml'
    path.write_text('alpha: -3\nbeta: 0\n')
    with pytest.raises(StartupError) as info:
        ros_graph.add(DepthFusionNode, parameter_overrides=[Parameter('calibration_file', value=str(path))])
    assert str(path) in str(info.value) and 'alpha -3 outside' in str(info.value), str(info.value)
    with pytest.raises(StartupError, match=r'use_confidence must be str \(one of auto, true, false\), '
                                           r'got bool'):
        ros_graph.add(DepthFusionNode, parameter_overrides=[Parameter('use_confidence', value=True)])


def expected_index(src: int, dst: int) -> np.ndarray:
    """Which source pixel each destination pixel reads, written out independently: a whole-factor
    decimation f takes f * j + f // 2; any other ratio the pixel nearest the area centre."""
    if src % dst == 0:
        f = src // dst
        return f * np.arange(dst) + f // 2
    return np.clip(np.floor((np.arange(dst) + 0.5) * src / dst - 0.5 + 0.5), 0, src - 1).astype(int)


@pytest.mark.parametrize('camera, grids', [((480, 640), [(240, 320), (181, 320)]),
                                           ((360, 640), [(180, 320), (181, 320)]),
                                           ((720, 1280), [(240, 320), (181, 320)]),
                                           ((480, 848), [(240, 424), (181, 320)])])
def test_any_camera_and_student_grid_over_dds(ros_graph, camera, grids):
    """ToF and confidence at the camera size, the student at the grid its node uses and at an awkward
    ratio: every frame is fused, each ToF pixel of the output is the camera pixel the index formula names."""
    rig = Rig(ros_graph, use_confidence='true', range_max=10.0)
    rng = np.random.default_rng(sum(camera))
    mm = rng.integers(300, 9000, camera).astype(np.uint16)
    conf = np.where(rng.random(camera) < 0.2, 0, 255).astype(np.uint8)
    for k, grid in enumerate(grids):
        sec = 10.0 + k
        rig.send_tof(sec, mm, conf)
        depth, source = rig.send_student(sec, np.full(grid, 20.0, np.float32))
        assert depth.shape == grid
        rows, cols = expected_index(camera[0], grid[0]), expected_index(camera[1], grid[1])
        tof_ok = conf[np.ix_(rows, cols)] == 255
        assert np.array_equal(source == 1, tof_ok) and np.all(source[~tof_ok] == 2), f'{camera} -> {grid}'
        expected = (mm[np.ix_(rows, cols)] / F32(1000))[tof_ok]
        assert np.array_equal(depth[tof_ok], expected), f'{camera} -> {grid}'
    assert rig.node.bad_input.total == 0, rig.node.bad_input.recent


def test_decimated_tof_points_land_where_the_full_resolution_ones_do(ros_graph):
    """The fusion publishes a 640x480 ToF on the 320x240 student grid; the real pointcloud_xyz_node, given
    the full-size CameraInfo, back-projects each of its pixels to the 3-D point of the full-resolution pixel
    it came from (pinhole, written out here), within 1e-6 m."""
    rig = Rig(ros_graph, use_confidence='false', range_max=4.0)
    # Random depths: neighbours 0.3-3.9 m apart, veiling pairs nearly everywhere; that filter is off here.
    ros_graph.add(PointCloudXyzNode, parameter_overrides=[Parameter('veiling_min_angle', value=0.0)])
    clouds = ros_graph.collect(PointCloud2, 'perception/fused_depth_points')
    info_pub = ros_graph.publisher(CameraInfo, 'camera/camera_info')
    ros_graph.wait_for_subscribers(info_pub)
    fx, fy, cx, cy = 495.5, 497.25, 322.75, 243.5
    info = CameraInfo(header=header(0.0), width=640, height=480, distortion_model='plumb_bob')
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    rng = np.random.default_rng(3)
    mm = rng.integers(300, 3900, (480, 640)).astype(np.uint16)
    rig.send_tof(30.0, mm)
    for _ in range(50):  # the CameraInfo is best effort: repeat until the cloud node has one
        info_pub.publish(info)
        rig.send_student(30.0, np.full((240, 320), 9.0, np.float32))
        try:
            cloud = clouds.wait_for(1, timeout=0.5)[-1]
            break
        except AssertionError:
            continue
    xyz = codecs.cloud_to_xyz(cloud).astype(np.float64)
    assert xyz.shape == (240, 320, 3)
    v, u = np.mgrid[:240, :320]
    row, col = 2 * v + 1, 2 * u + 1  # the full-resolution pixel each output pixel is
    z = (mm[row, col] / F32(1000)).astype(np.float32).astype(np.float64)
    expected = np.stack([(col - cx) * z / fx, (row - cy) * z / fy, z], axis=-1)
    assert np.abs(xyz - expected).max() < 1e-6, np.abs(xyz - expected).max()


def test_trust_gate_withholds_a_wrong_student_and_gives_the_fill_back(ros_graph):
    rig = Rig(ros_graph, use_confidence='false', min_student_delta1=0.75, trust_hysteresis=0.05,
              accuracy_smoothing=0.0, fit_sample_size=0, diagnostics_period=0.2, tof_timeout=30.0,
              student_timeout=30.0)
    mm = np.full((8, 8), 2000, np.uint16)
    mm[:, 4:] = 0  # the right half is a hole for the student to fill
    good, bad = np.full((8, 8), 2.2, np.float32), np.full((8, 8), 4.0, np.float32)
    for k, (student, fill) in enumerate(((good, True), (bad, False), (bad, False), (good, True))):
        rig.send_tof(50.0 + k, mm)
        depth, source = rig.send_student(50.0 + k, student)
        assert np.all(source[:, :4] == 1) and np.all(depth[:, :4] == 2.0), 'the ToF half is untouched'
        if fill:
            assert np.all(source[:, 4:] == 2) and np.all(depth[:, 4:] == student[:, 4:]), f'frame {k}: fill'
        else:
            assert np.all(source[:, 4:] == 0) and np.all(np.isnan(depth[:, 4:])), f'frame {k}: withheld'
        if k == 2:
            status, values = rig.wait_diag('student fill withheld for 1.0 s', DiagnosticStatus.WARN)
            assert 'student disagrees with the ToF (delta1 0.00' in status.message, status.message
            assert (values['student fill'], values['student delta1'], values['overlap (%)']) == \
                ('withheld', '0.000', '50.000'), values
            assert float(values['student AbsRel']) == pytest.approx(1.0), values  # |4 - 2| / 2
    rig.diags.clear()
    _, values = rig.wait_diag('fusing ToF and student depth', DiagnosticStatus.OK)
    assert values['student fill'] == 'on' and float(values['student AbsRel']) == pytest.approx(0.1)
    for key in ('compute p50 (ms)', 'output age p99 (ms)', 'student rate (Hz)', 'kernel'):
        assert key in values, f'diagnostics lack {key!r}: {sorted(values)}'
    assert values['kernel'] == 'numba'


def test_a_student_frame_waits_for_its_tof_with_a_multithreaded_executor(ros_graph):
    """The student depth arrives before the ToF of its stamp: it is held and fused with that ToF (not the
    older one), whatever order a multi-threaded executor serves the callbacks in. ``max_time_diff`` (the
    hold's deadline in arrival time) is long enough that a loaded machine cannot expire the hold between
    two steps of the test."""
    params = [Parameter(k, value=v) for k, v in {**BASE, 'use_confidence': 'true', 'max_time_diff': 3.0,
                                                 'tof_timeout': 30.0}.items()]
    node = DepthFusionNode(context=ros_graph.context, parameter_overrides=params)
    executor = MultiThreadedExecutor(num_threads=3, context=ros_graph.context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        rig = Rig(ros_graph, node=node)
        old, new = np.full((2, 2), 1000, np.uint16), np.full((2, 2), 3000, np.uint16)
        conf = np.full((2, 2), 255, np.uint8)
        rig.send_tof(60.0, old, conf)
        before = len(rig.fused.messages)
        student = np.full((2, 2), 9.0, np.float32)
        rig.student_pub.publish(codecs.array_to_image(student, '32FC1', header(60.1)))
        wait_until(lambda: node.hold.deadline is not None, what='the student frame to be held')
        assert len(rig.fused.messages) == before, 'held frames are not published yet'
        rig.tof_pub.publish(codecs.array_to_image(new, '16UC1', header(60.1)))
        wait_until(lambda: node.state.pairer.depth.exact(60_100_000_000) is not None, what='the new ToF')
        assert node.hold.deadline is not None and len(rig.fused.messages) == before, \
            'the depth alone does not release it: its confidence is still missing'
        rig.conf_pub.publish(codecs.array_to_image(conf, 'mono8', header(60.1)))
        out = codecs.image_to_array(rig.fused.wait_for(before + 1)[-1])
        np.testing.assert_array_equal(out, F32(3000) / F32(1000))
        # No ToF at or after the student comes: fused with the older one when the hold expires (3 s).
        rig.student_pub.publish(codecs.array_to_image(student, '32FC1', header(60.4)))
        out = codecs.image_to_array(rig.fused.wait_for(before + 2, timeout=15.0)[-1])
        np.testing.assert_array_equal(out, F32(3000) / F32(1000))
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        thread.join(timeout=5.0)


def test_malformed_inputs_do_not_stop_the_node(ros_graph):
    rig = Rig(ros_graph, use_confidence='true')
    mm, conf, student = table_arrays()
    bad = [('student', codecs.array_to_image(np.zeros((4, 4, 3), np.uint8), 'rgb8', header(1)))]
    truncated = codecs.array_to_image(student, '32FC1', header(2))
    truncated.data = array.array('B', bytes(10))
    bad.append(('student', truncated))
    bad.append(('student', Image(header=header(3), height=0, width=0, encoding='32FC1', step=0)))
    bad.append(('tof', codecs.array_to_image(np.zeros((2, 8), np.uint8), 'mono8', header(4))))
    bad.append(('conf', codecs.array_to_image(np.zeros((2, 8, 3), np.uint8), 'rgb8', header(6))))
    pubs = {'student': rig.student_pub, 'tof': rig.tof_pub, 'conf': rig.conf_pub}
    for topic, msg in bad:
        pubs[topic].publish(msg)
    wait_until(lambda: rig.node.bad_input.total == len(bad), what=f'{len(bad)} drops')
    # A confidence image of another size than its depth: that frame is dropped, the reason names both sizes.
    rig.send_tof(7.0, mm, np.zeros((3, 5), np.uint8))
    rig.student_pub.publish(codecs.array_to_image(student, '32FC1', header(7.0)))
    wait_until(lambda: rig.node.bad_input.total == len(bad) + 1, what='the mismatched frame to be dropped')
    reasons = '\n'.join(rig.node.bad_input.recent)
    for expected in ("unsupported encoding 'rgb8'", 'needs 64 bytes, got 10', 'zero size (0x0',
                     "unsupported encoding 'mono8'", 'confidence image is 5x3 and its ToF depth 8x2'):
        assert expected in reasons, f'expected a drop reason containing {expected!r}, got:\n{reasons}'
    assert len(rig.fused.messages) == 0, 'nothing may be published for malformed input'
    rig.send_tof(8.0, mm, conf)
    _, source = rig.send_student(8.0, student)
    check_table(source, [r[5] for r in TABLE], [r[0] for r in TABLE], 'a good frame afterwards')


def test_tof_only_output_while_the_student_is_silent(ros_graph):
    rig = Rig(ros_graph, publish_tof_only=True, student_timeout=0.2, use_confidence='true',
              diagnostics_period=0.2)
    mm, conf, _ = table_arrays()
    wait_until(lambda: rig.node.state.student_watch.state(time.monotonic()) is StreamState.SILENT,
               what='the student stream to count as silent')
    rig.tof_pub.publish(codecs.array_to_image(mm, '16UC1', header(50.0, 'tof_frame')))
    rig.conf_pub.publish(codecs.array_to_image(conf, 'mono8', header(50.0, 'tof_frame')))
    out = rig.fused.wait_for(1)[0]
    assert out.header.frame_id == 'tof_frame' and out.header.stamp.sec == 50, 'ToF-only: the ToF header'
    expected = [r[4] if r[5] == 1 else NAN for r in TABLE]
    check_table(codecs.image_to_array(out), expected, [r[0] for r in TABLE], 'ToF-only depth')
    rig.wait_diag('no student depth', DiagnosticStatus.WARN)
    assert rig.node.state.counts['ToF only'] == 1


def test_without_numba_the_node_runs_the_numpy_rule_and_says_so(ros_graph):
    """NUMBA_DISABLE_JIT stands for a platform where numba cannot compile: one warning line, same output."""
    args = ['-p', "use_confidence:='true'", '-p', 'range_min:=0.2', '-p', 'confidence_threshold:=100.0',
            '-p', 'min_student_delta1:=0.0', '-p', 'max_time_diff:=5.0',  # the student waits for its ToF
            '-p', 'require_tof:=true']  # and is only published with it
    proc = node_process('depth_fusion.node', args, env={'NUMBA_DISABLE_JIT': '1'})
    try:
        source = ros_graph.collect(Image, 'perception/fused_depth/source')
        pubs = [ros_graph.publisher(Image, t)
                for t in ('student/depth', 'camera/depth', 'camera/depth/confidence')]
        for pub in pubs:
            ros_graph.wait_for_subscribers(pub, timeout=30.0)
        ros_graph.wait_for_publishers('perception/fused_depth/source')
        mm, conf, student = table_arrays()
        for k in range(40):  # the node process may match the test's publishers after they see it: repeat
            sec = 9.0 + k
            pubs[0].publish(codecs.array_to_image(student, '32FC1', header(sec)))
            pubs[1].publish(codecs.array_to_image(mm, '16UC1', header(sec)))
            pubs[2].publish(codecs.array_to_image(conf, 'mono8', header(sec)))
            try:
                src = codecs.image_to_array(source.wait_for(1, timeout=0.5)[-1])
                break
            except AssertionError:
                continue
        check_table(src, [r[5] for r in TABLE], [r[0] for r in TABLE], 'numpy rule in the node')
    finally:
        code, output = stop_process(proc)
    assert code == 0, output
    warnings = [line for line in output.splitlines() if 'NUMBA_DISABLE_JIT is set' in line]
    assert len(warnings) == 1 and 'numpy version of the rule' in warnings[0], output
