"""demo: the whole pipeline on built-in synthetic data, no robot needed, with a report you can judge.

Steps (each says what it does; generated data and exported models are cached between runs):

1. a held-out synthetic driving sequence (RGB, ground truth, simulated ToF + confidence) and a separate
   set of INT8 calibration images (rc_offline.heldout);
2. export of the committed demo checkpoint with export_trt: ONNX FP32 and INT8 Q/DQ calibrated on the
   generated images (TensorRT engines too where TensorRT is installed);
3. student_trt_node, depth_fusion_node and pointcloud_xyz_node, each its own process, with
   config/perception.yaml (as the launch file starts them), fed over DDS by a replay at camera rate while
   this process records what they publish;
4. scoring against ground truth and the report in --output: report.md, metrics.json, panel PNGs; on the
   held-out drive, what Nav2's local costmap makes of the published cloud (config/nav2_local_costmap.yaml
   through rc_offline.costmap) against what it makes of the ground truth: costmap.png and its figures.

Exit code 0 when the pipeline ran and every check in the report passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rc_offline.costmap import DISTROS, CostmapConfig
from rc_offline.demo_trust import FAULTS, trust_section
from rc_perception.resources import share_file

__all__ = ['main']

PANEL_FRAMES = 3
#: Frames whose inputs are kept, among which the panels are chosen after the run (those that reached the
#: point cloud).
PANEL_CANDIDATES = 12
#: Stem under which the outputs of the priming frames are recorded (and then dropped).
PRIMING = '__priming__'
#: The stacked plot of where the milliseconds go (rc_offline.demo_latency).
LATENCY_PLOT = 'latency.png'


def _say(text: str = '') -> None:
    print(text, flush=True)


def _step(n: int, text: str) -> None:
    _say(f'\n[{n}/4] {text}')


def _checkpoint_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def export_models(checkpoint: Path, calib_dir: Path, out: Path, precisions: str) -> Path:
    """export_trt into a folder keyed by the checkpoint's hash; reused when its ONNX files exist."""
    from rc_offline import export
    folder = out / f'exported-{checkpoint.stem}-{_checkpoint_hash(checkpoint)}-{calib_dir.name}'
    wanted = [folder / f'{checkpoint.stem}_{p if p != "int8" else "int8_qdq"}.onnx'
              for p in precisions.split(',')]
    if all(p.is_file() for p in wanted):
        _say(f'    reusing {folder} ({", ".join(p.name for p in wanted)})')
        return folder
    code = export.main(['--checkpoint', str(checkpoint), '--output-dir', str(folder),
                        '--precision', precisions, '--calib-images', str(calib_dir)])
    if code != 0:
        raise RuntimeError(f'export_trt failed with exit code {code}')
    return folder


class Recorder:
    """This process's node: replays the sequence and records the pipeline's outputs by stamp."""

    def __init__(self, source, panel_stems: set[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image, PointCloud2

        from rc_offline.replay import Replayer
        from rc_perception import qos

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node('rc_perception_demo', context=self.context)
        self.lock = threading.Lock()
        self.sent: dict[int, str] = {}            # stamp ns -> stem
        self.frames_sent = 0                      # camera frames (RGB images) published
        self.inputs: dict[str, dict[str, np.ndarray]] = {}   # panel frames: what went in
        self._latest_input: dict[str, np.ndarray] = {}
        self.outputs: dict[str, dict[str, np.ndarray]] = {}
        self.clouds: dict[str, np.ndarray] = {}          # every cloud's x, y, z by stem (the costmap's input)
        self.clearing: dict[str, np.ndarray] = {}        # perception/clearing_points, when the node sends it
        self.cloud_latency_ms: dict[str, float] = {}
        self.arrivals: dict[str, dict[str, int]] = {}    # stem -> output -> arrival time here (ns)
        self.cloud_arrival: list[float] = []
        self.panel_stems = panel_stems
        self.diagnostics: dict[str, dict[str, str]] = {}
        for key, topic in (('student', 'student/depth'), ('segmentation', 'student/segmentation'),
                           ('fused', 'perception/fused_depth'), ('source', 'perception/fused_depth/source')):
            self.node.create_subscription(Image, topic, self._image_callback(key), qos.sensor_data())
        self.node.create_subscription(PointCloud2, 'perception/fused_depth_points', self._on_cloud,
                                      qos.sensor_data())
        self.node.create_subscription(PointCloud2, 'perception/clearing_points', self._on_clearing,
                                      qos.sensor_data())
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      QoSProfile(depth=50))
        self.replayer = Replayer(self.node, source, on_publish=self._on_publish)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    @staticmethod
    def _ns(stamp) -> int:
        from rclpy.time import Time
        return Time.from_msg(stamp).nanoseconds

    def _on_publish(self, event, stamp) -> None:
        from rc_perception import codecs
        for stream in ('rgb', 'depth', 'confidence'):
            if stream in event.messages and (event.stem in self.panel_stems or stream != 'rgb'):
                try:
                    self._latest_input[stream] = codecs.image_to_array(event.messages[stream])
                except ValueError:
                    self._latest_input.pop(stream, None)
        if not event.stem:
            return  # a bag's depth, confidence or camera info: not a camera frame
        with self.lock:
            self.sent[self._ns(stamp)] = event.stem
            self.frames_sent += 1
            if event.stem in self.panel_stems:
                self.inputs[event.stem] = dict(self._latest_input)

    def _stem(self, header) -> str | None:
        with self.lock:
            return self.sent.get(self._ns(header.stamp))

    def _image_callback(self, key: str):
        from rc_perception import codecs

        def callback(msg) -> None:
            now_ns = time.time_ns()
            stem = self._stem(msg.header)
            if stem is None:
                return
            with self.lock:
                self.arrivals.setdefault(stem, {})[key] = now_ns
            try:
                arr = codecs.image_to_array(msg)
            except ValueError:
                return
            with self.lock:
                self.outputs.setdefault(stem, {})[key] = arr
        return callback

    def _on_cloud(self, msg) -> None:
        from rc_perception import codecs
        now_ns = time.time_ns()
        stem = self._stem(msg.header)
        if stem is None:
            return
        xyz = codecs.cloud_to_xyz(msg)
        with self.lock:
            self.arrivals.setdefault(stem, {})['cloud'] = now_ns
            self.cloud_latency_ms[stem] = (now_ns - self._ns(msg.header.stamp)) / 1e6
            self.cloud_arrival.append(time.monotonic())
            self.clouds[stem] = xyz

    def _on_clearing(self, msg) -> None:
        from rc_perception import codecs
        stem = self._stem(msg.header)
        if stem is not None:
            xyz = codecs.cloud_to_xyz(msg)
            with self.lock:
                self.clearing[stem] = xyz

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            with self.lock:
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def wait_for_pipeline(self, procs, timeout: float) -> None:
        """Until every node subscribes to its input and advertises its output (or one of them exits)."""
        needs = (('camera/rgb', 'subscriptions'), ('camera/depth', 'subscriptions'),
                 ('camera/camera_info', 'subscriptions'), ('student/depth', 'publishers'),
                 ('perception/fused_depth', 'publishers'), ('perception/fused_depth_points', 'publishers'))
        deadline = time.monotonic() + timeout
        while True:
            missing = [t for t, kind in needs if (self.node.count_subscribers(t) if kind == 'subscriptions'
                                                  else self.node.count_publishers(t)) == 0]
            if not missing:
                return
            dead = procs.exited()
            if dead:
                name, code, tail = dead[0]
                raise RuntimeError(f'{name} exited with code {code} during start-up:\n{tail}')
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pipeline did not come up within {timeout:.0f} s (nothing on "
                                   f"{', '.join(missing)}); see the node logs")
            time.sleep(0.1)

    def prime(self, source, procs, timeout: float) -> int:
        """Publish the first frame (freshly stamped, not scored) until its point cloud comes back.

        Discovery is asymmetric: this process may see a node's subscription before that node has matched
        this process's publisher, and under load the gap is long enough to lose the first frames of one
        stream (say the ToF depth but not its confidence), which would then be fused without its ToF.
        A cloud from a priming frame proves every stream is connected end to end. Returns the number of
        priming frames sent.
        """
        from rclpy.time import Time
        from std_msgs.msg import Header

        messages = {}
        for event in source.events():  # a dataset frame holds every stream; a bag, one message per event
            for stream, msg in event.messages.items():
                messages.setdefault(stream, msg)
            if len(messages) == len(self.replayer.publishers):
                break
        deadline = time.monotonic() + timeout
        sent = 0
        while time.monotonic() < deadline:
            stamp = self.node.get_clock().now().to_msg()
            with self.lock:
                self.sent[Time.from_msg(stamp).nanoseconds] = PRIMING
            for stream, msg in messages.items():
                msg.header = Header(stamp=stamp, frame_id=msg.header.frame_id or self.replayer.frame_id)
                self.replayer.publishers[stream].publish(msg)
            sent += 1
            wait_until = time.monotonic() + 1.0
            while time.monotonic() < wait_until:
                with self.lock:
                    if PRIMING in self.cloud_latency_ms:
                        for recorded in (self.outputs, self.cloud_latency_ms, self.clouds, self.clearing):
                            recorded.pop(PRIMING, None)
                        self.cloud_arrival.clear()
                        self.sent = {k: v for k, v in self.sent.items() if v != PRIMING}
                        return sent
                dead = procs.exited()
                if dead:
                    raise RuntimeError(f'{dead[0][0]} exited with code {dead[0][1]}:\n{dead[0][2]}')
                time.sleep(0.02)
        raise RuntimeError(f'no point cloud came out of the pipeline within {timeout:.0f} s of priming '
                           '(a stream is not connected); see the node logs')

    def close(self) -> None:
        import rclpy
        self.replayer.stop()
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _diag_value(diags: dict, node: str, key: str) -> float | None:
    for name, values in diags.items():
        if name.startswith(node) and key in values:
            try:
                return float(values[key])
            except ValueError:
                return None
    return None


def _prepare_data(args: argparse.Namespace, cache: Path):
    """Step 1: the replay source, the folder with ground truth (None for a recording without it) and the
    INT8 calibration images."""
    from rc_offline.heldout import ensure_split
    from rc_offline.replay import DatasetSource, open_source

    def progress(n: int, ms: float) -> None:
        if n % 20 == 0:
            _say(f'    generated {n} frames ({ms:.0f} ms/frame)')

    calib = None
    if args.model_path is None:
        calib = ensure_split('calibration', args.calib_frames, root=cache, progress=progress)
    if args.replay is None:
        _step(1, f'Synthetic data: a {args.frames}-frame held-out driving sequence and {args.calib_frames} '
                 f'calibration images (cached in {cache})')
        heldout = ensure_split('heldout', args.frames, root=cache, progress=progress)
        _say(f'    held-out: {heldout}\n    calibration: {calib}')
        if args.student_fault == 'shuffled':
            from rc_offline.demo_trust import shuffled_split
            heldout = shuffled_split(heldout, Path(args.output) / 'shuffled_split')
            _say(f'    student fault: camera images replayed out of order against the ToF ({heldout})')
        return DatasetSource(heldout, rate=args.rate, preload=True), heldout, calib
    _step(1, f'Recording: {args.replay}')
    topics = {'rgb': args.rgb_topic, 'depth': args.depth_topic, 'confidence': args.confidence_topic,
              'camera_info': args.camera_info_topic}
    source = open_source(args.replay, rate=args.rate, topics=topics, preload=True)
    root = Path(args.replay)
    has_truth = isinstance(source, DatasetSource) and (root / 'depth').is_dir() and (root / 'labels').is_dir()
    for topic in getattr(source, 'missing', []):
        _say(f'    the bag has no {topic}: not replayed')
    frames = len(source) if isinstance(source, DatasetSource) else source.rgb_frames
    verdict = ('ground truth found: scoring accuracy' if has_truth else
               'no ground truth (depth/ and labels/): reporting coverage, rates and consistency only')
    _say(f'    {frames} camera frames; {verdict}')
    return source, (root if has_truth else None), calib


def _prepare_model(args: argparse.Namespace, calib: Path | None, cache: Path) -> Path:
    """Step 2: the model the student node runs."""
    if args.model_path is not None:
        _step(2, f'Model: {args.model_path} (given; no export)')
        model = Path(args.model_path)
        if not model.is_file():
            raise RuntimeError(f'--model-path {model} does not exist')
        return model
    checkpoint = Path(args.checkpoint) if args.checkpoint else share_file('models', 'student_demo.pt')
    if not checkpoint.is_file():
        raise RuntimeError(f'checkpoint {checkpoint} does not exist')
    if args.student_fault == 'constant':
        from rc_offline.demo_trust import constant_checkpoint
        checkpoint = constant_checkpoint(checkpoint, cache / f'{checkpoint.stem}_constant.pt')
        _say(f'    student fault: {checkpoint.name}, every weight zero (one depth everywhere)')
    _step(2, f'Export of {checkpoint.name} with export_trt (ONNX FP32 + INT8 Q/DQ; engines where TensorRT '
             'is installed)')
    exported = export_models(checkpoint, calib, cache, 'fp32' if args.student_fault else 'fp32,int8')
    model = exported / f'{checkpoint.stem}_{"int8_qdq" if args.model == "int8" else "fp32"}.onnx'
    engine = exported / f'{checkpoint.stem}_{args.model}.engine'
    if args.backend in ('auto', 'tensorrt') and engine.is_file():
        model = engine
    _say(f'    the student node runs {model.name}')
    return model


def _run_pipeline(args: argparse.Namespace, source, frames: int, model: Path, params_file: Path,
                  out: Path, panel_stems: set[str]) -> tuple[Recorder, dict[str, int], float]:
    """Step 3: the node processes, fed by the replay in this process; returns what was recorded."""
    from rc_offline.pipeline import NodeProcesses, keep_discovery_local
    from rc_perception.fastdds import apply_large_message_profile

    rate = f'at {args.rate:g} Hz' if args.replay is None or Path(args.replay, 'rgb').is_dir() else \
        'with its recorded timing'
    _step(3, f'Pipeline over DDS: replay {rate} -> student_trt_node -> depth_fusion_node -> '
             'pointcloud_xyz_node')
    keep_discovery_local()
    procs = NodeProcesses(params_file, {'student_trt_node': {'model_path': str(model.resolve()),
                                                             'backend': args.backend}},
                          log_dir=out / 'logs')
    # This process publishes 640x480 RGB and ToF images (> 512 KB): it needs the large-message profile too.
    apply_large_message_profile()
    recorder = Recorder(source, panel_stems)
    try:
        procs.start()
        t0 = time.monotonic()
        recorder.wait_for_pipeline(procs, timeout=args.startup_timeout)
        primed = recorder.prime(source, procs, timeout=args.startup_timeout)
        _say(f'    nodes up and connected end to end in {time.monotonic() - t0:.1f} s ({primed} priming '
             f'frame{"s" if primed > 1 else ""}, not scored; logs in {out / "logs"})')
        replay_start = time.monotonic()
        recorder.replayer.start()
        last = 0.0
        while not recorder.replayer.done.is_set():
            time.sleep(0.1)
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                with recorder.lock:
                    n_out = sum(1 for o in recorder.outputs.values() if 'student' in o)
                    n_cloud, n_sent = len(recorder.cloud_latency_ms), recorder.frames_sent
                _say(f'    sent {n_sent:3d}/{frames} frames | student out {n_out:3d} | clouds {n_cloud:3d}')
            dead = procs.exited()
            if dead:
                raise RuntimeError(f'{dead[0][0]} exited with code {dead[0][1]}:\n{dead[0][2]}')
        if recorder.replayer.error is not None:
            raise RuntimeError(f'the replay stopped early: {recorder.replayer.error}')
        replay_seconds = time.monotonic() - replay_start
        # Let the last frames through the pipeline: wait until no cloud came for a second.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with recorder.lock:
                arrivals = list(recorder.cloud_arrival)
            if not arrivals or time.monotonic() - arrivals[-1] > 1.0:
                break
            time.sleep(0.1)
        time.sleep(1.2)  # one more /diagnostics period, for the final counts
    finally:
        codes = procs.stop()
        recorder.close()
    return recorder, codes, replay_seconds


def run(args: argparse.Namespace) -> int:
    from rc_offline.demo_report import write_metrics, write_report
    from rc_offline.heldout import cache_root
    from student_trt.metadata import ModelSpec

    started = time.monotonic()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else cache_root()
    files = _config_files(args)
    source, truth, calib = _prepare_data(args, cache)
    model = _prepare_model(args, calib, cache)
    stems = _stems(source)
    if not stems:
        raise RuntimeError(f'{args.replay}: no camera frames to replay')
    picks = np.linspace(len(stems) // 4, len(stems) - 1, PANEL_CANDIDATES).astype(int)
    candidates = {stems[i] for i in picks}
    recorder, codes, replay_seconds = _run_pipeline(args, source, len(stems), model, files.params, out,
                                                    candidates)

    _step(4, f"{'Scoring against ground truth' if truth else 'Summing up'} and writing the report to {out}")
    spec = ModelSpec.from_metadata(_onnx_metadata(model.with_suffix('.onnx') if model.suffix != '.onnx'
                                                  else model))
    m = _accuracy(source, truth, stems, recorder, files.fusion, spec.num_classes)
    m.update(_pipeline_figures(recorder, replay_seconds, codes))
    m.update({'replay_rate_hz': args.rate, 'model': model.name, 'precision': spec.precision,
              'input_folder': str(truth if truth is not None else args.replay)})
    checks, sections = _judge(args, m, codes, recorder, truth, files, out)
    m['seconds_total'] = time.monotonic() - started
    m['checks'] = {name: ok for name, ok, _ in checks}
    write_metrics(out / 'metrics.json', m)
    if args.save_outputs:
        _save_outputs(recorder, out / 'outputs')
    panels = _write_panels(out, truth, stems, candidates, recorder, spec.num_classes)
    setup = _setup_table(args, source, truth, len(stems), model, spec, files, m['seconds_total'])
    write_report(out / 'report.md', m, checks, setup, spec.class_names, panels, sections)
    _print_summary(m, checks, truth is not None, out, len(panels))
    return 0 if all(ok for _, ok, _ in checks) else 1


def _config_files(args: argparse.Namespace) -> SimpleNamespace:
    """The params file (and its fusion section) and the costmap params file; both checked now, not last."""
    import yaml

    from rc_offline.pipeline import default_params_file
    from rc_perception.launch_args import node_parameters
    params = Path(args.params_file) if args.params_file else default_params_file()
    if not params.is_file():
        raise RuntimeError(f'params file {params} does not exist')
    fusion = node_parameters(yaml.safe_load(params.read_text()) or {}, '/depth_fusion_node')
    costmap = Path(args.costmap_yaml or share_file('config', 'nav2_local_costmap.yaml'))
    CostmapConfig.from_yaml(costmap)   # a missing or unusable costmap params file fails now, not last
    return SimpleNamespace(params=params, fusion=fusion, costmap=costmap)


def _judge(args, m: dict, codes: dict, recorder: Recorder, truth: Path | None, files: SimpleNamespace,
           out: Path) -> tuple[list, list[str]]:
    """The checks and the report's sections (trust, costmap, latency); adds their figures to ``m``."""
    latency = _latency(recorder, out)
    m.update(latency.metrics())
    checks = _checks(m, codes, args.student_fault)
    sections: list[str] = []
    if m['ground_truth']:
        trust = trust_section(m['agreement'], dict(recorder.diagnostics), args.student_fault, args.rate,
                              float(files.fusion.get('min_student_delta1', 0.0)))
        m.update(trust.metrics())
        checks.append(trust.check())
        sections += trust.lines()
    costmap = _costmap(truth, recorder, files.costmap, args.distro, out)
    if costmap is not None:
        m.update(costmap.metrics)
        checks += [] if args.student_fault else costmap.checks  # a wrong student is judged by its gate
        sections += costmap.lines
    return checks, sections + latency.lines(LATENCY_PLOT)


def _setup_table(args, source, truth: Path | None, frames: int, model: Path, spec, files: SimpleNamespace,
                 seconds: float) -> dict[str, str]:
    from rc_offline.replay import DatasetSource
    fusion = files.fusion
    return {
        'input': (f'{truth} ({frames} frames, with ground truth)' if truth is not None
                  else f'{args.replay} ({frames} camera frames, no ground truth)'),
        'model': f'{model} ({spec.precision}; calibration: {spec.calibration or "n/a"})',
        'student backend': args.backend,
        'student fault': args.student_fault or 'none',
        'params file': str(files.params),
        'fusion': f"mode {fusion['mode']}, confidence >= {fusion['confidence_threshold']}, "
                  f"ToF range {fusion['range_min']}-{fusion['range_max']} m",
        'costmap': f'{files.costmap} (Nav2 {args.distro} semantics)',
        'replay rate': f'{args.rate:g} Hz' if isinstance(source, DatasetSource) else 'recorded timing',
        'total time': f'{seconds:.0f} s',
    }


def _save_outputs(recorder: Recorder, folder: Path) -> None:
    """What the pipeline published, per frame: ``<stem>.npz`` with student, segmentation, fused, source."""
    folder.mkdir(parents=True, exist_ok=True)
    with recorder.lock:
        outputs = dict(recorder.outputs)
    for stem, arrays in outputs.items():
        if stem != PRIMING:
            np.savez_compressed(folder / f'{stem}.npz', **arrays)


def _stems(source) -> list[str]:
    from rc_offline.replay import DatasetSource
    if isinstance(source, DatasetSource):
        return [f.stem for f in source.frames]
    return [f'{i:06d}' for i in range(source.rgb_frames)]


def _accuracy(source, truth: Path | None, stems: list[str], recorder: Recorder, fusion_params: dict,
              num_classes: int) -> dict:
    """Depth and segmentation scores against the ground truth, or coverage and consistency without it."""
    from depth_fusion.fusion import FusionConfig
    from rc_offline import dataset
    from rc_offline.demo_eval import FrameOutputs, score_frames, score_outputs_only

    with recorder.lock:
        outputs = dict(recorder.outputs)
    if truth is None:
        return {'ground_truth': False, **score_outputs_only([outputs.get(stem, {}) for stem in stems])}
    frames = []
    for frame in source.frames:
        got = outputs.get(frame.stem, {})
        conf = frame.paths.get('confidence')
        frames.append(FrameOutputs(
            stem=frame.stem,
            gt_depth=dataset.read_depth(truth / 'depth' / f'{frame.stem}.png'),
            gt_labels=dataset.read_image(truth / 'labels' / f'{frame.stem}.png'),
            tof_mm=dataset.read_image(frame.paths['tof']),
            confidence=dataset.read_image(conf) if conf is not None else None,
            student=got.get('student'), segmentation=got.get('segmentation'),
            fused=got.get('fused'), source=got.get('source')))
    config = FusionConfig.from_values(SimpleNamespace(**fusion_params))
    use_confidence = fusion_params.get('use_confidence', True)
    return {'ground_truth': True, **score_frames(frames, config, use_confidence, num_classes).summary()}


def _pipeline_figures(recorder: Recorder, replay_seconds: float, codes: dict[str, int]) -> dict:
    latencies = np.array(list(recorder.cloud_latency_ms.values()))
    frames_in, frames_out = recorder.frames_sent, len(recorder.cloud_latency_ms)
    return {
        'frames_in': frames_in,
        'frames_out': frames_out,
        'dropped': frames_in - frames_out,
        'fps': frames_out / replay_seconds if replay_seconds > 0 else float('nan'),
        'latency_ms_p50': float(np.percentile(latencies, 50)) if latencies.size else float('nan'),
        'latency_ms_p99': float(np.percentile(latencies, 99)) if latencies.size else float('nan'),
        'student_dropped_stale': _diag_value(recorder.diagnostics, 'student_trt_node', 'dropped stale'),
        'student_inference_ms_p50': _diag_value(recorder.diagnostics, 'student_trt_node',
                                                'inference p50 (ms)'),
        'student_inference_ms_p99': _diag_value(recorder.diagnostics, 'student_trt_node',
                                                'inference p99 (ms)'),
        'node_exit_codes': codes,
    }


def _latency(recorder: Recorder, out: Path):
    """The latency breakdown (rc_offline.demo_latency) and its plot, LATENCY_PLOT in ``out``."""
    from rc_offline.demo_latency import breakdown, write_plot
    with recorder.lock:
        stamps = {stem: stamp for stamp, stem in recorder.sent.items()}
        arrivals = {stem: dict(times) for stem, times in recorder.arrivals.items()}
        result = breakdown(dict(recorder.diagnostics), stamps, arrivals)
    write_plot(result, out / LATENCY_PLOT)
    return result


def _costmap(truth: Path | None, recorder: Recorder, costmap_yaml: Path, distro: str, out: Path):
    """The costmap figures (rc_offline.costmap_eval.DemoCostmap) on a drive split, else None."""
    from rc_offline.costmap_eval import demo_costmap
    if truth is None:
        return None
    with recorder.lock:
        recorded = {stem: {'cloud': cloud} for stem, cloud in recorder.clouds.items()}
        for stem, cloud in recorder.clearing.items():
            recorded.setdefault(stem, {})['clearing'] = cloud
        for stem, got in recorder.outputs.items():
            if stem in recorded and 'source' in got:
                recorded[stem]['source'] = got['source']
        latency = dict(recorder.cloud_latency_ms)
    result = demo_costmap(truth, recorded, latency, costmap_yaml, distro, out)
    if result is None:
        _say(f'    {truth} records no drive (robot poses and mount): no costmap figures')
    return result


def _write_panels(out: Path, truth: Path | None, stems: list[str], candidates: set[str], recorder: Recorder,
                  num_classes: int) -> list[str]:
    """PANEL_FRAMES panels, spread over the candidates whose frame reached the point cloud."""
    from rc_offline.demo_report import load_poses, write_panels
    from rc_perception.depth import to_metres

    with recorder.lock:
        outputs, inputs, clouds = dict(recorder.outputs), dict(recorder.inputs), dict(recorder.clouds)
    reached = [s for s in stems if s in candidates and s in clouds and s in inputs]
    chosen = [reached[i] for i in np.unique(np.linspace(0, len(reached) - 1, PANEL_FRAMES).astype(int))] \
        if reached else []
    poses = load_poses(truth) if truth is not None else {}
    rows = []
    for stem in chosen:
        got, given = outputs.get(stem, {}), inputs[stem]
        tof = given.get('depth')
        rows.append({'stem': stem, 'rgb': given.get('rgb'), 'student': got.get('student'),
                     'tof_m': None if tof is None else to_metres(tof, '16UC1' if tof.dtype == np.uint16
                                                                 else '32FC1'),
                     'confidence': given.get('confidence'), 'fused': got.get('fused'),
                     'source': got.get('source'), 'segmentation': got.get('segmentation'),
                     'cloud': clouds[stem], 'pose': poses.get(stem)})
    return write_panels(out, rows, num_classes)


def _print_summary(m: dict, checks: list, truth: bool, out: Path, panels: int) -> None:
    _say('')
    for name, ok, detail in checks:
        _say(f'    {"PASS" if ok else "FAIL"}  {name}: {detail}')
    if truth:
        _say(f"\n    RMSE student {m['rmse_student']:.3f} m, ToF {m['rmse_tof']:.3f} m, "
             f"fused {m['rmse_fused']:.3f} m; coverage student {100 * m['coverage_student']:.1f} %, "
             f"ToF {100 * m['coverage_tof']:.1f} %, fused {100 * m['coverage_fused']:.1f} %; "
             f"mIoU {m['miou']:.3f}")
    else:
        _say(f"\n    fused depth covers {100 * m['coverage_fused']:.1f} % of the pixels: ToF "
             f"{100 * m['coverage_tof']:.1f} %, student the rest")
    _say(f"    {m['frames_out']}/{m['frames_in']} frames reached the point cloud at {m['fps']:.1f} fps, "
         f"latency p50 {m['latency_ms_p50']:.0f} ms, p99 {m['latency_ms_p99']:.0f} ms")
    if 'costmap_recall' in m:
        clear = m['costmap_clear_s']
        _say(f"    costmap: obstacle recall {100 * m['costmap_recall']:.1f} %, floor cells "
             f"{m['costmap_floor_cells']}, removed box cleared after "
             f"{'-' if clear is None else f'{clear:.2f}'} s")
    _say(f'\nReport: {out / "report.md"}  (metrics.json, {panels} panels, logs/) '
         f'in {m["seconds_total"]:.0f} s')


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _checks(m: dict, codes: dict[str, int], fault: str | None) -> list[tuple[str, bool, str]]:
    checks = [
        ('every node exited cleanly', all(c == 0 for c in codes.values()),
         ', '.join(f'{k} {v}' for k, v in codes.items())),
        ('frames reached the point cloud', m['frames_out'] > 0 and m['frames_scored'] > 0,
         f"{m['frames_out']} of {m['frames_in']} clouds, {m['frames_scored']} frames scored"),
    ]
    if m['ground_truth']:
        cov = (m['coverage_student'], m['coverage_tof'], m['coverage_fused'])
        checks += [] if fault else [   # a faulty student's fill is to be withheld: coverage drops
            ('fused coverage >= student and ToF coverage', cov[2] >= max(cov[0], cov[1]),
             f'fused {100 * cov[2]:.2f} %, student {100 * cov[0]:.2f} %, ToF {100 * cov[1]:.2f} %')]
        checks += [
            ('fused RMSE below the student alone', m['rmse_fused'] < m['rmse_student'],
             f"fused {m['rmse_fused']:.3f} m < student {m['rmse_student']:.3f} m"),
            ('fused equals the ToF where the ToF is valid and confident', m['tof_pixels_replaced'] == 0,
             f"{m['tof_pixels_replaced']} of {m['tof_valid_pixels']:,} ToF pixels differ"),
        ]
    checks += [
        ('no pixel published as 0.0 for "invalid"', m['fused_zero_pixels'] == 0,
         f"{m['fused_zero_pixels']} zero pixels"),
        ('source map matches the values', m['source_map_mismatches'] == 0,
         f"{m['source_map_mismatches']} mismatching pixels"),
    ]
    return checks


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition('\n\n')
    parser = argparse.ArgumentParser(prog='demo', description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--output', default='demo_output', help='report folder (default demo_output)')
    parser.add_argument('--frames', type=int, default=90, help='held-out frames to replay (default 90)')
    parser.add_argument('--rate', type=float, default=15.0, help='replay rate in Hz (default 15, the '
                        "sequence's own)")
    parser.add_argument('--calib-frames', type=int, default=48, help='INT8 calibration images (default 48)')
    parser.add_argument('--model', choices=('fp32', 'int8'), default='fp32',
                        help='which export the student node runs (default fp32; INT8 Q/DQ is meant for '
                             'TensorRT and runs slower than FP32 in ONNX Runtime on a CPU)')
    parser.add_argument('--backend', choices=('auto', 'onnxruntime', 'tensorrt'), default='auto',
                        help='student backend (default auto)')
    parser.add_argument('--checkpoint',
                        help='student checkpoint (default: the installed models/student_demo.pt)')
    parser.add_argument('--params-file',
                        help='node parameters (default: the installed config/perception.yaml)')
    parser.add_argument('--cache', help='folder for generated data and exports (default: '
                        '$RC_PERCEPTION_CACHE or ~/.cache/rc_perception)')
    parser.add_argument('--startup-timeout', type=float, default=60.0,
                        help='seconds for the nodes to come up (default 60)')
    parser.add_argument('--costmap-yaml',
                        help='Nav2 params file whose local costmap judges the cloud (default: the installed '
                             'config/nav2_local_costmap.yaml)')
    parser.add_argument('--save-outputs', action='store_true',
                        help='also write what the pipeline published per frame to '
                             '<output>/outputs/<frame>.npz')
    parser.add_argument('--student-fault', choices=FAULTS, default=None,
                        help='make the student wrong on purpose to check the fusion\'s trust gate: constant '
                             '(a model with every weight zero) or shuffled (camera images out of order '
                             'against the ToF)')
    parser.add_argument('--distro', choices=DISTROS, default='humble',
                        help="whose Nav2 costmap semantics to model (default humble, the oldest target)")
    recording = parser.add_argument_group(
        'your own recording', 'Feed the pipeline from a rosbag2 (sqlite3 or mcap, read with rosbags: no ROS '
        'install needed) or a dataset folder instead of the synthetic sequence. Without ground truth '
        '(depth/ and labels/ folders) the report gives coverage, rates, latency and consistency only.')
    recording.add_argument('--replay', metavar='PATH', help='rosbag2 folder or file, or dataset folder')
    recording.add_argument('--rgb-topic', default='/camera/rgb', help='RGB topic in the bag')
    recording.add_argument('--depth-topic', default='/camera/depth', help='ToF depth topic in the bag')
    recording.add_argument('--confidence-topic', default='/camera/depth/confidence',
                           help='ToF confidence topic in the bag')
    recording.add_argument('--camera-info-topic', default='/camera/camera_info',
                           help='CameraInfo topic in the bag')
    recording.add_argument('--model-path', metavar='MODEL',
                           help='run this exported model (.onnx/.engine) instead of exporting the '
                           'checkpoint')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; see the module docstring."""
    args = build_parser().parse_args(argv)
    if args.frames < 2 or args.rate <= 0 or args.calib_frames < 1:
        print('demo: --frames must be >= 2, --calib-frames >= 1 and --rate > 0', file=sys.stderr)
        return 2
    try:
        return run(args)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f'demo: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('demo: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
