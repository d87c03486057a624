"""Student models for the backend and node tests.

``linear_model``: a hand-made ONNX whose outputs are closed forms of its input pixels (a 1x1 convolution:
per pixel, ``depth = 1 + 2 * c0`` and ``logits = (c0, c1, c2, 0.25, -1)``, with ``c0, c1, c2`` the input
channels in the model's colour order scaled to [0, 1] (mean 0, std 1)). A test predicts its output image by
hand: depth in metres from the first channel; the class is the channel holding the largest value when that
value is above 0.25 x 255, else 3 (so a padded, all-zero input pixel reads class 3 at depth 1.0 m).

``student_files``: a randomly initialised ``StudentNet`` (the real architecture, 240x320) saved with
``save_checkpoint`` and exported by export_trt's own entry point (``--skip-trt --precision fp32``), exactly as
a user would: for the comparison with PyTorch and for loads heavy enough to drop frames.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

#: ``linear_model``'s per-pixel weights: depth = DEPTH_W . c + DEPTH_B, logits = LOGIT_W c + LOGIT_B.
DEPTH_W, DEPTH_B = (2.0, 0.0, 0.0), 1.0
LOGIT_W = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0), (0, 0, 0))
LOGIT_B = (0.0, 0.0, 0.0, 0.25, -1.0)


def expected_depth(first_channel: np.ndarray) -> np.ndarray:
    """``linear_model``'s depth (float64 metres) for pixels whose first model channel is ``first_channel``
    (0-255)."""
    return 1.0 + 2.0 * np.asarray(first_channel, np.float64) / 255.0


def expected_class(channels: np.ndarray) -> np.ndarray:
    """``linear_model``'s class id for (..., 3) pixels in the model's colour order: the first channel holding
    the largest value if that value exceeds 63.75 (0.25 x 255), else 3."""
    channels = np.asarray(channels, np.float64)
    top = channels.max(axis=-1)
    return np.where(top > 63.75, channels.argmax(axis=-1), 3).astype(np.uint8)


def linear_model(folder: Path, height: int = 240, width: int = 320, name: str = 'linear_fp32.onnx',
                 **spec_changes) -> Path:
    """Write ``linear_model`` (see module doc) for a ``height`` x ``width`` input; ``spec_changes`` go into
    its ModelSpec metadata (e.g. ``color_order='bgr'``)."""
    onnx = pytest.importorskip('onnx', reason='onnx builds the hand-made model')
    from onnx import TensorProto, helper, numpy_helper

    from student_trt.metadata import ModelSpec
    spec = ModelSpec(height=height, width=width, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **spec_changes)
    weights = {'wd': np.array(DEPTH_W, np.float32).reshape(1, 3, 1, 1), 'bd': np.array([DEPTH_B], np.float32),
               'ws': np.array(LOGIT_W, np.float32).reshape(5, 3, 1, 1), 'bs': np.array(LOGIT_B, np.float32)}
    graph = helper.make_graph(
        [helper.make_node('Conv', ['rgb', 'wd', 'bd'], ['depth']),
         helper.make_node('Conv', ['rgb', 'ws', 'bs'], ['seg_logits'])],
        'linear_student',
        [helper.make_tensor_value_info('rgb', TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info('depth', TensorProto.FLOAT, [1, 1, height, width]),
         helper.make_tensor_value_info('seg_logits', TensorProto.FLOAT, [1, 5, height, width])],
        [numpy_helper.from_array(array, key) for key, array in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    helper.set_model_props(model, spec.to_metadata())
    onnx.checker.check_model(model)
    path = Path(folder) / name
    onnx.save(model, str(path))
    return path


@functools.cache
def shared_linear_model() -> Path:
    """One 240x320 ``linear_model`` per test session."""
    folder = Path(tempfile.mkdtemp(prefix='rc_perception_linear_'))
    atexit.register(shutil.rmtree, folder, True)
    return linear_model(folder)


def onnx_without_metadata(folder: Path) -> Path:
    """A copy of the linear model with every rc_perception.* metadata entry removed."""
    import onnx
    model = onnx.load(str(shared_linear_model()))
    del model.metadata_props[:]
    path = folder / 'no_metadata.onnx'
    onnx.save(model, str(path))
    return path


@dataclass(frozen=True)
class StudentFiles:
    checkpoint: Path
    onnx: Path
    folder: Path


@functools.cache
def _export() -> StudentFiles:
    torch = pytest.importorskip('torch', reason='torch is needed to make the test model (export_trt)')
    from rc_offline.checkpoint import save_checkpoint
    from rc_offline.export import main as export_main
    from rc_offline.model import StudentConfig, StudentNet
    from student_trt.metadata import ModelSpec

    folder = Path(tempfile.mkdtemp(prefix='rc_perception_student_'))
    atexit.register(shutil.rmtree, folder, True)
    torch.manual_seed(0)
    model = StudentNet(StudentConfig())
    # Non-trivial BatchNorm statistics, so outputs vary across the image like a trained net's.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    checkpoint = folder / 'student.pt'
    save_checkpoint(checkpoint, model, ModelSpec())
    code = export_main(['--checkpoint', str(checkpoint), '--output-dir', str(folder), '--skip-trt',
                        '--precision', 'fp32'])
    assert code == 0, f'export_trt exited with {code}'
    onnx_path = folder / 'student_fp32.onnx'
    assert onnx_path.is_file(), f'export_trt wrote no {onnx_path}'
    return StudentFiles(checkpoint, onnx_path, folder)


def student_files() -> StudentFiles:
    """The checkpoint and its FP32 ONNX (240x320, 5 classes), exported once per session."""
    return _export()
