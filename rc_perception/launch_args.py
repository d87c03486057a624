"""The launch arguments of rc_perception and what they start (pure: no ``launch`` import; tested without it).

``launch/perception.launch.py`` declares ``ARGUMENTS`` and, before it starts anything, hands their values
to ``plan_launch``. Everything that can be decided without the launch tools is decided here, where tests
reach it:

* every argument is checked at once; a bad one raises ``LaunchArgumentError``, one line naming the
  argument, the value and what is allowed, before the first process exists;
* which nodes run (``stages``), and the student's absence: with no model configured, the ToF -> fusion ->
  cloud path runs alone and the fusion publishes ToF-only depth (``publish_tof_only``);
* in which processes (one per node, or one ``perception_composed`` with ``composed:=true``);
* the parameters: the params file (sections keyed by a bare node name are re-keyed ``/**/<node>`` so they
  apply under any namespace) and then the launch-argument overrides, in the same form for both layouts;
* each node's topic remaps, the Fast DDS environment, and the camera's static transforms (``mount``).

Launch arguments are strings. An empty value of an optional one keeps what the params file says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from rc_perception.fastdds import SWITCH, profile_path, profile_variable
from rc_perception.mount import OPTICAL_RPY, CameraMount, rpy_matrix, transform
from rc_perception.resources import share_file

__all__ = ['ARGUMENTS', 'CONTAINER', 'NODES', 'STAGES', 'Argument', 'LaunchArgumentError', 'LaunchPlan',
           'NodeProcess', 'StaticTransform', 'camera_transforms', 'check_arguments', 'exit_message',
           'node_parameters', 'plan_launch', 'read_params_file', 'scope_bare_keys', 'to_bool']

#: Stage name -> the node that runs it, in pipeline order.
STAGES = {'student': 'student_trt_node', 'fusion': 'depth_fusion_node', 'pointcloud': 'pointcloud_xyz_node'}
NODES = tuple(STAGES.values())
#: The composed layout's executable (rc_perception.composition).
CONTAINER = 'perception_composed'
#: Each node's input topics that the camera arguments remap: node -> ((topic, argument), ...).
REMAPS = {
    'student_trt_node': (('camera/rgb', 'rgb_topic'),),
    'depth_fusion_node': (('camera/depth', 'depth_topic'), ('camera/depth/confidence', 'confidence_topic')),
    'pointcloud_xyz_node': (('camera/camera_info', 'camera_info_topic'),),
}
#: Parameters a launch argument overrides when it is not empty: node -> {parameter: argument}.
OVERRIDES = {
    'student_trt_node': {'model_path': 'model_path', 'backend': 'backend'},
    'depth_fusion_node': {'mode': 'fusion_mode', 'publish_source_map': 'publish_source_map'},
    'pointcloud_xyz_node': {},
}
#: Allowed values, the same as the nodes' ParamSpec choices (test_launch_files compares them).
BACKENDS = ('auto', 'tensorrt', 'onnxruntime')
FUSION_MODES = ('gated', 'affine', 'median', 'online_affine', 'local')
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')

_TRUE = {'true', '1', 'yes', 'on'}
_FALSE = {'false', '0', 'no', 'off'}
_NAME = r'[A-Za-z_][A-Za-z0-9_]*'
_NAMESPACE = re.compile(rf'/?{_NAME}(/{_NAME})*')
_TOPIC = re.compile(rf'(~/)?/?{_NAME}(/{_NAME})*')
_FRAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_./-]*')


class LaunchArgumentError(ValueError):
    """Launch arguments (or the params file they name) that cannot work; the message is one line."""


def to_bool(text: str) -> bool:
    """'true'/'false' (and 1/0, yes/no, on/off), case-insensitive.

    Raises:
        ValueError: anything else, naming the value.
    """
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def _bool(text: str) -> str | None:
    return None if text.strip().lower() in _TRUE | _FALSE else 'expected true or false'


def _float(text: str) -> str | None:
    try:
        value = float(text)
    except ValueError:
        return 'expected a number'
    return None if math.isfinite(value) else 'expected a finite number'


def _delay(text: str) -> str | None:
    return _float(text) or (None if float(text) >= 0 else 'expected seconds >= 0')


def _choice(choices: tuple[str, ...], optional: bool) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        if text in choices or (optional and text == ''):
            return None
        tail = ' (or empty: the params file value)' if optional else ''
        return f"expected one of {', '.join(choices)}{tail}"
    return check


def _pattern(regex: re.Pattern, what: str) -> Callable[[str], str | None]:
    return lambda text: None if regex.fullmatch(text) else f'expected {what}'


def _namespace(text: str) -> str | None:
    return None if text == '' or _NAMESPACE.fullmatch(text) else \
        "expected a ROS namespace such as robot1 or /robot1/front (letters, digits, '_', '/'), or empty"


def _stages(text: str) -> str | None:
    names = [s.strip() for s in text.split(',') if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if not names or unknown:
        return f"expected a comma-separated subset of {', '.join(STAGES)}"
    return None


def _optional_bool(text: str) -> str | None:
    if text == '' or _bool(text) is None:
        return None
    return 'expected true, false or empty (the params file value)'


@dataclass(frozen=True)
class Argument:
    """One launch argument: its default, the description ``ros2 launch -s`` shows, and its check."""

    name: str
    default: str
    description: str
    check: Callable[[str], str | None] = field(default=lambda text: None, repr=False)


_TOPIC_CHECK = _pattern(_TOPIC, 'a ROS topic name')
_FRAME_CHECK = _pattern(_FRAME, 'a tf2 frame id (no spaces, no leading /)')

ARGUMENTS = (
    Argument('namespace', '', 'Namespace of every node and of its relative topics (e.g. robot1); empty: none',
             _namespace),
    Argument('params_file', '', 'Parameters of the nodes (YAML, sections keyed /**/<node name>); empty: the '
             'installed config/perception.yaml', lambda text: None),
    Argument('stages', ','.join(STAGES), 'Which stages run, comma-separated: student (RGB -> depth and '
             'segmentation), fusion (+ ToF -> fused depth), pointcloud (fused depth -> cloud for Nav2)',
             _stages),
    Argument('composed', 'false', 'true: all nodes in one process (perception_composed: one executor, less '
             'memory); false: one process per node', _bool),
    Argument('use_respawn', 'false', 'true: restart a node that exits, after respawn_delay; false: stop the '
             'whole launch when a node exits (exit code non-zero when it failed), so the robot never runs '
             'half a pipeline', _bool),
    Argument('respawn_delay', '2.0', 'Seconds before a node that exited is restarted (use_respawn:=true)',
             _delay),
    Argument('use_sim_time', 'false', 'Use /clock (bag replay, simulation)', _bool),
    Argument('log_level', 'info', f"Log level of the nodes: {', '.join(LOG_LEVELS)}",
             _choice(LOG_LEVELS, optional=False)),
    Argument('model_path', '', 'Student model: .engine/.plan (TensorRT) or .onnx (ONNX Runtime); empty: the '
             'params file value; none there either: the student is off and the ToF -> cloud path runs '
             'alone', lambda text: None),
    Argument('backend', '', f"Student backend: {', '.join(BACKENDS)}; empty: the params file value",
             _choice(BACKENDS, optional=True)),
    Argument('fusion_mode', '', f"Correction of the student depth: {', '.join(FUSION_MODES)}; empty: the "
             'params file value', _choice(FUSION_MODES, optional=True)),
    Argument('publish_source_map', '', 'true or false: also publish which source each fused pixel came '
             'from; empty: the params file value', _optional_bool),
    Argument('rgb_topic', 'camera/rgb', 'RGB image topic of the camera (student input)', _TOPIC_CHECK),
    Argument('depth_topic', 'camera/depth', 'ToF depth image topic, registered to the RGB optical frame',
             _TOPIC_CHECK),
    Argument('confidence_topic', 'camera/depth/confidence', 'ToF confidence image topic', _TOPIC_CHECK),
    Argument('camera_info_topic', 'camera/camera_info', 'CameraInfo of the RGB camera (intrinsics of the '
             'cloud)', _TOPIC_CHECK),
    Argument('fastdds_large_messages', 'true', 'Give the nodes the Fast DDS profile for large best-effort '
             'messages (without it a share of the clouds > 512 KB between processes is lost)', _bool),
    Argument('publish_camera_tf', 'false', 'Publish the camera mount as static transforms: base_frame -> '
             'camera_link_frame (camera_x..camera_yaw) -> camera_frame (fixed optical rotation)', _bool),
    Argument('base_frame', 'base_link', 'Robot frame the camera is mounted on', _FRAME_CHECK),
    Argument('camera_link_frame', 'camera_link', 'Camera body frame (x forward, y left, z up)', _FRAME_CHECK),
    Argument('camera_frame', 'camera_color_optical_frame', 'Camera optical frame (z forward, x right, '
             "y down): the images' and clouds' frame_id", _FRAME_CHECK),
    *(Argument(f'camera_{axis}', default, f'Camera body in base_frame: {meaning}', _float)
      for axis, default, meaning in (
          ('x', '0.10', 'x (m, forward)'), ('y', '0.0', 'y (m, left)'), ('z', '0.20', 'z (m, up)'),
          ('roll', '0.0', 'roll about x (rad)'),
          ('pitch', '0.0', 'pitch about y (rad, positive tilts the camera down, REP 103)'),
          ('yaw', '0.0', 'yaw about z (rad, positive turns the camera left)'))),
)
_BY_NAME = {a.name: a for a in ARGUMENTS}


def check_arguments(values: Mapping[str, str]) -> dict[str, str]:
    """Every argument's value (defaults filled in), after checking them all.

    Raises:
        LaunchArgumentError: one line naming each bad argument, its value and what is allowed.
    """
    unknown = sorted(set(values) - set(_BY_NAME))
    if unknown:
        raise LaunchArgumentError(f"unknown launch argument(s) {', '.join(unknown)}")
    full = {a.name: values.get(a.name, a.default) for a in ARGUMENTS}
    problems = [f"{a.name}:='{full[a.name]}': {reason}" for a in ARGUMENTS
                if (reason := a.check(full[a.name]))]
    if problems:
        raise LaunchArgumentError('bad launch argument ' + '; '.join(problems))
    return full


# ----------------------------------------------------------------------------------------- params files

def read_params_file(path: str) -> dict:
    """The params file as a mapping.

    Raises:
        LaunchArgumentError: it does not exist, is not YAML, or is not a mapping of node sections.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise LaunchArgumentError(f"params_file:='{path}': cannot read it ({exc.strerror})") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, 'problem_mark', None)
        line = f' at line {where.line + 1}' if where else ''
        raise LaunchArgumentError(f"params_file:='{path}': not valid YAML{line}") from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise LaunchArgumentError(f"params_file:='{path}': expected node sections (a mapping), got "
                                  f'{type(params).__name__}')
    return params


def _node_entries(params: Mapping, prefix: str = '') -> list[tuple[str, dict]]:
    """(node name key, its ros__parameters) in file order; nested namespace keys joined with '/'."""
    entries = []
    for key, value in params.items():
        if not isinstance(value, Mapping):
            continue
        name = f'{prefix}/{str(key).strip("/")}' if prefix else str(key)
        if 'ros__parameters' in value:
            entries.append((name, dict(value['ros__parameters'] or {})))
        else:
            entries += _node_entries(value, name)
    return entries


def _matches(key: str, fqn: str) -> bool:
    """rclpy's rule for a params-file node key: '/' prepended, '/*' -> one token, '/**' -> any tokens."""
    key = key if key.startswith('/') else '/' + key
    return re.fullmatch(key.replace('/*', r'(/\w+)'), fqn) is not None


def node_parameters(params: Mapping, fqn: str) -> dict:
    """The parameters a node of fully qualified name ``fqn`` takes from a params file (later keys win)."""
    out: dict = {}
    for key, values in _node_entries(params):
        if _matches(key, fqn):
            out.update(values)
    return out


def scope_bare_keys(params: Mapping, nodes=NODES) -> tuple[dict, list[str]]:
    """The params file with top-level sections keyed by a bare node name re-keyed ``/**/<name>``.

    rcl reads a bare ``student_trt_node:`` as ``/student_trt_node``: it would apply to that node only
    outside a namespace. Returns the new mapping (file order kept) and the names re-keyed.
    """
    out: dict = {}
    moved = []
    for key, value in params.items():
        if key in nodes:
            moved.append(key)
            key = f'/**/{key}'
            if key in out:  # the file has both forms: merge, the later section winning
                value = {'ros__parameters': {**out[key].get('ros__parameters', {}),
                                             **value.get('ros__parameters', {})}}
        out[key] = value
    return out, moved


# --------------------------------------------------------------------------------------------- mount

@dataclass(frozen=True)
class StaticTransform:
    """One static transform parent -> child, as tf2_ros static_transform_publisher takes it."""

    node: str  # the publisher's node name
    parent: str
    child: str
    translation: tuple[float, float, float]
    rpy: tuple[float, float, float]

    def matrix(self) -> np.ndarray:
        """4x4 transform parent <- child."""
        return transform(rpy_matrix(*self.rpy), self.translation)

    def arguments(self) -> list[str]:
        """static_transform_publisher's command line (the flag form of Humble and newer)."""
        x, y, z = self.translation
        roll, pitch, yaw = self.rpy
        return ['--x', repr(x), '--y', repr(y), '--z', repr(z), '--roll', repr(roll), '--pitch', repr(pitch),
                '--yaw', repr(yaw), '--frame-id', self.parent, '--child-frame-id', self.child]


def camera_transforms(values: Mapping[str, str]) -> tuple[StaticTransform, StaticTransform]:
    """base_frame -> camera_link_frame (the mount, REP 103) and camera_link_frame -> camera_frame (optical).

    ``values``: checked launch arguments (camera_x .. camera_yaw, the three frame names).
    """
    m = CameraMount(*(float(values[f'camera_{axis}']) for axis in ('x', 'y', 'z', 'roll', 'pitch', 'yaw')))
    link = values['camera_link_frame']
    body = StaticTransform('camera_mount_tf', values['base_frame'], link, (m.x, m.y, m.z),
                           (m.roll, m.pitch, m.yaw))
    optical = StaticTransform('camera_optical_tf', link, values['camera_frame'], (0.0, 0.0, 0.0), OPTICAL_RPY)
    return body, optical


# ---------------------------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class NodeProcess:
    """One process the launch starts: a node executable, or the container with several nodes."""

    executable: str
    name: str | None                       # the node's name; None for the container (never renamed)
    nodes: tuple[str, ...]
    remappings: tuple[tuple[str, str], ...]
    arguments: tuple[str, ...] = ()        # the container's node list


@dataclass(frozen=True)
class LaunchPlan:
    """What the launch starts, decided from the arguments before anything starts."""

    namespace: str
    params_file: str
    #: The params file re-keyed by scope_bare_keys, to write and use instead of it; None: use it as is.
    scoped_params: dict | None
    #: Launch-argument values, as a params file keyed /**/<node>, given after the params file.
    overrides: dict
    processes: tuple[NodeProcess, ...]
    transforms: tuple[StaticTransform, ...]
    environment: dict[str, str]
    log_level: str
    respawn: bool
    respawn_delay: float
    notes: tuple[str, ...]


def _fqn(namespace: str, node: str) -> str:
    return f"/{namespace.strip('/')}/{node}" if namespace.strip('/') else f'/{node}'


def _model_path(values: Mapping[str, str], params: Mapping, namespace: str) -> str:
    model = values['model_path'] or str(node_parameters(params, _fqn(namespace, STAGES['student']))
                                        .get('model_path', '') or '')
    if model and not Path(model).expanduser().is_file():
        source = 'model_path' if values['model_path'] else f"model_path in {values['params_file']}"
        raise LaunchArgumentError(f"{source}: '{model}' does not exist")
    return model


def _choose_nodes(values: Mapping[str, str], params: Mapping, namespace: str) -> tuple[list[str], list[str]]:
    """The nodes to run and the notes to log; the student is left out (and said so) without a model."""
    stages = [s for s in STAGES if s in {t.strip() for t in values['stages'].split(',')}]
    notes = []
    if 'student' in stages and not _model_path(values, params, namespace):
        if 'fusion' not in stages:
            raise LaunchArgumentError(
                "stages:='{}': the student needs a model: set model_path (launch argument or params file) "
                'to an exported student (.onnx or .engine)'.format(values['stages']))
        stages.remove('student')
        notes.append(f"student off: no model_path (launch argument or {values['params_file']}); running "
                     f"{' -> '.join(stages)} on the ToF alone, depth_fusion_node publishing ToF-only depth "
                     '(publish_tof_only); set model_path to add the student')
    return [STAGES[s] for s in stages], notes


def _overrides(values: Mapping[str, str], nodes: list[str], student_off: bool) -> dict:
    overrides = {}
    for node in nodes:
        section = {param: to_bool(values[arg]) if param == 'publish_source_map' else values[arg]
                   for param, arg in OVERRIDES[node].items() if values[arg] != ''}
        if node == STAGES['fusion'] and student_off:
            section['publish_tof_only'] = True
        section['use_sim_time'] = to_bool(values['use_sim_time'])
        overrides[f'/**/{node}'] = {'ros__parameters': section}
    return overrides


def _processes(values: Mapping[str, str], nodes: list[str]) -> tuple[NodeProcess, ...]:
    remaps = {node: tuple((topic, values[arg]) for topic, arg in REMAPS[node]) for node in nodes}
    if to_bool(values['composed']):
        prefixed = tuple((f'{node}:{topic}', target) for node in nodes for topic, target in remaps[node])
        return (NodeProcess(CONTAINER, None, tuple(nodes), prefixed, tuple(nodes)),)
    return tuple(NodeProcess(node, node, (node,), remaps[node]) for node in nodes)


def _environment(values: Mapping[str, str]) -> dict[str, str]:
    if to_bool(values['fastdds_large_messages']):
        return {profile_variable(): profile_path()}
    return {SWITCH: 'off'}


def plan_launch(values: Mapping[str, str], pushed_namespace: str = '') -> LaunchPlan:
    """What to start for these launch-argument values (missing ones take their defaults).

    Args:
        values: argument name -> string, as the launch file performed them.
        pushed_namespace: a namespace the including launch file pushed (PushRosNamespace), if any.

    Raises:
        LaunchArgumentError: a bad argument, an unreadable params file, a model_path that does not exist,
            or stages that cannot run; one line, before anything started.
    """
    values = check_arguments(values)
    params_file = values['params_file'] or str(share_file('config', 'perception.yaml'))
    values['params_file'] = params_file
    params = read_params_file(params_file)
    scoped, moved = scope_bare_keys(params)
    namespace = values['namespace']
    resolved = namespace if namespace.startswith('/') else f"{pushed_namespace.rstrip('/')}/{namespace}"
    nodes, notes = _choose_nodes(values, scoped, resolved)
    if moved:
        notes.append(f"{params_file}: sections {', '.join(moved)} are keyed without a namespace, which rcl "
                     'applies only outside one: using them as /**/<node name> (key them so to silence this)')
    student_off = any('student off' in note for note in notes)
    return LaunchPlan(
        namespace=namespace, params_file=params_file, scoped_params=scoped if moved else None,
        overrides=_overrides(values, nodes, student_off),
        processes=_processes(values, nodes),
        transforms=camera_transforms(values) if to_bool(values['publish_camera_tf']) else (),
        environment=_environment(values), log_level=values['log_level'],
        respawn=to_bool(values['use_respawn']), respawn_delay=float(values['respawn_delay']),
        notes=tuple(notes))


def exit_message(process: str, code: int) -> str:
    """The line the launch stops with when a node's process exits while the pipeline runs."""
    how = f'failed (exit code {code})' if code != 0 else 'exited'
    return (f'{process} {how} while the pipeline was running: stopping the launch so the robot does not run '
            'half a pipeline (use_respawn:=true restarts nodes instead)')
