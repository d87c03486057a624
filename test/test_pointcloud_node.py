"""pointcloud_xyz_node over real rclpy and DDS: camera info + depth in, cloud out."""

import array

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from pointcloud_xyz.node import PointCloudXyzNode
from rc_perception import codecs
from rc_perception.node_support import StartupError

pytestmark = pytest.mark.dds

FX, FY, CX, CY = 300.0, 300.0, 31.5, 23.5


def info_msg(width=64, height=48) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.header.frame_id = 'camera_optical'
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    return info


def header(sec: int, frame: str = 'camera_optical') -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec = sec
    return h


def start_pipeline(graph, overrides=()):
    """The node (with parameter overrides), a cloud collector and the two input publishers, connected."""
    node = graph.add(PointCloudXyzNode, parameter_overrides=list(overrides))
    clouds = graph.collect(PointCloud2, 'perception/fused_depth_points')
    depth_pub = graph.publisher(Image, 'perception/fused_depth')
    info_pub = graph.publisher(CameraInfo, 'camera/camera_info')
    graph.wait_for_subscribers(depth_pub)
    graph.wait_for_subscribers(info_pub)
    graph.wait_for_publishers('perception/fused_depth_points')
    return graph, node, clouds, depth_pub, info_pub


@pytest.fixture
def pipeline(ros_graph):
    return start_pipeline(ros_graph)


def send_info(graph, node, info_pub, info=None):
    info_pub.publish(info or info_msg())
    from ros_harness import wait_until
    wait_until(lambda: node._info is not None, what='camera info at the node')


def test_cloud_coordinates_and_header(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    send_info(graph, node, info_pub)
    depth = np.full((48, 64), 2.0, np.float32)
    depth[10, 20] = np.nan
    depth_pub.publish(codecs.array_to_image(depth, '32FC1', header(42)))
    msg = clouds.wait_for(1)[0]
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.sec == 42
    pts = codecs.cloud_to_xyz(msg)
    assert pts.shape == (48, 64, 3)
    np.testing.assert_allclose(pts[23, 40], [(40 - CX) / FX * 2.0, (23 - CY) / FY * 2.0, 2.0], rtol=1e-6)
    assert np.isnan(pts[10, 20]).all()


def test_16uc1_depth_and_k_scaling_for_half_size_image(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    send_info(graph, node, info_pub, info_msg(128, 96))  # full-size camera info, half-size depth
    mm = np.full((48, 64), 1500, np.uint16)
    depth_pub.publish(codecs.array_to_image(mm, '16UC1', header(1)))
    pts = codecs.cloud_to_xyz(clouds.wait_for(1)[0])
    fx, cx = FX / 2, (CX - 1) / 2  # half-size pixel j sits at full-size pixel 2j + 1
    np.testing.assert_allclose(pts[0, 0, 0], (0 - cx) / fx * 1.5, rtol=1e-5)
    np.testing.assert_allclose(pts[:, :, 2], 1.5, rtol=1e-6)


def test_no_camera_info_yet_drops_frame_and_node_lives_on(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    depth_pub.publish(codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', header(1)))
    from ros_harness import wait_until
    wait_until(lambda: node.bad_input.total == 1, what='the frame to be dropped')
    assert 'no CameraInfo' in node.bad_input.last_reason
    send_info(graph, node, info_pub)
    depth_pub.publish(codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', header(2)))
    assert clouds.wait_for(1)[0].header.stamp.sec == 2


def test_malformed_messages_do_not_stop_the_node(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    send_info(graph, node, info_pub)
    bad = []
    wrong_encoding = codecs.array_to_image(np.zeros((48, 64, 3), np.uint8), 'rgb8', header(1))
    bad.append(wrong_encoding)
    truncated = codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', header(2))
    truncated.data = array.array('B', bytes(100))
    bad.append(truncated)
    zero = Image(header=header(3), height=0, width=0, encoding='32FC1', step=0)
    bad.append(zero)
    for msg in bad:
        depth_pub.publish(msg)
    from ros_harness import wait_until
    wait_until(lambda: node.bad_input.total == len(bad), what=f'{len(bad)} drops')
    reasons = '\n'.join(node.bad_input.recent)
    for expected in ("unsupported encoding 'rgb8'", 'needs 12288 bytes, got 100', 'zero size (0x0'):
        assert expected in reasons, f'expected a drop reason containing {expected!r}, got:\n{reasons}'
    # Zero intrinsics: the next frame is dropped too, then good intrinsics recover.
    zero_k = info_msg()
    zero_k.k = [0.0] * 9
    info_pub.publish(zero_k)
    wait_until(lambda: node._info.k[0] == 0.0, what='zero-K camera info')
    depth_pub.publish(codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', header(5)))
    wait_until(lambda: node.bad_input.total == len(bad) + 1, what='the zero-K frame to be dropped')
    assert 'focal lengths must be positive' in node.bad_input.last_reason
    assert 'CameraInfo on /camera/camera_info' in node.bad_input.last_reason, node.bad_input.last_reason
    send_info(graph, node, info_pub)
    wait_until(lambda: node._info.k[0] == FX, what='good camera info')
    depth_pub.publish(codecs.array_to_image(np.full((48, 64), 3.0, np.float32), '32FC1', header(6)))
    msg = clouds.wait_for(1)[0]
    assert msg.header.stamp.sec == 6
    np.testing.assert_allclose(codecs.cloud_to_xyz(msg)[:, :, 2], 3.0)
    assert len(clouds.messages) == 1  # nothing was published for the bad ones


def test_dense_mode_and_parameter_validation(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    result = node.set_parameters([Parameter('range_min', value=20.0)])[0]
    assert not result.successful and 'range_min (20.0) must be smaller than range_max' in result.reason
    assert node.params.values.range_min == 0.05
    results = node.set_parameters([Parameter('organized', value=False), Parameter('range_max', value=2.5)])
    assert [r.successful for r in results] == [True, True], [r.reason for r in results]
    assert node.params.values.organized is False and node.params.values.range_max == 2.5
    send_info(graph, node, info_pub)
    depth = np.full((48, 64), 2.0, np.float32)
    depth[:, :32] = 3.0  # beyond range_max: dropped from a dense cloud
    depth_pub.publish(codecs.array_to_image(depth, '32FC1', header(7)))
    msg = clouds.wait_for(1)[0]
    assert (msg.height, msg.width, msg.is_dense) == (1, 48 * 32, True)
    assert np.all(codecs.cloud_to_xyz(msg)[:, 2] == 2.0)


def test_diagnostics_report_counts(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    diags = graph.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=10))
    send_info(graph, node, info_pub)
    depth_pub.publish(codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', header(1)))
    depth_pub.publish(codecs.array_to_image(np.zeros((48, 64, 3), np.uint8), 'rgb8', header(2)))
    clouds.wait_for(1)

    def has_counts(msgs):
        for array_msg in msgs:
            for status in array_msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if values.get('clouds published') == '1' and values.get('dropped') == '1':
                    return True
        return False

    msgs = diags.wait_for(1, timeout=5.0, predicate=has_counts)
    status = msgs[-1].status[0]
    assert status.name == 'pointcloud_xyz_node: point cloud'


def test_a_qos_override_changes_only_its_own_topic(ros_graph):
    """rclpy writes overrides into the profile it is given: each entity must get a profile of its own."""
    from rclpy.qos import ReliabilityPolicy
    override = Parameter('qos_overrides./perception/fused_depth_points.publisher.reliability',
                         value='reliable')
    node = ros_graph.add(PointCloudXyzNode, parameter_overrides=[override])
    reliability = {
        'cloud publisher': node.get_publishers_info_by_topic('/perception/fused_depth_points'),
        'depth subscription': node.get_subscriptions_info_by_topic('/perception/fused_depth'),
        'camera info subscription': node.get_subscriptions_info_by_topic('/camera/camera_info'),
    }
    got = {k: [i.qos_profile.reliability for i in v] for k, v in reliability.items()}
    assert got == {'cloud publisher': [ReliabilityPolicy.RELIABLE],
                   'depth subscription': [ReliabilityPolicy.BEST_EFFORT],
                   'camera info subscription': [ReliabilityPolicy.BEST_EFFORT]}, got


def test_invalid_start_up_parameters_stop_the_node_naming_it_and_the_reason(ros_graph):
    overrides = [Parameter('range_min', value=5.0), Parameter('range_max', value=1.0)]
    with pytest.raises(StartupError) as info:
        ros_graph.add(PointCloudXyzNode, parameter_overrides=overrides)
    text = str(info.value)
    assert 'pointcloud_xyz_node cannot start' in text and 'range_min (5.0)' in text, text


def test_a_failing_diagnostics_report_is_published_as_error_and_the_node_lives_on(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    diags = graph.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=10))

    def broken():
        raise RuntimeError('boom')

    node.diagnostics._collect = broken
    msgs = diags.wait_for(1, timeout=5.0, predicate=lambda ms: any(
        s.level == DiagnosticStatus.ERROR and 'diagnostics failed: RuntimeError: boom' in s.message
        for m in ms for s in m.status))
    assert msgs
    send_info(graph, node, info_pub)
    depth_pub.publish(codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', header(9)))
    assert clouds.wait_for(1)[0].header.stamp.sec == 9


# ------------------------------------------------------------------ bounds, parameters over DDS

def set_over_dds(graph, node_name: str, params: list[Parameter]):
    """Set parameters through the node's set_parameters service, as `ros2 param set` does."""
    from rcl_interfaces.srv import SetParameters
    client = graph.node.create_client(SetParameters, f'/{node_name}/set_parameters')
    assert client.wait_for_service(timeout_sec=10.0), 'no set_parameters service'
    future = client.call_async(SetParameters.Request(parameters=[p.to_parameter_msg() for p in params]))
    from ros_harness import wait_until
    wait_until(future.done, what='the set_parameters response')
    graph.node.destroy_client(client)
    return future.result().results


@pytest.mark.parametrize('low', [10.0, 12.0])  # equal to the default range_max (10.0), and above it
def test_range_min_not_below_range_max_is_refused_over_dds_and_at_start_up(ros_graph, low):
    node = ros_graph.add(PointCloudXyzNode)
    results = set_over_dds(ros_graph, 'pointcloud_xyz_node', [Parameter('range_min', value=low)])
    assert not results[0].successful, f'range_min {low} with range_max 10.0 was accepted'
    assert f'range_min ({low}) must be smaller than range_max (10.0)' in results[0].reason, results[0].reason
    assert (node.params.values.range_min, node.params.values.range_max) == (0.05, 10.0)
    results = set_over_dds(ros_graph, 'pointcloud_xyz_node', [Parameter('range_max', value=0.05)])
    assert not results[0].successful and 'range_min (0.05) must be smaller than range_max (0.05)' in \
        results[0].reason, results[0].reason
    just_above = set_over_dds(ros_graph, 'pointcloud_xyz_node', [Parameter('range_max', value=0.0501)])
    assert just_above[0].successful, just_above[0].reason
    with pytest.raises(StartupError, match=rf'range_min \({low}\) must be smaller than range_max \(10.0\)'):
        ros_graph.add(PointCloudXyzNode, parameter_overrides=[Parameter('range_min', value=low)])


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
@pytest.mark.parametrize('organized', [True, False])
def test_depth_at_range_bounds_stays_just_outside_drops(ros_graph, encoding, organized):
    # The bound cases stand side by side (0.5 m next to 2.0 m): a veiling pair, so that test is off here.
    overrides = [Parameter('range_min', value=0.5), Parameter('range_max', value=2.0),
                 Parameter('organized', value=organized), Parameter('skip', value=2),
                 Parameter('veiling_min_angle', value=0.0)]
    _, node, clouds, depth_pub, info_pub = start_pipeline(ros_graph, overrides)
    send_info(ros_graph, node, info_pub, info_msg(8, 4))
    # Kept pixels with skip 2: rows 1, 3 and columns 1, 3, 5, 7 of a 8 x 4 image.
    if encoding == '32FC1':
        values = np.array([0.5, 2.0, np.nextafter(np.float32(0.5), 0), np.nextafter(np.float32(2.0), 3)],
                          np.float32)
        depth = np.full((4, 8), np.nan, np.float32)
    else:
        values = np.array([500, 2000, 499, 2001], np.uint16)
        depth = np.zeros((4, 8), np.uint16)
    depth[1, 1::2] = values
    depth_pub.publish(codecs.array_to_image(depth, encoding, header(3)))
    pts = codecs.cloud_to_xyz(clouds.wait_for(1)[0])
    if organized:
        assert pts.shape == (2, 4, 3)
        z = pts[0, :, 2]
        assert np.array_equal(np.isnan(z), [False, False, True, True]), f'z of the bound cases: {z}'
        np.testing.assert_allclose(z[:2], [0.5, 2.0], rtol=1e-6)
    else:
        np.testing.assert_allclose(pts[:, 2], [0.5, 2.0], rtol=1e-6)



def test_veiling_points_behind_an_edge_are_left_out_by_default(ros_graph):
    """A 1 m wall in the left half of the image and a 3 m one in the right, with a column of mixed pixels at
    1.8 m between them (a ToF's flying pixels): they and the two background columns next to them are NaN,
    the rest is back-projected (veiling_min_angle 5, veiling_window 2 by default)."""
    _, node, clouds, depth_pub, info_pub = start_pipeline(ros_graph)
    send_info(ros_graph, node, info_pub)
    depth = np.full((48, 64), 3.0, np.float32)
    depth[:, :32] = 1.0
    depth[:, 32] = 1.8
    depth_pub.publish(codecs.array_to_image(depth, '32FC1', header(4)))
    z = codecs.cloud_to_xyz(clouds.wait_for(1)[0])[:, :, 2]
    dropped = np.flatnonzero(np.isnan(z).all(axis=0))
    np.testing.assert_array_equal(dropped, [32, 33, 34], err_msg=f'columns dropped: {dropped}')
    assert np.isfinite(z[:, :32]).all() and np.isfinite(z[:, 35:]).all()

# ------------------------------------------------------------------------------- camera models

def test_plumb_bob_camera_info_recovers_a_known_point(pipeline):
    """The point is projected through the lens here (the forward model written out), and its depth put
    at the pixel it lands on: the cloud gives the point back."""
    graph, node, clouds, depth_pub, info_pub = pipeline
    k1, k2, p1, p2, k3 = -0.3, 0.09, 1e-3, -5e-4, -0.01
    x, y, z = 1.1, -0.7, 1.6
    xn, yn = x / z, y / z
    r2 = xn * xn + yn * yn
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn * xn)
    yd = yn * radial + p1 * (r2 + 2 * yn * yn) + 2 * p2 * xn * yn
    info = info_msg()
    info.distortion_model = 'plumb_bob'
    info.d = [k1, k2, p1, p2, k3]
    info.k = [FX, 0.0, 50 - FX * xd, 0.0, FY, 10 - FY * yd, 0.0, 0.0, 1.0]  # the point lands on (50, 10)
    send_info(graph, node, info_pub, info)
    depth = np.full((48, 64), np.nan, np.float32)
    depth[10, 50] = z
    depth_pub.publish(codecs.array_to_image(depth, '32FC1', header(4)))
    pts = codecs.cloud_to_xyz(clouds.wait_for(1)[0])
    np.testing.assert_allclose(pts[10, 50], [x, y, z], atol=1e-6, rtol=0)
    pinhole = [(50 - info.k[2]) / FX * z, (10 - info.k[5]) / FY * z]
    assert abs(pinhole[0] - x) > 0.05, 'the lens must matter for this test to mean anything'


def test_unknown_distortion_is_refused_naming_the_fix_then_rectified_uses_p(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    info = info_msg()
    info.distortion_model = 'vendor_special'
    info.d = [0.1, 0.0, 0.0, 0.0]
    info.p = [2 * FX, 0.0, 30.0, 0.0, 0.0, 2 * FY, 20.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    send_info(graph, node, info_pub, info)
    depth_pub.publish(codecs.array_to_image(np.full((48, 64), 2.0, np.float32), '32FC1', header(5)))
    from ros_harness import wait_until
    wait_until(lambda: node.bad_input.total == 1, what='the frame to be dropped')
    reason = node.bad_input.last_reason
    assert "distortion model 'vendor_special'" in reason and 'rectified:=true' in reason, reason
    assert not clouds.messages
    results = set_over_dds(graph, 'pointcloud_xyz_node', [Parameter('rectified', value=True)])
    assert results[0].successful, results[0].reason
    depth_pub.publish(codecs.array_to_image(np.full((48, 64), 2.0, np.float32), '32FC1', header(6)))
    pts = codecs.cloud_to_xyz(clouds.wait_for(1)[0])
    np.testing.assert_allclose(pts[20, 30], [0.0, 0.0, 2.0], atol=1e-7)  # P's principal point
    np.testing.assert_allclose(pts[20, 40], [10 / (2 * FX) * 2.0, 0.0, 2.0], rtol=1e-6)


def test_16_9_camera_with_half_size_depth(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    info = CameraInfo(width=640, height=360)
    info.k = [500.0, 0.0, 319.5, 0.0, 500.0, 179.5, 0.0, 0.0, 1.0]
    send_info(graph, node, info_pub, info)
    depth_pub.publish(codecs.array_to_image(np.full((180, 320), 1.0, np.float32), '32FC1', header(7)))
    pts = codecs.cloud_to_xyz(clouds.wait_for(1)[0])
    assert pts.shape == (180, 320, 3)
    # Pixel j of the half-size grid is camera pixel 2 j + 1: x = (2 j + 1 - 319.5) / 500 * z.
    np.testing.assert_allclose(pts[0, 0], [(1 - 319.5) / 500, (1 - 179.5) / 500, 1.0], rtol=1e-6)
    np.testing.assert_allclose(pts[179, 319], [(639 - 319.5) / 500, (359 - 179.5) / 500, 1.0], rtol=1e-6)


# ----------------------------------------------------------------------------------- clearing cloud

def test_clearing_cloud_marks_the_rays_of_pixels_without_depth(ros_graph):
    overrides = [Parameter('publish_clearing_cloud', value=True), Parameter('clearing_distance', value=3.0),
                 Parameter('clearing_skip', value=2), Parameter('range_max', value=4.0)]
    clearing = ros_graph.collect(PointCloud2, 'perception/clearing_points')
    _, node, clouds, depth_pub, info_pub = start_pipeline(ros_graph, overrides)
    ros_graph.wait_for_publishers('perception/clearing_points')
    info = CameraInfo(width=8, height=4)
    info.k = [2.0, 0.0, 5.0, 0.0, 2.0, 3.0, 0.0, 0.0, 1.0]  # ray of pixel (u, v): ((u - 5) / 2, (v - 3) / 2)
    send_info(ros_graph, node, info_pub, info)
    depth = np.full((4, 8), 1.0, np.float32)
    depth[1, 1] = np.nan   # kept pixel (1, 1): no reading -> 3 m along its ray
    depth[1, 5] = 9.0      # kept pixel (1, 5): beyond range_max, farther than 3 m -> 3 m
    depth[3, 3] = 0.0      # kept pixel (3, 3): no reading
    depth[0, 0] = np.nan   # not a kept pixel of clearing_skip 2
    depth_pub.publish(codecs.array_to_image(depth, '32FC1', header(8)))
    msg = clearing.wait_for(1)[0]
    assert msg.header.stamp.sec == 8 and msg.header.frame_id == 'camera_optical'
    assert (msg.height, msg.width, msg.is_dense) == (1, 3, True)

    def at(u, v, distance):
        ray = np.array([(u - 5) / 2, (v - 3) / 2, 1.0])
        return ray / np.linalg.norm(ray) * distance

    np.testing.assert_allclose(codecs.cloud_to_xyz(msg), [at(1, 1, 3.0), at(5, 1, 3.0), at(3, 3, 3.0)],
                               rtol=1e-6)
    cloud = codecs.cloud_to_xyz(clouds.wait_for(1)[0])
    assert np.isnan(cloud[1, 1]).all() and np.isnan(cloud[1, 5]).all() and cloud[2, 2, 2] == 1.0


def test_no_clearing_publisher_unless_asked(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    assert graph.node.count_publishers('perception/clearing_points') == 0
    assert node.get_parameter('publish_clearing_cloud').value is False


# ------------------------------------------------------------------------ diagnostics, namespace

def test_diagnostics_carry_latency_and_camera_model(pipeline):
    graph, node, clouds, depth_pub, info_pub = pipeline
    from rc_perception.latency import PHASES, latency_key
    diags = graph.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=10))
    send_info(graph, node, info_pub)
    for _ in range(3):
        h = header(0)
        h.stamp = graph.node.get_clock().now().to_msg()  # camera stamps of now: ages of milliseconds
        depth_pub.publish(codecs.array_to_image(np.ones((48, 64), np.float32), '32FC1', h))
    clouds.wait_for(3)

    def latest(msgs):
        values = {kv.key: kv.value for m in msgs for s in m.status for kv in s.values}
        return values if values.get('clouds published') == '3' else None

    values = latest(diags.wait_for(1, timeout=5.0, predicate=latest))
    assert values['camera model'] == 'K (no distortion)'
    assert values['pixels without a ray'] == '0' and values['clearing points (last cloud)'] == '-'
    figures = {(phase, pct): float(values[latency_key(phase, pct)]) for phase in PHASES for pct in (50, 99)}
    for (phase, pct), ms in figures.items():
        assert 0.0 <= ms < 10_000.0, f'{latency_key(phase, pct)} = {ms} ms'
    assert figures[('output age', 50)] >= figures[('input age', 50)]
    assert figures[('wait', 99)] == 0.0  # the node works in its callback


def test_topics_follow_the_namespace(ros_graph):
    ros_graph.add(PointCloudXyzNode, namespace='robot1')
    ros_graph.wait_for_publishers('/robot1/perception/fused_depth_points')
    assert ros_graph.node.count_subscribers('/robot1/perception/fused_depth') == 1
    assert ros_graph.node.count_subscribers('/robot1/camera/camera_info') == 1
