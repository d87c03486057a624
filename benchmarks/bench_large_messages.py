#!/usr/bin/env python3
"""Delivery of large best-effort clouds between processes, with and without the Fast DDS profile.

pointcloud_xyz_node runs in a process of its own, with the shipped large-message profile (its default)
or without it (RC_PERCEPTION_FASTDDS_PROFILE=off). This process plays camera and Nav2: it publishes
FRAMES depth images (240x320 32FC1, 307,200 bytes, below Fast DDS's 512 KB default segment) with camera
info at RATE Hz and counts the organized clouds that come back (921,600 bytes each), subscribing best
effort without any profile, as Nav2's costmap does. Each setting runs RUNS times, alternating.

Prints one line per run and, last, a JSON object. Usage:
    python benchmarks/bench_large_messages.py [--runs 3] [--frames 150] [--rate 15]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from rc_perception import codecs, qos

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 240, 320


def wait_until(predicate, timeout: float) -> bool:
    """Discovery has no event of its own: check every 20 ms."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def one_run(node: Node, profile: bool, frames: int, rate: float) -> int:
    """Clouds received of ``frames`` published, the node with or without the profile."""
    env = {**os.environ, 'RC_PERCEPTION_FASTDDS_PROFILE': 'auto' if profile else 'off'}
    proc = subprocess.Popen([sys.executable, '-m', 'pointcloud_xyz.node'], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    received = []
    done = threading.Event()

    def on_cloud(msg: PointCloud2) -> None:
        received.append(len(msg.data))
        if len(received) == frames:
            done.set()

    sub = node.create_subscription(PointCloud2, 'perception/fused_depth_points', on_cloud, qos.sensor_data())
    depth_pub = node.create_publisher(Image, 'perception/fused_depth', qos.sensor_data())
    info_pub = node.create_publisher(CameraInfo, 'camera/camera_info', qos.sensor_data())
    try:
        if not (wait_until(lambda: depth_pub.get_subscription_count() > 0, 30.0)
                and wait_until(lambda: node.count_publishers('perception/fused_depth_points') > 0, 30.0)):
            raise RuntimeError('pointcloud_xyz_node did not appear within 30 s')
        depth = np.random.default_rng(0).uniform(0.3, 6.0, (HEIGHT, WIDTH)).astype(np.float32)
        info = CameraInfo(width=WIDTH, height=HEIGHT, k=[256.0, 0, 159.5, 0, 256.0, 119.5, 0, 0, 1])
        start = time.monotonic()
        for i in range(frames):
            header = Header(frame_id='camera_optical')
            header.stamp = node.get_clock().now().to_msg()
            info.header = header
            info_pub.publish(info)
            depth_pub.publish(codecs.array_to_image(depth, '32FC1', header))
            time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        done.wait(3.0)  # the last clouds in flight
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        node.destroy_subscription(sub)
        node.destroy_publisher(depth_pub)
        node.destroy_publisher(info_pub)
    return len(received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--frames', type=int, default=150)
    parser.add_argument('--rate', type=float, default=15.0)
    args = parser.parse_args()
    for var in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
        os.environ.pop(var, None)  # this process is the subscriber without a profile, like Nav2
    rclpy.init()
    node = Node('bench_large_messages')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin)
    spinner.start()
    results = {'profile': [], 'no profile': []}
    try:
        for run in range(args.runs):
            for name in results:
                got = one_run(node, name == 'profile', args.frames, args.rate)
                results[name].append(got)
                print(f'run {run + 1}: {name:10s} {got:4d} of {args.frames} clouds '
                      f'({100 * got / args.frames:5.1f} % delivered)', flush=True)
    finally:
        executor.shutdown()
        spinner.join()
        node.destroy_node()
        rclpy.try_shutdown()
    summary = {name: {'received': got, 'frames': args.frames,
                      'delivered_pct_min': round(100 * min(got) / args.frames, 1),
                      'delivered_pct_max': round(100 * max(got) / args.frames, 1)}
               for name, got in results.items()}
    print(json.dumps({'bytes_per_cloud': HEIGHT * WIDTH * 12, 'rate_hz': args.rate, **summary}))


if __name__ == '__main__':
    main()
