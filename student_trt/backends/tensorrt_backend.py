"""TensorRT on the GPU: a serialized engine, cuda-python buffers, one stream. The only runtime module that
imports tensorrt, and only when a TensorRT backend is opened.

``open_tensorrt`` gets the model as ``open_backend`` classified it (the engine's sidecar already read) and
the GPU as probed; ``student_trt.engine_files`` decides, before deserializing, whether the engine loads as
is, is rebuilt from the ONNX beside it (``allow_engine_rebuild``, logged), or is refused with what to run;
an ONNX model_path (with ``allow_engine_rebuild``) is built once into ``<stem>_<precision>.engine`` beside it.

Inference uses the name-based I/O API that TensorRT 8.5 through 11 share (``num_io_tensors``,
``get_tensor_name/mode/shape/dtype``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``):
one pinned host + device buffer per I/O tensor, copy in asynchronously, enqueue, copy out asynchronously,
one stream synchronize. With ``use_cuda_graph`` that sequence is captured once (after a first plain run) and
replayed per frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from student_trt import cuda_buffers, engine_files
from student_trt.backends import EXPORT_HINT, Backend, BackendError, ModelFile, ModelOutputs
from student_trt.engine_sidecar import EngineSidecar
from student_trt.trt_build import trt_logger

__all__ = ['TensorRTBackend', 'open_tensorrt', 'tensorrt_status']

_log = logging.getLogger(__name__)
Log = Callable[[str], None]


def tensorrt_status() -> tuple[bool, str]:
    """(True, 'TensorRT <version>') when ``import tensorrt`` works, else (False, why)."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, 'the tensorrt Python module is not installed'
    except Exception as exc:  # a broken install (missing libnvinfer) raises other errors
        return False, f'the tensorrt Python module does not load ({type(exc).__name__}: {exc})'
    return True, f'TensorRT {trt.__version__}'


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as exc:
        raise BackendError(f'TensorRT is not usable here ({type(exc).__name__}: {exc}); on a Jetson it comes '
                           'with JetPack (apt install python3-libnvinfer), or use backend:=onnxruntime with '
                           'the .onnx model') from exc
    return trt


def open_tensorrt(model: ModelFile, device: cuda_buffers.DeviceInfo, *, build: bool, allow_rebuild: bool,
                  use_cuda_graph: bool, log: Log) -> TensorRTBackend:
    """The engine of ``model`` (``build``: the engine built from the ONNX ``model``), checked and rebuilt or
    built as ``student_trt.engine_files`` decides, loaded on ``device``.

    Raises:
        BackendError: as for ``TensorRTBackend``, a mismatch not rebuilt, or a failed build.
    """
    trt = _import_tensorrt()
    if build:
        engine, sidecar = engine_files.engine_of_onnx(model.path, trt.__version__, device.name, device.sm,
                                                      log)
    elif model.sidecar is None:
        raise BackendError(f'{model.sidecar_error} (engine {model.path}; fix: {EXPORT_HINT} on this device)')
    else:
        engine = model.path
        check = engine_files.check_engine(engine, model.sidecar, trt.__version__, device.name, device.sm,
                                          allow_rebuild)
        sidecar = check.sidecar
        if check.plan is not None:
            log(f"rebuilding {engine.name} from {check.source.name}: {'; '.join(check.problems)}")
            spec = engine_files.spec_of_onnx(check.source, engine_files.sidecar_spec(engine, sidecar))
            sidecar = engine_files.build(check.source, engine, check.plan, spec, log)
    return TensorRTBackend(engine, sidecar, device, use_cuda_graph=use_cuda_graph, log=log)


# -------------------------------------------------------------------------------------- the backend

class TensorRTBackend(Backend):
    """A TensorRT engine with pinned host + device buffers per I/O tensor on one CUDA stream.

    Args:
        engine_path: the ``.engine`` / ``.plan`` that ``sidecar`` describes and that matches this system.
        sidecar: its sidecar (the model's spec and precision).
        device: the CUDA device to run on (``cuda_buffers.device_info``).
        use_cuda_graph: capture the per-frame work once and replay it (falls back, logged, if capture fails).
        log: one-line messages (graph capture, closing problems); default this module's logger.

    Raises:
        BackendError: TensorRT missing, a corrupt engine, out of GPU memory, or I/O that does not match the
            model's spec.
    """

    name = 'tensorrt'

    def __init__(self, engine_path: Path, sidecar: EngineSidecar,
                 device: cuda_buffers.DeviceInfo, *, use_cuda_graph: bool = False,
                 log: Log | None = None) -> None:
        trt = _import_tensorrt()
        super().__init__(engine_path, engine_files.sidecar_spec(engine_path, sidecar))
        self._say = log or _log.info
        self._device = device
        self._want_graph = use_cuda_graph
        self._graph: cuda_buffers.CudaGraph | None = None
        self._buffers: dict[str, cuda_buffers.HostDeviceBuffer] = {}
        self._inputs: list[cuda_buffers.HostDeviceBuffer] = []
        self._outputs: list[cuda_buffers.HostDeviceBuffer] = []
        self._stream: cuda_buffers.Stream | None = None
        self._threads: set[int] = set()
        self._runtime = self._engine = self._context = None
        try:
            self._load(trt)
        except BaseException as exc:
            self.close()
            if isinstance(exc, cuda_buffers.CudaError):  # e.g. out of device or pinned memory
                raise BackendError(f'cannot load {self.model_path}: {exc}') from exc
            raise
        self.description = (f'TensorRT {trt.__version__} on {device.name} (sm {device.sm}), '
                            f'{self.precision}, CUDA graph {"on" if use_cuda_graph else "off"}')

    def _load(self, trt: Any) -> None:
        path = self.model_path
        self._ready()
        self._runtime = trt.Runtime(trt_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BackendError(f'TensorRT {trt.__version__} could not deserialize {path} (corrupt file, or '
                               'built elsewhere; see the TensorRT messages above). Fix: rebuild it on this '
                               f'device with {EXPORT_HINT}')
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f'{path}: TensorRT could not create an execution context (out of GPU memory?)')
        tensors = self._io_tensors(trt)
        self._stream = cuda_buffers.Stream()
        for name, (is_input, shape, dtype) in tensors.items():
            buffer = self._buffers[name] = cuda_buffers.HostDeviceBuffer(shape, dtype)
            (self._inputs if is_input else self._outputs).append(buffer)
            if not self._context.set_tensor_address(name, buffer.device_ptr):
                raise BackendError(f'{path}: set_tensor_address({name!r}) failed (see the TensorRT messages)')

    def _io_tensors(self, trt: Any) -> dict[str, tuple[bool, tuple[int, ...], np.dtype]]:
        """name -> (is input, shape, numpy dtype) of every I/O tensor, dynamic input dims fixed to the spec's
        size; checked against the spec."""
        engine, context, spec = self._engine, self._context, self.spec
        h, w = spec.height, spec.width
        want = {spec.input_name: (True, (1, 3, h, w)), spec.depth_output: (False, (1, 1, h, w)),
                spec.seg_output: (False, (1, spec.num_classes, h, w))}
        tensors = {}
        for name in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors)):
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input and any(d < 0 for d in engine.get_tensor_shape(name)) and name in want:
                context.set_input_shape(name, want[name][1])
            trt_dtype = engine.get_tensor_dtype(name)
            try:
                dtype = np.dtype(trt.nptype(trt_dtype))
            except TypeError:  # BF16, FP8, INT4, ...: no numpy type
                raise BackendError(f'{self.model_path}: I/O tensor {name!r} has type {trt_dtype}, which has '
                                   'no numpy equivalent; export the model with float32 inputs and outputs '
                                   f'({EXPORT_HINT})') from None
            tensors[name] = (is_input, tuple(int(d) for d in context.get_tensor_shape(name)), dtype)
        got = {name: (is_input, shape) for name, (is_input, shape, _) in tensors.items()}
        if got != want:
            raise BackendError(f'{self.model_path} does not match its sidecar: its I/O tensors (name: is '
                               f'input, shape) are {got}, the spec says {want}. Fix: rebuild it with '
                               f'{EXPORT_HINT}')
        return tensors

    def _ready(self) -> None:
        """Makes this backend's device current in a new calling thread (the CUDA runtime's current device is
        per thread)."""
        thread = threading.get_ident()
        if thread not in self._threads:
            cuda_buffers.set_device(self._device.index)
            self._threads.add(thread)

    def _enqueue(self) -> None:
        """Copy in, execute, copy out, all asynchronous on the stream (no synchronize)."""
        for buffer in self._inputs:
            buffer.to_device(self._stream)
        self._execute()
        for buffer in self._outputs:
            buffer.to_host(self._stream)

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.ptr):
            raise BackendError(f'{self.model_path}: execute_async_v3 failed (see the TensorRT messages)')

    def _run(self, work: Callable[[], None]) -> None:
        if self._context is None:
            raise BackendError(f'{self.model_path}: the TensorRT backend is closed')
        self._ready()
        try:
            work()
            self._stream.synchronize()
        except cuda_buffers.CudaError as exc:
            raise BackendError(f'{self.model_path}: {exc}') from exc

    def infer(self, x: np.ndarray) -> ModelOutputs:
        self.check_input(x)
        spec = self.spec

        def work() -> None:
            np.copyto(self._buffers[spec.input_name].host, x, casting='same_kind')
            self._graph.launch(self._stream) if self._graph is not None else self._enqueue()

        self._run(work)
        if self._want_graph and self._graph is None:  # after a first plain run, as TensorRT advises
            self._capture_graph()
        return ModelOutputs(self._buffers[spec.depth_output].host, self._buffers[spec.seg_output].host)

    def _capture_graph(self) -> None:
        self._want_graph = False
        graph = cuda_buffers.CudaGraph()
        try:
            with graph.capture(self._stream):
                self._enqueue()
        except (cuda_buffers.CudaError, BackendError) as exc:
            graph.close()
            self._say(f'CUDA graph capture failed, running without a graph: {exc}')
            return
        self._graph = graph
        self._say('CUDA graph captured: copy-in, inference and copy-out replay as one launch per frame')

    def execute_only(self) -> None:
        """Run the engine once on what its device input holds, with no host <-> device copies: the
        benchmark's compute-only timing (call ``infer`` first so that the input holds a real frame).

        Raises:
            BackendError: the backend is closed or the runtime failed.
        """
        self._run(self._execute)

    @property
    def device_memory_size(self) -> int | None:
        """Bytes of device memory an execution context of this engine needs (activations and scratch, not
        weights): ``device_memory_size_v2`` (TensorRT >= 10.1; the only one in 11) or ``device_memory_size``;
        None when the engine exposes neither."""
        for name in ('device_memory_size_v2', 'device_memory_size'):
            value = getattr(self._engine, name, None)
            if value is not None:
                return int(value)
        return None

    def close(self) -> None:
        """Wait for work still on the stream, free graph, buffers and stream, then release context, engine
        and runtime, in that order. Closing twice is a no-op."""
        graph, buffers, stream = self._graph, list(self._buffers.values()), self._stream
        self._graph, self._buffers, self._inputs, self._outputs, self._stream = None, {}, [], [], None
        try:
            if stream is not None:
                try:
                    stream.synchronize()  # a failed frame may have left copies in flight
                except cuda_buffers.CudaError as exc:
                    self._say(f'closing {self.model_path.name}: {exc}')
            if graph is not None:
                graph.close()
            for buffer in buffers:
                buffer.free()
            if stream is not None:
                stream.close()
        finally:  # release in dependency order: context, then engine, then runtime
            self._context = None
            self._engine = None
            self._runtime = None
