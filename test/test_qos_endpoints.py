"""QoS of every publisher and subscription of every node, read back from the running graph.

The four nodes run in a namespace over real rclpy and Fast DDS. For each of their endpoints the graph
(``get_publishers_info_by_topic`` / ``get_subscriptions_info_by_topic``) gives the reliability and
durability that DDS advertises; Fast DDS does not advertise history and depth (the graph says UNKNOWN, 0),
so those are read from the entity each node created. Expected, as documented (rc_perception.qos,
config/perception.yaml): images, clouds and camera info best effort, volatile, keep last 5;
/diagnostics reliable, volatile, keep last 10 (as diagnostic_updater publishes it).
"""

from __future__ import annotations

import textwrap

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from replay_data import write_dataset

from depth_fusion.node import DepthFusionNode
from pointcloud_xyz.node import PointCloudXyzNode
from rc_offline.replay import ReplayNode
from student_trt.node import StudentTrtNode

from ros_harness import RosGraph, wait_until
from student_models import student_files

pytestmark = pytest.mark.dds

NS = '/qos_check'
SENSOR = (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE, HistoryPolicy.KEEP_LAST, 5)
DIAGNOSTICS = (ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE, HistoryPolicy.KEEP_LAST, 10)
#: rclpy's own endpoints on every node (not the package's to choose).
RCLPY_TOPICS = {'/rosout', '/parameter_events'}

#: The documented topics of each node: (publishers, subscriptions), relative to the namespace.
DOCUMENTED = {
    'student_trt_node': ({'student/depth', 'student/segmentation', 'student/segmentation/color',
                          '/diagnostics'}, {'camera/rgb'}),
    'depth_fusion_node': ({'perception/fused_depth', 'perception/fused_depth/source', '/diagnostics'},
                          {'student/depth', 'camera/depth', 'camera/depth/confidence'}),
    'pointcloud_xyz_node': ({'perception/fused_depth_points', '/diagnostics'},
                            {'perception/fused_depth', 'camera/camera_info'}),
    'replay_node': ({'camera/rgb', 'camera/depth', 'camera/depth/confidence', 'camera/camera_info'}, set()),
}


def resolved(topic: str) -> str:
    return topic if topic.startswith('/') else f'{NS}/{topic}'


def expected_qos(topic: str) -> tuple:
    return DIAGNOSTICS if topic == '/diagnostics' else SENSOR


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    source = write_dataset(tmp_path_factory.mktemp('replay') / 'data', frames=2)
    g = RosGraph()
    try:
        nodes = {
            'student_trt_node': g.add(StudentTrtNode, namespace=NS, parameter_overrides=[
                Parameter('model_path', value=str(student_files().onnx)),
                Parameter('warmup_iterations', value=0)]),
            'depth_fusion_node': g.add(DepthFusionNode, namespace=NS),
            'pointcloud_xyz_node': g.add(PointCloudXyzNode, namespace=NS),
            'replay_node': g.add(ReplayNode, namespace=NS, parameter_overrides=[
                Parameter('source', value=str(source)), Parameter('rate', value=1.0)]),
        }
        wait_until(lambda: all(g.node.count_publishers(resolved(t)) for t in DOCUMENTED['replay_node'][0]),
                   20.0, 'the nodes in the graph')
        yield g, nodes
    finally:
        g.close()


def graph_endpoints(g: RosGraph, name: str) -> dict[tuple[str, str], object]:
    """{(kind, topic): TopicEndpointInfo} of node ``name`` in NS, as the graph reports them."""
    out = {}
    n = g.node
    lookups = (('publisher', n.get_publisher_names_and_types_by_node, n.get_publishers_info_by_topic),
               ('subscription', n.get_subscriber_names_and_types_by_node, n.get_subscriptions_info_by_topic))
    for kind, by_node, by_topic in lookups:
        for topic, _ in by_node(name, NS):
            if topic in RCLPY_TOPICS:
                continue
            infos = [i for i in by_topic(topic) if (i.node_name, i.node_namespace) == (name, NS)]
            assert len(infos) == 1, f'{name}: expected one {kind} on {topic}, the graph has {len(infos)}'
            out[(kind, topic)] = infos[0]
    return out


@pytest.mark.parametrize('name', list(DOCUMENTED))
def test_every_endpoint_in_the_graph_has_the_documented_reliability_and_durability(graph, name):
    g, _ = graph
    endpoints = graph_endpoints(g, name)
    pubs, subs = DOCUMENTED[name]
    documented = {('publisher', resolved(t)) for t in pubs} | {('subscription', resolved(t)) for t in subs}
    missing = documented - set(endpoints)
    assert not missing, f'{name}: documented endpoints missing from the graph: {sorted(missing)}'
    for (kind, topic), info in endpoints.items():
        q = info.qos_profile
        want = expected_qos(topic)
        assert (q.reliability, q.durability) == want[:2], \
            f'{name} {kind} {topic}: expected {want[0].name}, {want[1].name}; ' \
            f'the graph says {q.reliability.name}, {q.durability.name}'


@pytest.mark.parametrize('name', list(DOCUMENTED))
def test_every_entity_keeps_the_documented_history_and_depth(graph, name):
    _, nodes = graph
    node = nodes[name]
    entities = [('publisher', p) for p in node.publishers] + [('subscription', s) for s in node.subscriptions]
    checked = 0
    for kind, entity in entities:
        if entity.topic_name in RCLPY_TOPICS:
            continue
        q = entity.qos_profile
        want = expected_qos(entity.topic_name)
        got = (q.reliability, q.durability, q.history, q.depth)
        assert got == want, f'{name} {kind} {entity.topic_name}: expected {want}, got {got}'
        checked += 1
    pubs, subs = DOCUMENTED[name]
    assert checked >= len(pubs) + len(subs), f'{name}: checked {checked} entities, documented ' \
                                             f'{len(pubs) + len(subs)}'


def test_a_params_file_qos_override_takes_effect(tmp_path):
    """The YAML form of config/perception.yaml's example, given as --params-file, as a launch file does."""
    ns = '/qos_override'  # apart from the module's nodes, which publish the same topics in NS
    cloud, info = f'{ns}/perception/fused_depth_points', f'{ns}/camera/camera_info'
    params = tmp_path / 'qos.yaml'
    params.write_text(textwrap.dedent(f"""\
        {ns}/pointcloud_xyz_node:  # fully qualified: a bare node name matches only the root namespace
          ros__parameters:
            qos_overrides:
              {cloud}:
                publisher:
                  reliability: reliable
                  depth: 3
              {info}:
                subscription:
                  reliability: reliable
                  history: keep_all
        """))
    context = Context()
    rclpy.init(args=['--ros-args', '--params-file', str(params)], context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        node = PointCloudXyzNode(context=context, namespace=ns)
        executor.add_node(node)
        q = next(p for p in node.publishers if p.topic_name == cloud).qos_profile
        assert (q.reliability, q.depth, q.history, q.durability) == (
            ReliabilityPolicy.RELIABLE, 3, HistoryPolicy.KEEP_LAST, DurabilityPolicy.VOLATILE), q
        q = next(s for s in node.subscriptions if s.topic_name == info).qos_profile
        assert (q.reliability, q.durability, q.history) == (
            ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE, HistoryPolicy.KEEP_ALL), q
        depth_sub = next(s for s in node.subscriptions if s.topic_name == f'{ns}/perception/fused_depth')
        assert depth_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT, 'others keep the default'
        wait_until(lambda: node.get_publishers_info_by_topic(cloud), 10.0, f'{cloud} in the graph')
        advertised = [i for i in node.get_publishers_info_by_topic(cloud) if i.node_namespace == ns]
        assert advertised[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE, 'as DDS advertises it'
        assert node.get_parameter(f'qos_overrides.{cloud}.publisher.depth').value == 3
        node.destroy_node()
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def test_durability_is_overridable_as_qos_py_documents():
    from rclpy.qos_overriding_options import QoSPolicyKind

    from rc_perception import qos

    assert QoSPolicyKind.DURABILITY in qos.overridable().policy_kinds
