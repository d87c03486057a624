"""Reduced-precision ONNX variants of the exported FP32 model, made on the CPU with NVIDIA ModelOpt.

- ``convert_fp16``: an FP16-typed graph (weights and activations float16, model inputs and outputs kept
  float32 by Cast nodes at the edges, so host buffers are the same for every precision). This is what a
  TensorRT >= 11 strongly typed network needs for FP16. ModelOpt's autocast writes opset >= 19 (the first
  opset whose Q/DQ accept float16), which only TensorRT >= 10 parses; TensorRT <= 10 gets FP16 from the FP32
  ONNX and a builder flag instead.
- ``quantize_int8``: explicit quantization. ModelOpt's ONNX PTQ (``modelopt.onnx.quantization.quantize``,
  ``quantize_mode='int8'``, max or entropy calibration by ONNX Runtime on the CPU) inserts QuantizeLinear /
  DequantizeLinear pairs with symmetric scales (zero point 0, what TensorRT requires): per output channel
  for Conv weights, per tensor for activations. The layers between the last convolution and each model
  output (head upsampling, sigmoid, depth range) stay unquantized: an 8-bit depth logit would cost
  ~0.1 m of depth resolution. ModelOpt writes opset 19; the result is converted back to the requested
  opset (17 by default, what TensorRT 8.5 parses) and checked with ``onnx.checker``. Layers outside Q/DQ
  pairs stay FP32 in the file: TensorRT <= 10 runs them in FP16 (FP16 flag), TensorRT >= 11 as typed.
  (ModelOpt can also type them FP16, ``high_precision_dtype='fp16'``, opset 19; in ONNX Runtime that model
  was 8x further from FP32 in depth than this one, 0.14 m vs 0.018 m RMSE, so it is not used.)

ModelOpt and ONNX Runtime's calibrator print a great deal; ``captured_output`` sends it to a log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

__all__ = ['Int8Result', 'QuantizeError', 'captured_output', 'convert_fp16', 'output_tail_nodes',
           'quantize_int8', 'set_opset']

INSTALL_HINT = ('pip install nvidia-modelopt onnx_graphsurgeon onnxconverter-common onnxslim polygraphy lief '
                '(requirements/modelopt.txt; without the [onnx] extra, which would replace onnxruntime by '
                'onnxruntime-gpu)')


class QuantizeError(RuntimeError):
    """ModelOpt is missing or its conversion failed; the message says which and where the log is."""


@dataclass(frozen=True)
class Int8Result:
    """What ``quantize_int8`` produced."""

    model: onnx.ModelProto
    weight_tensors: int
    activation_tensors: int
    excluded_nodes: tuple[str, ...]
    calibration_images: int


@contextlib.contextmanager
def captured_output(log_path: str | Path | None) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 (print, logging, tqdm, C++ code) to ``log_path``
    while inside. Works at the descriptor level so that loggers configured inside keep valid streams.

    Does nothing when ``log_path`` is None.
    """
    if log_path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    with open(log_path, 'ab') as log:
        try:
            for fd in (1, 2):
                copy = os.dup(fd)
                saved.append((fd, copy))
                os.dup2(log.fileno(), fd)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _modelopt():
    try:
        from modelopt.onnx.autocast import convert_to_f16
        from modelopt.onnx.quantization import quantize
    except ImportError as exc:
        raise QuantizeError(f'NVIDIA ModelOpt is not importable ({exc}); {INSTALL_HINT}') from exc
    for name in ('modelopt', 'modelopt.onnx'):
        logging.getLogger(name).setLevel(logging.WARNING)
    return convert_to_f16, quantize


def _set_ir_version(model: onnx.ModelProto) -> None:
    """The lowest IR version of the model's opsets (8 for opset 17): ModelOpt writes IR 10, newer than the
    ONNX parsers of older TensorRT releases were built with."""
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)


def set_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` converted to default-domain ``opset`` (up or down) with ``onnx.version_converter``; unused
    extra domains dropped, IR version set to the opset's; ``onnx.checker`` run against the target opset.

    Raises:
        QuantizeError: the graph uses something the target opset does not have.
    """
    current = max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
    if current != opset:
        try:
            model = onnx.version_converter.convert_version(model, opset)
        except Exception as exc:  # the converter raises bare RuntimeErrors / ValueErrors from C++
            raise QuantizeError(f'cannot convert the graph from opset {current} to {opset}: {exc}') from exc
    used = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain in ('', 'ai.onnx') or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    _set_ir_version(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise QuantizeError(f'graph is not valid at opset {opset}: {str(exc).splitlines()[0]}') from exc
    return model


def output_tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes between the last Conv on each path and the graph outputs (Resize, Sigmoid, ...)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    tail, stack, seen = [], [o.name for o in model.graph.output], set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen or node.op_type == 'Conv':
            continue
        seen.add(node.name)
        if node.op_type != 'Constant':
            tail.append(node.name)
        stack.extend(i for i in node.input if i)
    return tail


def _qdq_stats(model: onnx.ModelProto) -> tuple[int, int]:
    """(weight tensors, activation tensors) quantized; raises QuantizeError for non-symmetric int8 Q/DQ."""
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == 'Constant'}
    weights = activations = 0
    for node in model.graph.node:
        if node.op_type != 'QuantizeLinear':
            continue
        if len(node.input) < 3 or not node.input[2]:
            raise QuantizeError(f'{node.name}: Q/DQ without a zero point (expected int8 zero points of 0)')
        zp_name = node.input[2]
        if zp_name in inits:
            zp = onnx.numpy_helper.to_array(inits[zp_name])
        elif zp_name in consts:
            zp = onnx.numpy_helper.to_array(consts[zp_name].attribute[0].t)
        else:
            raise QuantizeError(f'{node.name}: zero point {zp_name} is not a constant')
        if zp.dtype != np.int8 or np.any(zp != 0):
            raise QuantizeError(f'{node.name}: quantization is not symmetric int8 (zero point dtype '
                                f'{zp.dtype}, values {np.unique(zp)[:4]}); TensorRT needs zero points of 0')
        if node.input[0] in inits:
            weights += 1
        else:
            activations += 1
    return weights, activations


def convert_fp16(model: onnx.ModelProto, log_path: str | Path | None = None) -> onnx.ModelProto:
    """FP16-typed copy of the FP32 ``model`` with float32 inputs/outputs (opset >= 19).

    Raises:
        QuantizeError: ModelOpt missing or the conversion failed.
    """
    with captured_output(log_path):
        convert_to_f16, _ = _modelopt()
    try:
        with captured_output(log_path):
            converted = convert_to_f16(model, low_precision_type='fp16', keep_io_types=True)
    except Exception as exc:  # ModelOpt raises whatever its graph passes raise
        where = f' (log: {log_path})' if log_path else ''
        raise QuantizeError(f'ModelOpt FP16 conversion failed: {type(exc).__name__}: {exc}{where}') from exc
    _set_ir_version(converted)
    try:
        onnx.checker.check_model(converted, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise QuantizeError(f'FP16 graph is not valid: {str(exc).splitlines()[0]}') from exc
    counts = Counter(vi.type.tensor_type.elem_type for vi in list(converted.graph.input) +
                     list(converted.graph.output))
    if set(counts) != {onnx.TensorProto.FLOAT}:
        raise QuantizeError('FP16 conversion changed the model inputs/outputs away from float32')
    return converted


def quantize_int8(model: onnx.ModelProto, calibration: np.ndarray, *, opset: int, method: str = 'max',
                  log_path: str | Path | None = None) -> Int8Result:
    """INT8 Q/DQ copy of the FP32 ``model``, calibrated with ``calibration`` on the CPU.

    Args:
        model: the FP32 ONNX (one input).
        calibration: (N, 3, H, W) float32 preprocessed images (``Preprocessor.batch``), N >= 1.
        opset: opset of the result (ModelOpt works at 19; converted afterwards).
        method: 'max' (ranges = observed extremes) or 'entropy' (clips outliers; TensorRT's calibrator
            default for CNNs).
        log_path: file that receives ModelOpt's and ONNX Runtime's output.

    Raises:
        QuantizeError: ModelOpt missing, calibration or conversion failed, or the result is not symmetric.
    """
    with captured_output(log_path):
        _, quantize = _modelopt()
    if calibration.ndim != 4 or calibration.shape[0] < 1 or calibration.dtype != np.float32:
        raise QuantizeError(f'calibration data must be float32 (N, 3, H, W) with N >= 1, got '
                            f'{calibration.dtype} {calibration.shape}')
    excluded = tuple(output_tail_nodes(model))
    where = f' (log: {log_path})' if log_path else ''
    with tempfile.TemporaryDirectory(prefix='rc_perception_quant_') as tmp:
        src, dst = Path(tmp) / 'model.onnx', Path(tmp) / 'model_int8.onnx'
        onnx.save(model, src)
        try:
            with captured_output(log_path):
                quantize(str(src), quantize_mode='int8', calibration_data=calibration,
                         calibration_method=method, calibration_eps=['cpu'], output_path=str(dst),
                         high_precision_dtype='fp32', log_level='WARNING',
                         nodes_to_exclude=[f'^{re.escape(n)}$' for n in excluded])
        except Exception as exc:  # ModelOpt/ORT raise many types; report them as one failure
            raise QuantizeError(f'ModelOpt INT8 quantization failed: {type(exc).__name__}: {exc}{where}') \
                from exc
        if not dst.is_file():
            raise QuantizeError(f'ModelOpt INT8 quantization wrote no model{where}')
        quantized = onnx.load(str(dst))
    quantized = set_opset(quantized, opset)
    weights, activations = _qdq_stats(quantized)
    if weights == 0:
        raise QuantizeError(f'ModelOpt inserted no Q/DQ nodes{where}')
    return Int8Result(quantized, weights, activations, excluded, int(calibration.shape[0]))
