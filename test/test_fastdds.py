"""The Fast DDS large-message profile: when a node applies it, and that a node process really runs with it.

Pure cases run ``apply_large_message_profile`` on a hand-made environment (the switch, a user's own
profile, another RMW, the Humble/Iron variable name); the process cases start a real node and read what
its start-up reports (``--log-level rc_perception:=debug``).
"""

import os
import queue
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rc_perception import fastdds
from rc_perception.fastdds import apply_large_message_profile, profile_path, profile_variable

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / 'config' / 'fastdds_large_messages.xml'
JAZZY_VAR, HUMBLE_VAR = 'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE'
CLOUD_BYTES = 240 * 320 * 12  # an organized x, y, z float32 cloud of the student grid


def test_the_shipped_profile_gives_shared_memory_room_for_large_clouds():
    assert Path(profile_path()).read_bytes() == SHIPPED.read_bytes(), profile_path()
    ns = {'f': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}
    root = ET.parse(SHIPPED).getroot()
    shm = [t for t in root.iterfind('.//f:transport_descriptor', ns) if t.findtext('f:type', '', ns) == 'SHM']
    assert len(shm) == 1, 'expected one shared-memory transport'
    segment = int(shm[0].findtext('f:segment_size', '0', ns))
    assert segment >= 4 * CLOUD_BYTES, f'segment {segment} B must hold several {CLOUD_BYTES} B clouds'
    participant = root.find('.//f:participant', ns)
    assert participant.get('is_default_profile') == 'true', 'the profile must apply without naming it'
    used = [t.text for t in participant.iterfind('.//f:userTransports/f:transport_id', ns)]
    assert shm[0].findtext('f:transport_id', '', ns) in used and len(used) == 2, used


@pytest.mark.parametrize('distro, variable', [('', JAZZY_VAR), ('jazzy', JAZZY_VAR), ('kilted', JAZZY_VAR),
                                              ('rolling', JAZZY_VAR), ('humble', HUMBLE_VAR),
                                              ('iron', HUMBLE_VAR)])
def test_applied_by_default_under_the_variable_of_the_distribution(distro, variable):
    env = {'ROS_DISTRO': distro} if distro else {}
    note = apply_large_message_profile(env)
    other = HUMBLE_VAR if variable == JAZZY_VAR else JAZZY_VAR
    assert env.get(variable) == profile_path(), f'{distro or "no ROS_DISTRO"}: {env}'
    assert other not in env, f'only one variable may be set (Fast DDS 3 warns about the other): {env}'
    assert note.startswith(f'Fast DDS large-message profile applied: {variable}='), note
    assert 'RC_PERCEPTION_FASTDDS_PROFILE=off' in note, 'the note says how to turn it off'
    assert profile_variable(env) == variable


@pytest.mark.parametrize('switch', ['auto', 'AUTO', ' auto ', ''])
def test_auto_is_the_default(switch):
    env = {fastdds.SWITCH: switch, 'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp'}
    apply_large_message_profile(env)
    assert env[JAZZY_VAR] == profile_path(), env


@pytest.mark.parametrize('switch', ['off', 'OFF', ' Off ', '0', 'false', 'no'])
def test_the_off_switch_leaves_the_environment_alone(switch):
    env = {fastdds.SWITCH: switch, 'ROS_DISTRO': 'jazzy'}
    note = apply_large_message_profile(env)
    assert env == {fastdds.SWITCH: switch, 'ROS_DISTRO': 'jazzy'}, f'{switch!r} must change nothing: {env}'
    assert note == f'Fast DDS large-message profile off (RC_PERCEPTION_FASTDDS_PROFILE={switch})', note


@pytest.mark.parametrize('variable', [JAZZY_VAR, HUMBLE_VAR])
@pytest.mark.parametrize('distro', ['jazzy', 'humble'])
def test_a_profile_the_user_chose_is_kept(variable, distro):
    env = {variable: '/home/me/my_profile.xml', 'ROS_DISTRO': distro}
    note = apply_large_message_profile(env)
    assert env == {variable: '/home/me/my_profile.xml', 'ROS_DISTRO': distro}, env
    assert note == f'Fast DDS profile chosen by the environment: {variable}=/home/me/my_profile.xml', note


def test_an_empty_profile_variable_counts_as_unset():
    env = {JAZZY_VAR: ''}
    apply_large_message_profile(env)
    assert env[JAZZY_VAR] == profile_path()


@pytest.mark.parametrize('rmw', ['rmw_cyclonedds_cpp', 'rmw_connextdds', 'rmw_zenoh_cpp'])
def test_other_middlewares_are_left_alone(rmw):
    env = {'RMW_IMPLEMENTATION': rmw}
    note = apply_large_message_profile(env)
    assert env == {'RMW_IMPLEMENTATION': rmw}, env
    assert note == f'Fast DDS large-message profile not used: RMW_IMPLEMENTATION={rmw}', note


@pytest.mark.parametrize('rmw', ['rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp', ''])
def test_fast_dds_middlewares_get_it(rmw):
    env = {'RMW_IMPLEMENTATION': rmw, 'ROS_DISTRO': 'humble'}
    apply_large_message_profile(env)
    assert env.get(HUMBLE_VAR) == profile_path(), env


def test_the_process_environment_is_the_default(monkeypatch):
    for var in (JAZZY_VAR, HUMBLE_VAR, fastdds.SWITCH, 'RMW_IMPLEMENTATION'):
        monkeypatch.setenv(var, 'placeholder')  # records the original state, restored after the test
        monkeypatch.delenv(var)
    monkeypatch.setenv('ROS_DISTRO', 'humble')
    assert profile_variable() == HUMBLE_VAR
    apply_large_message_profile()
    assert os.environ.get(HUMBLE_VAR) == profile_path()


# ------------------------------------------------------------------------------ a real node process

class NodeOutput:
    """A node process whose output lines are read by a thread, so that the test can wait for one."""

    def __init__(self, env: dict) -> None:
        from ros_harness import node_process

        self.proc = node_process('pointcloud_xyz.node', ['--log-level', 'rc_perception:=debug'], env=env)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)

    def wait_for(self, fragment: str, timeout: float = 30.0) -> str:
        """The first line containing ``fragment``; AssertionError with the output so far if none comes."""
        try:
            while True:
                line = self._queue.get(timeout=timeout)
                self.lines.append(line)
                if fragment in line:
                    return line
        except queue.Empty:
            raise AssertionError(f'no line with {fragment!r} within {timeout} s; output:\n'
                                 + ''.join(self.lines)) from None

    def stop(self) -> int:
        """SIGINT (as ros2 launch does), then the exit code; the rest of the output joins ``lines``."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        try:
            code = self.proc.wait(timeout=10.0)
        except Exception:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5.0)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code


def _start_up_note(env: dict) -> str:
    """Start pointcloud_xyz_node with ``env`` added; the Fast DDS line it logs (after a clean stop)."""
    node = NodeOutput(env)
    try:
        line = node.wait_for('Fast DDS')
        node.wait_for('[pointcloud_xyz_node]')  # started: now Ctrl-C is the ordinary shutdown
    finally:
        code = node.stop()
    assert code == 0, f'node exited with {code}:\n' + ''.join(node.lines)
    return line.split(']: ', 1)[1].strip()


@pytest.mark.dds
def test_ctrl_c_right_after_start_up_exits_cleanly():
    """A Ctrl-C just after the start-up note (before the node exists) ends the process quietly with 0."""
    node = NodeOutput({})
    try:
        node.wait_for('Fast DDS')
    finally:
        code = node.stop()
    out = ''.join(node.lines)
    assert code == 0 and 'Traceback' not in out, f'exit {code}:\n{out}'


@pytest.mark.dds
def test_a_node_process_runs_with_the_profile_by_default():
    note = _start_up_note({fastdds.SWITCH: '', 'ROS_DISTRO': 'kilted', 'RMW_IMPLEMENTATION': ''})
    path = note.split(f'{JAZZY_VAR}=', 1)[1].split(' ', 1)[0]
    assert note.startswith('Fast DDS large-message profile applied'), note
    assert Path(path).read_bytes() == SHIPPED.read_bytes(), f'{path} is not the shipped profile'


@pytest.mark.dds
def test_a_node_process_honours_the_off_switch_and_the_humble_variable():
    note = _start_up_note({fastdds.SWITCH: 'off'})
    assert note == 'Fast DDS large-message profile off (RC_PERCEPTION_FASTDDS_PROFILE=off)', note
    note = _start_up_note({'ROS_DISTRO': 'humble'})
    assert note.startswith(f'Fast DDS large-message profile applied: {HUMBLE_VAR}='), note


@pytest.mark.dds
def test_a_node_process_keeps_the_users_profile(tmp_path):
    mine = tmp_path / 'mine.xml'
    mine.write_text(SHIPPED.read_text())
    note = _start_up_note({JAZZY_VAR: str(mine)})
    assert note == f'Fast DDS profile chosen by the environment: {JAZZY_VAR}={mine}', note
