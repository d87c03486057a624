"""student_trt_node: camera RGB -> the student network -> metric depth and semantic segmentation.

Subscribes:
    camera/rgb (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8 or mono8), sensor-data QoS
Publishes (headers copied from the input frame):
    student/depth (sensor_msgs/Image, 32FC1 metres along optical Z)
    student/segmentation (sensor_msgs/Image, mono8 class ids; names in the model's metadata)
    student/segmentation/color (sensor_msgs/Image, rgb8 colourised ids; only computed while subscribed)
    /diagnostics (diagnostic_msgs/DiagnosticArray)

Outputs are at the model's input size (``output_size: model``, e.g. 320x240 for a 640x480 camera: a
consumer that projects them scales K, as pointcloud_xyz_node does for integer factors) or at the camera's
size (``output_size: input``, nearest-neighbour upsampling).

Only the newest frame is kept: the subscription callback stores it (replacing an unprocessed one counts a
stale drop) and one worker thread runs preprocessing, inference, postprocessing and publishing. When
inference is slower than the camera, stale frames are skipped and counted instead of queued, so the
output lags the camera by at most about one inference. A missing, corrupt or incompatible model stops the
node at start-up with one line naming the file and the fix (exit code 1).

Topic names are relative: remap them, or set a namespace, to fit a robot.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from rc_perception import codecs, qos
from rc_perception.labels import colourize
from rc_perception.node_support import (
    ERROR,
    OK,
    WARN,
    BadInput,
    Diagnostics,
    RateMeter,
    StartupError,
    main_for,
    startup_params,
)
from rc_perception.params import ParamSpec
from student_trt.backends import BACKENDS, EXPORT_HINT, Backend, BackendError, open_backend
from student_trt.postprocess import Postprocessor
from student_trt.preprocess import INPUT_ENCODINGS, Preprocessor

IMAGE_TOPIC = 'camera/rgb'
DEPTH_TOPIC = 'student/depth'
SEG_TOPIC = 'student/segmentation'
COLOR_TOPIC = 'student/segmentation/color'

OUTPUT_SIZES = ('model', 'input')
#: Latency samples kept for the percentiles on /diagnostics.
LATENCY_WINDOW = 300
#: Seconds destroy_node waits for the worker to finish its frame.
WORKER_STOP_TIMEOUT = 10.0
#: Seconds a failed inference keeps /diagnostics at ERROR, and within which a repeat of the same failure
#: is not logged again.
FAILURE_WINDOW = 5.0

PARAMS = (
    ParamSpec('model_path', '',
              'Exported student model: .onnx (ONNX Runtime; TensorRT with allow_engine_rebuild) or a '
              '.engine/.plan TensorRT engine with its .json sidecar, built on this device by export_trt.',
              read_only=True),
    ParamSpec('backend', 'auto',
              'auto: TensorRT for an engine when tensorrt and a CUDA GPU are present, else ONNX Runtime on '
              'the CPU; onnxruntime or tensorrt force one (an error if it cannot run the model).',
              choices=BACKENDS, read_only=True),
    ParamSpec('allow_engine_rebuild', False,
              'When the engine does not match this TensorRT or GPU (per its sidecar), rebuild it from the '
              'ONNX beside it at start-up (minutes on a Jetson) instead of failing; also lets TensorRT build '
              'an engine from an .onnx model_path.', read_only=True),
    ParamSpec('output_size', 'model',
              "model: publish at the model's input size (consumers scale K); input: resize outputs to the "
              'camera image size (nearest neighbour).', choices=OUTPUT_SIZES),
    ParamSpec('num_threads', 0, 'ONNX Runtime intra-op threads (0: its default, one per core).',
              min=0, max=64, read_only=True),
    ParamSpec('use_cuda_graph', False,
              'TensorRT: capture copy-in, inference and copy-out once as a CUDA graph and replay it per '
              'frame.',
              read_only=True),
    ParamSpec('warmup_iterations', 3, 'Inferences on a blank image at start-up, before the first frame.',
              min=0, max=1000, read_only=True),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1, max=60.0,
              read_only=True),
)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return float('nan'), float('nan')
    p50, p99 = np.percentile(np.asarray(samples, np.float64), (50, 99))
    return float(p50), float(p99)


class StudentTrtNode(Node):
    """Runs the student on the newest camera frame in one worker thread (see module doc).

    Raises:
        StartupError: no model_path, or a model that cannot be opened (message names the file and the fix).
        ValueError: invalid parameter values at start-up.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('student_trt_node', **kwargs)
        self.params = startup_params(self, PARAMS)
        p = self.params.values
        try:
            self.backend = self._open_backend(p)
            self._setup(p)
        except BaseException:
            self.destroy_node()  # closes the backend when it was opened
            raise

    def _open_backend(self, p) -> Backend:
        if not p.model_path:
            raise StartupError(
                'model_path is not set: set it to an exported student model, e.g. --ros-args -p '
                'model_path:=/path/to/student_fp32.onnx (made by ' + EXPORT_HINT + '), or a TensorRT '
                '.engine built on this device')
        try:
            backend = open_backend(Path(p.model_path).expanduser(), p.backend,
                                   allow_engine_rebuild=p.allow_engine_rebuild, num_threads=p.num_threads,
                                   use_cuda_graph=p.use_cuda_graph, log=self.get_logger().info)
        except BackendError as exc:
            raise StartupError(str(exc)) from None
        if p.use_cuda_graph and backend.name != 'tensorrt':
            self.get_logger().info(f'use_cuda_graph applies to TensorRT only: ignored with {backend.name}')
        if p.num_threads and backend.name != 'onnxruntime':
            self.get_logger().info(f'num_threads applies to ONNX Runtime only: ignored with {backend.name}')
        return backend

    def _setup(self, p) -> None:
        spec = self.backend.spec
        self.spec = spec
        self._pre = Preprocessor(spec)
        try:
            self._post = Postprocessor(spec)
        except ValueError as exc:
            raise StartupError(f'{self.backend.model_path}: {exc}') from None
        try:
            warmup = self.backend.warmup(p.warmup_iterations)
        except (BackendError, ValueError) as exc:
            raise StartupError(f'{self.backend.model_path}: warm-up inference failed: {exc}') from None
        self.warmup_ms = warmup

        self.bad_input = BadInput(self)
        self.frames_in = RateMeter()
        self.frames_out = RateMeter()
        # One lock for the hand-over to the worker and for every count and sample below.
        self._cond = threading.Condition()
        self._pending: tuple[Image, float] | None = None
        self._stopping = False
        self._busy = False
        self.received = 0
        self.processed = 0
        self.dropped_stale = 0
        self.failed = 0
        #: Colourised segmentation frames published (only while someone subscribes).
        self.color_frames = 0
        self._last_failure = ''
        self._last_failure_time = -math.inf
        self._inference_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._frame_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

        opts = qos.overridable()
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, qos.sensor_data(),
                                                qos_overriding_options=opts)
        self._seg_pub = self.create_publisher(Image, SEG_TOPIC, qos.sensor_data(),
                                              qos_overriding_options=opts)
        self._color_pub = self.create_publisher(Image, COLOR_TOPIC, qos.sensor_data(),
                                                qos_overriding_options=opts)
        sub = self.create_subscription(Image, IMAGE_TOPIC, self._on_image, qos.sensor_data(),
                                       qos_overriding_options=opts)
        self._image_topic = sub.topic_name
        self.diagnostics = Diagnostics(self, 'student inference', self._diagnostics,
                                       period=p.diagnostics_period)
        self._worker = threading.Thread(target=self._run_worker, name='student_inference', daemon=True)
        self._worker.start()
        warm = f', warm-up {len(warmup)} runs, last {warmup[-1]:.1f} ms' if warmup else ''
        self.get_logger().info(
            f'{self.backend.model_path.name}: {spec.width}x{spec.height} input on '
            f'{self.backend.description}{warm}; {self._image_topic} -> {self._depth_pub.topic_name}, '
            f'{self._seg_pub.topic_name} (+ {self._color_pub.topic_name} when subscribed)')

    # ------------------------------------------------------------------------------------------ intake

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self._cond:
            self.received += 1
            stale = self._pending is not None
            if stale:
                self.dropped_stale += 1
            self._pending = (msg, now)
            self._cond.notify()
        self.frames_in.tick(now)
        if stale and self.dropped_stale == 1:
            self.get_logger().info(
                'frames arrive faster than the student runs: each inference takes the newest frame and older '
                'unprocessed ones are dropped (counted as "dropped stale" on /diagnostics)')

    def _run_worker(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    return
                msg, received_at = self._pending
                self._pending = None
                self._busy = True
            try:
                self._process(msg, received_at)
            except Exception as exc:  # keep the worker alive; the failure is logged and counted
                self._record_failure(f'{type(exc).__name__}: {exc}')
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _record_failure(self, text: str) -> None:
        now = time.monotonic()
        with self._cond:
            self.failed += 1
            throttle = now - self._last_failure_time < FAILURE_WINDOW and text == self._last_failure
            self._last_failure, self._last_failure_time = text, now
        if not throttle:
            self.get_logger().error(f'inference failed on a frame from {self._image_topic}: {text}')

    # ---------------------------------------------------------------------------------------- pipeline

    def _process(self, msg: Image, received_at: float) -> None:
        if msg.encoding not in INPUT_ENCODINGS:
            reason = f"unsupported encoding '{msg.encoding}' (expected one of {', '.join(INPUT_ENCODINGS)})"
            self.bad_input.report(self._image_topic, reason, 'image')
            return
        try:
            image = codecs.image_to_array(msg)
            x = self._pre(image, msg.encoding)
        except ValueError as exc:  # truncated data, zero size, step too small
            self.bad_input.report(self._image_topic, exc, 'image')
            return
        start = time.perf_counter()
        outputs = self.backend.infer(x)
        inference_ms = (time.perf_counter() - start) * 1e3
        size = image.shape[:2] if self.params.values.output_size == 'input' else None
        result = self._post(outputs.depth, outputs.seg_logits, size)
        header = msg.header
        self._depth_pub.publish(codecs.array_to_image(result.depth, '32FC1', header))
        self._seg_pub.publish(codecs.array_to_image(result.class_ids, 'mono8', header))
        if self._color_pub.get_subscription_count() > 0:
            colour = colourize(result.class_ids, self.spec.num_classes)
            self._color_pub.publish(codecs.array_to_image(colour, 'rgb8', header))
            self.color_frames += 1
        frame_ms = (time.monotonic() - received_at) * 1e3
        with self._cond:
            self._inference_ms.append(inference_ms)
            self._frame_ms.append(frame_ms)
            self.processed += 1
        self.frames_out.tick()

    # ------------------------------------------------------------------------------------------ status

    def counts(self) -> dict[str, int]:
        """Frame counts; once idle, ``received == processed + dropped_stale + dropped_bad + failed``."""
        with self._cond:
            return {'received': self.received, 'processed': self.processed,
                    'dropped_stale': self.dropped_stale, 'dropped_bad': self.bad_input.total,
                    'failed': self.failed, 'pending': int(self._pending is not None or self._busy)}

    def latencies_ms(self) -> dict[str, float]:
        """p50/p99 of inference and of the whole frame (receipt to publish) over the recent frames."""
        with self._cond:
            inference, frame = list(self._inference_ms), list(self._frame_ms)
        inf50, inf99 = _percentiles(inference)
        frame50, frame99 = _percentiles(frame)
        return {'inference_p50': inf50, 'inference_p99': inf99, 'frame_p50': frame50, 'frame_p99': frame99}

    def _diagnostics(self):
        counts = self.counts()
        lat = self.latencies_ms()
        with self._cond:
            last_failure = self._last_failure
            failing = time.monotonic() - self._last_failure_time < FAILURE_WINDOW
        spec, p = self.spec, self.params.values
        values = {
            'backend': self.backend.name,
            'backend detail': self.backend.description,
            'backend choice': self.backend.selection_reason or '-',
            'model': str(self.backend.model_path),
            'input size': f'{spec.width}x{spec.height}',
            'precision': self.backend.precision,
            'output size': p.output_size,
            'inference p50 (ms)': lat['inference_p50'],
            'inference p99 (ms)': lat['inference_p99'],
            'frame latency p50 (ms)': lat['frame_p50'],
            'frame latency p99 (ms)': lat['frame_p99'],
            'input rate (Hz)': self.frames_in.rate(),
            'output rate (Hz)': self.frames_out.rate(),
            'frames in': counts['received'],
            'frames out': counts['processed'],
            'dropped stale': counts['dropped_stale'],
            'dropped bad': counts['dropped_bad'],
            'inference failures': counts['failed'],
            'last drop reason': self.bad_input.last_reason or '-',
            'last failure': last_failure or '-',
        }
        if failing:
            return ERROR, f'inference failing: {last_failure}', values
        if counts['received'] == 0:
            return OK, f'waiting for images on {self._image_topic}', values
        if counts['processed'] == 0 and counts['dropped_bad']:
            return WARN, 'every image so far was dropped (see last drop reason)', values
        return OK, 'publishing', values

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand), then close the model and the node.

        Safe on a half-built node (start-up failure). If the worker does not stop within
        ``WORKER_STOP_TIMEOUT`` seconds, the model is left open rather than freed under a running inference.
        """
        worker = getattr(self, '_worker', None)
        if worker is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            if worker is not threading.current_thread():
                worker.join(timeout=WORKER_STOP_TIMEOUT)
        backend = getattr(self, 'backend', None)
        if backend is not None:
            if worker is not None and worker.is_alive():
                self.get_logger().error(
                    f'the inference worker did not stop within {WORKER_STOP_TIMEOUT:g} s; leaving '
                    f'{backend.model_path.name} open instead of freeing it under a running inference')
            else:
                backend.close()
        super().destroy_node()


main = main_for(StudentTrtNode)

if __name__ == '__main__':
    main()
