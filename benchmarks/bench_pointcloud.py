#!/usr/bin/env python3
"""CPU per frame of pointcloud_xyz_node beside a plain numpy reference node, through real DDS.

One run per image size (240x320 and 480x640). In each, this process publishes the same 32FC1 depth image
and CameraInfo at 15 Hz (with the package's Fast DDS profile) to two node processes started side by side:

  node       pointcloud_xyz_node (``python -m pointcloud_xyz.node``), its default parameters plus --param
  reference  benchmarks/reference_pointcloud_node.py: the same organized cloud in ~40 lines of plain numpy

and subscribes to both clouds best effort without a profile, as Nav2 does. After a warm-up it reads each
process's CPU time (user + system, all threads) and minor page faults from /proc over --frames frames, and
prints per node: CPU milliseconds per frame, minor faults per frame, clouds delivered, resident memory;
the last line is a JSON object. Wall-clock figures are the machine's: compare the two rows of one run.

Usage: python benchmarks/bench_pointcloud.py [--frames 300] [--param name:=value ...] [--env NAME=VALUE ...]
  --env sets a variable in both node processes, e.g. MALLOC_TRIM_THRESHOLD_=0 to see what the allocator
  setting is worth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = ((240, 320), (480, 640))
RATE_HZ = 15.0
WARMUP_FRAMES = 45
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
PAGE_BYTES = os.sysconf('SC_PAGE_SIZE')


def proc_usage(pid: int) -> tuple[float, int, float]:
    """(CPU seconds, minor page faults, resident MB) of a process, all its threads together."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # fields[0] is field 3 (state) of proc(5): minflt is field 10, utime 14, stime 15, rss 24.
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu, int(fields[7]), int(fields[21]) * PAGE_BYTES / 1e6


def start(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Rig:
    """This process's side: the depth publisher and one cloud counter per node (rclpy imported late, after
    the Fast DDS profile is chosen)."""

    def __init__(self, topics: dict[str, str]) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from rc_perception import qos
        rclpy.init(args=sys.argv[:1])  # this script's options are not ROS arguments
        self._rclpy = rclpy
        self.node = rclpy.create_node('bench_pointcloud')
        self.depth_pub = self.node.create_publisher(Image, 'perception/fused_depth', qos.sensor_data())
        self.info_pub = self.node.create_publisher(CameraInfo, 'camera/camera_info', qos.sensor_data())
        self.counts = dict.fromkeys(topics, 0)
        self._lock = threading.Lock()
        for name, topic in topics.items():
            self.node.create_subscription(PointCloud2, topic, lambda _m, n=name: self._count(n),
                                          qos.sensor_data())
        self.topics = topics
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def wait_for_graph(self, subscribers: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (self.depth_pub.get_subscription_count() < subscribers
               or any(self.node.count_publishers(t) < 1 for t in self.topics.values())):
            if time.monotonic() > deadline:
                raise SystemExit('bench_pointcloud: the node processes did not come up within '
                                 f'{timeout:.0f} s (see their output above)')
            time.sleep(0.05)

    def publish_frames(self, frames: int, depth_msg, info_msg) -> None:
        start = time.monotonic()
        for i in range(frames):
            stamp = self.node.get_clock().now().to_msg()
            info_msg.header.stamp = depth_msg.header.stamp = stamp
            self.info_pub.publish(info_msg)
            self.depth_pub.publish(depth_msg)
            time.sleep(max(0.0, start + (i + 1) / RATE_HZ - time.monotonic()))

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown()


def frame_messages(height: int, width: int):
    from sensor_msgs.msg import CameraInfo

    from rc_perception import codecs
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 6.0, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.1] = np.nan
    depth_msg = codecs.array_to_image(depth, '32FC1')
    depth_msg.header.frame_id = 'camera_optical'
    info = CameraInfo(width=width, height=height)
    info.header.frame_id = 'camera_optical'
    f = 0.8 * width
    info.k = [f, 0.0, width / 2 - 0.5, 0.0, f, height / 2 - 0.5, 0.0, 0.0, 1.0]
    return depth_msg, info


def measure(height: int, width: int, frames: int, params: list[str], env: dict) -> dict:
    topics = {'node': 'perception/fused_depth_points', 'reference': 'bench/reference_points'}
    node_cmd = [sys.executable, '-m', 'pointcloud_xyz.node', '--ros-args', '--log-level', 'warn']
    for p in params:
        node_cmd += ['-p', p]
    procs = {
        'node': start(node_cmd, env),
        'reference': start([sys.executable, str(REPO / 'benchmarks' / 'reference_pointcloud_node.py'),
                            topics['reference'], '--ros-args', '--log-level', 'warn'], env),
    }
    rig = Rig(topics)
    try:
        rig.wait_for_graph(subscribers=2)
        depth_msg, info_msg = frame_messages(height, width)
        rig.publish_frames(WARMUP_FRAMES, depth_msg, info_msg)
        time.sleep(0.5)
        before = {n: proc_usage(p.pid) for n, p in procs.items()}
        got_before = rig.snapshot()
        rig.publish_frames(frames, depth_msg, info_msg)
        time.sleep(1.0)  # the last frames' clouds
        after = {n: proc_usage(p.pid) for n, p in procs.items()}
        got = rig.snapshot()
    finally:
        rig.close()
        for proc in procs.values():
            stop(proc)
    results = {}
    for name in procs:
        results[name] = {
            'cpu_ms_per_frame': round((after[name][0] - before[name][0]) / frames * 1e3, 3),
            'minor_faults_per_frame': round((after[name][1] - before[name][1]) / frames, 1),
            'clouds_delivered': got[name] - got_before[name],
            'rss_mb': round(after[name][2], 1),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=300, help='measured frames per size (at 15 Hz)')
    parser.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                        help='a pointcloud_xyz_node parameter, e.g. publish_clearing_cloud:=true')
    parser.add_argument('--env', action='append', default=[], metavar='NAME=VALUE',
                        help='an environment variable for both node processes')
    args = parser.parse_args()
    if args.frames < 1 or any('=' not in e for e in args.env):
        parser.error('--frames must be >= 1 and every --env NAME=VALUE')
    from rc_perception.fastdds import apply_large_message_profile
    apply_large_message_profile()  # this process publishes 1.2 MB depth images at 480x640
    env = {**os.environ, 'PYTHONUNBUFFERED': '1',
           'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
           **dict(e.split('=', 1) for e in args.env)}
    print(f"{'size':>9} {'process':>9} {'CPU ms/frame':>12} {'faults/frame':>12} {'delivered':>10} "
          f"{'RSS MB':>7}")
    results = {}
    for height, width in SIZES:
        key = f'{height}x{width}'
        results[key] = measure(height, width, args.frames, args.param, env)
        for name, r in results[key].items():
            print(f"{key:>9} {name:>9} {r['cpu_ms_per_frame']:>12.3f} {r['minor_faults_per_frame']:>12.1f} "
                  f"{r['clouds_delivered']:>5}/{args.frames:<4} {r['rss_mb']:>7.1f}", flush=True)
    print(json.dumps({'benchmark': 'pointcloud_xyz_cpu', 'rate_hz': RATE_HZ, 'frames': args.frames,
                      'params': args.param, 'env': args.env, 'cpus': os.cpu_count(),
                      'machine': platform.processor() or platform.machine(), 'results': results}))


if __name__ == '__main__':
    main()
