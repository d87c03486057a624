#!/usr/bin/env python3
"""The whole pipeline at camera rate, in both layouts: frames delivered, latency per stage, CPU, memory.

For each layout (three node processes; perception_composed, one process with one single-threaded executor
and the student's worker thread) and each rate (15 and 30 Hz by default), the pipeline runs on the
synthetic held-out sequence, replayed by replay_node in a process of its own (looping), with the FP32 demo
student under ONNX Runtime. Beside it, in the same run, the plain ~40-line numpy reference cloud node
(benchmarks/reference_pointcloud_node.py) back-projects the same fused depth to a topic of its own: the
yardstick for pointcloud_xyz_node's CPU per frame.

After the first cloud, a window of --seconds is measured:

* frames: camera frames published in the window (their camera_info, seen here), how many reach this
  process as a student depth, a fused depth and a cloud (best-effort subscribers without any profile, as
  Nav2), clouds per second;
* latency per stage (rc_offline.demo_latency): per frame, camera -> student out -> fused out -> cloud out
  at this process, p50 and p99; and the nodes' own phases from /diagnostics (wait, compute, publish; DDS
  transit between them at p50), with the slowest segment named;
* CPU seconds per frame (a cloud delivered) of every process, the reference node's per fused depth it
  received; RSS and PSS of every process at the end of the window.

Prints one line per run and, last, a JSON object. Usage:
    python benchmarks/bench_pipeline.py [--rates 15,30] [--layouts three,one] [--runs 1] [--seconds 20]
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

import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from rc_offline.demo_latency import breakdown
from rc_offline.heldout import cache_root, ensure_split
from rc_perception import qos

from ros_spin import spinning_node

REPO = Path(__file__).resolve().parent.parent
LAYOUTS = {
    'three': ('student_trt_node', 'depth_fusion_node', 'pointcloud_xyz_node'),
    'one': ('perception_composed',),
}
REFERENCE_TOPIC = 'reference/points'
TICK = os.sysconf('SC_CLK_TCK')
#: What the probe records per camera frame: the topic it arrives on, and the key of demo_latency.
OUTPUTS = (('student/depth', Image, 'student'), ('perception/fused_depth', Image, 'fused'),
           ('perception/fused_depth_points', PointCloud2, 'cloud'),
           (REFERENCE_TOPIC, PointCloud2, 'reference'))


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
    """Camera frames (by stamp) seen during a window; when each output of each frame arrived here; the
    newest /diagnostics of each node."""

    def __init__(self, node: Node) -> None:
        self.lock = threading.Lock()
        self.window_frames: set[int] = set()
        self.arrivals: dict[int, dict[str, int]] = {}   # camera stamp -> output -> arrival (ns)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.recording = False
        self.first_cloud = threading.Event()
        self._node = node
        self._clock = node.get_clock()
        self._subs = [node.create_subscription(CameraInfo, 'camera/camera_info', self._on_info,
                                               qos.sensor_data()),
                      node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                               QoSProfile(depth=50))]
        self._subs += [node.create_subscription(kind, topic, self._arrival(key), qos.sensor_data())
                       for topic, kind, key in OUTPUTS]

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

    def _on_diagnostics(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def _arrival(self, key: str):
        def callback(msg) -> None:
            now = self._clock.now().nanoseconds
            with self.lock:
                self.arrivals.setdefault(self._stamp(msg), {})[key] = now
            if key == 'cloud':
                self.first_cloud.set()
        return callback

    def record(self, on: bool) -> None:
        with self.lock:
            self.recording = on

    def window(self) -> tuple[set[int], dict[int, dict[str, int]], dict]:
        """The window's camera frames, the arrivals of those frames, and the newest diagnostics."""
        with self.lock:
            frames = set(self.window_frames)
            arrivals = {s: dict(a) for s, a in self.arrivals.items() if s in frames}
            return frames, arrivals, dict(self.diagnostics)


def _measure(procs: dict[str, subprocess.Popen], probe: Probe, seconds: float) -> dict:
    """CPU deltas over the window, memory at its end, and what the probe saw."""
    cpu0 = {name: cpu_seconds(p.pid) for name, p in procs.items()}
    probe.record(True)
    time.sleep(seconds)
    probe.record(False)
    cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
    memory = {name: memory_mb(p.pid) for name, p in procs.items()}
    time.sleep(1.0)  # the outputs of the window's last frames, still in flight
    frames, arrivals, diagnostics = probe.window()
    return {'cpu': cpu, 'memory': memory, 'frames': frames, 'arrivals': arrivals, 'diagnostics': diagnostics}


def one_run(node: Node, layout: str, params_file: str, data: Path, rate: float, seconds: float) -> dict:
    probe = Probe(node)
    config = str(REPO / 'config' / 'perception.yaml')
    procs = {name: start(name, ['--ros-args', '--params-file', config, '--params-file', params_file])
             for name in LAYOUTS[layout]}
    procs['reference'] = subprocess.Popen(
        [sys.executable, str(REPO / 'benchmarks' / 'reference_pointcloud_node.py'), REFERENCE_TOPIC],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    camera = subprocess.Popen([sys.executable, '-m', 'rc_offline.replay', '--ros-args', '-p',
                               f'source:={data}', '-p', f'rate:={rate}', '-p', 'loop:=true'], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not probe.first_cloud.wait(180.0):
            raise RuntimeError(f'{layout}: no cloud within 180 s')
        time.sleep(2.0)  # past the start-up transient (warm-up, discovery of every subscriber)
        seen = _measure(procs, probe, seconds)
    finally:
        for proc in (camera, *procs.values()):
            proc.send_signal(signal.SIGINT)
        codes = {name: proc.wait(timeout=30) for name, proc in {'replay': camera, **procs}.items()}
        probe.close()
    return _summary(layout, rate, seconds, seen, codes)


def _summary(layout: str, rate: float, seconds: float, seen: dict, codes: dict) -> dict:
    frames, arrivals = seen['frames'], seen['arrivals']
    reached = {key: sum(1 for a in arrivals.values() if key in a) for _, _, key in OUTPUTS}
    clouds = max(reached['cloud'], 1)
    latency = breakdown(seen['diagnostics'], {s: s for s in arrivals}, {s: a for s, a in arrivals.items()})
    segment, slowest = latency.dominant()
    return {
        'layout': layout, 'rate_hz': rate, 'camera_frames': len(frames), 'reached': reached,
        'delivered_pct': round(100 * reached['cloud'] / len(frames), 1) if frames else 0.0,
        'cloud_hz': round(reached['cloud'] / seconds, 2),
        'latency_ms': {name: {'p50': round(p50, 1), 'p99': round(p99, 1)}
                       for name, (p50, p99, _) in latency.frames.items()},
        'node_phases_p50_ms': {label: round(ms, 2) for label, ms in latency.segments()},
        'slowest_segment': segment, 'slowest_segment_p50_ms': round(slowest, 1),
        'cpu_ms_per_frame': {name: round(1e3 * s / (max(reached['reference'], 1) if name == 'reference'
                                                    else clouds), 2) for name, s in seen['cpu'].items()},
        'rss_mb': {name: round(m[0], 1) for name, m in seen['memory'].items()},
        'pss_mb': {name: round(m[1], 1) for name, m in seen['memory'].items()},
        'exit_codes': codes,
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


def _line(r: dict) -> str:
    pipeline = {k: v for k, v in r['rss_mb'].items() if k != 'reference'}
    cpu = ', '.join(f'{k} {v:.1f}' for k, v in r['cpu_ms_per_frame'].items())
    lat = r['latency_ms']['camera -> cloud out']
    rss = ', '.join(f'{k} {v:.0f}' for k, v in pipeline.items())
    return (f"{r['layout']:5s} layout at {r['rate_hz']:g} Hz: {r['reached']['cloud']}/{r['camera_frames']} "
            f"frames reached the cloud ({r['delivered_pct']} %, {r['cloud_hz']} Hz); camera -> cloud p50/p99 "
            f"{lat['p50']}/{lat['p99']} ms, slowest {r['slowest_segment']} "
            f"({r['slowest_segment_p50_ms']} ms); CPU ms/frame {cpu}; RSS {sum(pipeline.values()):.0f} MB "
            f'({rss})')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=1, help='repetitions of every (layout, rate)')
    parser.add_argument('--seconds', type=float, default=20.0, help='measured window per run')
    parser.add_argument('--rates', default='15,30', help='camera rates in Hz, comma separated')
    parser.add_argument('--layouts', default='three,one', help='three (processes) and/or one (composed)')
    parser.add_argument('--model', help='student model (default: the demo student exported to ONNX FP32)')
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(',')]
    layouts = [name for name in args.layouts.split(',') if name in LAYOUTS]
    data = ensure_split('heldout', 90)
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as fh:
        model = str(_model(args.model))
        yaml.safe_dump({'/**/student_trt_node': {'ros__parameters': {'model_path': model}}}, fh)
    results = []
    try:
        with spinning_node('bench_pipeline') as node:
            for _ in range(args.runs):
                for rate in rates:
                    for layout in layouts:
                        results.append(one_run(node, layout, fh.name, data, rate, args.seconds))
                        print(_line(results[-1]), flush=True)
    finally:
        os.unlink(fh.name)
    print(json.dumps({'seconds': args.seconds, 'cpus': os.cpu_count(), 'load_avg': os.getloadavg(),
                      'runs': results}))


if __name__ == '__main__':
    main()
