"""student_trt_node: camera RGB -> the student network -> metric depth and semantic segmentation.

Subscribes:
    camera/rgb (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8 or mono8, any size and aspect), sensor-data QoS
Publishes (headers copied from the input frame):
    student/depth (sensor_msgs/Image, 32FC1 metres along optical Z, NaN where invalid)
    student/segmentation (sensor_msgs/Image, mono8 class ids; names in the model's metadata)
    student/segmentation/color (sensor_msgs/Image, rgb8 colourised ids; only computed while subscribed)
    /diagnostics (diagnostic_msgs/DiagnosticArray)

The camera image enters the model letterboxed (aspect kept, padded); the outputs are published on a grid
with the camera's aspect (``student_trt.geometry``): with ``output_size: model`` the camera image decimated
by the whole factor nearest the model's size (640x480 -> 320x240, 640x360 and 1280x720 -> 320x180,
848x480 -> 424x240), with ``output_size: input`` the camera's own size. A consumer that projects them scales
the camera's K with ``rc_perception.camera.scale_intrinsics``.

Only the newest frame is kept: the subscription callback stores it (replacing an unprocessed one counts a
stale drop) and one worker thread decodes, preprocesses, infers, postprocesses into buffers kept across
frames, and publishes. The output lags the camera by at most about one inference. Each published frame is
timed (``rc_perception.latency``: input age, wait for the worker, compute, publish, output age) on
/diagnostics. A missing, corrupt or incompatible model stops the node at start-up with one line naming the
file and the fix (exit code 1). On shutdown the worker stops before the model closes; a frame whose publish
meets an already shut-down context is dropped quietly (counted).

Topic names are relative: remap them, or set a namespace, to fit a robot.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from rc_perception import codecs, node_support, qos
from rc_perception.latency import FrameTimer, LatencyWindow
from rc_perception.params import ParamSpec
from student_trt import status
from student_trt.backends import BACKENDS, EXPORT_HINT, Backend, BackendError, open_backend
from student_trt.geometry import OUTPUT_SIZES, FrameGeometry, frame_geometry
from student_trt.postprocess import Postprocessor, StudentImages
from student_trt.preprocess import INPUT_ENCODINGS, Preprocessor

IMAGE_TOPIC = 'camera/rgb'
DEPTH_TOPIC = 'student/depth'
SEG_TOPIC = 'student/segmentation'
COLOR_TOPIC = 'student/segmentation/color'
#: Seconds destroy_node waits for the worker to finish its frame.
WORKER_STOP_TIMEOUT = 10.0

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
              "model: publish on the camera image decimated by the whole factor nearest the model's input "
              'size (camera aspect kept: 640x360 -> 320x180); input: at the camera image size (nearest '
              'neighbour). Consumers scale K with rc_perception.camera.scale_intrinsics.',
              choices=OUTPUT_SIZES),
    ParamSpec('num_threads', 0, 'ONNX Runtime intra-op threads (0: its default, one per core).',
              min=0, max=64, read_only=True),
    ParamSpec('use_cuda_graph', False,
              'TensorRT: capture copy-in, inference and copy-out once as a CUDA graph and replay it per '
              'frame.', read_only=True),
    ParamSpec('warmup_iterations', 3, 'Inferences on a blank image at start-up, before the first frame.',
              min=0, max=1000, read_only=True),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1, max=60.0,
              read_only=True),
)


class StudentTrtNode(Node):
    """Runs the student on the newest camera frame in one worker thread (see module doc).

    Raises:
        StartupError: no model_path, or a model that cannot be opened (message names the file and the fix).
        ValueError: invalid parameter values at start-up.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('student_trt_node', **kwargs)
        self.params = node_support.startup_params(self, PARAMS)
        try:
            self.backend = self._open_backend(self.params.values)
            self._setup(self.params.values)
        except BaseException:
            self.destroy_node()  # closes the backend when it was opened
            raise

    def _open_backend(self, p) -> Backend:
        if not p.model_path:
            raise node_support.StartupError(
                'model_path is not set: set it to an exported student model, e.g. --ros-args -p '
                'model_path:=/path/to/student_fp32.onnx (made by ' + EXPORT_HINT + '), or a TensorRT '
                '.engine built on this device')
        try:
            backend = open_backend(p.model_path, p.backend, allow_engine_rebuild=p.allow_engine_rebuild,
                                   num_threads=p.num_threads, use_cuda_graph=p.use_cuda_graph,
                                   log=self.get_logger().info)
        except BackendError as exc:
            raise node_support.StartupError(str(exc)) from None
        for name, applies_to in (('use_cuda_graph', 'tensorrt'), ('num_threads', 'onnxruntime')):
            if getattr(p, name) and backend.name != applies_to:
                self.get_logger().info(f'{name} applies to {applies_to} only: ignored with {backend.name}')
        return backend

    def _setup(self, p) -> None:
        self.spec = spec = self.backend.spec
        self._pre = Preprocessor(spec)
        self._input = np.empty(self._pre.shape, np.float32)
        try:
            self._post = Postprocessor(spec)
            warmup = self.backend.warmup(p.warmup_iterations)
        except (BackendError, ValueError) as exc:
            raise node_support.StartupError(f'{self.backend.model_path}: {exc}') from None
        self._grid: tuple[tuple, FrameGeometry, StudentImages] | None = None
        self._colour = np.empty((0, 0, 3), np.uint8)
        self._writers = tuple(codecs.ImageWriter(e) for e in ('32FC1', 'mono8', 'rgb8'))  # worker-owned
        self.book = status.FrameBook()
        self.latency = LatencyWindow(lambda: self.get_clock().now().nanoseconds)
        self.bad_input = node_support.BadInput(self)
        self.frames_in, self.frames_out = node_support.RateMeter(), node_support.RateMeter()
        opts = qos.overridable()
        self._depth_pub, self._seg_pub, self._color_pub = (
            self.create_publisher(Image, topic, qos.sensor_data(), qos_overriding_options=opts)
            for topic in (DEPTH_TOPIC, SEG_TOPIC, COLOR_TOPIC))
        sub = self.create_subscription(Image, IMAGE_TOPIC, self._on_image, qos.sensor_data(),
                                       qos_overriding_options=opts)
        self._image_topic = sub.topic_name
        self.diagnostics = node_support.Diagnostics(self, 'student inference', self._diagnostics,
                                                    period=p.diagnostics_period)
        self._worker = threading.Thread(target=self._run_worker, name='student_inference', daemon=True)
        self._worker.start()
        warm = f', warm-up {len(warmup)} runs, last {warmup[-1]:.1f} ms' if warmup else ''
        self.get_logger().info(
            f'{self.backend.model_path.name}: {spec.width}x{spec.height} input on {self.backend.description}'
            f'{warm}; {self._image_topic} -> {self._depth_pub.topic_name}, {self._seg_pub.topic_name} '
            f'(+ {self._color_pub.topic_name} when subscribed)')

    # ------------------------------------------------------------------------------------------ intake

    def _on_image(self, msg: Image) -> None:
        stamp = msg.header.stamp
        stale = self.book.put((msg, self.latency.frame(stamp.sec * 1_000_000_000 + stamp.nanosec)))
        self.frames_in.tick()
        if stale == 1:
            self.get_logger().info(
                'frames arrive faster than the student runs: each inference takes the newest frame and older '
                'unprocessed ones are dropped (counted as "dropped stale" on /diagnostics)')

    def _run_worker(self) -> None:
        while (frame := self.book.take()) is not None:
            try:
                self._process(*frame)
            except Exception as exc:  # keep the worker alive; the failure is counted and logged
                if not self.context.ok():  # the publish met a context already shut down: not a failure
                    self.book.dropped_at_shutdown()
                elif self.book.failed(text := f'{type(exc).__name__}: {exc}'):
                    self.get_logger().error(f'inference failed on a frame from {self._image_topic}: {text}')
            finally:
                self.book.idle()

    # ---------------------------------------------------------------------------------------- pipeline

    def _process(self, msg: Image, timer: FrameTimer) -> None:
        timer.start()
        if msg.encoding not in INPUT_ENCODINGS:
            reason = f"unsupported encoding '{msg.encoding}' (expected one of {', '.join(INPUT_ENCODINGS)})"
            self.bad_input.report(self._image_topic, reason, 'image')
            return
        try:
            image = codecs.image_to_array(msg)
            x = self._pre(image, msg.encoding, out=self._input)
        except ValueError as exc:  # truncated data, zero size, step too small
            self.bad_input.report(self._image_topic, exc, 'image')
            return
        start = time.perf_counter()
        outputs = self.backend.infer(x)
        inference_ms = (time.perf_counter() - start) * 1e3
        geometry, images = self._grid_for(image.shape[:2])
        self._post(outputs.depth, outputs.seg_logits, geometry, out=images)
        timer.publishing()
        self._depth_pub.publish(self._writers[0].write(images.depth, msg.header))
        self._seg_pub.publish(self._writers[1].write(images.class_ids, msg.header))
        if self._color_pub.get_subscription_count() > 0:
            if self._colour.shape[:2] != images.class_ids.shape:
                self._colour = np.empty((*images.class_ids.shape, 3), np.uint8)
            colour = self._post.colourize(images.class_ids, out=self._colour)
            self._color_pub.publish(self._writers[2].write(colour, msg.header))
        timer.done()
        self.book.processed(inference_ms)
        self.frames_out.tick()

    def _grid_for(self, camera: tuple[int, int]) -> tuple[FrameGeometry, StudentImages]:
        """The geometry of ``camera`` images and the output buffers of its grid, kept while both persist."""
        key = (camera, self.params.values.output_size)
        if self._grid is None or self._grid[0] != key:
            geometry = frame_geometry(camera, (self.spec.height, self.spec.width), key[1])
            self._grid = (key, geometry, StudentImages.empty(*geometry.grid))
        return self._grid[1], self._grid[2]

    # ------------------------------------------------------------------------------------------ status

    def _diagnostics(self):
        grid = self._grid
        facts = status.facts(self.backend, self.params.values.output_size, grid[1] if grid else None)
        return status.report(self.book.snapshot(), dropped_bad=self.bad_input.total,
                             last_drop=self.bad_input.last_reason, topic=self._image_topic, facts=facts,
                             rates=(self.frames_in.rate(), self.frames_out.rate()),
                             latency=self.latency.values())

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand), then close the model and the node.

        Safe on a half-built node (start-up failure). If the worker does not stop within
        ``WORKER_STOP_TIMEOUT`` seconds, the model is left open rather than freed under a running inference.
        """
        worker = getattr(self, '_worker', None)
        if worker is not None:
            self.book.stop()
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


main = node_support.main_for(StudentTrtNode)

if __name__ == '__main__':
    main()
