"""The JSON sidecar written next to every TensorRT engine, and the check made before deserializing one.

A serialized TensorRT engine only runs on the TensorRT version and the GPU it was built with, and it says
nothing about the model it holds. ``export_trt`` therefore writes ``<name>.engine.json`` beside each
``<name>.engine``::

    {
      "format": "rc_perception.engine/1",
      "tensorrt_version": "10.3.0",             # trt.__version__ at build time
      "gpu_name": "Orin",                       # cudaDeviceProp.name ("unknown" if it could not be read)
      "compute_capability": "8.7",
      "precision": "fp16",                      # fp32 | fp16 | int8
      "input_shape": [1, 3, 240, 320],
      "onnx_file": "student_demo_fp32.onnx",    # the ONNX the engine was built from (same folder)
      "onnx_sha256": "...",
      "build_date": "2026-11-22T04:20:00+00:00",
      "build": {"strongly_typed": false, "flags": ["FP16"], "workspace_mib": 1024},
      "spec": {...}                             # ModelSpec.to_dict() of the engine
    }

``check_compatibility`` compares a sidecar with the running system and returns the problems (empty = fine);
the TensorRT backend calls it before deserializing and rebuilds from the ONNX or fails with the problems.
Pure: no tensorrt import (``detect_gpu`` imports cuda-python lazily, only when called).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from student_trt.metadata import PRECISIONS, ModelSpec

__all__ = [
    'SIDECAR_FORMAT', 'EngineSidecar', 'check_compatibility', 'detect_gpu', 'read_sidecar', 'sha256_file',
    'sidecar_path', 'write_atomically', 'write_sidecar',
]

SIDECAR_FORMAT = 'rc_perception.engine/1'
UNKNOWN_GPU = 'unknown'


def sidecar_path(engine_path: str | Path) -> Path:
    """``foo.engine`` -> ``foo.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + '.json')


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def version_tuple(version: str) -> tuple[int, ...]:
    """``'8.5.2.2'`` -> ``(8, 5, 2, 2)``; non-numeric suffixes ("10.0.0b6") end a component.

    Raises:
        ValueError: no leading number.
    """
    parts = []
    for piece in str(version).strip().split('.'):
        digits = ''
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    if not parts:
        raise ValueError(f'cannot read a version number from {version!r}')
    return tuple(parts)


@dataclass(frozen=True)
class EngineSidecar:
    """What a TensorRT engine was built from, with what, and for which model (see module doc)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shape: tuple[int, ...]
    onnx_file: str
    onnx_sha256: str
    build_date: str
    spec: dict
    build: dict = field(default_factory=dict)
    format: str = SIDECAR_FORMAT

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, 'input_shape', tuple(int(d) for d in self.input_shape))

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.spec)

    def to_dict(self) -> dict:
        data = asdict(self)
        data['input_shape'] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = 'sidecar') -> EngineSidecar:
        """Raises ValueError naming ``source`` for missing or unknown keys and invalid values."""
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a JSON object, got {type(data).__name__}')
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name not in ('build', 'format')}
        missing = sorted(required - set(data))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                    ([f"unknown {', '.join(unknown)}"] if unknown else [])
            raise ValueError(f"{source}: not an engine sidecar ({'; '.join(parts)})")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f'{source}: {exc}') from exc

    @classmethod
    def create(cls, *, tensorrt_version: str, gpu_name: str, compute_capability: str, spec: ModelSpec,
               onnx_path: str | Path, build: dict | None = None) -> EngineSidecar:
        """A sidecar for an engine built now from ``onnx_path`` (hashed here) for ``spec``."""
        onnx_path = Path(onnx_path)
        return cls(tensorrt_version=str(tensorrt_version), gpu_name=gpu_name or UNKNOWN_GPU,
                   compute_capability=str(compute_capability), precision=spec.precision,
                   input_shape=(1, 3, spec.height, spec.width), onnx_file=onnx_path.name,
                   onnx_sha256=sha256_file(onnx_path),
                   build_date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
                   spec=json.loads(json.dumps(spec.to_dict())), build=dict(build or {}))


def write_atomically(path: str | Path, data) -> None:
    """Write ``data`` (bytes or any buffer, e.g. TensorRT's ``IHostMemory``) to ``path`` through a
    temporary file beside it and a rename: readers see the old file or the new one, never half of one.
    Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """Write ``<engine>.json`` (atomically); returns its path."""
    path = sidecar_path(engine_path)
    write_atomically(path, (json.dumps(sidecar.to_dict(), indent=2) + '\n').encode())
    return path


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The sidecar of ``engine_path`` (the ``.engine`` file, or the ``.engine.json`` itself).

    Raises:
        FileNotFoundError: no sidecar beside the engine (re-export it with export_trt).
        ValueError: unreadable JSON or not a sidecar; the message names the file.
    """
    path = Path(engine_path)
    if path.suffix != '.json':
        path = sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing: an engine without its sidecar cannot be checked; '
                                'rebuild it with export_trt on this device')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f'{path}: unreadable sidecar ({exc})') from exc
    return EngineSidecar.from_dict(data, source=str(path))


def _same_release(built: str, running: str) -> bool:
    """Engines need the same TensorRT major.minor.patch (the 4th, build, component may differ)."""
    return version_tuple(built)[:3] == version_tuple(running)[:3]


def check_compatibility(sidecar: EngineSidecar, trt_version: str, gpu_name: str,
                        compute_capability: str, onnx_path: str | Path | None = None) -> list[str]:
    """Why the engine described by ``sidecar`` must not be deserialized here (empty list: it may).

    Args:
        sidecar: the engine's sidecar (``read_sidecar``).
        trt_version: ``tensorrt.__version__`` of the running process.
        gpu_name, compute_capability: of the GPU that will run it (e.g. ``'Orin'``, ``'8.7'``).
        onnx_path: the ONNX the engine is supposed to come from; when given, its SHA-256 must match (a
            re-exported model makes the engine stale). It must exist.

    Returns:
        One sentence per problem, each saying what was built against what is here.
    """
    problems = []
    if sidecar.format != SIDECAR_FORMAT:
        problems.append(f"sidecar format {sidecar.format!r} is not {SIDECAR_FORMAT!r}")
    try:
        same = _same_release(sidecar.tensorrt_version, trt_version)
    except ValueError as exc:
        problems.append(f'cannot compare TensorRT versions ({exc})')
    else:
        if not same:
            problems.append(f'engine was built with TensorRT {sidecar.tensorrt_version}, this system has '
                            f'TensorRT {trt_version} (engines only load in the TensorRT release that built '
                            'them)')
    if str(sidecar.compute_capability) != str(compute_capability):
        problems.append(f'engine was built for compute capability {sidecar.compute_capability} '
                        f'({sidecar.gpu_name}), this GPU is {compute_capability} ({gpu_name})')
    elif sidecar.gpu_name not in (UNKNOWN_GPU, gpu_name) and gpu_name != UNKNOWN_GPU:
        problems.append(f"engine was built on GPU '{sidecar.gpu_name}', this GPU is '{gpu_name}' (engines "
                        'are tuned per GPU model)')
    if onnx_path is not None:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            problems.append(f'{onnx_path} does not exist, so the engine cannot be checked against it')
        else:
            digest = sha256_file(onnx_path)
            if digest != sidecar.onnx_sha256:
                problems.append(f'{onnx_path.name} (sha256 {digest[:12]}...) is not the ONNX the engine was '
                                f'built from ({sidecar.onnx_file}, sha256 {sidecar.onnx_sha256[:12]}...)')
    return problems


def detect_gpu(device: int = 0) -> tuple[str, str] | None:
    """``(name, 'major.minor')`` of CUDA device ``device``, None if it cannot be told (no cuda-python or no
    GPU).

    Uses ``student_trt.cuda_buffers.device_info`` (cuda-python), the same call the TensorRT backend makes,
    so that a sidecar written at build time compares equal at run time.
    """
    from student_trt import cuda_buffers
    try:
        info = cuda_buffers.device_info(device)
    except (cuda_buffers.CudaUnavailable, cuda_buffers.CudaError):
        return None
    return info.name, info.sm
