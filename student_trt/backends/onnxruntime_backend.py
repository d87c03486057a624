"""ONNX Runtime on the CPU: runs an exported student ``.onnx`` anywhere (laptop, CI, a Jetson without an
engine). The model's ``rc_perception.*`` metadata (written by export_trt) gives its ``ModelSpec``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from student_trt.backends import EXPORT_HINT, Backend, BackendError, ModelOutputs
from student_trt.metadata import ModelSpec

__all__ = ['OnnxRuntimeBackend']

PROVIDERS = ['CPUExecutionProvider']


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message (ONNX Runtime's carry multi-line C++ context)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _dims_match(declared, wanted: tuple[int, ...]) -> bool:
    """A declared ONNX shape (ints, or str/None for symbolic dims) fits the concrete ``wanted`` shape."""
    if declared is None:
        return True
    if len(declared) != len(wanted):
        return False
    return all(not isinstance(d, int) or d == w for d, w in zip(declared, wanted, strict=True))


class OnnxRuntimeBackend(Backend):
    """One ``onnxruntime.InferenceSession`` on the CPU execution provider.

    Args:
        model_path: an ``.onnx`` exported by export_trt (carries rc_perception metadata).
        num_threads: intra-op threads; 0 lets ONNX Runtime use one per physical core.

    Raises:
        BackendError: onnxruntime is missing; the file is missing, corrupt, has no rc_perception metadata,
            or its inputs/outputs do not match that metadata.
    """

    name = 'onnxruntime'

    def __init__(self, model_path: str | Path, num_threads: int = 0) -> None:
        path = Path(model_path)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(f'cannot run {path}: onnxruntime is not installed (pip install onnxruntime)'
                               ) from exc
        if not path.is_file():
            raise BackendError(f'model file not found: {path}; set model_path to an .onnx made with '
                               f'{EXPORT_HINT}')
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning between frames: at 15 Hz on 2 cores the demo
        # student costs 12 ms of CPU per frame instead of 51 ms, for 0.6 ms more latency (measured here);
        # on a robot the cores are shared with the drivers and Nav2.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if num_threads > 0:
            options.intra_op_num_threads = int(num_threads)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=PROVIDERS)
        except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception
            raise BackendError(f'cannot load {path} with ONNX Runtime ({_first_line(exc)}): the file is not '
                               f'a valid ONNX model; export it again with {EXPORT_HINT}') from exc
        try:
            spec = ModelSpec.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        super().__init__(path, spec)
        self._session = session
        self._check_io()
        self._input_name = spec.input_name
        self._output_names = [spec.depth_output, spec.seg_output]
        threads = num_threads if num_threads > 0 else 'default'
        self.description = (f'onnxruntime {ort.__version__} {PROVIDERS[0]}, intra-op threads {threads}, '
                            f'{spec.precision}')

    def _check_io(self) -> None:
        spec, session = self.spec, self._session
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        problems = []
        want_in = (1, 3, spec.height, spec.width)
        if spec.input_name not in inputs:
            problems.append(f"input {spec.input_name!r} is missing (inputs: {', '.join(inputs) or 'none'})")
        else:
            arg = inputs[spec.input_name]
            if arg.type != 'tensor(float)' or not _dims_match(arg.shape, want_in):
                problems.append(f'input {spec.input_name!r} is {arg.type} {arg.shape}, the metadata says '
                                f'float32 {want_in}')
        extra = sorted(set(inputs) - {spec.input_name})
        if extra:
            problems.append(f"unexpected extra input(s) {', '.join(extra)}")
        for name, channels in ((spec.depth_output, 1), (spec.seg_output, spec.num_classes)):
            want = (1, channels, spec.height, spec.width)
            if name not in outputs:
                problems.append(f"output {name!r} is missing (outputs: {', '.join(outputs) or 'none'})")
            elif not _dims_match(outputs[name].shape, want):
                problems.append(f'output {name!r} has shape {outputs[name].shape}, the metadata says {want}')
        if problems:
            raise BackendError(f'{self.model_path} does not match its own rc_perception metadata: '
                               + '; '.join(problems) + f'; export it again with {EXPORT_HINT}')

    def infer(self, x: np.ndarray) -> ModelOutputs:
        self.check_input(x)
        if self._session is None:
            raise BackendError(f'{self.model_path}: the ONNX Runtime session is closed')
        try:
            depth, seg = self._session.run(self._output_names, {self._input_name: x})
        except Exception as exc:  # onnxruntime raises its own types, all derived from Exception
            raise BackendError(f'ONNX Runtime failed on {self.model_path}: {_first_line(exc)}') from exc
        return ModelOutputs(depth, seg)

    def close(self) -> None:
        self._session = None
