#!/usr/bin/env python3
"""Student inference latency and student_trt_node throughput with ONNX Runtime, FP32 and INT8 Q/DQ.

Exports a checkpoint with export_trt (``--skip-trt``: FP32 ONNX and INT8 Q/DQ ONNX) and measures, per model:
  inference  backend.infer on one preprocessed 240x320 input: warm-up, then N timed runs (mean, p50, p99)
  pipeline   preprocess a camera frame + infer + postprocess, as the node's worker does (p50)
  node       student_trt_node in-process over real DDS, fed camera frames faster than it can run for a
             few seconds: published frames per second, and the node's own latency percentiles

Without --checkpoint the committed demo student (models/student_demo.pt) is used. INT8 is calibrated on
--calib-images, or else on synthetic indoor scenes from rc_offline.scenes (never on noise).

--cuda measures instead the TensorRT path's data movement with student_trt.cuda_buffers on a CUDA GPU
(pinned host <-> device copies of the 240x320 model's input and outputs on one stream, plain and as a
replayed CUDA graph); it needs cuda-python and no ROS, ONNX or TensorRT.

Prints a table and, as the last line, a JSON object.
Usage: python benchmarks/bench_student.py [--checkpoint PT] [--calib-images DIR] [--iterations N] [--cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rc_offline.benchmark import latency_stats, timed

CAMERA = (480, 640)


def stats(samples_ms: list[float]) -> dict:
    """Mean, p50 and p99 (ms): ``rc_offline.benchmark.latency_stats`` without the raw samples."""
    full = latency_stats(samples_ms)
    return {key: full[key] for key in ('mean_ms', 'p50_ms', 'p99_ms')}


# ------------------------------------------------------------------------------------------------ models

def calibration_folder(work: Path, count: int) -> Path:
    """Synthetic indoor frames in the rc_perception dataset layout (rgb/ ...), for INT8 calibration."""
    from rc_offline import scenes
    folder = work / 'calib'
    scenes.write_split(folder, scenes.random_frames(seed=11, count=count))
    return folder


def export_models(args, work: Path) -> dict[str, Path]:
    """FP32 and INT8 Q/DQ ONNX of the checkpoint (default: the demo student), via export_trt."""
    from rc_offline.export import main as export_main
    from rc_perception.resources import share_file
    checkpoint = Path(args.checkpoint) if args.checkpoint else share_file('models', 'student_demo.pt')
    calib = Path(args.calib_images) if args.calib_images else calibration_folder(work, args.calib_count)
    out = work / 'exported'
    code = export_main(['--checkpoint', str(checkpoint), '--output-dir', str(out), '--skip-trt',
                        '--precision', 'fp32,int8', '--calib-images', str(calib),
                        '--calib-count', str(args.calib_count)])
    if code != 0:
        raise SystemExit(f'bench_student: export_trt failed with exit code {code}')
    models = {variant: out / f'{checkpoint.stem}_{variant}.onnx' for variant in ('fp32', 'int8_qdq')}
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        raise SystemExit(f'bench_student: export_trt did not write {", ".join(missing)}')
    return models


def camera_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:CAMERA[0], 0:CAMERA[1]].astype(np.float32)
    img = np.stack([255 * yy / CAMERA[0], 255 * xx / CAMERA[1], 128 + 0 * xx], axis=2)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def bench_inference(path: Path, args) -> dict:
    from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
    from student_trt.postprocess import Postprocessor
    from student_trt.preprocess import Preprocessor
    with OnnxRuntimeBackend(path, num_threads=args.threads) as backend:
        pre, post = Preprocessor(backend.spec), Postprocessor(backend.spec)
        frame = camera_frame()
        x = pre(frame, 'rgb8')
        inference = stats(timed(lambda: backend.infer(x), args.warmup, args.iterations))

        def pipeline():
            out = backend.infer(pre(frame, 'rgb8'))
            post(out.depth, out.seg_logits)

        per_frame = stats(timed(pipeline, 3, max(20, args.iterations // 4)))
        return {'model': path.name, 'precision': backend.precision, 'input': f'{backend.spec.height}x'
                f'{backend.spec.width}', 'backend': backend.description, 'inference': inference,
                'pipeline_p50_ms': per_frame['p50_ms']}


def bench_node(path: Path, args, pipeline_ms: float) -> dict:
    """student_trt_node in its own rclpy context, fed 640x480 rgb8 frames at ~2.5x its pipeline rate."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from rc_perception import codecs
    from student_trt.node import StudentTrtNode

    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = StudentTrtNode(context=context, parameter_overrides=[
        Parameter('model_path', value=str(path)), Parameter('num_threads', value=args.threads),
        Parameter('warmup_iterations', value=5)])
    helper = Node('bench_student', context=context)
    outputs = []
    helper.create_subscription(Image, 'student/depth', lambda m: outputs.append(time.monotonic()),
                               qos_profile_sensor_data)
    pub = helper.create_publisher(Image, 'camera/rgb', qos_profile_sensor_data)
    executor.add_node(node)
    executor.add_node(helper)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 10
        while (pub.get_subscription_count() < 1 or helper.count_publishers('student/depth') < 1) \
                and time.monotonic() < deadline:
            time.sleep(0.02)  # discovery has no event of its own
        msg = codecs.array_to_image(camera_frame(), 'rgb8')
        rate = min(2.5 * 1000.0 / pipeline_ms, 300.0)
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < args.node_seconds:
            msg.header.stamp.sec = i
            pub.publish(msg)
            i += 1
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        end = time.monotonic()
        deadline = end + 10
        while node.counts()['pending'] and time.monotonic() < deadline:
            time.sleep(0.01)  # the frame in hand finishes before the counts are read
        counts = node.counts()
        lat = node.latencies_ms()
        window = [t for t in outputs if start <= t <= end]
        fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
        return {'published_hz': round(i / (end - start), 1), 'output_hz': round(fps, 2),
                'frames_in': counts['received'], 'processed': counts['processed'],
                'dropped_stale': counts['dropped_stale'],
                **{f'{key}_ms': round(value, 3) for key, value in lat.items()}}
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        helper.destroy_node()
        rclpy.try_shutdown(context=context)
        spin.join(timeout=5.0)


# ------------------------------------------------------------------------------------------------- CUDA

def bench_cuda(args) -> dict:
    """Copies of the 240x320 student's I/O through pinned buffers on one stream: plain vs CUDA graph."""
    from student_trt import cuda_buffers as cb
    info = cb.device_info(0)
    shapes = {'rgb': (1, 3, 240, 320), 'depth': (1, 1, 240, 320), 'seg_logits': (1, 5, 240, 320)}
    results = {'device': info.name, 'compute_capability': info.sm, 'runtime': info.runtime_version,
               'driver': info.driver_version}
    with cb.Stream() as stream:
        bufs = {name: cb.HostDeviceBuffer(shape) for name, shape in shapes.items()}
        try:
            bufs['rgb'].host[...] = 1.0

            def enqueue():
                bufs['rgb'].to_device(stream)
                for name in ('depth', 'seg_logits'):  # stands in for the engine writing its outputs
                    nbytes = min(bufs[name].nbytes, bufs['rgb'].nbytes)
                    cb.memcpy_async(bufs[name].device_ptr, bufs['rgb'].device_ptr, nbytes, 'dtod', stream)
                    bufs[name].to_host(stream)

            def plain():
                enqueue()
                stream.synchronize()

            with cb.CudaGraph() as graph:
                with graph.capture(stream):
                    enqueue()

                def replay():
                    graph.launch(stream)
                    stream.synchronize()

                results['plain'] = stats(timed(plain, args.warmup, args.iterations))
                results['graph'] = stats(timed(replay, args.warmup, args.iterations))
            bytes_moved = sum(b.nbytes for b in bufs.values())
            results['bytes_per_frame'] = bytes_moved
        finally:
            for buf in bufs.values():
                buf.free()
    print(f"{'path':>6} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}   ({info.name}, sm {info.sm}, "
          f"{results['bytes_per_frame']} bytes host<->device per frame)")
    for name in ('plain', 'graph'):
        r = results[name]
        print(f"{name:>6} {r['mean_ms']:>8.3f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    return results


# ------------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', help='student checkpoint (.pt); default: models/student_demo.pt')
    parser.add_argument('--calib-images', help='INT8 calibration images (default: synthetic scenes)')
    parser.add_argument('--calib-count', type=int, default=32, help='calibration images to use (default 32)')
    parser.add_argument('--iterations', type=int, default=200,
                        help='timed inferences per model (default 200)')
    parser.add_argument('--warmup', type=int, default=20, help='untimed inferences first (default 20)')
    parser.add_argument('--threads', type=int, default=0, help='ONNX Runtime intra-op threads (0: default)')
    parser.add_argument('--node-seconds', type=float, default=5.0, help='seconds of node load (default 5)')
    parser.add_argument('--no-node', action='store_true', help='skip the node throughput measurement')
    parser.add_argument('--cuda', action='store_true',
                        help='measure cuda_buffers copies on a CUDA GPU instead')
    args = parser.parse_args()
    machine = f'{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}'

    if args.cuda:
        from student_trt.cuda_buffers import CudaError, CudaUnavailable
        try:
            results = bench_cuda(args)
        except (CudaUnavailable, CudaError) as exc:
            print(f'bench_student: --cuda: {exc}', file=sys.stderr)
            return 1
        print(json.dumps({'benchmark': 'student_cuda_buffers', 'iterations': args.iterations,
                          'machine': machine, 'results': results}))
        return 0

    with tempfile.TemporaryDirectory(prefix='bench_student_') as tmp:
        models = export_models(args, Path(tmp))
        results = {}
        for name, path in models.items():
            results[name] = bench_inference(path, args)
            if not args.no_node:
                results[name]['node'] = bench_node(path, args, results[name]['pipeline_p50_ms'])
    print()
    print(f"{'model':>9} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'frame p50':>10} {'node fps':>9} "
          f"{'node frame p50/p99 ms':>22}   ({results['fp32']['backend'].split(',')[0]}, {machine})")
    for name, r in results.items():
        inf, node = r['inference'], r.get('node')
        node_cols = (f"{node['output_hz']:>9.1f} {node['frame_p50_ms']:>10.1f} / {node['frame_p99_ms']:<9.1f}"
                     if node else f"{'-':>9} {'-':>22}")
        print(f"{name:>9} {inf['mean_ms']:>8.2f} {inf['p50_ms']:>8.2f} {inf['p99_ms']:>8.2f} "
              f"{r['pipeline_p50_ms']:>10.2f} {node_cols}")
    speedup = results['fp32']['inference']['p50_ms'] / results['int8_qdq']['inference']['p50_ms']
    print(f'INT8 Q/DQ vs FP32 inference p50: {speedup:.2f}x (ONNX Runtime CPU; TensorRT on a Jetson differs)')
    print(json.dumps({'benchmark': 'student_onnxruntime', 'input': '240x320',
                      'camera': f'{CAMERA[0]}x{CAMERA[1]}',
                      'iterations': args.iterations, 'threads': args.threads, 'machine': machine,
                      'int8_speedup_p50': round(speedup, 3), 'results': results}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
