"""What the launch file starts, decided from its arguments (rc_perception.launch_args; pure, no launch).

The expectations are written out by hand: the error lines a user sees, the processes and parameters of
each layout, rcl's params-file key matching as a truth table, and the camera mount's axes.
"""

import math
import re

import numpy as np
import pytest
import yaml

from rc_perception.launch_args import (
    ARGUMENTS,
    CONTAINER,
    LaunchArgumentError,
    camera_transforms,
    check_arguments,
    exit_message,
    node_parameters,
    plan_launch,
    scope_bare_keys,
    to_bool,
)

DEFAULTS = {a.name: a.default for a in ARGUMENTS}


@pytest.fixture
def model(tmp_path):
    path = tmp_path / 'student_fp32.onnx'
    path.write_bytes(b'not read by the plan')
    return str(path)


def params_file(tmp_path, sections: dict) -> str:
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return str(path)


# ------------------------------------------------------------------------------------------ checking

def test_the_defaults_pass_and_every_argument_has_a_description():
    assert check_arguments({}) == DEFAULTS
    assert len(DEFAULTS) == len(ARGUMENTS), 'an argument is declared twice'
    short = [a.name for a in ARGUMENTS if len(a.description) < 15]
    assert not short, f'arguments without a real description: {short}'


@pytest.mark.parametrize('name, value, expected', [
    ('fusion_mode', 'bogus', "fusion_mode:='bogus': expected one of gated, affine, median, online_affine, "
                             'local (or empty: the params file value)'),
    ('publish_source_map', 'maybe', "publish_source_map:='maybe': expected true, false or empty"),
    ('backend', 'cuda', "backend:='cuda': expected one of auto, tensorrt, onnxruntime"),
    ('composed', 'yes please', "composed:='yes please': expected true or false"),
    ('use_respawn', '', "use_respawn:='': expected true or false"),
    ('respawn_delay', '-1', "respawn_delay:='-1': expected seconds >= 0"),
    ('log_level', 'verbose', "log_level:='verbose': expected one of debug, info, warn, error, fatal"),
    ('stages', 'student,cloud', "stages:='student,cloud': expected a comma-separated subset of student, "
                                'fusion, pointcloud'),
    ('namespace', 'robot 1', "namespace:='robot 1': expected a ROS namespace"),
    ('namespace', 'robot1/', "namespace:='robot1/': expected a ROS namespace"),
    ('rgb_topic', '/camera/rgb/', "rgb_topic:='/camera/rgb/': expected a ROS topic name"),
    ('camera_pitch', '10deg', "camera_pitch:='10deg': expected a number"),
    ('camera_x', 'nan', "camera_x:='nan': expected a finite number"),
    ('base_frame', '/base_link', "base_frame:='/base_link': expected a tf2 frame id"),
])
def test_a_bad_value_gives_one_line_naming_argument_value_and_allowed(name, value, expected):
    with pytest.raises(LaunchArgumentError) as info:
        check_arguments({name: value})
    text = str(info.value)
    assert expected in text, f'expected {expected!r} in the message, got {text!r}'
    assert '\n' not in text, f'expected one line, got {text!r}'


def test_every_bad_argument_is_named_in_the_one_line():
    with pytest.raises(LaunchArgumentError) as info:
        check_arguments({'fusion_mode': 'bogus', 'publish_source_map': 'maybe'})
    assert "fusion_mode:='bogus'" in str(info.value) and "publish_source_map:='maybe'" in str(info.value)


def test_an_unknown_argument_is_refused():
    with pytest.raises(LaunchArgumentError, match='unknown launch argument.*fusion_mod'):
        check_arguments({'fusion_mod': 'gated'})


@pytest.mark.parametrize('text, expected', [('true', True), (' ON ', True), ('0', False), ('No', False)])
def test_to_bool(text, expected):
    assert to_bool(text) is expected
    with pytest.raises(ValueError, match="got 'maybe'"):
        to_bool('maybe')


# ------------------------------------------------------------------------------------------ the plan

def test_without_a_model_the_student_is_off_and_the_fusion_publishes_tof_only():
    plan = plan_launch({})  # the installed config/perception.yaml has model_path: ""
    assert [p.nodes for p in plan.processes] == [('depth_fusion_node',), ('pointcloud_xyz_node',)]
    assert plan.overrides['/**/depth_fusion_node']['ros__parameters']['publish_tof_only'] is True
    assert any(note.startswith('student off: no model_path') and 'depth_fusion_node publishing ToF-only'
               in note for note in plan.notes), plan.notes


def test_with_a_model_three_processes_get_the_params_file_then_the_overrides(model):
    plan = plan_launch({'model_path': model, 'backend': 'onnxruntime', 'fusion_mode': 'median',
                        'publish_source_map': 'false', 'use_sim_time': 'true', 'rgb_topic': '/cam/image'})
    assert [(p.executable, p.name) for p in plan.processes] == [
        ('student_trt_node', 'student_trt_node'), ('depth_fusion_node', 'depth_fusion_node'),
        ('pointcloud_xyz_node', 'pointcloud_xyz_node')]
    assert plan.scoped_params is None, 'the shipped file is keyed /**/<node>: it applies as it is'
    assert plan.params_file.endswith('config/perception.yaml')
    assert plan.overrides == {
        '/**/student_trt_node': {'ros__parameters': {'model_path': model, 'backend': 'onnxruntime',
                                                     'use_sim_time': True}},
        '/**/depth_fusion_node': {'ros__parameters': {'mode': 'median', 'publish_source_map': False,
                                                      'use_sim_time': True}},
        '/**/pointcloud_xyz_node': {'ros__parameters': {'use_sim_time': True}},
    }
    assert plan.processes[0].remappings == (('camera/rgb', '/cam/image'),)
    assert plan.processes[1].remappings == (('camera/depth', 'camera/depth'),
                                            ('camera/depth/confidence', 'camera/depth/confidence'))
    assert plan.notes == ()


def test_composed_is_one_container_with_the_same_overrides_and_per_node_remaps(model):
    separate = plan_launch({'model_path': model})
    composed = plan_launch({'model_path': model, 'composed': 'true', 'camera_info_topic': '/cam/info'})
    assert len(composed.processes) == 1
    process = composed.processes[0]
    assert (process.executable, process.name) == (CONTAINER, None), 'the container must not be renamed'
    assert process.arguments == ('student_trt_node', 'depth_fusion_node', 'pointcloud_xyz_node')
    assert process.remappings == (
        ('student_trt_node:camera/rgb', 'camera/rgb'), ('depth_fusion_node:camera/depth', 'camera/depth'),
        ('depth_fusion_node:camera/depth/confidence', 'camera/depth/confidence'),
        ('pointcloud_xyz_node:camera/camera_info', '/cam/info'))
    assert composed.overrides == separate.overrides


def test_stages_select_the_nodes_and_a_student_stage_alone_needs_a_model(model):
    plan = plan_launch({'stages': 'pointcloud'})
    assert [p.name for p in plan.processes] == ['pointcloud_xyz_node'] and plan.notes == ()
    assert [p.name for p in plan_launch({'stages': 'pointcloud, student', 'model_path': model}).processes] \
        == ['student_trt_node', 'pointcloud_xyz_node'], 'stages run in pipeline order'
    with pytest.raises(LaunchArgumentError, match="stages:='student': the student needs a model"):
        plan_launch({'stages': 'student'})


def test_a_model_path_that_does_not_exist_stops_the_launch_before_anything_starts(tmp_path):
    with pytest.raises(LaunchArgumentError, match=r"model_path: '/nowhere/student.onnx' does not exist"):
        plan_launch({'model_path': '/nowhere/student.onnx'})
    path = params_file(tmp_path, {'/**/student_trt_node': {'ros__parameters': {'model_path': '/gone.onnx'}}})
    with pytest.raises(LaunchArgumentError, match=f"model_path in {path}: '/gone.onnx' does not exist"):
        plan_launch({'params_file': path})


def test_a_model_from_the_params_file_keeps_the_student_on(tmp_path, model):
    path = params_file(tmp_path, {'robot1': {'student_trt_node': {'ros__parameters': {'model_path': model}}}})
    assert plan_launch({'params_file': path, 'namespace': 'robot1'}).processes[0].name == 'student_trt_node'
    assert plan_launch({'params_file': path}).processes[0].name == 'depth_fusion_node', \
        'a section for /robot1/student_trt_node does not configure /student_trt_node'
    assert plan_launch({'params_file': path, 'namespace': 'robot1/front'}).processes[0].name == \
        'depth_fusion_node'
    assert plan_launch({'params_file': path}, pushed_namespace='/robot1').processes[0].name == \
        'student_trt_node', 'a namespace pushed by an including launch file counts'


@pytest.mark.parametrize('content, expected', [
    ('', None), ('- a\n- b\n', 'expected node sections (a mapping), got list'),
    ('a: [1, 2\n', 'not valid YAML at line'),
])
def test_a_params_file_that_cannot_be_used_stops_the_launch(tmp_path, content, expected):
    path = tmp_path / 'p.yaml'
    path.write_text(content)
    if expected is None:
        plan_launch({'params_file': str(path)})  # an empty file is no parameters
        return
    with pytest.raises(LaunchArgumentError, match=re.escape(expected)):
        plan_launch({'params_file': str(path)})
    with pytest.raises(LaunchArgumentError, match='cannot read it'):
        plan_launch({'params_file': str(tmp_path / 'missing.yaml')})


def test_bare_node_keys_are_scoped_to_any_namespace_and_said_so(tmp_path):
    sections = {'pointcloud_xyz_node': {'ros__parameters': {'skip': 2}},
                '/**/depth_fusion_node': {'ros__parameters': {'mode': 'median'}},
                'depth_fusion_node': {'ros__parameters': {'confidence_threshold': 80.0}},
                'some_other_node': {'ros__parameters': {'x': 1}}}
    plan = plan_launch({'params_file': params_file(tmp_path, sections), 'namespace': 'robot1'})
    assert plan.scoped_params == {
        '/**/pointcloud_xyz_node': {'ros__parameters': {'skip': 2}},
        '/**/depth_fusion_node': {'ros__parameters': {'mode': 'median', 'confidence_threshold': 80.0}},
        'some_other_node': {'ros__parameters': {'x': 1}}}
    expected = 'sections pointcloud_xyz_node, depth_fusion_node are keyed without a namespace'
    assert any(expected in note for note in plan.notes), f'expected a note with {expected!r}: {plan.notes}'


# rcl's matching of params-file node keys (rclpy node.cpp: '/' prepended, '/*' one token, '/**' any).
KEY_CASES = [
    ('/**', '/student_trt_node', True), ('/**', '/robot1/student_trt_node', True),
    ('/**/student_trt_node', '/student_trt_node', True),
    ('/**/student_trt_node', '/robot1/front/student_trt_node', True),
    ('student_trt_node', '/student_trt_node', True), ('student_trt_node', '/robot1/student_trt_node', False),
    ('/robot1/student_trt_node', '/robot1/student_trt_node', True),
    ('/robot1/student_trt_node', '/robot2/student_trt_node', False),
    ('/*/student_trt_node', '/robot1/student_trt_node', True),
    ('/*/student_trt_node', '/student_trt_node', False),
    ('/*/student_trt_node', '/a/b/student_trt_node', False),
    ('/**/student_trt_node', '/robot1/depth_fusion_node', False),
]


@pytest.mark.parametrize('key, fqn, applies', KEY_CASES)
def test_node_parameters_follows_rcl_key_matching(key, fqn, applies):
    got = node_parameters({key: {'ros__parameters': {'skip': 3}}}, fqn)
    assert got == ({'skip': 3} if applies else {}), f'key {key!r} for node {fqn}: expected applies={applies}'


def test_node_parameters_reads_nested_namespaces_and_later_keys_win():
    params = {'/**': {'ros__parameters': {'a': 1, 'b': 1}},
              'robot1': {'pointcloud_xyz_node': {'ros__parameters': {'b': 2}}}}
    assert node_parameters(params, '/robot1/pointcloud_xyz_node') == {'a': 1, 'b': 2}
    assert node_parameters(params, '/pointcloud_xyz_node') == {'a': 1, 'b': 1}


def test_scope_bare_keys_keeps_file_order_and_other_keys():
    out, moved = scope_bare_keys({'/**': {'ros__parameters': {}},
                                  'student_trt_node': {'ros__parameters': {}}})
    assert list(out) == ['/**', '/**/student_trt_node'] and moved == ['student_trt_node']


def test_the_fastdds_profile_goes_to_the_nodes_environment_unless_turned_off(model):
    on = plan_launch({'model_path': model}).environment
    assert len(on) == 1 and next(iter(on.values())).endswith('fastdds_large_messages.xml')
    assert next(iter(on)) in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
    off = plan_launch({'fastdds_large_messages': 'false'}).environment
    assert off == {'RC_PERCEPTION_FASTDDS_PROFILE': 'off'}


def test_respawn_and_log_level_reach_the_plan():
    plan = plan_launch({'use_respawn': 'true', 'respawn_delay': '0.5', 'log_level': 'debug'})
    assert (plan.respawn, plan.respawn_delay, plan.log_level) == (True, 0.5, 'debug')
    assert plan_launch({}).respawn is False


def test_exit_message_says_what_happened_and_the_alternative():
    assert exit_message('depth_fusion_node-2', 1).startswith('depth_fusion_node-2 failed (exit code 1)')
    assert 'use_respawn:=true' in exit_message('depth_fusion_node-2', 1)
    assert exit_message('pointcloud_xyz_node-3', 0).startswith('pointcloud_xyz_node-3 exited while')


# ------------------------------------------------------------------------------------- camera mount

def mount(**args) -> tuple:
    return camera_transforms(check_arguments({f'camera_{k}': str(v) for k, v in args.items()}))


def test_the_camera_mount_is_two_transforms_body_then_optical():
    body, optical = mount()
    assert (body.node, body.parent, body.child) == ('camera_mount_tf', 'base_link', 'camera_link')
    assert (optical.node, optical.parent, optical.child) == \
        ('camera_optical_tf', 'camera_link', 'camera_color_optical_frame')
    assert body.arguments() == ['--x', '0.1', '--y', '0.0', '--z', '0.2', '--roll', '0.0', '--pitch', '0.0',
                                '--yaw', '0.0', '--frame-id', 'base_link', '--child-frame-id', 'camera_link']
    half_pi = repr(-math.pi / 2)
    assert optical.arguments()[:12] == ['--x', '0.0', '--y', '0.0', '--z', '0.0', '--roll', half_pi,
                                        '--pitch', '0.0', '--yaw', half_pi]


@pytest.mark.parametrize('degrees', [2.0, 10.0])
def test_a_positive_pitch_tilts_the_optical_axis_down(degrees):
    pitch = math.radians(degrees)
    body, optical = mount(pitch=pitch)
    base_from_optical = body.matrix() @ optical.matrix()
    axis = base_from_optical[:3, :3] @ [0.0, 0.0, 1.0]  # optical z: where the camera looks
    np.testing.assert_allclose(axis, [math.cos(pitch), 0.0, -math.sin(pitch)], atol=1e-12)
    # Image right (optical x) stays horizontal, pointing to the robot's right (-y).
    np.testing.assert_allclose(base_from_optical[:3, :3] @ [1.0, 0.0, 0.0], [0.0, -1.0, 0.0], atol=1e-12)
    # The optical origin sits at the mount position; a point 1 m ahead on the axis is below the camera.
    point = base_from_optical @ [0.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(point[:3], [0.10 + math.cos(pitch), 0.0, 0.20 - math.sin(pitch)], atol=1e-12)


def test_camera_tf_only_when_asked(model):
    assert plan_launch({'model_path': model}).transforms == ()
    plan = plan_launch({'model_path': model, 'publish_camera_tf': 'true', 'camera_frame': 'tof_optical'})
    assert [t.child for t in plan.transforms] == ['camera_link', 'tof_optical']
