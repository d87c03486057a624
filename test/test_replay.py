"""Replay of dataset folders and rosbag2 recordings onto the camera topics.

Pure: the events a source yields (offsets, playback speed, recorded stamps). Over real DDS: the Replayer
and replay_node itself with real bags written by rosbags (sqlite3 and mcap): restamping or keeping the
recorded stamps (and /clock), looping, playback speed, and the node process's start and bad arguments.
"""

import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from replay_data import BAG_START_S, stamp_s, write_bag, write_dataset
from rosbags.rosbag2 import StoragePlugin
from sensor_msgs.msg import CameraInfo, Image

from rc_offline import dataset
from rc_offline.replay import BagSource, DatasetSource, Replayer, ReplayNode, open_source
from rc_perception import codecs

from ros_harness import node_process, stop_process

PLUGINS = [StoragePlugin.SQLITE3, StoragePlugin.MCAP]
TIMES = (0.0, 0.1, 0.25)  # seconds after BAG_START_S: record times and header stamps of write_bag


def value(msg) -> int:
    """Which of write_bag's images this is: 500 + its index."""
    return int(codecs.image_to_array(msg)[0, 0])


# ------------------------------------------------------------------------------------------- sources

@pytest.mark.parametrize('plugin', PLUGINS)
@pytest.mark.parametrize('speed', [1.0, 2.0, 0.25])
def test_bag_events_are_at_recorded_offsets_divided_by_speed(tmp_path, plugin, speed):
    write_bag(tmp_path / 'bag', plugin, TIMES, info_topic='/cam/info')
    source = open_source(tmp_path / 'bag', topics={'depth': '/cam/depth', 'camera_info': '/cam/info'},
                         speed=speed)
    events = list(source.events())
    assert len(source) == 6 and len(events) == 6
    offsets = [e.offset for e in events if 'depth' in e.messages]
    np.testing.assert_allclose(offsets, [t / speed for t in TIMES], atol=1e-9)
    stamps = [stamp_s(e.messages['depth']) for e in events if 'depth' in e.messages]
    np.testing.assert_allclose(stamps, [BAG_START_S + t for t in TIMES], atol=1e-9)
    assert all(e.recorded_stamp == next(iter(e.messages.values())).header.stamp for e in events)
    assert [type(m) for e in events for m in e.messages.values()] == [Image, CameraInfo] * 3


def test_dataset_events_are_at_the_rate_and_limited(tmp_path):
    root = write_dataset(tmp_path / 'data', frames=4)
    source = DatasetSource(root, rate=8.0, limit=3)
    events = list(source.events())
    assert [e.stem for e in events] == ['000000', '000001', '000002']
    assert [e.offset for e in events] == [0.0, 0.125, 0.25]
    assert all(e.recorded_stamp is None for e in events)
    assert set(events[0].messages) == {'rgb', 'depth', 'confidence', 'camera_info'}


def test_unusable_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        open_source(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='neither a dataset folder'):
        open_source(tmp_path / 'empty')
    write_bag(tmp_path / 'bag', StoragePlugin.SQLITE3)
    with pytest.raises(ValueError, match='has none of the topics /camera/rgb'):
        open_source(tmp_path / 'bag', topics={'rgb': '/camera/rgb'})
    (tmp_path / 'broken.mcap').write_bytes(b'not a bag')
    with pytest.raises(ValueError, match='cannot read bag'):
        open_source(tmp_path / 'broken.mcap')


# ------------------------------------------------------------------------------- Replayer over DDS

@pytest.mark.dds
def test_dataset_frames_arrive_on_all_topics_with_one_stamp(ros_graph, tmp_path):
    root = write_dataset(tmp_path / 'data')
    source = DatasetSource(root, rate=20.0, preload=True)
    assert len(source) == 3
    got = {s: ros_graph.collect(t, topic) for s, (t, topic) in {
        'rgb': (Image, 'camera/rgb'), 'depth': (Image, 'camera/depth'),
        'confidence': (Image, 'camera/depth/confidence'), 'info': (CameraInfo, 'camera/camera_info')}.items()}
    published = []
    replayer = Replayer(ros_graph.node, source, frame_id='cam_optical',
                        on_publish=lambda event, stamp: published.append((event.stem, stamp)))
    for pub in replayer.publishers.values():
        ros_graph.wait_for_subscribers(pub)
    replayer.start()
    assert replayer.done.wait(10.0), 'replay did not finish'
    for collector in got.values():
        collector.wait_for(3)
    assert [stem for stem, _ in published] == ['000000', '000001', '000002']
    for i, (_, stamp) in enumerate(published):
        msgs = [c.messages[i] for c in got.values()]
        assert all(m.header.stamp == stamp and m.header.frame_id == 'cam_optical' for m in msgs)
    depth = codecs.image_to_array(got['depth'].messages[2])
    assert got['depth'].messages[2].encoding == '16UC1' and np.all(depth == 1002)
    assert got['confidence'].messages[0].encoding == 'mono8'
    assert got['rgb'].messages[0].encoding == 'rgb8'
    info = got['info'].messages[0]
    assert (info.width, info.height, info.k[0], info.k[2]) == (32, 24, 30.0, 15.5)


@pytest.mark.dds
def test_an_unreadable_frame_ends_the_replay_with_the_reason(ros_graph, tmp_path):
    root = write_dataset(tmp_path / 'data')
    (root / 'rgb' / '000001.png').write_bytes(b'not a png')
    replayer = Replayer(ros_graph.node, DatasetSource(root, rate=50.0))  # frames read as they are replayed
    replayer.start()
    assert replayer.done.wait(10.0), 'replay did not finish'
    assert isinstance(replayer.error, dataset.DatasetError) and '000001.png' in str(replayer.error), \
        f'expected the DatasetError of 000001.png, got {replayer.error!r}'
    assert replayer.published.count == 1, \
        f'expected 1 frame published before the bad one, got {replayer.published.count}'


@pytest.mark.dds
@pytest.mark.parametrize('plugin', PLUGINS)
def test_bag_replay_restamps_to_now_keeping_differences(ros_graph, tmp_path, plugin):
    write_bag(tmp_path / 'bag', plugin, TIMES)
    source = open_source(tmp_path / 'bag', topics={'depth': '/cam/depth', 'rgb': '/cam/rgb'})
    assert isinstance(source, BagSource) and source.missing == ['/cam/rgb'] and len(source) == 3
    depth = ros_graph.collect(Image, 'camera/depth')
    replayer = Replayer(ros_graph.node, source, restamp=True)
    ros_graph.wait_for_subscribers(replayer.publishers['depth'])
    before = time.time()
    replayer.start()
    msgs = depth.wait_for(3)
    stamps = [stamp_s(m) for m in msgs]
    np.testing.assert_allclose(np.diff(stamps), np.diff(TIMES), atol=1e-6)  # differences kept, shifted
    assert stamps[0] >= before - 1e-3, f'first stamp {stamps[0]} should be now ({before}), not recorded'
    assert [value(m) for m in msgs] == [500, 501, 502]
    assert all(m.header.frame_id == 'tof_optical' for m in msgs)


# ----------------------------------------------------------------------------- replay_node over DDS

def replay_node(ros_graph, source, **params) -> ReplayNode:
    overrides = [Parameter('source', value=str(source)), Parameter('bag_depth_topic', value='/cam/depth'),
                 *(Parameter(k, value=v) for k, v in params.items())]
    return ros_graph.add(ReplayNode, parameter_overrides=overrides)


def until_values(wanted: set[int]):
    """A Collector predicate: every value in ``wanted`` has arrived."""
    return lambda msgs: wanted <= {value(m) for m in msgs}


@pytest.mark.dds
@pytest.mark.parametrize('plugin', PLUGINS)
def test_restamp_false_keeps_recorded_stamps_and_publishes_them_on_clock(ros_graph, tmp_path, plugin):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    write_bag(tmp_path / 'bag', plugin, TIMES)
    depth = ros_graph.collect(Image, 'camera/depth')
    best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    clock = ros_graph.collect(Clock, '/clock', best_effort)
    replay_node(ros_graph, tmp_path / 'bag', restamp=False, loop=True, publish_clock=True,
                playback_speed=4.0)
    msgs = depth.wait_for(3, timeout=20.0, predicate=until_values({500, 501, 502}))
    for m in msgs:  # best effort may drop some; every one that came carries its recorded stamp
        recorded = BAG_START_S + TIMES[value(m) - 500]
        assert stamp_s(m) == pytest.approx(recorded, abs=1e-9), f'{value(m)}: stamp {stamp_s(m)}, ' \
                                                                 f'recorded {recorded}'
    clock.wait_for(1)
    clocks = {round(c.clock.sec + c.clock.nanosec * 1e-9, 6) for c in clock.messages}
    assert clocks <= {round(BAG_START_S + t, 6) for t in TIMES}, f'/clock carried {sorted(clocks)}'


def assert_restamped(values: list[int], stamps: list[float], speed: float) -> None:
    """Restamped stamps increase, also across a loop, and neighbours within one pass are their recorded
    difference divided by the playback speed apart."""
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), f'stamps must increase: {stamps}'
    for i in range(1, len(values)):
        if values[i] == values[i - 1] + 1:
            recorded = TIMES[values[i] - 500] - TIMES[values[i - 1] - 500]
            assert stamps[i] - stamps[i - 1] == pytest.approx(recorded / speed, abs=1e-6), (values, stamps)


@pytest.mark.dds
@pytest.mark.parametrize('plugin', PLUGINS)
def test_loop_starts_again_from_a_new_now(ros_graph, tmp_path, plugin):
    write_bag(tmp_path / 'bag', plugin, TIMES)
    depth = ros_graph.collect(Image, 'camera/depth')
    replay_node(ros_graph, tmp_path / 'bag', loop=True, playback_speed=4.0)
    msgs = depth.wait_for(7, timeout=20.0)
    values = [value(m) for m in msgs]
    assert any(b <= a for a, b in zip(values, values[1:], strict=False)), f'no second pass in {values}'
    assert set(values) <= {500, 501, 502}
    assert_restamped(values, [stamp_s(m) for m in msgs], speed=4.0)


@pytest.mark.dds
def test_playback_speed_below_one_stretches_the_recorded_timing(ros_graph, tmp_path):
    """A lower bound only (a replay never publishes early): the last message of a 0.25 s bag played at a
    quarter of its speed cannot arrive sooner than 1 s after start; ignoring the speed it would at 0.25 s."""
    write_bag(tmp_path / 'bag', StoragePlugin.MCAP, TIMES)
    depth = ros_graph.collect(Image, 'camera/depth')
    start = time.monotonic()
    replay_node(ros_graph, tmp_path / 'bag', loop=True, playback_speed=0.25)
    msgs = depth.wait_for(1, timeout=20.0, predicate=until_values({502}))
    arrived = next(t for m, t in zip(msgs, depth.stamps, strict=False) if value(m) == 502) - start
    due = TIMES[-1] / 0.25
    assert arrived >= due, f'the last message arrived {arrived:.3f} s after start, before its time {due} s'
    assert_restamped([value(m) for m in msgs], [stamp_s(m) for m in msgs], speed=0.25)


# ---------------------------------------------------------------------------- replay_node process

@pytest.mark.dds
def test_replay_node_process_publishes_and_exits_cleanly(ros_graph, tmp_path):
    root = write_dataset(tmp_path / 'data', frames=5)
    rgb = ros_graph.collect(Image, 'camera/rgb')
    proc = node_process('rc_offline.replay',
                        ['-p', f'source:={root}', '-p', 'rate:=5.0', '-p', 'loop:=true'])
    try:
        rgb.wait_for(6, timeout=30.0)  # more than the folder holds: it loops
    finally:
        code, out = stop_process(proc)
    assert code == 0, out
    assert 'replaying 5 frames' in out


@pytest.mark.dds
def test_replay_node_waits_for_every_topic_loses_no_frame_and_exits_when_done(ros_graph, tmp_path):
    root = write_dataset(tmp_path / 'data', frames=5)
    proc = node_process('rc_offline.replay', ['-p', f'source:={root}', '-p', 'rate:=10.0',
                                              '-p', 'wait_for_subscribers:=1', '-p', 'exit_when_done:=true'])
    try:
        ros_graph.wait_for_publishers('camera/rgb', timeout=30.0)
        rgb = ros_graph.collect(Image, 'camera/rgb')
        time.sleep(1.5)  # one topic subscribed of four: still waiting, nothing sent, still running
        assert not rgb.messages and proc.poll() is None
        rest = [ros_graph.collect(Image, 'camera/depth'), ros_graph.collect(Image, 'camera/depth/confidence'),
                ros_graph.collect(CameraInfo, 'camera/camera_info')]
        out, _ = proc.communicate(timeout=30.0)  # it ends by itself after the fifth frame
    finally:
        if proc.returncode is None:
            stop_process(proc)
    assert proc.returncode == 0, out
    assert len(rgb.messages) == 5 and all(len(c.messages) == 5 for c in rest), out
    # (camera/rgb may have matched before the first check)
    waiting = 'waiting for 1 subscription(s) on /camera/camera_info, /camera/depth, /camera/depth/confidence'
    assert waiting in out, out
    assert 'replay finished: 5 events published' in out, out


@pytest.mark.dds
@pytest.mark.parametrize('args, message', [
    ([], 'set the source parameter'),
    (['-p', 'source:=/no/such/folder'], 'replay source /no/such/folder does not exist'),
    (['-p', 'source:=/tmp', '-p', 'rate:=0.0'], r'rate must be >= 0\.1, got 0\.0'),
])
def test_replay_node_bad_arguments_exit_with_one_line(args, message):
    import re

    proc = node_process('rc_offline.replay', args)
    out, _ = proc.communicate(timeout=30.0)
    assert proc.returncode == 1, out
    assert 'Traceback' not in out and re.search(message, out), out
