"""Real exported student models for the backend and node tests, made once per test session.

A randomly initialised ``StudentNet`` (the real architecture, 240x320) is saved with ``save_checkpoint`` and
exported by export_trt's own entry point (``--skip-trt --precision fp32``), exactly as a user would; the
variants the start-up tests need (no metadata, corrupt bytes, an engine-named file) are derived from it.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


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


def onnx_without_metadata(folder: Path) -> Path:
    """A copy of the exported ONNX with every rc_perception.* metadata entry removed."""
    import onnx
    model = onnx.load(str(student_files().onnx))
    del model.metadata_props[:]
    path = folder / 'no_metadata.onnx'
    onnx.save(model, str(path))
    return path
