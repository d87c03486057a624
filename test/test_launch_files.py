"""Launch files and config checked without `launch` installed: they must not drift from the nodes.

- every launch file is valid Python defining generate_launch_description(); each stage file is the
  pipeline file with one stage;
- what the launch arguments touch exists: every executable the plan starts is a console script, every
  remapped topic is one the node uses, every overridden parameter is declared, with the same choices;
- perception_composed knows every node by its name;
- config/perception.yaml keys each node /**/<node> (any namespace) and lists exactly the parameters it
  declares, with the same defaults;
- doc/launch.md's argument table is the declared arguments, defaults and descriptions.
"""

import ast
import importlib
import inspect
import re
from glob import glob
from pathlib import Path

import pytest
import yaml

from rc_perception import launch_args
from rc_perception.composition import NODE_CLASSES, load_node_class

from ros_harness import REPO

LAUNCH_FILES = sorted(glob(str(Path(REPO) / 'launch' / '*.launch.py')))
NODE_MODULES = {
    'student_trt_node': 'student_trt.node',
    'depth_fusion_node': 'depth_fusion.node',
    'pointcloud_xyz_node': 'pointcloud_xyz.node',
}


def console_scripts() -> dict[str, str]:
    tree = ast.parse(Path(REPO, 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = [ast.literal_eval(e) for e in value.elts]
                    return {e.split('=')[0].strip(): e.split('=')[1].strip() for e in entries}
    raise AssertionError('setup.py declares no console_scripts')


def specs(node: str) -> dict:
    return {s.name: s for s in importlib.import_module(NODE_MODULES[node]).PARAMS}


def test_there_is_a_launch_file_per_stage_and_one_for_the_pipeline():
    names = {Path(p).name for p in LAUNCH_FILES}
    assert {'perception.launch.py', 'student.launch.py', 'fusion.launch.py', 'pointcloud.launch.py'} <= names


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: Path(p).name)
def test_launch_file_defines_generate_launch_description(path):
    tree = ast.parse(Path(path).read_text(), filename=path)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions, f'{path} lacks generate_launch_description()'


@pytest.mark.parametrize('stage', sorted(launch_args.STAGES))
def test_a_stage_file_is_the_pipeline_file_with_that_stage(stage):
    text = Path(REPO, 'launch', f'{stage}.launch.py').read_text()
    assert "with_name('perception.launch.py')" in text, f'{stage}.launch.py does not include the pipeline'
    assert f"{{'stages': '{stage}'}}" in text, f'{stage}.launch.py does not select stages:={stage}'


def test_only_the_pipeline_file_declares_arguments():
    declaring = [Path(p).name for p in LAUNCH_FILES if 'DeclareLaunchArgument' in Path(p).read_text()]
    assert declaring == ['perception.launch.py'], f'arguments declared in {declaring}: declare them once'


def test_every_executable_the_launch_starts_is_a_console_script(tmp_path):
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'')
    scripts = console_scripts()
    for composed in ('false', 'true'):
        plan = launch_args.plan_launch({'model_path': str(model), 'composed': composed})
        for process in plan.processes:
            assert process.executable in scripts, f'the launch starts {process.executable}: no console script'
    assert scripts[launch_args.CONTAINER] == 'rc_perception.composition:main'
    for node in launch_args.NODES:  # each node executable is the container with that one node
        assert scripts[node] == f'rc_perception.composition:{node}', f'{node} starts {scripts[node]}'


@pytest.mark.parametrize('node', launch_args.NODES)
def test_remapped_topics_and_overridden_parameters_exist_in_the_node(node):
    source = inspect.getsource(importlib.import_module(NODE_MODULES[node]))
    for topic, argument in launch_args.REMAPS[node]:
        assert f"'{topic}'" in source, f'{argument} remaps {topic}, which {node} does not use'
        assert launch_args.check_arguments({})[argument] == topic, f'{argument} must default to {topic}'
    overridden = list(launch_args.OVERRIDES[node])
    if node == 'depth_fusion_node':
        overridden.append('publish_tof_only')  # set when the student is off
    unknown = [p for p in overridden if p not in specs(node)]
    assert not unknown, f'the launch overrides {unknown}, which {node} does not declare'


def test_launch_argument_choices_are_the_node_parameter_choices():
    assert set(launch_args.BACKENDS) == set(specs('student_trt_node')['backend'].choices)
    assert set(launch_args.FUSION_MODES) == set(specs('depth_fusion_node')['mode'].choices)
    assert isinstance(specs('depth_fusion_node')['publish_source_map'].default, bool)


@pytest.mark.parametrize('node', sorted(NODE_CLASSES))
def test_the_container_loads_each_node_class_by_its_name(node):
    cls = load_node_class(node)
    module = importlib.import_module(NODE_MODULES[node])
    assert cls.__module__ == module.__name__, f'{node} loads {cls}, expected a class of {module.__name__}'
    assert f"super().__init__('{node}'" in inspect.getsource(cls), f'{cls.__name__} is not named {node}'


def test_the_container_refuses_unknown_names_with_one_line():
    for name, expected in (('camera_node', "unknown node 'camera_node'"),
                           ('no_such.module:Node', 'cannot import no_such.module'),
                           ('pointcloud_xyz.node:Nope', 'pointcloud_xyz.node has no class Nope')):
        with pytest.raises(ValueError, match=expected):
            load_node_class(name)


@pytest.mark.parametrize('node_name', sorted(NODE_MODULES))
def test_params_yaml_matches_declared_parameters_and_defaults(node_name):
    config = yaml.safe_load(Path(REPO, 'config', 'perception.yaml').read_text())
    key = f'/**/{node_name}'
    assert key in config, f'config/perception.yaml has no section {key} (sections: {sorted(config)})'
    in_yaml = config[key]['ros__parameters']
    declared = specs(node_name)
    assert sorted(in_yaml) == sorted(declared), (
        f'{node_name}: only in YAML {sorted(set(in_yaml) - set(declared))}, '
        f'declared but missing in YAML {sorted(set(declared) - set(in_yaml))}')
    for name, spec in declared.items():
        value = in_yaml[name]
        assert spec.check(value) is None, f'{node_name}.{name}: YAML value {value!r}: {spec.check(value)}'
        assert value == spec.default, \
            f'{node_name}.{name}: YAML says {value!r}, the node defaults to {spec.default!r}'


def test_nav2_snippet_observes_what_the_pipeline_publishes():
    from rc_offline.costmap import CostmapConfig
    config = CostmapConfig.from_yaml(Path(REPO, 'config', 'nav2_local_costmap.yaml'))   # Nav2's types
    node_source = inspect.getsource(importlib.import_module(NODE_MODULES['pointcloud_xyz_node']))
    sources = [s for layer in config.layers for s in layer.sources]
    assert any(s.marking for s in sources), 'no source marks obstacles'
    for source in sources:
        assert source.sensor_frame == '', f'{source.name}: the cloud\'s own frame_id is the sensor origin'
        if source.marking:
            assert f"'{source.key}'" in node_source, f'{source.name} observes {source.topic}, which ' \
                'pointcloud_xyz_node does not publish'
        else:   # the optional clearing cloud of pointcloud_xyz_node (publish_clearing_cloud)
            assert source.key == 'perception/clearing_points', f'{source.name} observes {source.topic}'


def test_the_documented_argument_table_is_the_declared_arguments():
    text = Path(REPO, 'doc', 'launch.md').read_text()
    section = text.split('\n## Arguments\n', 1)[1].split('\n## ', 1)[0]
    rows = re.findall(r'^\| `(\w+)` \| (?:`([^`]*)`|\(empty\)) \| (.*) \|$', section, re.M)
    documented = {name: (default, meaning) for name, default, meaning in rows}
    declared = {a.name: (a.default, a.description) for a in launch_args.ARGUMENTS}
    assert documented == declared, (
        f'doc/launch.md lacks {sorted(set(declared) - set(documented))}, documents unknown '
        f'{sorted(set(documented) - set(declared))}, differs on '
        f'{sorted(n for n in set(declared) & set(documented) if declared[n] != documented[n])}')
