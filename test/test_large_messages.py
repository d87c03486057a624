"""Delivery of 921,600-byte clouds between processes, as Nav2 would receive them.

Three processes, as on the robot: a stub upstream publisher (depth + camera info at 15 Hz), the node
(its main applies the shipped Fast DDS profile), and this test process, which subscribes best effort
without any profile, like Nav2's costmap. At least 99% of the clouds must arrive.
"""

import os
import subprocess
import sys

import pytest
from sensor_msgs.msg import PointCloud2

from rc_perception import codecs

from ros_harness import REPO, node_process, stop_process

pytestmark = [pytest.mark.dds, pytest.mark.slow]

FRAMES, RATE_HZ = 150, 15


def test_organized_240x320_clouds_arrive_at_15hz(ros_graph):
    proc = node_process('pointcloud_xyz.node')
    try:
        clouds = ros_graph.collect(PointCloud2, 'perception/fused_depth_points')
        ros_graph.wait_for_publishers('perception/fused_depth_points', timeout=30.0)
        stub = subprocess.run(
            [sys.executable, os.path.join(REPO, 'test', 'stub_depth_publisher.py'),
             str(FRAMES), str(RATE_HZ), '320', '240'],
            capture_output=True, text=True, timeout=120)
        assert stub.returncode == 0, stub.stdout + stub.stderr
        try:
            clouds.wait_for(FRAMES, timeout=5.0)
        except AssertionError:
            pass  # fewer arrived: counted below
        received = len(clouds.messages)
        assert received >= 0.99 * FRAMES, (
            f'expected at least 99% of {FRAMES} clouds of 921,600 bytes, received {received}')
        assert len(clouds.messages[0].data) == 921_600
        assert codecs.cloud_to_xyz(clouds.messages[0]).shape == (240, 320, 3)
    finally:
        code, out = stop_process(proc)
    assert code == 0, f'node exited with {code}:\n{out}'
