"""TensorRT on the GPU: a serialized engine, cuda-python buffers, one stream. The only runtime module that
imports tensorrt, and only when a TensorRT backend is made.

Before deserializing, the engine's JSON sidecar (``<engine>.json``, written by export_trt) is checked
against the installed TensorRT and the GPU (``engine_sidecar.check_compatibility``). On a mismatch the
engine is rebuilt from the ONNX beside it when ``allow_engine_rebuild`` is set (``trt_build.build_engine``,
logged), otherwise opening fails with one message saying what to run.

Inference uses the name-based I/O API that TensorRT 8.5 through 11 share (``num_io_tensors``,
``get_tensor_name/mode/shape/dtype``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``):
one pinned host + device buffer per I/O tensor, copy in asynchronously, enqueue, copy out asynchronously,
one stream synchronize. With ``use_cuda_graph`` the copy-in, enqueue and copy-out sequence is captured once
(after a first plain run) and replayed per frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from student_trt import cuda_buffers, engine_sidecar
from student_trt.backends import EXPORT_HINT, Backend, BackendError, ModelOutputs
from student_trt.metadata import ModelSpec
from student_trt.trt_build import (
    BuildPlan,
    TrtBuildError,
    build_engine,
    engine_name,
    onnx_name,
    plan_build,
    split_onnx_name,
    trt_logger,
)

__all__ = ['EngineCheck', 'TensorInfo', 'TensorRTBackend', 'check_engine', 'export_stem', 'rebuild_source',
           'tensorrt_status']

_log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of an engine, by name."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


def export_stem(onnx_path: str | Path) -> str:
    """``student_int8_qdq.onnx`` -> ``student``: the name export_trt gave the export (the file's stem
    without its ``_<variant>`` suffix; the whole stem for other names)."""
    parts = split_onnx_name(onnx_path)
    return parts[0] if parts else Path(onnx_path).stem


def rebuild_source(engine_path: Path, sidecar: engine_sidecar.EngineSidecar, onnx_variant: str) -> Path:
    """The ONNX to rebuild ``engine_path`` from with a build plan that wants ``onnx_variant``.

    export_trt names its ONNX files ``<stem>_<variant>.onnx``; the sidecar records the one the engine was
    built from. A newer TensorRT may want another variant of the same export (TensorRT 11 builds FP16 from
    ``_fp16.onnx`` where TensorRT 10 used ``_fp32.onnx``): that sibling is used when it exists, else the
    recorded file.
    """
    recorded = engine_path.parent / sidecar.onnx_file
    parts = split_onnx_name(sidecar.onnx_file)
    if parts is not None:
        sibling = engine_path.parent / onnx_name(parts[0], onnx_variant)
        if sibling.is_file():
            return sibling
    return recorded


@dataclass(frozen=True)
class EngineCheck:
    """Outcome of ``check_engine`` for an engine that may be used: load it as is (``plan`` None), or
    rebuild it from ``source`` with ``plan`` first (``problems`` say why)."""

    sidecar: engine_sidecar.EngineSidecar
    problems: tuple[str, ...] = ()
    source: Path | None = None
    plan: BuildPlan | None = None


def check_engine(engine_path: str | Path, trt_version: str, gpu_name: str, compute_capability: str,
                 allow_rebuild: bool) -> EngineCheck:
    """Decide, before deserializing, whether ``engine_path`` can run on this TensorRT and GPU (pure:
    reads the sidecar and hashes the ONNX beside it; no tensorrt import).

    Raises:
        BackendError: no or unreadable sidecar; or a mismatch that is not to be (or cannot be) rebuilt, with
            the message saying what to run.
    """
    path = Path(engine_path)
    try:
        sidecar = engine_sidecar.read_sidecar(path)
    except (FileNotFoundError, ValueError) as exc:
        raise BackendError(f'{exc} (engine {path}; fix: {EXPORT_HINT} on this device)') from exc
    onnx_path = path.parent / sidecar.onnx_file
    present = onnx_path if onnx_path.is_file() else None  # without it the engine may still be fine
    problems = tuple(engine_sidecar.check_compatibility(sidecar, trt_version, gpu_name, compute_capability,
                                                        onnx_path=present))
    if not problems:
        return EngineCheck(sidecar)
    reasons = '; '.join(problems)
    if not allow_rebuild:
        command = f'export_trt --from-onnx {onnx_path} --precision {sidecar.precision}' if present \
            else EXPORT_HINT
        raise BackendError(
            f'{path} cannot be used here: {reasons}. Fix: rebuild it on this device with {command}, '
            f'or set allow_engine_rebuild:=true to rebuild it from {onnx_path.name} at start-up')
    try:
        plan = plan_build(trt_version, sidecar.precision)
    except ValueError as exc:
        raise BackendError(f'{path}: cannot rebuild ({exc})') from exc
    source = rebuild_source(path, sidecar, plan.onnx_variant)
    if not source.is_file():
        raise BackendError(f'{path} cannot be used here ({reasons}) and cannot be rebuilt: {source} '
                           'is missing. Fix: copy the exported ONNX beside the engine, or run '
                           f'{EXPORT_HINT} on this device')
    return EngineCheck(sidecar, problems, source, plan)


def _spec_of_onnx(onnx_path: Path, fallback: ModelSpec | None = None) -> ModelSpec:
    """The ModelSpec in an ONNX's metadata; ``fallback`` where neither onnx nor onnxruntime is installed.

    Raises:
        BackendError: unreadable ONNX or no rc_perception metadata; no reader installed and no fallback.
    """
    try:
        return ModelSpec.from_onnx_file(onnx_path)
    except ImportError:
        if fallback is None:
            raise BackendError(f'cannot read the model metadata of {onnx_path}: install onnx or '
                               'onnxruntime (pip install onnx)') from None
        return fallback
    except ValueError as exc:
        raise BackendError(f'{exc}; export it again with {EXPORT_HINT}') from exc


def _build(trt: Any, onnx_path: Path, engine_path: Path, plan: BuildPlan, spec: ModelSpec,
           say: Callable[[str], None]) -> engine_sidecar.EngineSidecar:
    """``trt_build.build_engine`` with the export's timing cache, failures as BackendError, logged."""
    cache = onnx_path.with_name(f'{export_stem(onnx_path)}_timing.cache')
    try:
        sidecar = build_engine(onnx_path, engine_path, plan, spec, timing_cache=cache, log=say)
    except TrtBuildError as exc:
        raise BackendError(f'building {engine_path} from {onnx_path} failed: {exc}') from exc
    except OSError as exc:
        raise BackendError(f'cannot write the engine built from {onnx_path} ({exc}): make '
                           f'{engine_path.parent} writable, or build it elsewhere with export_trt '
                           f'--from-onnx {onnx_path} --output-dir <writable dir> and set model_path to it') \
            from exc
    say(f'built {engine_path} with TensorRT {trt.__version__} ({plan.precision})')
    return sidecar


class TensorRTBackend(Backend):
    """A TensorRT engine with pinned host + device buffers per I/O tensor on one CUDA stream.

    Args:
        engine_path: ``.engine`` / ``.plan`` with its ``.json`` sidecar beside it.
        allow_engine_rebuild: on a sidecar mismatch, rebuild from the ONNX recorded in the sidecar.
        use_cuda_graph: capture the per-frame work once and replay it (falls back, logged, if capture fails).
        device: CUDA device index.
        log: one-line messages (rebuilds, graph capture); default this module's logger.

    Raises:
        BackendError: TensorRT or a GPU missing, no or unreadable sidecar, a mismatch that is not rebuilt,
            a corrupt engine, or I/O that does not match the model's spec.
    """

    name = 'tensorrt'

    def __init__(self, engine_path: str | Path, *, allow_engine_rebuild: bool = False,
                 use_cuda_graph: bool = False, device: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        path = Path(engine_path)
        self._say = log or _log.info
        trt = _import_tensorrt()
        if not path.is_file():
            raise BackendError(f'engine not found: {path}; build it on this device with {EXPORT_HINT}')
        try:
            self._device = cuda_buffers.device_info(device)
        except (cuda_buffers.CudaUnavailable, cuda_buffers.CudaError) as exc:
            raise BackendError(f'cannot run {path}: {exc}') from exc
        sidecar = self._checked_sidecar(path, trt, allow_engine_rebuild)
        super().__init__(path, _sidecar_spec(path, sidecar).with_(precision=sidecar.precision))
        self._want_graph = use_cuda_graph
        self._graph: cuda_buffers.CudaGraph | None = None
        self._buffers: dict[str, cuda_buffers.HostDeviceBuffer] = {}
        self._inputs: list[cuda_buffers.HostDeviceBuffer] = []
        self._outputs: list[cuda_buffers.HostDeviceBuffer] = []
        self._stream: cuda_buffers.Stream | None = None
        self._threads: set[int] = set()
        self._runtime = self._engine = self._context = None
        try:
            self._load(trt, path)
        except BaseException as exc:
            self.close()
            if isinstance(exc, cuda_buffers.CudaError):  # e.g. out of device or pinned memory
                raise BackendError(f'cannot load {path}: {exc}') from exc
            raise
        self.description = (f'TensorRT {trt.__version__} on {self._device.name} (sm {self._device.sm}), '
                            f'{self.precision}, CUDA graph {"on" if use_cuda_graph else "off"}')

    # ------------------------------------------------------------------------------------- start-up

    def _checked_sidecar(self, path: Path, trt: Any, allow_rebuild: bool) -> engine_sidecar.EngineSidecar:
        check = check_engine(path, trt.__version__, self._device.name, self._device.sm, allow_rebuild)
        if check.plan is None:
            return check.sidecar
        self._say(f"rebuilding {path.name} from {check.source.name}: {'; '.join(check.problems)}")
        spec = _spec_of_onnx(check.source, fallback=_sidecar_spec(path, check.sidecar))
        return _build(trt, check.source, path, check.plan, spec, self._say)

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, *, use_cuda_graph: bool = False, device: int = 0,
                  log: Callable[[str], None] | None = None) -> TensorRTBackend:
        """Open the engine export_trt would make from ``onnx_path`` (``<stem>_<precision>.engine`` beside
        it), building or rebuilding it first when it is missing or does not match (logged).

        Raises:
            BackendError: as for the constructor, or the build failed.
        """
        onnx_path = Path(onnx_path)
        say = log or _log.info
        trt = _import_tensorrt()
        spec = _spec_of_onnx(onnx_path)
        engine_path = onnx_path.with_name(engine_name(export_stem(onnx_path), spec.precision))
        if _built_from(engine_path, onnx_path, trt.__version__, device):
            say(f'using {engine_path.name}, built earlier from {onnx_path.name}')
        else:
            try:
                plan = plan_build(trt.__version__, spec.precision)
            except ValueError as exc:
                raise BackendError(f'{onnx_path}: cannot build an engine ({exc})') from exc
            say(f'building {engine_path.name} from {onnx_path.name} with TensorRT {trt.__version__} (takes '
                'minutes on a Jetson; the engine is kept for the next start)')
            _build(trt, onnx_path, engine_path, plan, spec, say)
        return cls(engine_path, use_cuda_graph=use_cuda_graph, device=device, log=log)

    def _load(self, trt: Any, path: Path) -> None:
        cuda_buffers.set_device(self._device.index)
        self._threads.add(threading.get_ident())
        self._runtime = trt.Runtime(trt_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BackendError(f'TensorRT {trt.__version__} could not deserialize {path} (corrupt file, or '
                               f'built elsewhere; see the TensorRT messages above). Fix: rebuild it on this '
                               f'device with {EXPORT_HINT}')
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f'{path}: TensorRT could not create an execution context (out of GPU memory?)')
        tensors = self._io_tensors(trt)
        self._check_io(tensors)
        self._stream = cuda_buffers.Stream()
        for tensor in tensors:
            buffer = cuda_buffers.HostDeviceBuffer(tensor.shape, tensor.dtype)
            self._buffers[tensor.name] = buffer
            (self._inputs if tensor.is_input else self._outputs).append(buffer)
            if not self._context.set_tensor_address(tensor.name, buffer.device_ptr):
                raise BackendError(f'{path}: set_tensor_address({tensor.name!r}) failed (see the TensorRT '
                                   'messages above)')
        self.tensors = tensors

    def _io_tensors(self, trt: Any) -> list[TensorInfo]:
        """Every I/O tensor with the shape the context resolves (dynamic input dims fixed to the spec's
        size) and its numpy dtype."""
        engine, context, spec = self._engine, self._context, self.spec
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = {name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT}
        want = (1, 3, spec.height, spec.width)
        for name in inputs:
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape) and not context.set_input_shape(name, want):
                raise BackendError(f'{self.model_path}: input {name!r} {shape} does not accept {want}')
        tensors = []
        for name in names:
            trt_dtype = engine.get_tensor_dtype(name)
            try:
                dtype = np.dtype(trt.nptype(trt_dtype))
            except TypeError:  # BF16, FP8, INT4, ...: no numpy type
                raise BackendError(f'{self.model_path}: I/O tensor {name!r} has type {trt_dtype}, which has '
                                   'no numpy equivalent; export the model with float32 inputs and outputs '
                                   f'({EXPORT_HINT})') from None
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            tensors.append(TensorInfo(name, name in inputs, shape, dtype))
        return tensors

    def _check_io(self, tensors: list[TensorInfo]) -> None:
        spec = self.spec
        inputs = {t.name: t for t in tensors if t.is_input}
        outputs = {t.name: t for t in tensors if not t.is_input}
        want = {spec.input_name: (1, 3, spec.height, spec.width),
                spec.depth_output: (1, 1, spec.height, spec.width),
                spec.seg_output: (1, spec.num_classes, spec.height, spec.width)}
        problems = []
        if set(inputs) != {spec.input_name}:
            problems.append(f"inputs are {', '.join(inputs) or 'none'}, the spec says {spec.input_name}")
        for name in (spec.depth_output, spec.seg_output):
            if name not in outputs:
                problems.append(f"output {name!r} is missing (outputs: {', '.join(outputs) or 'none'})")
        for name, shape in want.items():
            tensor = inputs.get(name) or outputs.get(name)
            if tensor is not None and tensor.shape != shape:
                problems.append(f'{name!r} has shape {tensor.shape}, the spec says {shape}')
        if problems:
            raise BackendError(f'{self.model_path} does not match its sidecar: ' + '; '.join(problems)
                               + f'. Fix: rebuild it with {EXPORT_HINT}')

    # ------------------------------------------------------------------------------------- inference

    def _ready(self) -> None:
        """Raises BackendError once closed; makes this backend's device current in a new calling thread
        (the CUDA runtime's current device is per thread)."""
        if self._context is None:
            raise BackendError(f'{self.model_path}: the TensorRT backend is closed')
        thread = threading.get_ident()
        if thread not in self._threads:
            cuda_buffers.set_device(self._device.index)
            self._threads.add(thread)

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.ptr):
            raise BackendError(f'{self.model_path}: execute_async_v3 failed (see the TensorRT messages)')

    def _enqueue(self) -> None:
        """Copy in, execute, copy out, all asynchronous on the stream (no synchronize)."""
        for buffer in self._inputs:
            buffer.to_device(self._stream)
        self._execute()
        for buffer in self._outputs:
            buffer.to_host(self._stream)

    def _capture_graph(self) -> None:
        graph = cuda_buffers.CudaGraph()
        try:
            with graph.capture(self._stream):
                self._enqueue()
        except (cuda_buffers.CudaError, BackendError) as exc:
            graph.close()
            self._want_graph = False
            self._say(f'CUDA graph capture failed, running without a graph: {exc}')
            return
        self._graph = graph
        self._say('CUDA graph captured: copy-in, inference and copy-out replay as one launch per frame')

    def infer(self, x: np.ndarray) -> ModelOutputs:
        self.check_input(x)
        self._ready()
        spec = self.spec
        np.copyto(self._buffers[spec.input_name].host, x, casting='same_kind')
        try:
            if self._graph is not None:
                self._graph.launch(self._stream)
            else:
                self._enqueue()
            self._stream.synchronize()
            if self._want_graph and self._graph is None:  # after a first plain run, as TensorRT advises
                self._capture_graph()
        except cuda_buffers.CudaError as exc:
            raise BackendError(f'{self.model_path}: {exc}') from exc
        return ModelOutputs(self._buffers[spec.depth_output].host, self._buffers[spec.seg_output].host)

    # ------------------------------------------------------------------------------------- benchmark

    @property
    def device_memory_size(self) -> int | None:
        """Bytes of device memory an execution context of this engine needs (activations and scratch;
        weights not included): ``device_memory_size_v2`` (TensorRT >= 10.1; the only one in 11) or
        ``device_memory_size``; None when the engine exposes neither."""
        for name in ('device_memory_size_v2', 'device_memory_size'):
            value = getattr(self._engine, name, None)
            if value is not None:
                return int(value)
        return None

    def execute_only(self) -> None:
        """Run the engine once on what its device input buffer holds, with no host <-> device copies (one
        ``execute_async_v3`` and a stream synchronize): the benchmark's compute-only timing. Call ``infer``
        first so that the device input holds a real frame.

        Raises:
            BackendError: the backend is closed or the runtime failed.
        """
        self._ready()
        try:
            self._execute()
            self._stream.synchronize()
        except cuda_buffers.CudaError as exc:
            raise BackendError(f'{self.model_path}: {exc}') from exc

    def close(self) -> None:
        """Wait for work still on the stream, free graph, buffers and stream, then release context, engine
        and runtime, in that order. Closing twice is a no-op."""
        graph, self._graph = self._graph, None
        buffers, self._buffers = self._buffers, {}
        self._inputs, self._outputs = [], []
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                try:
                    stream.synchronize()  # a failed frame may have left copies in flight
                except cuda_buffers.CudaError as exc:
                    self._say(f'closing {self.model_path.name}: {exc}')
            if graph is not None:
                graph.close()
            for buffer in buffers.values():
                buffer.free()
            if stream is not None:
                stream.close()
        finally:
            # Release in dependency order: context, then engine, then runtime.
            self._context = None
            self._engine = None
            self._runtime = None


def _sidecar_spec(engine_path: Path, sidecar: engine_sidecar.EngineSidecar) -> ModelSpec:
    try:
        return sidecar.model_spec
    except (TypeError, ValueError) as exc:
        raise BackendError(f'{engine_sidecar.sidecar_path(engine_path)}: invalid model spec ({exc}); rebuild '
                           f'the engine with {EXPORT_HINT}') from exc


def _built_from(engine_path: Path, onnx_path: Path, trt_version: str, device: int) -> bool:
    """``engine_path`` exists, its sidecar names ``onnx_path`` and matches it, this TensorRT and this GPU."""
    if not engine_path.is_file():
        return False
    try:
        sidecar = engine_sidecar.read_sidecar(engine_path)
        gpu = cuda_buffers.device_info(device)
    except (OSError, ValueError, cuda_buffers.CudaUnavailable, cuda_buffers.CudaError):
        return False
    return sidecar.onnx_file == onnx_path.name and not engine_sidecar.check_compatibility(
        sidecar, trt_version, gpu.name, gpu.sm, onnx_path=onnx_path)
