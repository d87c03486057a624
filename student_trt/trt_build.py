"""Build TensorRT engines from the exported ONNX files, the right way for each TensorRT generation.

The version logic is one pure function, ``plan_build(trt_version, precision)``:

=============  ===========================  ====================================  =========================
TensorRT       fp32                         fp16                                  int8
=============  ===========================  ====================================  =========================
8.5 - 9.x      FP32 ONNX, no flag           FP32 ONNX + BuilderFlag.FP16          Q/DQ ONNX + INT8 + FP16
               (EXPLICIT_BATCH network)     (EXPLICIT_BATCH network)              (EXPLICIT_BATCH network)
10.x           same, no EXPLICIT_BATCH      same, no EXPLICIT_BATCH (always       same, no EXPLICIT_BATCH
               (always explicit)            explicit; the flag is deprecated)
>= 11          strongly typed network from  strongly typed from the FP16-typed    strongly typed from the
               the FP32 ONNX                ONNX (no precision flags exist)       Q/DQ ONNX (layers outside
                                                                                  Q/DQ pairs run in FP32)
=============  ===========================  ====================================  =========================

TensorRT 11 networks are always strongly typed (its ``STRONGLY_TYPED`` creation flag is deprecated and
ignored, ``EXPLICIT_BATCH`` and the precision flags are gone), so its networks are created with no flags.
INT8 never uses a calibrator: the scales are in the Q/DQ ONNX (explicit quantization, calibrated on real
images on the CPU by ``rc_offline.quantize``). ``build_engine`` uses only the name-based API that TensorRT
8.5 through 11 share: ``create_network(flags)``, ``OnnxParser.parse_from_file``,
``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, ``build_serialized_network`` and the timing cache
(``create_timing_cache`` / ``set_timing_cache`` / ``serialize``). ``tensorrt`` is imported only inside
``build_engine`` and ``tensorrt_version`` (and by the TensorRT runtime backend), and one ``trt.Logger`` serves
the whole process (``trt_logger``): TensorRT keeps a single logger, and warns when builders and runtimes
are given different ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from student_trt.engine_sidecar import (
    UNKNOWN_GPU,
    EngineSidecar,
    detect_gpu,
    sidecar_path,
    version_tuple,
    write_atomically,
    write_sidecar,
)
from student_trt.metadata import PRECISIONS, ModelSpec

__all__ = ['ONNX_VARIANTS', 'BuildPlan', 'TrtBuildError', 'build_engine', 'engine_name', 'max_onnx_opset',
           'onnx_name', 'plan_build', 'split_onnx_name', 'tensorrt_version', 'trt_logger']

#: ONNX files export_trt writes, by variant; ``<stem>_<variant>.onnx``.
ONNX_VARIANTS = ('fp32', 'fp16', 'int8_qdq')

#: Highest ONNX opset each TensorRT release's parser documents, newest first (release -> opset).
_MAX_OPSET = (((10, 13), 24), ((10, 9), 22), ((10, 0), 20), ((8, 5), 17))
MIN_TRT = (8, 5)


class TrtBuildError(RuntimeError):
    """A TensorRT build that failed; the message names the step and carries TensorRT's own errors."""


@dataclass(frozen=True)
class BuildPlan:
    """How to build one engine with one TensorRT version (see module doc)."""

    precision: str
    #: Which exported ONNX to parse (one of ONNX_VARIANTS).
    onnx_variant: str
    #: ``trt.BuilderFlag`` member names to set.
    flags: tuple[str, ...]
    #: The network is strongly typed: TensorRT >= 11, where every network is (no creation flag needed).
    strongly_typed: bool
    #: Create the network with ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` (TensorRT < 10 needs it).
    explicit_batch_flag: bool
    #: Highest ONNX opset this TensorRT's parser documents.
    max_opset: int


def onnx_name(stem: str, variant: str) -> str:
    """File name export_trt gives an ONNX variant: ``student_demo_int8_qdq.onnx``."""
    if variant not in ONNX_VARIANTS:
        raise ValueError(f"ONNX variant must be one of {', '.join(ONNX_VARIANTS)}, got {variant!r}")
    return f'{stem}_{variant}.onnx'


def split_onnx_name(onnx_path: str | Path) -> tuple[str, str] | None:
    """``student_demo_int8_qdq.onnx`` -> ``('student_demo', 'int8_qdq')``; None for a name that is not
    ``<stem>_<variant>.onnx`` (the inverse of ``onnx_name``)."""
    name = Path(onnx_path).name
    for variant in sorted(ONNX_VARIANTS, key=len, reverse=True):  # 'int8_qdq' before a shorter match
        suffix = f'_{variant}.onnx'
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], variant
    return None


def engine_name(stem: str, precision: str) -> str:
    """File name of the engine of one precision: ``student_demo_fp16.engine`` (sidecar: ``.engine.json``).

    The ONNX it is built from depends on the TensorRT version:
    ``onnx_name(stem, plan_build(version, precision).onnx_variant)``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return f'{stem}_{precision}.engine'


def max_onnx_opset(version: tuple[int, ...]) -> int:
    """Highest ONNX opset the parser of TensorRT ``version`` documents (later releases assumed >= 24)."""
    if version[:1] >= (11,):
        return 24
    for release, opset in _MAX_OPSET:
        if tuple(version[:2]) >= release:
            return opset
    return 17


def plan_build(trt_version: str, precision: str) -> BuildPlan:
    """The build recipe for ``precision`` under TensorRT ``trt_version`` (e.g. ``'8.5.2.2'``, ``'10.3.0'``).

    Raises:
        ValueError: unknown precision, unreadable version, or TensorRT older than 8.5 (JetPack 5.1).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    version = version_tuple(trt_version)
    if version[:2] < MIN_TRT:
        raise ValueError(f'TensorRT {trt_version} is too old: need 8.5 or newer (JetPack 5.1+) for the '
                         'name-based I/O API and memory pool limits')
    max_opset = max_onnx_opset(version)
    if version[0] >= 11:
        variant = {'fp32': 'fp32', 'fp16': 'fp16', 'int8': 'int8_qdq'}[precision]
        return BuildPlan(precision, variant, (), strongly_typed=True, explicit_batch_flag=False,
                         max_opset=max_opset)
    variant, flags = {'fp32': ('fp32', ()), 'fp16': ('fp32', ('FP16',)),
                      'int8': ('int8_qdq', ('INT8', 'FP16'))}[precision]
    return BuildPlan(precision, variant, flags, strongly_typed=False, explicit_batch_flag=version[0] < 10,
                     max_opset=max_opset)


_logger = None


def trt_logger(trt):
    """The process's one ``trt.Logger`` (warnings and errors), shared by every builder and runtime."""
    global _logger
    if _logger is None:
        _logger = trt.Logger(trt.Logger.WARNING)
    return _logger


def tensorrt_version() -> str | None:
    """``tensorrt.__version__``, or None where the module does not import."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


def _onnx_opset(onnx_path: Path) -> int | None:
    """The default-domain opset of the ONNX file; None without onnx or for an unreadable file (the parser
    then says what is wrong with it)."""
    try:
        import onnx
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # ImportError, missing file, protobuf DecodeError: not this function's to report
        return None
    return max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=None)


def _parse(trt, builder, onnx_path: Path, plan: BuildPlan, log: Callable[[str], None]):
    """The network of ``onnx_path``, created with the flags ``plan`` says; its I/O logged."""
    opset = _onnx_opset(onnx_path)
    if opset is not None and opset > plan.max_opset:
        log(f'note: {onnx_path.name} has opset {opset}, above the {plan.max_opset} that TensorRT '
            f'{trt.__version__} documents; parsing anyway (re-export with a lower --opset if it fails)')
    # TensorRT < 10 needs EXPLICIT_BATCH; 10 makes every network explicit-batch, 11 every one strongly typed.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if plan.explicit_batch_flag else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger(trt))
    if not parser.parse_from_file(str(onnx_path)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrtBuildError(f'TensorRT {trt.__version__} could not parse {onnx_path}: {errors}')
    for kind, count, get in (('input ', network.num_inputs, network.get_input),
                             ('output', network.num_outputs, network.get_output)):
        for i in range(count):
            log(f'  {kind} {get(i).name} {tuple(get(i).shape)} {get(i).dtype}')
    return network, parser  # the parser owns the weights until the build is done


def _configure(trt, builder, plan: BuildPlan, workspace_mib: int, cache_path: Path | None,
               log: Callable[[str], None]):
    """A builder config with the workspace limit, ``plan``'s flags and the timing cache (an unusable cache
    file is replaced by a new cache, logged)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b''
    cache = config.create_timing_cache(cache_bytes)
    if cache is None or not config.set_timing_cache(cache, False):
        log(f'note: timing cache {cache_path} does not fit this TensorRT/GPU; starting a new one')
        config.set_timing_cache(config.create_timing_cache(b''), True)
    return config


def _describe(trt_version: str, onnx_path: Path, plan: BuildPlan, spec: ModelSpec, workspace_mib: int,
              seconds: float, log: Callable[[str], None]) -> EngineSidecar:
    """The sidecar of an engine just built (the GPU read through cuda-python, as the backend reads it)."""
    gpu = detect_gpu()
    if gpu is None:
        log('note: could not read the GPU (install cuda-python, which the TensorRT backend needs too): the '
            'sidecar says "unknown", so the node will take the engine for one built on another GPU')
    return EngineSidecar.create(
        tensorrt_version=trt_version, gpu_name=gpu[0] if gpu else UNKNOWN_GPU,
        compute_capability=gpu[1] if gpu else UNKNOWN_GPU, spec=spec.with_(precision=plan.precision),
        onnx_path=onnx_path,
        build={'strongly_typed': plan.strongly_typed, 'flags': list(plan.flags),
               'workspace_mib': workspace_mib, 'onnx_variant': plan.onnx_variant,
               'seconds': round(seconds, 1)})


def build_engine(onnx_path: str | Path, engine_path: str | Path, plan: BuildPlan, spec: ModelSpec, *,
                 workspace_mib: int = 1024, timing_cache: str | Path | None = None,
                 log: Callable[[str], None] = print) -> EngineSidecar:
    """Parse ``onnx_path``, build a serialized engine per ``plan``, write it and its JSON sidecar.

    Args:
        onnx_path: the ONNX of ``plan.onnx_variant``.
        engine_path: where the ``.engine`` goes; ``<engine_path>.json`` gets the sidecar.
        plan: from ``plan_build(tensorrt.__version__, precision)``.
        spec: the model's spec (its ``precision`` is set to ``plan.precision`` in the sidecar).
        workspace_mib: builder workspace memory pool limit.
        timing_cache: file to load tactic timings from (when it exists) and save them to afterwards.
        log: one-line progress messages.

    Raises:
        TrtBuildError: tensorrt missing, parse errors, or a build that returned no engine.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TrtBuildError('tensorrt is not installed (on a Jetson it comes with JetPack: '
                            'apt install python3-libnvinfer)') from exc
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    cache_path = Path(timing_cache) if timing_cache else None
    builder = trt.Builder(trt_logger(trt))
    network, _parser = _parse(trt, builder, onnx_path, plan, log)
    config = _configure(trt, builder, plan, workspace_mib, cache_path, log)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TrtBuildError(f'TensorRT {trt.__version__} failed to build a {plan.precision} engine from '
                            f'{onnx_path} (see the TensorRT messages above)')
    # The engine's old sidecar goes first, so that a build interrupted below never leaves a new engine
    # described by the old sidecar (or an old one by the new); the files are replaced whole, never
    # half-written.
    sidecar_path(engine_path).unlink(missing_ok=True)
    write_atomically(engine_path, serialized)
    if cache_path is not None:
        write_atomically(cache_path, config.get_timing_cache().serialize())
    seconds = time.perf_counter() - start
    sidecar = _describe(trt.__version__, onnx_path, plan, spec, workspace_mib, seconds, log)
    write_sidecar(engine_path, sidecar)
    return sidecar
