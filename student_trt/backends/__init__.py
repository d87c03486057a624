"""Inference backends for the student: one small interface, two implementations, one place that picks.

``Backend`` is what the node, the benchmark and the tools use: ``spec`` (the model's ``ModelSpec``: input
size, normalization, classes), ``infer(x) -> ModelOutputs``, ``warmup(n)``, ``close()``.

- ``onnxruntime`` (``onnxruntime_backend``): an exported ``.onnx`` on the CPU, any machine.
- ``tensorrt`` (``tensorrt_backend``): a ``.engine``/``.plan`` built on this device, with cuda-python
  buffers on one stream; the only runtime module that imports tensorrt (lazily).

``open_backend(model_path, backend)`` picks one by these rules and says why in one log line:

=============  ================  ===========================================================================
requested      model             result
=============  ================  ===========================================================================
auto           .engine / .plan   tensorrt if tensorrt imports and a CUDA GPU is present, else an error
                                 naming the engine and the fix (ONNX Runtime cannot run engines)
auto           .onnx             onnxruntime (CPU); where TensorRT and a GPU are present the log line says
                                 an engine would be faster and how to get one, or, with
                                 ``allow_engine_rebuild``, tensorrt on an engine built from the ONNX
onnxruntime    .onnx             onnxruntime
onnxruntime    .engine / .plan   error naming the file and the fix (use the .onnx, or backend tensorrt)
tensorrt       .engine / .plan   tensorrt; an error saying what is missing if tensorrt or a GPU is not
tensorrt       .onnx             tensorrt on an engine built from the ONNX if ``allow_engine_rebuild``,
                                 else an error saying what to run
=============  ================  ===========================================================================

Every failure to open a model is a ``BackendError`` whose message names the file and the fix.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from student_trt.metadata import ModelSpec

__all__ = [
    'BACKENDS',
    'Backend',
    'BackendError',
    'ENGINE_SUFFIXES',
    'EXPORT_HINT',
    'ModelOutputs',
    'ONNX_SUFFIXES',
    'Selection',
    'model_kind',
    'open_backend',
    'probe_gpu',
    'probe_tensorrt',
    'probe_tensorrt_gpu',
    'select_backend',
]

#: Values of the node's ``backend`` parameter.
BACKENDS = ('auto', 'onnxruntime', 'tensorrt')
ONNX_SUFFIXES = ('.onnx',)
ENGINE_SUFFIXES = ('.engine', '.plan')
#: How to make a model this package can run (quoted in error messages).
EXPORT_HINT = 'export_trt --checkpoint <student.pt> --output-dir <dir>'

_log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A model that cannot be opened or run here; the message names the file and the fix."""


class ModelOutputs(NamedTuple):
    """Raw outputs of one inference, shapes as in ``ModelSpec``.

    A backend may return views of its own buffers (TensorRT does): they are valid until its next
    ``infer``. Copy them to keep them longer.
    """

    depth: np.ndarray        #: (1, 1, H, W) metres
    seg_logits: np.ndarray   #: (1, C, H, W)


class Backend(abc.ABC):
    """One loaded model, ready to run. Not thread-safe: call it from one thread at a time.

    Attributes:
        name: 'onnxruntime' or 'tensorrt'.
        model_path: the file it runs.
        spec: the model's self-description (from the ONNX metadata or the engine's sidecar).
        description: one line for logs and diagnostics, e.g. providers and threads, or GPU and TensorRT.
        selection_reason: why ``open_backend`` chose this backend (empty when built directly).
    """

    name = 'backend'

    def __init__(self, model_path: Path, spec: ModelSpec) -> None:
        self.model_path = Path(model_path)
        self.spec = spec
        self.description = self.name
        self.selection_reason = ''
        self._input_shape = (1, 3, spec.height, spec.width)

    @property
    def precision(self) -> str:
        """fp32, fp16 or int8, as exported."""
        return self.spec.precision

    def check_input(self, x: np.ndarray) -> None:
        """Raises ValueError unless ``x`` is float32 (1, 3, H, W) at the model's input size."""
        if x.shape != self._input_shape or x.dtype != np.float32:
            raise ValueError(f'model input must be float32 {self._input_shape}, got {x.dtype} {x.shape}: '
                             'make it with student_trt.preprocess.Preprocessor(backend.spec)')

    @abc.abstractmethod
    def infer(self, x: np.ndarray) -> ModelOutputs:
        """Run the model on one preprocessed input (``student_trt.preprocess.Preprocessor`` output).

        Raises:
            ValueError: ``x`` has the wrong shape or dtype.
            BackendError: the runtime failed (the message says what to check).
        """

    def warmup(self, iterations: int) -> list[float]:
        """Run ``iterations`` inferences on a blank input (first runs allocate and tune); returns their
        latencies in milliseconds."""
        x = np.zeros(self._input_shape, np.float32)
        latencies = []
        for _ in range(iterations):
            start = time.perf_counter()
            self.infer(x)
            latencies.append((time.perf_counter() - start) * 1e3)
        return latencies

    @abc.abstractmethod
    def close(self) -> None:
        """Release the runtime's resources; the backend cannot be used afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- selection

def model_kind(model_path: str | Path) -> str:
    """'onnx' or 'engine' from the file name.

    Raises:
        BackendError: another suffix.
    """
    suffix = Path(model_path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return 'onnx'
    if suffix in ENGINE_SUFFIXES:
        return 'engine'
    raise BackendError(f'{model_path}: unknown model type {suffix or "(no suffix)"!r}; model_path must be an '
                       f'ONNX model (.onnx) or a TensorRT engine (.engine, .plan) made by {EXPORT_HINT}')


def probe_tensorrt() -> tuple[bool, str]:
    """(True, 'TensorRT <version>') when the tensorrt module imports, else (False, why)."""
    from student_trt.backends import tensorrt_backend
    return tensorrt_backend.tensorrt_status()


def probe_gpu() -> tuple[bool, str]:
    """(True, '<GPU name> (sm X.Y)') when cuda-python sees a CUDA device, else (False, why)."""
    from student_trt import cuda_buffers
    try:
        info = cuda_buffers.device_info(0)
    except (cuda_buffers.CudaUnavailable, cuda_buffers.CudaError) as exc:
        return False, str(exc)
    return True, f'{info.name} (sm {info.sm})'


def probe_tensorrt_gpu(tensorrt: tuple[bool, str] | None = None,
                       gpu: tuple[bool, str] | None = None) -> tuple[bool, str]:
    """(True, 'TensorRT <version> on <GPU> (sm X.Y)') when TensorRT imports and a CUDA GPU is present, else
    (False, why). ``tensorrt`` and ``gpu`` stand for ``probe_tensorrt()`` and ``probe_gpu()`` when given;
    the GPU is probed only when TensorRT imports."""
    trt_ok, trt_why = tensorrt if tensorrt is not None else probe_tensorrt()
    if not trt_ok:
        return False, trt_why
    gpu_ok, gpu_why = gpu if gpu is not None else probe_gpu()
    if not gpu_ok:
        return False, gpu_why
    return True, f'{trt_why} on {gpu_why}'


@dataclass(frozen=True)
class Selection:
    """Which backend runs the model, and why (one line for the log).

    ``build_engine``: the model is an ONNX that the TensorRT backend turns into an engine first.
    """

    backend: str
    reason: str
    build_engine: bool = False


def _onnx_beside(engine: Path) -> str:
    """Where the ONNX for ``engine`` probably is: the one its sidecar names, else any beside it."""
    from student_trt.engine_sidecar import read_sidecar
    try:
        recorded = engine.parent / read_sidecar(engine).onnx_file
    except (OSError, ValueError):
        recorded = None
    candidates = [recorded] if recorded is not None and recorded.is_file() else \
        sorted(engine.parent.glob('*.onnx'))
    if candidates:
        return f'e.g. model_path:={candidates[0]}'
    return f'the .onnx that {EXPORT_HINT} writes'


def select_backend(model_path: str | Path, requested: str = 'auto', *, allow_engine_rebuild: bool = False,
                   tensorrt: tuple[bool, str] | None = None,
                   gpu: tuple[bool, str] | None = None) -> Selection:
    """Apply the selection rules of the module doc.

    Args:
        model_path: the model file (only its name matters here).
        requested: 'auto', 'onnxruntime' or 'tensorrt'.
        allow_engine_rebuild: an ONNX may be turned into an engine when TensorRT is used.
        tensorrt, gpu: results of ``probe_tensorrt()`` / ``probe_gpu()``; probed when None (and only
            when the rules need them).

    Raises:
        BackendError: the request cannot be met; the message names the file and the fix.
    """
    path = Path(model_path)
    if requested not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    kind = model_kind(path)

    def trt_ready() -> tuple[bool, str]:
        return probe_tensorrt_gpu(tensorrt, gpu)

    if requested == 'onnxruntime':
        if kind == 'engine':
            raise BackendError(
                f'{path} is a TensorRT engine, which ONNX Runtime cannot run: set model_path to the ONNX '
                f'model ({_onnx_beside(path)}), or backend:=tensorrt on the device the engine was built for')
        return Selection('onnxruntime', 'backend onnxruntime requested')

    if requested == 'tensorrt':
        ok, why = trt_ready()
        if not ok:
            raise BackendError(
                f'backend tensorrt requested for {path}, but TensorRT cannot run here: {why}. Install '
                'TensorRT and cuda-python (JetPack ships TensorRT), or set backend:=onnxruntime (or auto) '
                'with the .onnx model')
        if kind == 'engine':
            return Selection('tensorrt', f'backend tensorrt requested ({why})')
        if allow_engine_rebuild:
            return Selection('tensorrt', f'backend tensorrt requested with an ONNX model: building an '
                                         f'engine from it ({why})', build_engine=True)
        raise BackendError(
            f'backend tensorrt needs a TensorRT engine, got the ONNX model {path}: build one on this device '
            f'with {EXPORT_HINT} and set model_path to it, or set allow_engine_rebuild:=true to build it '
            'at start-up')

    # auto
    if kind == 'engine':
        ok, why = trt_ready()
        if not ok:
            raise BackendError(
                f'{path} is a TensorRT engine but TensorRT cannot run here ({why}); ONNX Runtime cannot run '
                f'engines: set model_path to the ONNX model ({_onnx_beside(path)}) to use ONNX Runtime on '
                'the CPU')
        return Selection('tensorrt', f'auto: {path.name} is a TensorRT engine and {why} is available')
    ok, why = trt_ready()
    if not ok:
        return Selection('onnxruntime', f'auto: {path.name} is an ONNX model and TensorRT is not usable '
                                        f'here ({why})')
    if allow_engine_rebuild:
        return Selection('tensorrt', f'auto: {why} is available and allow_engine_rebuild is set: building '
                                     f'a TensorRT engine from {path.name}', build_engine=True)
    return Selection('onnxruntime', f'auto: {path.name} is an ONNX model: running it with ONNX Runtime on '
                                    f'the CPU although {why} is available; a TensorRT engine would be much '
                                    f'faster: build one with {EXPORT_HINT} on this device and set model_path '
                                    'to it (or set allow_engine_rebuild:=true)')


def open_backend(model_path: str | Path, backend: str = 'auto', *, allow_engine_rebuild: bool = False,
                 num_threads: int = 0, use_cuda_graph: bool = False,
                 log: Callable[[str], None] | None = None) -> Backend:
    """Pick a backend for ``model_path`` (see module doc), log the choice and why, and load the model.

    Args:
        model_path: .onnx, .engine or .plan.
        backend: 'auto', 'onnxruntime' or 'tensorrt'.
        allow_engine_rebuild: TensorRT may (re)build an engine from the ONNX recorded beside it when the
            engine does not match this TensorRT or GPU, or from an ONNX model_path.
        num_threads: ONNX Runtime intra-op threads (0 = its default, one per core).
        use_cuda_graph: TensorRT replays a captured CUDA graph per frame.
        log: where the one-line choice (and rebuild notes) go; default: this module's logger at INFO.

    Raises:
        BackendError: missing, corrupt or incompatible model, or the backend cannot run here.
    """
    log = log or _log.info
    path = Path(model_path).expanduser()
    model_kind(path)
    if not path.is_file():
        raise BackendError(f'model file not found: {path}; set model_path to an exported model (.onnx, or an '
                           f'engine built on this device), made with {EXPORT_HINT}')
    selection = select_backend(path, backend, allow_engine_rebuild=allow_engine_rebuild)
    log(f'backend {selection.backend}: {selection.reason}')
    if selection.backend == 'onnxruntime':
        from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
        result: Backend = OnnxRuntimeBackend(path, num_threads=num_threads)
    else:
        from student_trt.backends.tensorrt_backend import TensorRTBackend
        if selection.build_engine:
            result = TensorRTBackend.from_onnx(path, use_cuda_graph=use_cuda_graph, log=log)
        else:
            result = TensorRTBackend(path, allow_engine_rebuild=allow_engine_rebuild,
                                     use_cuda_graph=use_cuda_graph, log=log)
    result.selection_reason = selection.reason
    return result
