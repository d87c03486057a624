"""Small real recordings for replay tests: a dataset folder (rc_offline.dataset layout) and rosbag2 files
written with the rosbags library (sqlite3 or mcap), with known content and stamps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from rc_offline import dataset
from rc_perception import codecs

RNG = np.random.default_rng(5)
#: Recorded stamps of write_bag's messages start here (seconds): far from "now".
BAG_START_S = 100


def write_dataset(root: Path, frames: int = 3, height: int = 24, width: int = 32) -> Path:
    """``frames`` frames: random RGB, ToF ``1000 + i`` mm everywhere, confidence 200, a 30 px focal length."""
    for i in range(frames):
        stem = f'{i:06d}'
        dataset.write_image(root / 'rgb' / f'{stem}.png', RNG.integers(0, 256, (height, width, 3), np.uint8))
        dataset.write_image(root / 'tof' / f'{stem}.png', np.full((height, width), 1000 + i, np.uint16))
        dataset.write_image(root / 'confidence' / f'{stem}.png', np.full((height, width), 200, np.uint8))
    dataset.save_camera(root, width=width, height=height, fx=30.0, fy=30.0, cx=15.5, cy=11.5)
    return root


def write_bag(path: Path, plugin, times=(0.0, 0.1, 0.25), topic: str = '/cam/depth',
              info_topic: str | None = None) -> list[float]:
    """A rosbag2 at ``path`` with one 4x6 16UC1 depth image per entry of ``times`` (seconds after
    BAG_START_S, used as both the header stamp and the record time), of value ``500 + i`` mm and frame
    ``tof_optical``; with ``info_topic``, a CameraInfo (width 6) recorded with each image. Returns ``times``.
    """
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic, 'sensor_msgs/msg/Image', typestore=store)
        info_conn = writer.add_connection(info_topic, 'sensor_msgs/msg/CameraInfo', typestore=store) \
            if info_topic else None
        for i, t in enumerate(times):
            header = Header(frame_id='tof_optical')
            header.stamp.sec, header.stamp.nanosec = BAG_START_S + int(t), round((t % 1) * 1e9)
            msg = codecs.array_to_image(np.full((4, 6), 500 + i, np.uint16), '16UC1', header)
            record_ns = BAG_START_S * 10 ** 9 + round(t * 1e9)
            writer.write(conn, record_ns, serialize_message(msg))
            if info_conn is not None:
                info = CameraInfo(header=header, width=6, height=4)
                writer.write(info_conn, record_ns, serialize_message(info))
    return list(times)


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
