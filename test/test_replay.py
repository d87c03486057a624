"""Replay of dataset folders and rosbag2 recordings onto the camera topics, over real DDS."""

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from rc_offline import dataset
from rc_offline.replay import BagSource, DatasetSource, Replayer, open_source
from rc_perception import codecs

from ros_harness import node_process, stop_process

pytestmark = pytest.mark.dds

RNG = np.random.default_rng(5)


def write_dataset(root, frames=3, height=24, width=32):
    for i in range(frames):
        stem = f'{i:06d}'
        dataset.write_image(root / 'rgb' / f'{stem}.png', RNG.integers(0, 256, (height, width, 3), np.uint8))
        dataset.write_image(root / 'tof' / f'{stem}.png', np.full((height, width), 1000 + i, np.uint16))
        dataset.write_image(root / 'confidence' / f'{stem}.png', np.full((height, width), 200, np.uint8))
    dataset.save_camera(root, width=width, height=height, fx=30.0, fy=30.0, cx=15.5, cy=11.5)
    return root


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


def write_bag(path, plugin):
    ts = get_typestore(Stores.ROS2_HUMBLE)
    times = [0.0, 0.1, 0.25]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection('/cam/depth', 'sensor_msgs/msg/Image', typestore=ts)
        for i, t in enumerate(times):
            header = Header(frame_id='tof_optical')
            header.stamp.sec, header.stamp.nanosec = 100, int(t * 1e9)
            msg = codecs.array_to_image(np.full((4, 6), 500 + i, np.uint16), '16UC1', header)
            writer.write(conn, int((100 + t) * 1e9), serialize_message(msg))
    return times


@pytest.mark.parametrize('plugin', [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_bag_replay_keeps_timing_and_content(ros_graph, tmp_path, plugin):
    times = write_bag(tmp_path / 'bag', plugin)
    source = open_source(tmp_path / 'bag', topics={'depth': '/cam/depth', 'rgb': '/cam/rgb'})
    assert isinstance(source, BagSource) and source.missing == ['/cam/rgb'] and len(source) == 3
    depth = ros_graph.collect(Image, 'camera/depth')
    replayer = Replayer(ros_graph.node, source, restamp=True)
    ros_graph.wait_for_subscribers(replayer.publishers['depth'])
    replayer.start()
    msgs = depth.wait_for(3)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs]
    np.testing.assert_allclose(np.diff(stamps), np.diff(times), atol=1e-6)  # differences kept, shifted
    assert stamps[0] > 1e9  # shifted to now, not the recorded 100 s
    assert [int(codecs.image_to_array(m)[0, 0]) for m in msgs] == [500, 501, 502]
    assert all(m.header.frame_id == 'tof_optical' for m in msgs)


def test_unusable_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        open_source(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='neither a dataset folder'):
        open_source(tmp_path / 'empty')
    write_bag(tmp_path / 'bag', StoragePlugin.SQLITE3)
    with pytest.raises(ValueError, match='has none of the topics /camera/rgb'):
        open_source(tmp_path / 'bag', topics={'rgb': '/camera/rgb'})


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


def test_replay_node_without_source_exits_with_one_line(tmp_path):
    proc = node_process('rc_offline.replay')
    out, _ = proc.communicate(timeout=30.0)
    assert proc.returncode == 1, out
    assert 'set the source parameter' in out and 'Traceback' not in out, out
