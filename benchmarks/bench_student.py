#!/usr/bin/env python3
"""Student inference and student_trt_node with ONNX Runtime (FP32, INT8 Q/DQ); non-4:3 cameras; CUDA buffers.

Default: exports a checkpoint with export_trt (``--skip-trt``: FP32 ONNX and INT8 Q/DQ ONNX) and measures, per
model:
  inference  backend.infer on one preprocessed 240x320 input: warm-up, then N timed runs (mean, p50, p99)
  frame      the node's per-frame work outside ROS on a 640x480 rgb8 frame: preprocess, infer, postprocess
             into buffers kept across frames (p50 ms); and preprocess + postprocess alone with those buffers
             and with new arrays per frame (out=None): CPU ms and minor page faults per frame
  node       student_trt_node in-process over real DDS, fed camera frames faster than it can run for a few
             seconds: published frames per second, and the node's own per-phase latency percentiles

--aspect compares how a 16:9 (640x360) and an 848x480 camera image enters the 4:3 student: letterbox with the
image mirrored into the padding (what the node does), letterbox with constant padding (the normalization
mean), centre crop to 4:3, stretch to 4:3; on synthetic frames of rc_offline.scenes rendered at that size
(fx of the training camera's horizontal field of view), scored on the published grid against ground truth at
the camera pixel each published pixel stands for; the same views through the 4:3 training camera are the
reference.

Without --checkpoint the committed demo student (models/student_demo.pt) is used. INT8 is calibrated on
--calib-images, or else on synthetic indoor scenes from rc_offline.scenes (never on noise).

--node-cpu runs student_trt_node as its own process (from this tree, or from --tree for before/after figures)
fed 640x480, 640x360 and 1280x720 rgb8 frames at --rate Hz, and divides the node process's CPU time by the
frames it published.

--cuda measures instead the TensorRT path's data movement with student_trt.cuda_buffers on a CUDA GPU
(pinned host <-> device copies of the 240x320 model's input and outputs on one stream, plain and as a
replayed CUDA graph); it needs cuda-python and no ROS, ONNX or TensorRT.

Prints tables and, as the last line, a JSON object.
Usage: python benchmarks/bench_student.py [--checkpoint PT] [--calib-images DIR] [--iterations N]
       [--aspect [--aspect-frames N]] [--node-cpu [--rate HZ] [--tree DIR] [--model ONNX]] [--cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rc_offline.benchmark import latency_stats, timed

CAMERA = (480, 640)
ASPECT_CAMERAS = ((360, 640), (480, 848))
FITS = ('letterbox', 'constant', 'crop', 'stretch')


def stats(samples_ms: list[float]) -> dict:
    """Mean, p50 and p99 (ms): ``rc_offline.benchmark.latency_stats`` without the raw samples."""
    full = latency_stats(samples_ms)
    return {key: full[key] for key in ('mean_ms', 'p50_ms', 'p99_ms')}


def per_frame_costs(fns: dict, frames: int, rounds: int = 5) -> dict:
    """CPU milliseconds (this process, all threads) and minor page faults per call of each of ``fns``,
    measured in alternating rounds of ``frames`` calls (medians), so that load changes hit all alike."""
    samples: dict[str, list] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            before, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
            for _ in range(frames):
                fn()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
            samples[name].append(((time.process_time() - cpu) / frames * 1e3, faults / frames))
    return {name: {'cpu_ms': round(float(np.median([s[0] for s in runs])), 3),
                   'minor_faults': round(float(np.median([s[1] for s in runs])), 1)}
            for name, runs in samples.items()}


# ------------------------------------------------------------------------------------------------ models

def calibration_folder(work: Path, count: int) -> Path:
    """Synthetic indoor frames in the rc_perception dataset layout (rgb/ ...), for INT8 calibration."""
    from rc_offline import scenes
    folder = work / 'calib'
    scenes.write_split(folder, scenes.random_frames(seed=11, count=count))
    return folder


def checkpoint_of(args) -> Path:
    from rc_perception.resources import share_file
    return Path(args.checkpoint) if args.checkpoint else share_file('models', 'student_demo.pt')


def export_models(args, work: Path, precisions: str = 'fp32,int8') -> dict[str, Path]:
    """ONNX of the checkpoint (default: the demo student) for ``precisions``, via export_trt."""
    from rc_offline.export import main as export_main
    checkpoint = checkpoint_of(args)
    out = work / 'exported'
    command = ['--checkpoint', str(checkpoint), '--output-dir', str(out), '--skip-trt',
               '--precision', precisions]
    if 'int8' in precisions:
        calib = Path(args.calib_images) if args.calib_images else calibration_folder(work, args.calib_count)
        command += ['--calib-images', str(calib), '--calib-count', str(args.calib_count)]
    if export_main(command) != 0:
        raise SystemExit('bench_student: export_trt failed')
    variants = {'fp32': 'fp32', 'int8': 'int8_qdq'}
    models = {variants[p]: out / f'{checkpoint.stem}_{variants[p]}.onnx' for p in precisions.split(',')}
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        raise SystemExit(f'bench_student: export_trt did not write {", ".join(missing)}')
    return models


def camera_frame(shape: tuple[int, int] = CAMERA) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    img = np.stack([255 * yy / shape[0], 255 * xx / shape[1], 128 + 0 * xx], axis=2)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def bench_inference(path: Path, args) -> dict:
    from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
    from student_trt.geometry import frame_geometry
    from student_trt.postprocess import Postprocessor, StudentImages
    from student_trt.preprocess import Preprocessor
    with OnnxRuntimeBackend(path, num_threads=args.threads) as backend:
        spec = backend.spec
        pre, post = Preprocessor(spec), Postprocessor(spec)
        frame = camera_frame()
        geometry = frame_geometry(CAMERA, (spec.height, spec.width))
        x, images = np.empty(pre.shape, np.float32), StudentImages.empty(*geometry.grid)
        pre(frame, 'rgb8', x)
        inference = stats(timed(lambda: backend.infer(x), args.warmup, args.iterations))
        out = backend.infer(x)
        frames = max(20, args.iterations // 4)

        def node_frame():  # what the node's worker does between decode and publish
            result = backend.infer(pre(frame, 'rgb8', x))
            post(result.depth, result.seg_logits, geometry, images)

        def reused_buffers():
            pre(frame, 'rgb8', x)
            post(out.depth, out.seg_logits, geometry, images)

        def new_arrays():
            pre(frame, 'rgb8')
            post(out.depth, out.seg_logits, geometry)

        costs = per_frame_costs({'pre_post_reused_buffers': reused_buffers,
                                 'pre_post_new_arrays': new_arrays}, frames)
        return {'model': path.name, 'precision': backend.precision, 'input': f'{spec.height}x{spec.width}',
                'backend': backend.description, 'inference': inference,
                'frame_p50_ms': stats(timed(node_frame, 3, frames))['p50_ms'], **costs}


def _node_figures(node, outputs: list[float], sent: int, start: float, end: float) -> dict:
    """Rates, counts and per-phase latency of a node fed ``sent`` frames from ``start`` to ``end``."""
    deadline = end + 10
    while node.book.snapshot().pending and time.monotonic() < deadline:
        time.sleep(0.01)  # the frame in hand finishes before the counts are read
    snap = node.book.snapshot()
    window = [t for t in outputs if start <= t <= end]
    fps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
    phases = {key.replace(' (ms)', '').replace(' ', '_') + '_ms': round(value, 3)
              for key, value in node.latency.values().items()}
    return {'published_hz': round(sent / (end - start), 1), 'output_hz': round(fps, 2),
            'frames_in': snap.received, 'processed': snap.processed, 'dropped_stale': snap.dropped_stale,
            'inference_p50_ms': round(snap.inference_p50, 3), **phases}


def bench_node(path: Path, args, frame_ms: float) -> dict:
    """student_trt_node in its own rclpy context, fed 640x480 rgb8 frames at ~2.5x its frame rate."""
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
    for n in (node, helper):
        executor.add_node(n)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 10
        while (pub.get_subscription_count() < 1 or helper.count_publishers('student/depth') < 1) \
                and time.monotonic() < deadline:
            time.sleep(0.02)  # discovery has no event of its own
        msg = codecs.array_to_image(camera_frame(), 'rgb8')
        rate = min(2.5 * 1000.0 / frame_ms, 300.0)
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < args.node_seconds:
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            i += 1
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return _node_figures(node, outputs, i, start, time.monotonic())
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        helper.destroy_node()
        rclpy.try_shutdown(context=context)
        spin.join(timeout=5.0)


def bench_models(args) -> dict:
    machine = f'{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}'
    with tempfile.TemporaryDirectory(prefix='bench_student_') as tmp:
        models = export_models(args, Path(tmp))
        results = {}
        for name, path in models.items():
            results[name] = bench_inference(path, args)
            if not args.no_node:
                results[name]['node'] = bench_node(path, args, results[name]['frame_p50_ms'])
    print()
    print(f"{'model':>9} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'frame p50':>10} {'node fps':>9} "
          f"{'wait/compute/publish p50 ms':>28}   ({results['fp32']['backend'].split(',')[0]}, {machine})")
    for name, r in results.items():
        inf, node = r['inference'], r.get('node')
        node_cols = (f"{node['output_hz']:>9.1f} {node['wait_p50_ms']:>9.2f} / "
                     f"{node['compute_p50_ms']:.2f} / {node['publish_p50_ms']:.2f}" if node else
                     f"{'-':>9} {'-':>28}")
        print(f"{name:>9} {inf['mean_ms']:>8.2f} {inf['p50_ms']:>8.2f} {inf['p99_ms']:>8.2f} "
              f"{r['frame_p50_ms']:>10.2f} {node_cols}")
    reused, fresh = results['fp32']['pre_post_reused_buffers'], results['fp32']['pre_post_new_arrays']
    print(f"preprocess + postprocess per 640x480 frame: {reused['cpu_ms']:.2f} ms CPU, "
          f"{reused['minor_faults']:.0f} page faults with the node's buffers; {fresh['cpu_ms']:.2f} ms, "
          f"{fresh['minor_faults']:.0f} faults with new arrays")
    speedup = results['fp32']['inference']['p50_ms'] / results['int8_qdq']['inference']['p50_ms']
    print(f'INT8 Q/DQ vs FP32 inference p50: {speedup:.2f}x (ONNX Runtime CPU; TensorRT on a Jetson differs)')
    return {'benchmark': 'student_onnxruntime', 'input': '240x320', 'camera': f'{CAMERA[0]}x{CAMERA[1]}',
            'iterations': args.iterations, 'threads': args.threads, 'machine': machine,
            'int8_speedup_p50': round(speedup, 3), 'results': results}


# ---------------------------------------------------------------------------------------- node process

def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _feed(helper, pub, msg, outputs: list, rate: float, seconds: float, pid: int) -> dict:
    """Publish ``msg`` at ``rate`` Hz for ``seconds``: frames sent, outputs received, CPU s of ``pid``."""
    import rclpy
    start, sent, cpu, received = time.monotonic(), 0, _process_cpu_s(pid), len(outputs)
    while time.monotonic() - start < seconds:
        pub.publish(msg)
        sent += 1
        while (wait := start + sent / rate - time.monotonic()) > 0:
            rclpy.spin_once(helper, timeout_sec=wait)
    return {'sent': sent, 'published': len(outputs) - received, 'cpu_s': _process_cpu_s(pid) - cpu}


def _node_cpu_on(helper, camera: tuple[int, int], ns: str, command: list[str], env: dict, args) -> dict:
    """One node process in namespace ``ns`` fed ``camera`` frames: 2 s of warm-up, then the measured run."""
    import signal
    import subprocess

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from rc_perception import codecs
    outputs: list = []
    helper.create_subscription(Image, f'{ns}/student/depth', outputs.append, qos_profile_sensor_data)
    pub = helper.create_publisher(Image, f'{ns}/camera/rgb', qos_profile_sensor_data)
    proc = subprocess.Popen([*command, '-r', f'__ns:={ns}'], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            rclpy.spin_once(helper, timeout_sec=0.05)  # discovery has no event of its own
        msg = codecs.array_to_image(camera_frame(camera), 'rgb8')
        _feed(helper, pub, msg, outputs, args.rate, 2.0, proc.pid)
        counted = _feed(helper, pub, msg, outputs, args.rate, args.node_seconds, proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    return {**counted, 'cpu_ms_per_frame': round(1e3 * counted['cpu_s'] / max(counted['published'], 1), 2)}


def bench_node_cpu(model: Path, args) -> dict:
    """student_trt_node as its own process (as ros2 run starts it; from --tree when given), fed rgb8 frames at
    --rate Hz from this process: CPU milliseconds of the node process per published frame, per camera."""
    import rclpy

    from rc_perception.fastdds import apply_large_message_profile
    apply_large_message_profile()  # frames of 0.9-2.8 MB to another process
    tree = Path(args.tree).resolve() if args.tree else Path(__file__).resolve().parent.parent
    env = {**os.environ, 'PYTHONPATH': str(tree), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    command = [sys.executable, '-m', 'student_trt.node', '--ros-args', '-p', f'model_path:={model}',
               '-p', f'num_threads:={args.threads}']
    rclpy.init()
    helper = rclpy.create_node('bench_student_cpu')
    try:
        results = {f'{w}x{h}': _node_cpu_on(helper, (h, w), f'/bench_cpu_{os.getpid()}_{w}x{h}', command, env,
                                            args) for h, w in ((480, 640), (360, 640), (720, 1280))}
    finally:
        helper.destroy_node()
        rclpy.try_shutdown()
    print(f"\n{'camera':>9} {'sent':>5} {'published':>9} {'CPU ms / frame':>15}   ({model.name}, "
          f"{args.rate:g} Hz, node from {tree})")
    for camera, r in results.items():
        print(f"{camera:>9} {r['sent']:>5} {r['published']:>9} {r['cpu_ms_per_frame']:>15.2f}")
    return {'benchmark': 'student_node_cpu', 'model': model.name, 'rate_hz': args.rate, 'tree': str(tree),
            'results': results}


# ----------------------------------------------------------------------------------------------- aspect

def render_views(camera: tuple[int, int], count: int, seed: int) -> list[tuple]:
    """(view at ``camera`` size, the same view through the 4:3 640x480 training camera) for ``count`` random
    scenes; both with fx = fy giving the training camera's horizontal field of view."""
    from rc_offline import scenes
    from rc_perception.camera import Intrinsics
    height, width = camera
    views = []
    for i in range(count):
        rng = scenes.frame_rng(seed, i)
        scene = scenes.random_scene(rng)
        pose = scenes.random_pose(scene, rng)
        intr = scenes.random_intrinsics(rng, width, height)
        scale = scenes.WIDTH / width
        ref = Intrinsics(intr.fx * scale, intr.fy * scale, (intr.cx + 0.5) * scale - 0.5,
                         (intr.cy + 0.5) * scale - 0.5 + (scenes.HEIGHT - height * scale) / 2)
        views.append((scenes.render_frame(scene, pose, intr, rng, width=width, height=height),
                      scenes.render_frame(scene, pose, ref, rng)))
    return views


def _model_pixels(camera: int, grid: int, start: float, length: float, model: int) -> np.ndarray:
    """Model pixel (-1: none) of each published pixel on one axis, when camera pixels [start, start + length)
    were resized onto ``model`` pixels: the nearest, by area centres."""
    from rc_perception.camera import axis_map
    u = axis_map(camera, grid).source_coordinate(np.arange(grid, dtype=np.float64))
    s = length / model
    r = np.clip(np.floor((u - start - (s - 1) / 2) / s + 0.5), 0, model - 1).astype(np.intp)
    return np.where((u >= start - 0.5) & (u < start + length - 0.5), r, -1)


def fit_input(rgb: np.ndarray, fit: str, pre) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model input of ``rgb`` for one ``fit`` and, for each published row and column, the model pixel it
    takes (-1: the camera pixel was cropped away)."""
    from student_trt.geometry import frame_geometry, output_grid
    from student_trt.preprocess import resize
    height, width = rgb.shape[:2]
    model = (pre.spec.height, pre.spec.width)
    if fit in ('letterbox', 'constant'):
        geo = frame_geometry((height, width), model)
        x = pre(rgb, 'rgb8')
        if fit == 'constant':  # the padding at the normalization mean instead of mirrored
            content = x[:, :, geo.placement.rows, geo.placement.cols].copy()
            x[...] = 0.0
            x[:, :, geo.placement.rows, geo.placement.cols] = content
        return x, geo.rows, geo.cols
    grid = output_grid((height, width), model)
    kept = min(width, round(height * model[1] / model[0])) if fit == 'crop' else width
    left = (width - kept) / 2
    small = resize(rgb[:, int(left):int(left) + kept], *model)
    x = pre(np.clip(small + 0.5, 0, 255).astype(np.uint8), 'rgb8')  # uint8 rounding: < 0.2 % of a level
    return x, _model_pixels(height, grid[0], 0, height, model[0]), \
        _model_pixels(width, grid[1], left, kept, model[1])


def bench_aspect(path: Path, args) -> dict:
    from rc_offline.metrics import ConfusionMatrix, DepthErrors
    from rc_perception.camera import axis_map
    from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
    from student_trt.preprocess import Preprocessor
    results = {}
    with OnnxRuntimeBackend(path, num_threads=args.threads) as backend:
        pre = Preprocessor(backend.spec)
        for camera in ASPECT_CAMERAS:
            scores = {fit: (DepthErrors(), ConfusionMatrix(backend.spec.num_classes))
                      for fit in (*FITS, '4:3 ref')}
            for view, reference in render_views(camera, args.aspect_frames, args.aspect_seed):
                for fit, frame in [(fit, view) for fit in FITS] + [('4:3 ref', reference)]:
                    x, rows, cols = fit_input(frame.rgb, 'letterbox' if fit == '4:3 ref' else fit, pre)
                    out = backend.infer(x)
                    inside = (rows[:, None] >= 0) & (cols[None, :] >= 0)
                    depth = np.where(inside, out.depth[0, 0][rows][:, cols], np.nan)
                    ids = np.where(inside, out.seg_logits[0].argmax(axis=0)[rows][:, cols], 255)
                    v = axis_map(frame.depth.shape[0], len(rows)).nearest(len(rows), frame.depth.shape[0])
                    u = axis_map(frame.depth.shape[1], len(cols)).nearest(len(cols), frame.depth.shape[1])
                    scores[fit][0].add(depth, frame.depth[v][:, u])
                    scores[fit][1].add(ids, frame.labels[v][:, u])
            results[f'{camera[1]}x{camera[0]}'] = {
                fit: {'rmse_m': round(d.rmse, 4), 'absrel': round(d.absrel, 4),
                      'delta1': round(d.delta1_ratio, 4), 'coverage': round(d.count / d.gt_pixels, 4),
                      'miou': round(c.miou(), 4)}
                for fit, (d, c) in scores.items()}
    print(f"\n{'camera':>8} {'fit':>10} {'RMSE m':>8} {'AbsRel':>8} {'delta1':>8} {'coverage':>9} {'mIoU':>7}"
          f"   ({path.name}, {args.aspect_frames} synthetic frames per camera, seed {args.aspect_seed})")
    for camera, fits in results.items():
        for fit, r in fits.items():
            print(f"{camera:>8} {fit:>10} {r['rmse_m']:>8.3f} {r['absrel']:>8.3f} {r['delta1']:>8.3f} "
                  f"{r['coverage']:>9.1%} {r['miou']:>7.3f}")
    return {'benchmark': 'student_aspect', 'model': path.name, 'frames': args.aspect_frames,
            'seed': args.aspect_seed, 'results': results}


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
            results['bytes_per_frame'] = sum(b.nbytes for b in bufs.values())
        finally:
            for buf in bufs.values():
                buf.free()
    print(f"{'path':>6} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}   ({info.name}, sm {info.sm}, "
          f"{results['bytes_per_frame']} bytes host<->device per frame)")
    for name in ('plain', 'graph'):
        r = results[name]
        print(f"{name:>6} {r['mean_ms']:>8.3f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    return {'benchmark': 'student_cuda_buffers', 'iterations': args.iterations, 'results': results}


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
    parser.add_argument('--aspect', action='store_true',
                        help='compare letterbox, crop and stretch on non-4:3 synthetic frames instead')
    parser.add_argument('--aspect-frames', type=int, default=24, help='frames per camera for --aspect')
    parser.add_argument('--aspect-seed', type=int, default=20, help='scene seed for --aspect (default 20)')
    parser.add_argument('--node-cpu', action='store_true',
                        help='CPU per published frame of the node as its own process, at --rate Hz, instead')
    parser.add_argument('--rate', type=float, default=10.0, help='camera rate for --node-cpu (default 10 Hz)')
    parser.add_argument('--tree', help='for --node-cpu: run the node from this source tree (before/after)')
    parser.add_argument('--model', help='for --node-cpu: this .onnx instead of the exported FP32 student')
    parser.add_argument('--cuda', action='store_true',
                        help='measure cuda_buffers copies on a CUDA GPU instead')
    args = parser.parse_args()
    if args.cuda:
        from student_trt.cuda_buffers import CudaError, CudaUnavailable
        try:
            report = bench_cuda(args)
        except (CudaUnavailable, CudaError) as exc:
            print(f'bench_student: --cuda: {exc}', file=sys.stderr)
            return 1
    elif args.node_cpu:
        with tempfile.TemporaryDirectory(prefix='bench_student_') as tmp:
            model = Path(args.model) if args.model else export_models(args, Path(tmp), 'fp32')['fp32']
            report = bench_node_cpu(model.resolve(), args)
    elif args.aspect:
        with tempfile.TemporaryDirectory(prefix='bench_student_') as tmp:
            report = bench_aspect(export_models(args, Path(tmp), 'fp32')['fp32'], args)
    else:
        report = bench_models(args)
    print(json.dumps(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
