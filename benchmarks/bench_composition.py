#!/usr/bin/env python3
"""One process or three: memory, CPU and delivery of the whole pipeline at camera rate.

For each layout (three node processes; perception_composed, one process with one single-threaded
executor and the student's worker thread) the pipeline runs on the synthetic held-out sequence, replayed
by replay_node at RATE Hz in a process of its own, with the FP32 demo student under ONNX Runtime. After
the first cloud, a window of SECONDS is measured: the camera frames published in it (their camera_info,
seen here), how many of them reach this process as a cloud (a best-effort subscriber without any
profile, as Nav2), camera stamp -> cloud arrival latency, CPU seconds of the node processes per cloud,
and, at the end of the window, their memory: RSS (resident pages, shared libraries counted in every
process) and PSS (shared pages split between the processes that map them: the fair sum). The layouts
alternate over RUNS.

Prints one line per run and, last, a JSON object. Usage:
    python benchmarks/bench_composition.py [--runs 2] [--seconds 30] [--rate 15] [--model student.onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, PointCloud2

from rc_offline.heldout import cache_root, ensure_split
from rc_perception import qos

from ros_spin import spinning_node

REPO = Path(__file__).resolve().parent.parent
LAYOUTS = {
    'three processes': ('student_trt_node', 'depth_fusion_node', 'pointcloud_xyz_node'),
    'one process': ('perception_composed',),
}
PAGE = os.sysconf('SC_PAGE_SIZE')
TICK = os.sysconf('SC_CLK_TCK')


def start(name: str, args: list[str]) -> subprocess.Popen:
    """A console script's entry point (rc_perception.composition), as ros2 launch starts it."""
    entry = 'main' if name == 'perception_composed' else name
    code = f'import sys; sys.argv[0] = {name!r}; from rc_perception.composition import {entry}; {entry}()'
    return subprocess.Popen([sys.executable, '-c', code, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, env={**os.environ, 'PYTHONUNBUFFERED': '1'})


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB."""
    lines = Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines()[1:]
    rollup = dict(line.split(':', 1) for line in lines)
    return (int(rollup['Rss'].split()[0]) / 1024, int(rollup['Pss'].split()[0]) / 1024)


class Probe:
    """Camera frames (by stamp) seen during a window, and each cloud's camera-stamp -> arrival latency."""

    def __init__(self, node: Node) -> None:
        self.lock = threading.Lock()
        self.window_frames: set[int] = set()
        self.clouds: dict[int, float] = {}  # camera stamp -> latency (ms)
        self.recording = False
        self.first_cloud = threading.Event()
        self._node = node
        self._subs = [
            node.create_subscription(CameraInfo, 'camera/camera_info', self._on_info, qos.sensor_data()),
            node.create_subscription(PointCloud2, 'perception/fused_depth_points', self._on_cloud,
                                     qos.sensor_data())]
        self._clock = node.get_clock()

    def close(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)

    @staticmethod
    def _stamp(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _on_info(self, msg) -> None:
        with self.lock:
            if self.recording:
                self.window_frames.add(self._stamp(msg))

    def _on_cloud(self, msg) -> None:
        now = self._clock.now().nanoseconds
        with self.lock:
            self.clouds[self._stamp(msg)] = (now - self._stamp(msg)) / 1e6
        self.first_cloud.set()

    def record(self, on: bool) -> None:
        with self.lock:
            self.recording = on

    def window(self) -> tuple[int, np.ndarray]:
        """Camera frames of the window, and the latencies of those that reached the cloud."""
        with self.lock:
            return len(self.window_frames), np.asarray(
                [ms for stamp, ms in self.clouds.items() if stamp in self.window_frames])


def one_run(node: Node, layout: str, params_file: str, data: Path, rate: float, seconds: float) -> dict:
    probe = Probe(node)
    config = str(REPO / 'config' / 'perception.yaml')
    procs = [start(name, ['--ros-args', '--params-file', config, '--params-file', params_file])
             for name in LAYOUTS[layout]]
    camera = subprocess.Popen([sys.executable, '-m', 'rc_offline.replay', '--ros-args', '-p',
                               f'source:={data}', '-p', f'rate:={rate}', '-p', 'loop:=true'], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not probe.first_cloud.wait(180.0):
            raise RuntimeError(f'{layout}: no cloud within 180 s')
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        probe.record(True)
        time.sleep(seconds)  # the measurement window
        probe.record(False)
        cpu1 = sum(cpu_seconds(p.pid) for p in procs)
        memory = [memory_mb(p.pid) for p in procs]
        time.sleep(1.0)  # the clouds of the window's last frames, still in flight
        frames, latency = probe.window()
    finally:
        for proc in (camera, *procs):
            proc.send_signal(signal.SIGINT)
        codes = [proc.wait(timeout=30) for proc in (camera, *procs)]
        probe.close()
    return {
        'layout': layout, 'processes': len(procs), 'camera_frames': frames, 'clouds': latency.size,
        'delivered_pct': round(100 * latency.size / frames, 1) if frames else 0.0,
        'cloud_hz': round(latency.size / seconds, 2),
        'latency_p50_ms': round(float(np.percentile(latency, 50)), 1) if latency.size else None,
        'latency_p99_ms': round(float(np.percentile(latency, 99)), 1) if latency.size else None,
        'cpu_s_per_frame': round((cpu1 - cpu0) / max(latency.size, 1), 4),
        'rss_mb': round(sum(m[0] for m in memory), 1), 'pss_mb': round(sum(m[1] for m in memory), 1),
        'rss_mb_each': [round(m[0], 1) for m in memory], 'exit_codes': codes,
    }


def _model(path: str | None) -> Path:
    if path:
        return Path(path)
    out = cache_root() / 'exported'
    model = out / 'student_demo_fp32.onnx'
    if not model.is_file():
        subprocess.run([sys.executable, '-m', 'rc_offline.export', '--checkpoint',
                        str(REPO / 'models' / 'student_demo.pt'), '--output-dir', str(out),
                        '--precision', 'fp32', '--skip-trt'], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return model


def _runs(node: Node, args: argparse.Namespace, params_file: str, data: Path, results: list) -> None:
    for run in range(args.runs):
        for layout in LAYOUTS:
            result = one_run(node, layout, params_file, data, args.rate, args.seconds)
            results.append(result)
            print(f"run {run + 1}: {layout:15s} RSS {result['rss_mb']:6.1f} MB "
                  f"(PSS {result['pss_mb']:6.1f}), {result['clouds']}/{result['camera_frames']} frames "
                  f"reached the cloud "
                  f"({result['delivered_pct']} %, {result['cloud_hz']} Hz), latency p50/p99 "
                  f"{result['latency_p50_ms']}/{result['latency_p99_ms']} ms, CPU "
                  f"{result['cpu_s_per_frame'] * 1e3:.1f} ms/frame, exit codes {result['exit_codes']}",
                  flush=True)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=2)
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--rate', type=float, default=15.0)
    parser.add_argument('--model', help='student model (default: the demo student exported to ONNX FP32)')
    args = parser.parse_args()
    data = ensure_split('heldout', 90)
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as fh:
        model = str(_model(args.model))
        yaml.safe_dump({'/**/student_trt_node': {'ros__parameters': {'model_path': model}}}, fh)
    results = []
    try:
        with spinning_node('bench_composition') as node:
            _runs(node, args, fh.name, data, results)
    finally:
        os.unlink(fh.name)
    print(json.dumps({'rate_hz': args.rate, 'seconds': args.seconds, 'cpus': os.cpu_count(),
                      'load_avg': os.getloadavg(), 'runs': results}))


if __name__ == '__main__':
    main()
