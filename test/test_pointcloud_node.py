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


@pytest.fixture
def pipeline(ros_graph):
    node = ros_graph.add(PointCloudXyzNode)
    clouds = ros_graph.collect(PointCloud2, 'perception/fused_depth_points')
    depth_pub = ros_graph.publisher(Image, 'perception/fused_depth')
    info_pub = ros_graph.publisher(CameraInfo, 'camera/camera_info')
    ros_graph.wait_for_subscribers(depth_pub)
    ros_graph.wait_for_subscribers(info_pub)
    ros_graph.wait_for_publishers('perception/fused_depth_points')
    return ros_graph, node, clouds, depth_pub, info_pub


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
