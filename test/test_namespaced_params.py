"""Params files apply under a namespace and in both layouts, read back over DDS from the real executables.

Each node executable, and the container with all three, is started with ``-r __ns:=/robot1``, the
shipped config/perception.yaml and then a user's file (keyed ``/**/<node>``, the documented form), as
the launch file starts them; the parameters are then read over each node's GetParameters service.
Every value the user's file sets must be the one the node runs with.

A bare ``pointcloud_xyz_node:`` key is what loses a whole file under a namespace (rcl reads it as
``/pointcloud_xyz_node``); the launch file re-keys such sections (launch_args.scope_bare_keys), and
the last test shows both the loss and the fix on a real node.
"""

import pytest
import yaml

from rc_perception.launch_args import scope_bare_keys

from process_harness import Executable, get_parameters
from ros_harness import REPO
from student_models import student_files

pytestmark = [pytest.mark.dds, pytest.mark.slow]

SHIPPED = f'{REPO}/config/perception.yaml'
#: What a user's file sets, node by node (none of these is a node's default).
CUSTOM = {
    'student_trt_node': {'output_size': 'input', 'warmup_iterations': 1, 'num_threads': 1},
    'depth_fusion_node': {'mode': 'median', 'confidence_threshold': 80.0, 'publish_source_map': False,
                          'tof_buffer_size': 4},
    'pointcloud_xyz_node': {'skip': 2, 'organized': False, 'range_max': 6.5},
}


def user_file(tmp_path, keys: str = '/**/{}') -> str:
    sections = {keys.format(node): {'ros__parameters': dict(values)} for node, values in CUSTOM.items()}
    sections[keys.format('student_trt_node')]['ros__parameters']['model_path'] = str(student_files().onnx)
    path = tmp_path / 'robot1.yaml'
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def ros_args(params_file: str) -> list[str]:
    return ['--ros-args', '-r', '__ns:=/robot1', '--params-file', SHIPPED, '--params-file', params_file]


def read_back(graph, procs) -> dict[str, dict]:
    got = {}
    try:
        for node, values in CUSTOM.items():
            got[node] = get_parameters(graph, f'/robot1/{node}', sorted(values), timeout=60.0)
    finally:
        outputs = {proc.name: proc.stop() for proc in procs}
    for name, (code, out) in outputs.items():
        assert code == 0, f'{name} exited with {code}, expected 0:\n{out}'
    return got


def test_every_value_of_the_users_file_applies_under_a_namespace_one_process_per_node(ros_graph, tmp_path):
    args = ros_args(user_file(tmp_path))
    got = read_back(ros_graph, [Executable(node, args) for node in CUSTOM])
    lost = {node: {k: (v, got[node][k]) for k, v in values.items() if got[node][k] != v}
            for node, values in CUSTOM.items()}
    assert not any(lost.values()), f'values lost under /robot1 (expected, running with): {lost}'


def test_every_value_of_the_users_file_applies_under_a_namespace_in_the_container(ros_graph, tmp_path):
    got = read_back(ros_graph, [Executable('perception_composed', ros_args(user_file(tmp_path)))])
    lost = {node: {k: (v, got[node][k]) for k, v in values.items() if got[node][k] != v}
            for node, values in CUSTOM.items()}
    assert not any(lost.values()), f'values lost in the container under /robot1 (expected, got): {lost}'


def test_bare_keys_are_lost_under_a_namespace_unless_the_launch_re_keys_them(ros_graph, tmp_path):
    bare = {'pointcloud_xyz_node': {'ros__parameters': CUSTOM['pointcloud_xyz_node']}}
    (tmp_path / 'bare.yaml').write_text(yaml.safe_dump(bare))
    (tmp_path / 'scoped.yaml').write_text(yaml.safe_dump(scope_bare_keys(bare)[0]))
    got = {}
    for name in ('bare', 'scoped'):
        proc = Executable('pointcloud_xyz_node', ros_args(str(tmp_path / f'{name}.yaml')))
        try:
            got[name] = get_parameters(ros_graph, '/robot1/pointcloud_xyz_node', ['skip'], timeout=60.0)
        finally:
            code, out = proc.stop()
        assert code == 0, f'pointcloud_xyz_node ({name} keys) exited with {code}:\n{out}'
    assert got == {'bare': {'skip': 1}, 'scoped': {'skip': 2}}, \
        f'expected the bare key ignored (skip 1, the default) and the re-keyed one applied (2), got {got}'
