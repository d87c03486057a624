"""Launch files and config checked without `launch` installed: they must not drift from the nodes.

- every launch file is valid Python defining generate_launch_description();
- every executable it starts from this package is one of its console scripts;
- every parameter a launch argument overrides, and every topic it remaps, exists in that node;
- config/perception.yaml lists exactly the parameters each node declares, with the same defaults.
"""

import ast
import importlib
import inspect
from glob import glob
from pathlib import Path

import pytest
import yaml

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


def launch_nodes(path: str) -> list[dict]:
    """The Node(...) calls of a launch file: package, executable, overridden parameters, remapped topics."""
    found = []
    for call in ast.walk(ast.parse(Path(path).read_text())):
        if not (isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'Node'):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        if not isinstance(kw.get('package'), ast.Constant) or kw['package'].value != 'rc_perception':
            continue
        remapped = [ast.literal_eval(t.elts[0]) for t in getattr(kw.get('remappings'), 'elts', [])]
        found.append({'executable': kw['executable'].value, 'remapped': remapped})
    overrides = []
    for call in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', None) == 'parameter_overrides':
            overrides += [ast.literal_eval(k) for k in call.args[0].keys]
    for node in found:
        node['overrides'] = overrides
    return found


def test_there_is_a_launch_file_per_stage_and_one_for_the_pipeline():
    names = {Path(p).name for p in LAUNCH_FILES}
    assert {'perception.launch.py', 'student.launch.py', 'fusion.launch.py', 'pointcloud.launch.py'} <= names


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: Path(p).name)
def test_launch_file_defines_generate_launch_description(path):
    tree = ast.parse(Path(path).read_text(), filename=path)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions, f'{path} lacks generate_launch_description()'


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: Path(p).name)
def test_launch_file_names_only_real_executables_parameters_and_topics(path):
    scripts = console_scripts()
    for node in launch_nodes(path):
        exe = node['executable']
        assert exe in scripts, f'{Path(path).name} starts {exe}, not a console script of rc_perception'
        module = importlib.import_module(NODE_MODULES[exe])
        declared = {spec.name for spec in module.PARAMS}
        unknown = [p for p in node['overrides'] if p not in declared]
        assert not unknown, f'{Path(path).name} overrides {unknown}, which {exe} does not declare'
        source = inspect.getsource(module)
        for topic in node['remapped']:
            assert f"'{topic}'" in source, f'{Path(path).name} remaps {topic}, which {exe} does not use'


def test_perception_launch_includes_every_stage():
    text = Path(REPO, 'launch', 'perception.launch.py').read_text()
    for stage in ('student', 'fusion', 'pointcloud'):
        assert f"include('{stage}'" in text


@pytest.mark.parametrize('node_name', sorted(NODE_MODULES))
def test_params_yaml_matches_declared_parameters_and_defaults(node_name):
    config = yaml.safe_load(Path(REPO, 'config', 'perception.yaml').read_text())
    assert node_name in config, f'config/perception.yaml has no section for {node_name}'
    in_yaml = config[node_name]['ros__parameters']
    specs = {s.name: s for s in importlib.import_module(NODE_MODULES[node_name]).PARAMS}
    assert sorted(in_yaml) == sorted(specs), (
        f'{node_name}: only in YAML {sorted(set(in_yaml) - set(specs))}, '
        f'declared but missing in YAML {sorted(set(specs) - set(in_yaml))}')
    for name, spec in specs.items():
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
