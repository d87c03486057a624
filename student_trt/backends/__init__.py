"""Inference backends for the student: one small interface, two implementations, one place that picks.

``Backend`` is what the node, the benchmark and the tools use: ``spec`` (the model's ``ModelSpec``: input
size, normalization, classes), ``infer(x) -> ModelOutputs``, ``warmup(n)``, ``close()``.

- ``onnxruntime`` (``onnxruntime_backend``): an exported ``.onnx`` on the CPU, any machine.
- ``tensorrt`` (``tensorrt_backend``): a ``.engine``/``.plan`` built on this device, with cuda-python
  buffers on one stream; the only runtime module that imports tensorrt (lazily).

``open_backend(model_path, backend)`` opens a model in one pass: the path is classified once
(``ModelFile``: kind, existence, and an engine's sidecar read once), TensorRT and the GPU are probed at
most once (``probe_tensorrt_gpu``, not at all for ``backend: onnxruntime``), and the first matching row of
``RULES`` picks the backend or names the error; the choice and why go to one log line. The table:

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
from typing import Any, NamedTuple

import numpy as np

from student_trt.metadata import ModelSpec

__all__ = [
    'BACKENDS', 'ENGINE_SUFFIXES', 'EXPORT_HINT', 'ONNX_SUFFIXES', 'RULES', 'Backend', 'BackendError',
    'ModelFile', 'ModelOutputs', 'Rule', 'Selection', 'TensorRTProbe', 'open_backend', 'probe_tensorrt',
    'probe_tensorrt_gpu', 'select_backend',
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


# ------------------------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class ModelFile:
    """A ``model_path`` classified once: its kind and, for an engine, its sidecar as read (or why not)."""

    path: Path
    kind: str                   #: 'onnx' or 'engine'
    sidecar: Any = None         #: ``engine_sidecar.EngineSidecar`` of an engine, None if unreadable
    sidecar_error: str = ''     #: why an engine's sidecar could not be read

    @classmethod
    def classify(cls, model_path: str | Path) -> ModelFile:
        """Raises BackendError: a suffix that is neither ONNX nor engine, or a missing file."""
        path = Path(model_path).expanduser()
        suffix = path.suffix.lower()
        if suffix not in ONNX_SUFFIXES + ENGINE_SUFFIXES:
            raise BackendError(f'{path}: unknown model type {suffix or "(no suffix)"!r}; model_path must be '
                               'an ONNX model (.onnx) or a TensorRT engine (.engine, .plan) made by '
                               f'{EXPORT_HINT}')
        if not path.is_file():
            raise BackendError(f'model file not found: {path}; set model_path to an exported model (.onnx, '
                               f'or an engine built on this device), made with {EXPORT_HINT}')
        if suffix in ONNX_SUFFIXES:
            return cls(path, 'onnx')
        from student_trt.engine_sidecar import read_sidecar
        try:
            return cls(path, 'engine', read_sidecar(path))
        except (OSError, ValueError) as exc:
            return cls(path, 'engine', None, str(exc))

    def onnx_hint(self) -> str:
        """Where the ONNX of this engine probably is: the one its sidecar names, else any beside it."""
        recorded = self.path.parent / self.sidecar.onnx_file if self.sidecar is not None else None
        candidates = [recorded] if recorded is not None and recorded.is_file() else \
            sorted(self.path.parent.glob('*.onnx'))
        return f'e.g. model_path:={candidates[0]}' if candidates else f'the .onnx that {EXPORT_HINT} writes'


# ---------------------------------------------------------------------------------------------- probes

class TensorRTProbe(NamedTuple):
    """Whether TensorRT can run here: ``ok``, ``why`` ('TensorRT 10.3.0 on Orin (sm 8.7)' or what is
    missing) and the GPU (``cuda_buffers.DeviceInfo``) it found."""

    ok: bool
    why: str
    device: Any = None


def probe_tensorrt() -> tuple[bool, str]:
    """(True, 'TensorRT <version>') when the tensorrt module imports, else (False, why)."""
    from student_trt.backends import tensorrt_backend
    return tensorrt_backend.tensorrt_status()


def probe_tensorrt_gpu() -> TensorRTProbe:
    """TensorRT and CUDA device 0, probed once (the GPU only when tensorrt imports)."""
    ok, why = probe_tensorrt()
    if not ok:
        return TensorRTProbe(False, why)
    from student_trt import cuda_buffers
    try:
        device = cuda_buffers.device_info(0)
    except (cuda_buffers.CudaUnavailable, cuda_buffers.CudaError) as exc:
        return TensorRTProbe(False, str(exc))
    return TensorRTProbe(True, f'{why} on {device.name} (sm {device.sm})', device)


# ------------------------------------------------------------------------------------------- selection

ANY = None
ERROR = ''


class Rule(NamedTuple):
    """One row of the selection table: a condition, then a backend (or ``ERROR``) and its text, with
    ``{path}``, ``{name}``, ``{why}`` (the TensorRT probe), ``{onnx}`` and ``{export}`` filled in."""

    requested: str
    kind: str | None        #: 'onnx', 'engine' or ANY
    tensorrt: bool | None   #: TensorRT and a GPU usable here, or ANY (not probed for onnxruntime)
    rebuild: bool | None    #: allow_engine_rebuild, or ANY
    backend: str            #: 'onnxruntime', 'tensorrt' or ERROR
    text: str               #: the reason logged, or the BackendError's message
    build_engine: bool = False


#: The first row matching (requested, model kind, TensorRT usable, allow_engine_rebuild) decides.
RULES = (
    Rule('onnxruntime', 'onnx', ANY, ANY, 'onnxruntime', 'backend onnxruntime requested'),
    Rule('onnxruntime', 'engine', ANY, ANY, ERROR,
         '{path} is a TensorRT engine, which ONNX Runtime cannot run: set model_path to the ONNX model '
         '({onnx}), or backend:=tensorrt on the device the engine was built for'),
    Rule('tensorrt', ANY, False, ANY, ERROR,
         'backend tensorrt requested for {path}, but TensorRT cannot run here: {why}. Install TensorRT and '
         'cuda-python (JetPack ships TensorRT), or set backend:=onnxruntime (or auto) with the .onnx model'),
    Rule('tensorrt', 'engine', True, ANY, 'tensorrt', 'backend tensorrt requested ({why})'),
    Rule('tensorrt', 'onnx', True, True, 'tensorrt',
         'backend tensorrt requested with an ONNX model: building an engine from it ({why})', True),
    Rule('tensorrt', 'onnx', True, False, ERROR,
         'backend tensorrt needs a TensorRT engine, got the ONNX model {path}: build one on this device with '
         '{export} and set model_path to it, or set allow_engine_rebuild:=true to build it at start-up'),
    Rule('auto', 'engine', False, ANY, ERROR,
         '{path} is a TensorRT engine but TensorRT cannot run here ({why}); ONNX Runtime cannot run engines: '
         'set model_path to the ONNX model ({onnx}) to use ONNX Runtime on the CPU'),
    Rule('auto', 'engine', True, ANY, 'tensorrt', 'auto: {name} is a TensorRT engine and {why} is available'),
    Rule('auto', 'onnx', False, ANY, 'onnxruntime',
         'auto: {name} is an ONNX model and TensorRT is not usable here ({why})'),
    Rule('auto', 'onnx', True, True, 'tensorrt',
         'auto: {why} is available and allow_engine_rebuild is set: building a TensorRT engine from {name}',
         True),
    Rule('auto', 'onnx', True, False, 'onnxruntime',
         'auto: {name} is an ONNX model: running it with ONNX Runtime on the CPU although {why} is '
         'available; a TensorRT engine would be much faster: build one with {export} on this device and set '
         'model_path to it (or set allow_engine_rebuild:=true)'),
)


class Selection(NamedTuple):
    """The backend that runs the model and why (one line for the log); ``build_engine``: the model is an
    ONNX that the TensorRT backend turns into an engine first; ``tensorrt``: the probe, when made."""

    backend: str
    reason: str
    build_engine: bool = False
    tensorrt: TensorRTProbe | None = None


def select_backend(model: ModelFile, requested: str = 'auto', *, allow_engine_rebuild: bool = False,
                   probe: Callable[[], TensorRTProbe] = probe_tensorrt_gpu) -> Selection:
    """Apply ``RULES``: ``probe`` is called once, and only when ``requested`` is not 'onnxruntime'.

    Raises:
        BackendError: the request cannot be met; the message names the file and the fix.
    """
    if requested not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    trt = None if requested == 'onnxruntime' else probe()
    facts = (requested, model.kind, trt.ok if trt else None, allow_engine_rebuild)
    rule = next(r for r in RULES
                if all(want is ANY or want == fact for want, fact in zip(r[:4], facts, strict=True)))
    text = rule.text.format(path=model.path, name=model.path.name, why=trt.why if trt else '',
                            export=EXPORT_HINT, onnx=model.onnx_hint() if '{onnx}' in rule.text else '')
    if rule.backend == ERROR:
        raise BackendError(text)
    return Selection(rule.backend, text, rule.build_engine, trt)


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
    model = ModelFile.classify(model_path)
    selection = select_backend(model, backend, allow_engine_rebuild=allow_engine_rebuild)
    log(f'backend {selection.backend}: {selection.reason}')
    if selection.backend == 'onnxruntime':
        from student_trt.backends.onnxruntime_backend import OnnxRuntimeBackend
        result: Backend = OnnxRuntimeBackend(model.path, num_threads=num_threads)
    else:
        from student_trt.backends.tensorrt_backend import open_tensorrt
        result = open_tensorrt(model, selection.tensorrt.device, build=selection.build_engine,
                               allow_rebuild=allow_engine_rebuild, use_cuda_graph=use_cuda_graph, log=log)
    result.selection_reason = selection.reason
    return result
