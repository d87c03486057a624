"""Parameter bounds through the real parameter services, as `ros2 param set` uses them, for every node.

Everything is derived from each node module's ``PARAMS`` (so added or renamed parameters are covered):
each bounded number is set at its bound, just inside and just outside (accept, accept, reject); each
choice parameter to every choice and to one that is not; a wrong type is rejected; read-only parameters
refuse any change. The one cross-parameter rule, a ``*_min`` below its ``*_max`` (equal bounds rejected),
is applied by setting the partner to its own extreme in the same atomic request. Start-up values are
checked too: equal bounds, out-of-range and wrong-typed values end the node with one line.
"""

from __future__ import annotations

import re
import threading

import pytest
from rcl_interfaces.srv import GetParameters, SetParametersAtomically
from rclpy.parameter import Parameter, parameter_value_to_python
from replay_data import write_dataset

import depth_fusion.node
import pointcloud_xyz.node
import rc_offline.replay
import student_trt.node
from rc_perception.node_support import StartupError
from rc_perception.params import ParamSpec

from ros_harness import RosGraph, node_process
from student_models import student_files

pytestmark = pytest.mark.dds

NS = '/ranges'
MODULES = {'student_trt_node': student_trt.node, 'depth_fusion_node': depth_fusion.node,
           'pointcloud_xyz_node': pointcloud_xyz.node, 'replay_node': rc_offline.replay}
CLASSES = {'student_trt_node': student_trt.node.StudentTrtNode,
           'depth_fusion_node': depth_fusion.node.DepthFusionNode,
           'pointcloud_xyz_node': pointcloud_xyz.node.PointCloudXyzNode,
           'replay_node': rc_offline.replay.ReplayNode}


def specs(node: str) -> dict[str, ParamSpec]:
    return {s.name: s for s in MODULES[node].PARAMS}


def partner(node: str, name: str) -> str | None:
    """The other end of a ``<x>_min`` / ``<x>_max`` pair, if the node has it."""
    for a, b in (('_min', '_max'), ('_max', '_min')):
        if a in name and name.replace(a, b) in specs(node):
            return name.replace(a, b)
    return None


def cases():
    for node in MODULES:
        for spec in MODULES[node].PARAMS:
            yield pytest.param(node, spec.name, id=f'{node}.{spec.name}')


# ------------------------------------------------------------------------------------ the live nodes

class Nodes:
    """The four nodes in NS over real DDS, and their set/get parameter services called from the harness."""

    def __init__(self, graph: RosGraph, source) -> None:
        self.graph = graph
        overrides = {'student_trt_node': [Parameter('model_path', value=str(student_files().onnx)),
                                          Parameter('warmup_iterations', value=0)],
                     'replay_node': [Parameter('source', value=str(source)), Parameter('rate', value=1.0)]}
        for name, cls in CLASSES.items():
            graph.add(cls, namespace=NS, parameter_overrides=overrides.get(name, []))
        self._clients = {}

    def _call(self, service, node: str, request):
        key = (service, node)
        if key not in self._clients:
            suffix = 'set_parameters_atomically' if service is SetParametersAtomically else 'get_parameters'
            self._clients[key] = self.graph.node.create_client(service, f'{NS}/{node}/{suffix}')
        client = self._clients[key]
        assert client.wait_for_service(timeout_sec=20.0), f'no parameter service for {node}'
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        assert done.wait(20.0), f'{node}: no answer from {client.srv_name}'
        return future.result()

    def set(self, node: str, values: dict):
        """Set ``values`` in one atomic request; the SetParametersResult."""
        request = SetParametersAtomically.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self._call(SetParametersAtomically, node, request).result

    def get(self, node: str, name: str):
        response = self._call(GetParameters, node, GetParameters.Request(names=[name]))
        return parameter_value_to_python(response.values[0])


@pytest.fixture(scope='module')
def nodes(tmp_path_factory):
    source = write_dataset(tmp_path_factory.mktemp('replay') / 'data', frames=2)
    graph = RosGraph()
    try:
        yield Nodes(graph, source)
    finally:
        graph.close()


def expect(nodes: Nodes, node: str, values: dict, accept: bool, what: str) -> None:
    result = nodes.set(node, values)
    verdict = 'accepted' if result.successful else f'rejected ({result.reason})'
    assert result.successful == accept, \
        f'{node}: {what} {values}: expected {"accept" if accept else "reject"}, got {verdict}'
    name, value = next(iter(values.items()))
    now = nodes.get(node, name)
    if accept:
        assert now == value, f'{node}: {name} accepted as {value!r} but reads {now!r}'


def restore(nodes: Nodes, node: str, names) -> None:
    defaults = {n: specs(node)[n].default for n in names if n}
    result = nodes.set(node, defaults)
    assert result.successful, f'{node}: restoring {defaults} failed: {result.reason}'


# ------------------------------------------------------------------------------------------ the cases

def bound_values(spec: ParamSpec, bound: float, inward: int) -> list[tuple[str, object, bool]]:
    """(label, value, in range) at, just inside and just outside ``bound`` (``inward``: +1 for a min)."""
    if isinstance(spec.default, int):
        step = 1
    else:
        step = max(abs(bound), 1.0) * 1e-6
    kind = type(spec.default)
    return [('at', kind(bound), True), ('just inside', kind(bound + inward * step), True),
            ('just outside', kind(bound - inward * step), False)]


def check_bounds(nodes: Nodes, node: str, spec: ParamSpec) -> int:
    other = partner(node, spec.name)
    checked = 0
    for bound, inward in ((spec.min, +1), (spec.max, -1)):
        if bound is None:
            continue
        for label, value, in_range in bound_values(spec, bound, inward):
            values = {spec.name: value}
            accept = in_range
            if other:  # the partner at its far extreme, so only the equal-bounds rule can bite
                is_min = '_min' in spec.name
                far = specs(node)[other].max if is_min else specs(node)[other].min
                values[other] = type(specs(node)[other].default)(far)
                lo, hi = (value, far) if is_min else (far, value)
                accept = in_range and lo < hi
            expect(nodes, node, values, accept, f'{spec.name} {label} its bound {bound}')
            restore(nodes, node, (spec.name, other))
            checked += 1
    return checked


def other_value(spec: ParamSpec):
    """A valid value other than the default."""
    if isinstance(spec.default, bool):
        return not spec.default
    if spec.choices:
        return next(c for c in spec.choices if c != spec.default)
    if isinstance(spec.default, (int, float)):
        lo = spec.min if spec.min is not None else spec.default - 1
        return type(spec.default)(spec.max if spec.max is not None and spec.max != spec.default else lo)
    return spec.default + '_changed'


@pytest.mark.parametrize('node, name', list(cases()))
def test_parameter_set_over_the_parameter_service(nodes, node, name):
    spec = specs(node)[name]
    if spec.read_only:
        result = nodes.set(node, {name: other_value(spec)})
        assert not result.successful, f'{node}: read-only {name} accepted {other_value(spec)!r}'
        assert nodes.get(node, name) != other_value(spec)
        return
    checked = 0
    if spec.choices:
        for choice in spec.choices:
            expect(nodes, node, {name: choice}, True, 'a documented choice')
        expect(nodes, node, {name: 'not_a_choice'}, False, 'a value outside the choices')
        restore(nodes, node, (name,))
        checked += 1
    if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
        checked += check_bounds(nodes, node, spec)
        expect(nodes, node, {name: 'text'}, False, 'a string for a number')
    elif isinstance(spec.default, bool):
        expect(nodes, node, {name: not spec.default}, True, 'the other truth value')
        expect(nodes, node, {name: 1}, False, 'an integer for a bool')
        restore(nodes, node, (name,))
    else:
        expect(nodes, node, {name: 1.5}, False, 'a number for a string')
    if spec.min is not None or spec.max is not None:
        assert checked, f'{node}.{name}: bounded but no bound was checked'


def test_every_node_declares_bounded_or_read_only_parameters():
    """Guards the derivation above: the cases come from PARAMS, which must not be empty."""
    for node in MODULES:
        assert specs(node), f'{node}: PARAMS is empty'
    assert any(s.min is not None for s in pointcloud_xyz.node.PARAMS)
    assert partner('pointcloud_xyz_node', 'range_min') == 'range_max'
    assert partner('depth_fusion_node', 'range_max') == 'range_min'


# -------------------------------------------------------------------------------------------- start-up

@pytest.mark.parametrize('node', [n for n in MODULES if {'range_min', 'range_max'} <= set(specs(n))])
def test_equal_range_bounds_stop_start_up(ros_graph, node):
    with pytest.raises(StartupError, match='range_min.*range_max'):
        ros_graph.add(CLASSES[node], parameter_overrides=[Parameter('range_min', value=2.0),
                                                          Parameter('range_max', value=2.0)])


@pytest.mark.parametrize('args, message', [
    (['-p', 'range_min:=3.0', '-p', 'range_max:=3.0'], r'range_min \(3.0\) .*range_max \(3.0\)'),
    (['-p', 'range_min:=-1.0'], r'range_min must be >= 0\.0, got -1\.0'),
    (['-p', 'skip:=0'], 'skip must be >= 1, got 0'),
    (['-p', 'range_max:=5'], r'range_max must be float \(write 5\.0\), got 5'),
])
def test_bad_start_up_values_end_the_process_with_one_line(args, message):
    proc = node_process('pointcloud_xyz.node', args)
    out, _ = proc.communicate(timeout=60.0)
    assert proc.returncode == 1, f'expected exit 1, got {proc.returncode}:\n{out}'
    assert 'Traceback' not in out, out
    fatal = [line for line in out.splitlines() if '[FATAL]' in line]
    assert len(fatal) == 1 and re.search(f'pointcloud_xyz_node cannot start: invalid parameters: {message}',
                                         fatal[0]), out
