"""Which engine file the TensorRT backend loads: the one given, checked before deserializing; a rebuild of it;
or one built from an ONNX model_path on first run. No tensorrt import (it gets the running version).

- ``check_engine``: the engine's sidecar against this TensorRT and GPU
  (``engine_sidecar.check_compatibility``): load it, rebuild it from the ONNX beside it (with
  ``allow_engine_rebuild``), or fail with what to run.
- ``engine_of_onnx``: ``<stem>_<precision>.engine`` beside an ONNX model_path, reused while its sidecar
  matches the ONNX, this TensorRT and this GPU, else built (``trt_build.build_engine``, logged).

Every refusal is a ``BackendError`` whose message names the file and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from student_trt.backends import EXPORT_HINT, BackendError
from student_trt.engine_sidecar import EngineSidecar, check_compatibility, read_sidecar, sidecar_path
from student_trt.metadata import ModelSpec
from student_trt.trt_build import (
    BuildPlan,
    TrtBuildError,
    build_engine,
    engine_name,
    onnx_name,
    plan_build,
    split_onnx_name,
)

__all__ = ['EngineCheck', 'build', 'check_engine', 'engine_of_onnx', 'export_stem', 'rebuild_source',
           'sidecar_spec', 'spec_of_onnx']

Log = Callable[[str], None]


def export_stem(onnx_path: str | Path) -> str:
    """``student_int8_qdq.onnx`` -> ``student``: the name export_trt gave the export (the file's stem
    without its ``_<variant>`` suffix; the whole stem for other names)."""
    parts = split_onnx_name(onnx_path)
    return parts[0] if parts else Path(onnx_path).stem


def rebuild_source(engine_path: Path, sidecar: EngineSidecar, onnx_variant: str) -> Path:
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

    sidecar: EngineSidecar
    problems: tuple[str, ...] = ()
    source: Path | None = None
    plan: BuildPlan | None = None


def check_engine(engine_path: Path, sidecar: EngineSidecar, trt_version: str, gpu_name: str,
                 compute_capability: str, allow_rebuild: bool) -> EngineCheck:
    """Decide, before deserializing, whether ``engine_path`` (described by ``sidecar``) can run on this
    TensorRT and GPU, or is to be rebuilt (hashes the ONNX beside it).

    Raises:
        BackendError: a mismatch that is not to be (or cannot be) rebuilt; the message says what to run.
    """
    onnx_path = engine_path.parent / sidecar.onnx_file
    present = onnx_path if onnx_path.is_file() else None  # without it the engine may still be fine
    problems = tuple(check_compatibility(sidecar, trt_version, gpu_name, compute_capability,
                                         onnx_path=present))
    if not problems:
        return EngineCheck(sidecar)
    reasons = '; '.join(problems)
    if not allow_rebuild:
        command = f'export_trt --from-onnx {onnx_path} --precision {sidecar.precision}' if present \
            else EXPORT_HINT
        raise BackendError(
            f'{engine_path} cannot be used here: {reasons}. Fix: rebuild it on this device with {command}, '
            f'or set allow_engine_rebuild:=true to rebuild it from {onnx_path.name} at start-up')
    try:
        plan = plan_build(trt_version, sidecar.precision)
    except ValueError as exc:
        raise BackendError(f'{engine_path}: cannot rebuild ({exc})') from exc
    source = rebuild_source(engine_path, sidecar, plan.onnx_variant)
    if not source.is_file():
        raise BackendError(f'{engine_path} cannot be used here ({reasons}) and cannot be rebuilt: {source} '
                           f'is missing. Fix: copy the exported ONNX beside the engine, or run {EXPORT_HINT} '
                           'on this device')
    return EngineCheck(sidecar, problems, source, plan)


def engine_of_onnx(onnx_path: Path, trt_version: str, gpu_name: str, compute_capability: str,
                   log: Log) -> tuple[Path, EngineSidecar]:
    """``<stem>_<precision>.engine`` beside ``onnx_path`` and its sidecar: the one built earlier when it still
    matches the ONNX, this TensorRT and this GPU, else built now (minutes on a Jetson).

    Raises:
        BackendError: unreadable ONNX metadata, a TensorRT too old, or a failed build.
    """
    spec = spec_of_onnx(onnx_path)
    engine = onnx_path.with_name(engine_name(export_stem(onnx_path), spec.precision))
    try:
        earlier = read_sidecar(engine) if engine.is_file() else None
    except (OSError, ValueError):
        earlier = None
    if earlier is not None and earlier.onnx_file == onnx_path.name and not check_compatibility(
            earlier, trt_version, gpu_name, compute_capability, onnx_path=onnx_path):
        log(f'using {engine.name}, built earlier from {onnx_path.name}')
        return engine, earlier
    try:
        plan = plan_build(trt_version, spec.precision)
    except ValueError as exc:
        raise BackendError(f'{onnx_path}: cannot build an engine ({exc})') from exc
    log(f'building {engine.name} from {onnx_path.name} with TensorRT {trt_version} (takes minutes on a '
        'Jetson; the engine is kept for the next start)')
    return engine, build(onnx_path, engine, plan, spec, log)


def spec_of_onnx(onnx_path: Path, fallback: ModelSpec | None = None) -> ModelSpec:
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


def sidecar_spec(engine_path: Path, sidecar: EngineSidecar) -> ModelSpec:
    """The spec of the engine ``sidecar`` describes, at the sidecar's precision.

    Raises:
        BackendError: an invalid spec in the sidecar.
    """
    try:
        return sidecar.model_spec.with_(precision=sidecar.precision)
    except (TypeError, ValueError) as exc:
        raise BackendError(f'{sidecar_path(engine_path)}: invalid model spec ({exc}); rebuild the engine '
                           f'with {EXPORT_HINT}') from exc


def build(onnx_path: Path, engine_path: Path, plan: BuildPlan, spec: ModelSpec, log: Log) -> EngineSidecar:
    """``trt_build.build_engine`` with the export's timing cache, failures as BackendError, logged."""
    cache = onnx_path.with_name(f'{export_stem(onnx_path)}_timing.cache')
    try:
        sidecar = build_engine(onnx_path, engine_path, plan, spec, timing_cache=cache, log=log)
    except TrtBuildError as exc:
        raise BackendError(f'building {engine_path} from {onnx_path} failed: {exc}') from exc
    except OSError as exc:
        raise BackendError(f'cannot write the engine built from {onnx_path} ({exc}): make '
                           f'{engine_path.parent} writable, or build it elsewhere with export_trt '
                           f'--from-onnx {onnx_path} --output-dir <writable dir> and set model_path to it'
                           ) from exc
    log(f'built {engine_path} with TensorRT {sidecar.tensorrt_version} ({plan.precision})')
    return sidecar
