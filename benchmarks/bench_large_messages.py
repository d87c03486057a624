#!/usr/bin/env python3
"""Delivery of large best-effort clouds between processes, with and without the Fast DDS profile.

Three processes, as on the robot: test/stub_depth_publisher.py (FRAMES depth images of 240x320 32FC1,
307,200 bytes, below Fast DDS's 512 KB default segment, with camera info, at RATE Hz), pointcloud_xyz_node
with the shipped large-message profile (its default) or without it (RC_PERCEPTION_FASTDDS_PROFILE=off),
and this process, which counts the organized clouds that arrive (921,600 bytes each), subscribing best
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

from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from rc_perception import qos

from ros_spin import spinning_node

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOUD = 'perception/fused_depth_points'
HEIGHT, WIDTH = 240, 320
PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')


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

    sub = node.create_subscription(PointCloud2, CLOUD, on_cloud, qos.sensor_data())
    try:
        deadline = time.monotonic() + 30.0
        while node.count_publishers(CLOUD) == 0:  # discovery has no event of its own
            if time.monotonic() > deadline:
                raise RuntimeError('pointcloud_xyz_node did not appear within 30 s')
            time.sleep(0.02)
        subprocess.run([sys.executable, os.path.join(REPO, 'test', 'stub_depth_publisher.py'), str(frames),
                        str(rate), str(WIDTH), str(HEIGHT)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        done.wait(3.0)  # the last clouds in flight
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        node.destroy_subscription(sub)
    return len(received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--frames', type=int, default=150)
    parser.add_argument('--rate', type=float, default=15.0)
    args = parser.parse_args()
    for var in PROFILE_VARIABLES:
        os.environ.pop(var, None)  # this process is the subscriber without a profile, like Nav2
    results = {'profile': [], 'no profile': []}
    with spinning_node('bench_large_messages') as node:
        for run in range(args.runs):
            for name in results:
                got = one_run(node, name == 'profile', args.frames, args.rate)
                results[name].append(got)
                print(f'run {run + 1}: {name:10s} {got:4d} of {args.frames} clouds '
                      f'({100 * got / args.frames:5.1f} % delivered)', flush=True)
    summary = {name: {'received': got, 'frames': args.frames,
                      'delivered_pct_min': round(100 * min(got) / args.frames, 1),
                      'delivered_pct_max': round(100 * max(got) / args.frames, 1)}
               for name, got in results.items()}
    print(json.dumps({'bytes_per_cloud': HEIGHT * WIDTH * 12, 'rate_hz': args.rate, **summary}))


if __name__ == '__main__':
    main()
